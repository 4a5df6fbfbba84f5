"""The four GRPO rewards, and the one answer judge that training and evaluation share.

Each reward follows TRL's calling convention: keyword arguments (`completions`, the dataset's
`answer` column, and whatever else TRL passes, taken by `**kwargs`), and one float per completion.
Completions may be message lists (`[{"role": "assistant", "content": ...}]`) or plain strings.

Guarantees, each proved by tests/test_rewards*.py:
- no reward raises, and every score is a finite float, whatever the model emitted;
- the work per completion is linear in its length (no backtracking regex: we scan with
  str.find/rfind/count, then parse only the short last solution block);
- nothing prints; extracted answers go to TRL's completion table through `log_extra`.

Where we depart from the public recipe (REFERENCE.md §1), and why:
- only the last complete solution block is judged; a second block or trailing text loses the
  exact-format reward, so the model cannot hedge with several answers;
- equivalence is exact first (Decimal: `1,000` = `1000.0`; Fraction: `\\frac{1}{2}` = `0.5`,
  `2\\sqrt{3}` = `\\sqrt{12}`), then math-verify for other LaTeX (`x = 5`, intervals, pi), with
  a hard time bound in any thread;
- ratio partial credit only compares plain numbers, as a relative error (safe for 0, negatives,
  500-digit numbers);
- `check_numbers` pays only for a block holding exactly one number, so listing numbers never helps.

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

from prompts import REASONING_END, REASONING_START, SOLUTION_END, SOLUTION_START

# --- scores (the recipe's scale; the README's "Reward design" section explains each) -------------
EXACT_FORMAT_SCORE = 3.0  # whole completion is working, end marker, one solution block, nothing after
MARKER_ONCE_SCORE = 0.5  # approximate format: a marker that occurs exactly once ...
MARKER_WRONG_SCORE = -1.0  # ... and one that is missing or repeated
ANSWER_IDENTICAL = 5.0  # solution text equals the gold text (whitespace aside)
ANSWER_EQUIVALENT = 3.5  # same value written differently: 1,000 vs 1000, \frac{1}{2} vs 0.5
ANSWER_WITHIN_10PCT = 2.0  # plain numbers, relative error <= 10%
ANSWER_WITHIN_20PCT = 1.5  # plain numbers, relative error <= 20%
ANSWER_WRONG = -2.5  # a parsable answer that is wrong
ANSWER_UNPARSABLE = -4.5  # gold is a number, the solution is not a number nor equivalent to it
ANSWER_MISSING = -2.0  # no complete solution block
NUMBER_EQUAL = 3.5  # check_numbers: the block's single number equals the gold number
NUMBER_WRONG = -1.5  # a number that differs, or several numbers
NUMBER_MISSING = -2.5  # no number in the solution block
NOT_APPLICABLE = 0.0  # check_numbers when the gold answer is not a plain number

# --- bounds ------------------------------------------------------------------------------------
MAX_ANSWER_CHARS = 1000  # a solution block longer than this is not judged as an answer
MATH_VERIFY_TIMEOUT_S = 2.0  # wall-clock bound on one math-verify comparison, in any thread
MATH_VERIFY_WORKERS = max(1, min(4, os.cpu_count() or 1))  # worker processes; a batch is judged in parallel
CACHE_SIZE = 4096  # recent (pred, gold) judgements kept; a GRPO group repeats answers often
EOS_TEXTS = ("<|endoftext|>", "<|im_end|>", "</s>", "<eos>")  # stripped from the end (at most 4)

_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[+-]?\.\d+")
_SQRT_TAIL = re.compile(r"(.*?)\\sqrt\{(\d{1,8})\}")
_FRAC = re.compile(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}")
_NUMBER_IN_TEXT = re.compile(r"[+\-\u2212]?\d[\d,]*(?:\.\d+)?")


# --- extraction: one parser for every reward ----------------------------------------------------
def completion_text(completion) -> str:
    """The text of one completion: a string, or the content of a message list. Never raises."""
    try:
        if isinstance(completion, str):
            return completion
        if isinstance(completion, dict):
            content = completion.get("content")
            return content if isinstance(content, str) else ""
        if isinstance(completion, (list, tuple)):
            return "".join(completion_text(m) for m in completion if isinstance(m, (dict, str)))
    except Exception:
        pass
    return ""


def strip_end(text: str) -> str:
    """Drop trailing whitespace and up to four trailing EOS texts (bounded work)."""
    text = text.rstrip()
    for _ in range(4):
        for eos in EOS_TEXTS:
            if text.endswith(eos):
                text = text[: -len(eos)].rstrip()
                break
        else:
            break
    return text


def last_solution(text: str) -> str | None:
    """The text inside the last complete <SOLUTION>...</SOLUTION> block, or None.

    >>> last_solution("<SOLUTION>1</SOLUTION> then <SOLUTION> 2 </SOLUTION>")
    ' 2 '
    """
    end = text.rfind(SOLUTION_END)
    if end < 0:
        return None
    start = text.rfind(SOLUTION_START, 0, end)
    if start < 0:
        return None
    return text[start + len(SOLUTION_START) : end]


def judged_answer(text: str) -> str | None:
    """The stripped answer that check_answer judges, or None (no block, or over MAX_ANSWER_CHARS)."""
    block = last_solution(text)
    if block is None or len(block) > MAX_ANSWER_CHARS:
        return None
    return block.strip()


def is_exact_format(text: str) -> bool:
    """True when the completion is: working, end-of-working marker, one solution block, nothing after.

    Linear: four str.count calls and a few finds. Whitespace and EOS text may follow the block;
    the opening reasoning marker may be repeated once at the start (the prompt already opened it).
    """
    text = strip_end(text)
    if not text.endswith(SOLUTION_END):
        return False
    if text.count(REASONING_END) != 1 or text.count(SOLUTION_START) != 1 or text.count(SOLUTION_END) != 1:
        return False
    reason_end = text.find(REASONING_END)
    sol_start = text.find(SOLUTION_START)
    if sol_start < reason_end:
        return False
    working = text[:reason_end].lstrip()
    if working.startswith(REASONING_START):
        working = working[len(REASONING_START) :]
    if REASONING_START in working or not working.strip():
        return False
    if text[reason_end + len(REASONING_END) : sol_start].strip():
        return False
    answer = text[sol_start + len(SOLUTION_START) : len(text) - len(SOLUTION_END)]
    return bool(answer.strip())


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


def numbers_in(text: str) -> list[Decimal]:
    """Every number written in `text` (commas as thousands separators), in order."""
    out = []
    for m in _NUMBER_IN_TEXT.finditer(text):
        value = parse_plain_number(m.group().rstrip(","))
        if value is not None:
            out.append(value)
    return out


def exact_value(text: str) -> tuple[Fraction, int] | None:
    """The exact value of a simple answer as (rational coefficient, square-free radicand), or None.

    Covers the common closed forms: integers, decimals, `a/b`, `\\frac{a}{b}` (and `\\dfrac`,
    `\\tfrac`), `a\\sqrt{b}`, `\\frac{a}{b}\\sqrt{c}`, with an optional sign, `$...$` or `\\boxed{}`.
    Anything else is None and goes to math-verify.

    >>> exact_value("2\\sqrt{12}") == exact_value("4\\sqrt{3}") == (Fraction(4), 3)
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
        self.timeouts = 0

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
                    self.timeouts += 1
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


