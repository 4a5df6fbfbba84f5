"""Whether an answer is the gold one: the judge that the rewards and evaluate.py share.

`answers_match(pred, gold)` decides, in order: exact numbers (Decimal), identical text, simple
closed forms in exact rational arithmetic (Fraction: `\\frac{1}{2}`, `0.5`, `2\\sqrt{3}`), and only
then math-verify, in worker processes that are killed after MATH_VERIFY_TIMEOUT_S, so a call is
bounded in any thread. It never raises. It imports nothing of this project but the standard
library: rewards.py and evaluate.py import it, never the reverse.

Pure at import: math-verify (and sympy) load in a worker process on the first LaTeX comparison.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import re
import select
import subprocess
import sys
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal, InvalidOperation
from fractions import Fraction

MAX_ANSWER_CHARS = 1000  # an answer longer than this is not judged
MATH_VERIFY_TIMEOUT_S = 2.0  # wall-clock bound on one math-verify comparison, in any thread
MATH_VERIFY_WORKERS = max(1, min(4, os.cpu_count() or 1))  # worker processes; a batch is judged in parallel
CACHE_SIZE = 4096  # recent (pred, gold) judgements kept; a GRPO group repeats answers often

_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[+-]?\.\d+")
_SQRT_TAIL = re.compile(r"(.*?)\\sqrt\{(\d{1,8})\}")
_FRAC = re.compile(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}")


def parse_plain_number(text: str) -> Decimal | None:
    """A plain decimal number, exactly, or None. Tolerates whitespace, thousands commas, a leading
    '+', a Unicode minus and a trailing period. No exponents, no nan/inf: those are not plain.

    >>> parse_plain_number(" \u22121,234.50. ")
    Decimal('-1234.50')
    """
    if not isinstance(text, str) or len(text) > MAX_ANSWER_CHARS:
        return None
    s = text.strip().replace("\u2212", "-")
    if s.endswith("."):
        s = s[:-1]
    if not _PLAIN_NUMBER.fullmatch(s):
        return None
    try:
        return Decimal(s.replace(",", ""))
    except (InvalidOperation, ValueError):
        return None


def exact_value(text: str) -> tuple[Fraction, int] | None:
    r"""The exact value of a simple answer as (rational coefficient, square-free radicand), or None.

    Covers the common closed forms: integers, decimals, `a/b`, `\frac{a}{b}` (and `\dfrac`,
    `\tfrac`), `a\sqrt{b}`, `\frac{a}{b}\sqrt{c}`, with an optional sign, `$...$` or `\boxed{}`.
    Anything else is None and goes to math-verify.

    >>> exact_value(r"2\sqrt{12}") == exact_value(r"4\sqrt{3}") == (Fraction(4), 3)
    True
    """
    s = text.strip().replace("\u2212", "-").replace(" ", "")
    if len(s) > 100:
        return None
    if len(s) > 1 and s[0] == "$" and s[-1] == "$":
        s = s[1:-1]
    if s.startswith("\\boxed{") and s.endswith("}"):
        s = s[len("\\boxed{") : -1]
    sign = -1 if s[:1] == "-" else 1
    if s[:1] in ("+", "-"):
        s = s[1:]
    radicand = 1
    m = _SQRT_TAIL.fullmatch(s)
    if m:
        s, radicand = (m.group(1) or "1"), int(m.group(2))
    if s[:1] in ("+", "-"):
        return None
    m = _FRAC.fullmatch(s)
    if m:
        num, den = parse_plain_number(m.group(1)), parse_plain_number(m.group(2))
    elif s.count("/") == 1:
        num, den = (parse_plain_number(part) for part in s.split("/"))
    else:
        num, den = parse_plain_number(s), Decimal(1)
    if num is None or den is None or den == 0:
        return None
    coef = sign * Fraction(num) / Fraction(den)
    # a*sqrt(r): move square factors of r into a, so equal values have one representation
    factor = 2
    while factor * factor <= radicand:
        while radicand % (factor * factor) == 0:
            radicand //= factor * factor
            coef *= factor
        factor += 1
    if coef == 0 or radicand == 0:
        return (Fraction(0), 1)
    return (coef, radicand)


# --- answer equivalence --------------------------------------------------------------------------
def answers_match(pred: str, gold: str) -> bool:
    """Whether the predicted answer means the same as the gold answer. Pure; never raises.

    1. Both plain numbers: exact Decimal equality (`1,000` == `1000.0`, `-0` == `0`). math-verify is
       not asked, which avoids its float-rounding false positives (`0.3333333` vs `0.33333333`).
    2. Identical text (whitespace aside): equal.
    3. Both simple closed forms (`\\frac{3}{4}`, `0.75`, `2\\sqrt{3}`, `\\sqrt{12}`): exact rational
       arithmetic (`exact_value`), no sympy, no rounding.
    4. Otherwise math-verify (other LaTeX: `x = 5`, intervals, pi, expressions), in one of
       MATH_VERIFY_WORKERS worker processes, killed after MATH_VERIFY_TIMEOUT_S, so a call is
       bounded in any thread.
       Known math-verify false positives remain for non-plain answers (`1/2004!` vs `1/2006!`).

    >>> answers_match("1,000", "1000.0"), answers_match("0.3333333", "0.33333333")
    (True, False)
    """
    try:
        pair = _judgeable(pred, gold)
        if pair is None:
            return False
        exact = _exact_match(*pair)
        return exact if exact is not None else _math_verify_cached(*pair)
    except Exception:
        return False


def _judgeable(pred, gold) -> tuple[str, str] | None:
    """The stripped (pred, gold) pair, or None when it cannot match: not text, empty or too long."""
    if not isinstance(pred, str) or not isinstance(gold, str):
        return None
    pred, gold = pred.strip(), gold.strip()
    if not pred or not gold or len(pred) > MAX_ANSWER_CHARS or len(gold) > MAX_ANSWER_CHARS:
        return None
    return pred, gold


def _exact_match(pred: str, gold: str) -> bool | None:
    """Steps 1-3 of answers_match on stripped text; None when only math-verify can tell."""
    p, g = parse_plain_number(pred), parse_plain_number(gold)
    if p is not None and g is not None:
        return p == g
    if pred == gold:
        return True
    pv, gv = exact_value(pred), exact_value(gold)
    if pv is not None and gv is not None:
        return pv == gv
    return None


def _prefetch_math_verify(pairs: list[tuple[str | None, str]]) -> None:
    """Judge, in parallel across the worker pool, the pairs only math-verify can decide, so that
    the sequential scoring that follows finds them in the cache. Best effort: never raises."""
    if MATH_VERIFY_WORKERS < 2:
        return
    try:
        todo = set()
        for pred, gold in pairs:
            pair = _judgeable(pred, gold)
            if pair is not None and pair not in _cache and _exact_match(*pair) is None:
                todo.add(pair)
        if len(todo) > 1:
            list(_executor().map(lambda pair: _math_verify_cached(*pair), todo))
    except Exception:
        pass


_executor_instance = None
_executor_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _executor_instance
    with _executor_lock:
        if _executor_instance is None:
            _executor_instance = ThreadPoolExecutor(MATH_VERIFY_WORKERS, thread_name_prefix="math-verify")
        return _executor_instance


_cache: OrderedDict = OrderedDict()
_cache_lock = threading.Lock()


def _math_verify_cached(pred: str, gold: str) -> bool:
    key = (pred, gold)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    result = _POOL.judge(pred, gold)
    with _cache_lock:
        _cache[key] = result
        if len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return result


class _MathVerifyWorker:
    """One child process that runs math-verify; a call that overruns its time kills the child.

    math-verify's own timeouts use SIGALRM (main thread only) and cannot interrupt sympy's C-level
    big-integer work; a separate process can always be stopped. JSON lines over pipes, one request
    at a time under a lock, so any thread may call. The child starts on first use (~1 s).
    """

    def __init__(self, timeout_s: float):
        self.timeout_s = timeout_s
        self.proc = None
        self.warm = False  # the child has answered once (math-verify and sympy imported)
        self.lock = threading.Lock()

    def _start(self):
        self.warm = False
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--math-verify-worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def _kill(self):
        if self.proc is not None:
            try:
                self.proc.kill()
                self.proc.wait(timeout=5)
            except Exception:
                pass
        self.proc = None

    def judge(self, pred: str, gold: str) -> bool:
        with self.lock:
            try:
                if self.proc is None or self.proc.poll() is not None:
                    self._start()
                # First call: allow for the child's import of math-verify and sympy.
                limit = self.timeout_s + (0.0 if self.warm else 30.0)
                self.proc.stdin.write((json.dumps([pred, gold]) + "\n").encode("ascii"))
                self.proc.stdin.flush()
                ready, _, _ = select.select([self.proc.stdout], [], [], limit)
                if not ready:
                    self._kill()
                    return False
                line = self.proc.stdout.readline()
                if not line:
                    self._kill()
                    return False
                self.warm = True
                return json.loads(line) is True
            except Exception:
                self._kill()
                return False
            except BaseException:  # KeyboardInterrupt mid-call: never leave a stale answer in the pipe
                self._kill()
                raise

    def close(self):
        with self.lock:
            self._kill()


class _WorkerPool:
    """MATH_VERIFY_WORKERS workers, each started on first use; a caller takes an idle one."""

    def __init__(self, size: int, timeout_s: float):
        self.workers = [_MathVerifyWorker(timeout_s) for _ in range(size)]
        self.idle = queue.Queue()
        for worker in self.workers:
            self.idle.put(worker)

    def judge(self, pred: str, gold: str) -> bool:
        worker = self.idle.get()
        try:
            return worker.judge(pred, gold)
        finally:
            self.idle.put(worker)

    def close(self):
        for worker in self.workers:
            worker.close()


_POOL = _WorkerPool(MATH_VERIFY_WORKERS, MATH_VERIFY_TIMEOUT_S)
atexit.register(_POOL.close)


def _wrap_latex(text: str) -> str:
    """math-verify finds LaTeX inside delimiters; a bare `2\\sqrt{3}` would otherwise parse as 2."""
    if "$" in text or "\\boxed" in text or "\\(" in text or "\\[" in text:
        return text
    return f"${text}$"


def _worker_main():  # pragma: no cover - runs in the child process
    import logging

    logging.disable(logging.CRITICAL)
    from functools import lru_cache

    from math_verify import parse, verify

    parse_gold = lru_cache(maxsize=CACHE_SIZE)(lambda text: parse(text, parsing_timeout=None))
    for line in sys.stdin:
        try:
            pred, gold = json.loads(line)
            g = parse_gold(_wrap_latex(gold))
            p = parse(_wrap_latex(pred), parsing_timeout=None)
            ok = bool(g) and bool(p) and bool(verify(g, p, timeout_seconds=None))
        except BaseException:
            ok = False
        sys.stdout.write("true\n" if ok else "false\n")
        sys.stdout.flush()


if __name__ == "__main__" and sys.argv[1:] == ["--math-verify-worker"]:
    _worker_main()