# --- the four rewards ------------------------------------------------------------------------------
def _texts(completions) -> list[str]:
    try:
        return [completion_text(c) for c in completions]
    except Exception:
        return []


def _answers(answer, n: int) -> list[str]:
    try:
        answers = [a if isinstance(a, str) else ("" if a is None else str(a)) for a in list(answer)]
    except Exception:
        answers = []
    return (answers + [""] * n)[:n]


def match_format_exactly(completions, **kwargs) -> list[float]:
    """+3.0 when the completion is exactly: working, `<end_working_out>`, one `<SOLUTION>...</SOLUTION>`
    block, then only whitespace/EOS; else 0.0. A second block or any trailing text scores 0.

    >>> match_format_exactly(completions=["2+2 is 4<end_working_out><SOLUTION>4</SOLUTION>"])
    [3.0]

    | completion                                              | score | why                     |
    |---------------------------------------------------------|-------|-------------------------|
    | `work<end_working_out><SOLUTION>4</SOLUTION>`           |  3.0  | the format              |
    | `work<end_working_out><SOLUTION>4</SOLUTION><eos>\\n`     |  3.0  | trailing EOS/whitespace |
    | `...</SOLUTION> I think`                                |  0.0  | text after the block    |
    | `...<SOLUTION>4</SOLUTION><SOLUTION>5</SOLUTION>`       |  0.0  | two blocks              |
    | `<SOLUTION>4</SOLUTION>`                                |  0.0  | no working / end marker |
    """
    return [EXACT_FORMAT_SCORE if _safe(is_exact_format, t, False) else 0.0 for t in _texts(completions)]


def match_format_approximately(completions, **kwargs) -> list[float]:
    """For each of `<end_working_out>`, `<SOLUTION>`, `</SOLUTION>`: +0.5 if it occurs exactly once,
    -1.0 if missing or repeated. Range -3.0 .. +1.5. The opening marker is in the prompt, so it is
    not scored.

    >>> match_format_approximately(completions=["x<end_working_out><SOLUTION>4</SOLUTION>", "no markers"])
    [1.5, -3.0]

    | completion                                          | score | why                        |
    |-----------------------------------------------------|-------|----------------------------|
    | `w<end_working_out><SOLUTION>4</SOLUTION>`          |  1.5  | each marker once           |
    | `w<SOLUTION>4</SOLUTION>`                           |  0.0  | end-of-working missing     |
    | `w<end_working_out><end_working_out><SOLUTION>4`    | -1.5  | repeated, and no close     |
    | ``                                                  | -3.0  | nothing                    |
    """

    def score(text: str) -> float:
        return sum(
            MARKER_ONCE_SCORE if text.count(m) == 1 else MARKER_WRONG_SCORE
            for m in (REASONING_END, SOLUTION_START, SOLUTION_END)
        )

    return [_safe(score, t, 3 * MARKER_WRONG_SCORE) for t in _texts(completions)]


def check_answer(completions, answer=(), log_extra=None, **kwargs) -> list[float]:
    """Judge the last complete solution block against the gold answer.

    +5.0 identical text; +3.5 equivalent (`answers_match`: `1,000` vs `1000`, `\\frac{1}{2}` vs `0.5`);
    plain numbers only: +2.0 within 10% relative error, +1.5 within 20%; -2.5 wrong; -4.5 when the
    gold is a number and the solution is not one; -2.0 when there is no complete solution block.
    Ratio credit uses |pred - gold| <= r * |gold| in exact Decimal arithmetic: a zero gold answer
    gets no partial credit, a sign flip never gets any, and huge numbers cannot overflow.

    >>> check_answer(completions=["w<end_working_out><SOLUTION>42</SOLUTION>"], answer=["42"])
    [5.0]

    | solution block      | gold          | score | why                        |
    |---------------------|---------------|-------|----------------------------|
    | `42`                | `42`          |  5.0  | identical                  |
    | `1,000`             | `1000`        |  3.5  | equal as numbers           |
    | `\\frac{1}{2}`       | `0.5`         |  3.5  | equal as exact fractions   |
    | `x = 5`             | `5`           |  3.5  | equal via math-verify      |
    | `95`                | `100`         |  2.0  | within 10%                 |
    | `7`                 | `0`           | -2.5  | no ratio credit around 0   |
    | `banana`            | `12`          | -4.5  | not a number               |
    | (no block)          | `12`          | -2.0  | nothing to judge           |
    """
    texts = _texts(completions)
    golds = _answers(answer, len(texts))
    extracted = [_safe(judged_answer, text, None) for text in texts]
    _prefetch_math_verify(list(zip(extracted, golds)))
    scores = [_safe(lambda: _score_answer(pred, gold), None, ANSWER_WRONG) for pred, gold in zip(extracted, golds)]
    _log(log_extra, "extracted_answer", extracted)
    _log(log_extra, "gold_answer", [g.strip() for g in golds])
    return scores


def _score_answer(pred: str | None, gold: str) -> float:
    if pred is None:
        return ANSWER_MISSING
    if pred == gold.strip() and pred:
        return ANSWER_IDENTICAL
    if answers_match(pred, gold):
        return ANSWER_EQUIVALENT
    p, g = parse_plain_number(pred), parse_plain_number(gold)
    if p is not None and g is not None:
        if g != 0:
            error = abs(p - g)
            if error <= abs(g) * Decimal("0.1"):
                return ANSWER_WITHIN_10PCT
            if error <= abs(g) * Decimal("0.2"):
                return ANSWER_WITHIN_20PCT
        return ANSWER_WRONG
    if g is not None:
        return ANSWER_UNPARSABLE
    return ANSWER_WRONG


def check_numbers(completions, answer=(), log_extra=None, **kwargs) -> list[float]:
    """The number in the last solution block against a numeric gold answer.

    +3.5 the block holds exactly one number and it equals the gold; -1.5 it differs, or the block
    lists several numbers (so listing candidates never pays more than one answer); -2.5 no number
    or no block; 0.0 when the gold answer is not a plain number (check_answer judges those).
    The recipe took the first number anywhere after `<SOLUTION>`, even past `</SOLUTION>`.

    >>> check_numbers(completions=["w<end_working_out><SOLUTION>The answer is 1,024</SOLUTION>"], answer=["1024"])
    [3.5]

    | solution block      | gold   | score | why                   |
    |---------------------|--------|-------|-----------------------|
    | `x = -3`            | `-3`   |  3.5  | one number, equal     |
    | `3.50`              | `3.5`  |  3.5  | equal as decimals     |
    | `4`                 | `3`    | -1.5  | wrong                 |
    | `1 2 3`             | `3`    | -1.5  | several numbers       |
    | `none`              | `3`    | -2.5  | no number             |
    | `\\frac{1}{2}`       | `\\frac{1}{2}` | 0.0 | gold not a number |
    """
    texts = _texts(completions)
    golds = _answers(answer, len(texts))

    def score(text: str, gold: str) -> float:
        g = parse_plain_number(gold)
        if g is None:
            return NOT_APPLICABLE
        block = last_solution(text)
        if block is None or len(block) > MAX_ANSWER_CHARS:
            return NUMBER_MISSING
        found = numbers_in(block)
        if not found:
            return NUMBER_MISSING
        if len(found) > 1:
            return NUMBER_WRONG
        return NUMBER_EQUAL if found[0] == g else NUMBER_WRONG

    return [_safe(lambda: score(t, g), None, NUMBER_WRONG) for t, g in zip(texts, golds)]


def _safe(fn, arg, fallback):
    """Call fn(arg) (or fn() when arg is None); on any exception return fallback. Keeps rewards total."""
    try:
        return fn(arg) if arg is not None else fn()
    except Exception:
        return fallback


def _log(log_extra, column: str, values: list) -> None:
    if callable(log_extra):
        try:
            log_extra(column, values)
        except Exception:
            pass


# The order is the order of REWARD_WEIGHTS in train_grpo.py.
REWARD_FUNCS = [match_format_exactly, match_format_approximately, check_answer, check_numbers]


if __name__ == "__main__" and sys.argv[1:] == ["--math-verify-worker"]:
    _worker_main()
