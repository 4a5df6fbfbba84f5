"""Benchmark the rewards: completions per second on realistic 2 KB completions, and the worst
case per completion size on the adversarial corpus.

    python bench/bench_rewards.py            # prints two tables; copy them into BENCHMARKS.md

Every completion in a set is distinct, so the (pred, gold) judgement cache does not inflate the
LaTeX figures; in training a GRPO group repeats answers, which the cache then serves.
"""

import os
import random
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the project root

import rewards  # noqa: E402
from grpo import answers  # noqa: E402
from prompts import REASONING_END, SOLUTION_END, SOLUTION_START

SEED = 0
N = 2000  # completions per set
REPEATS = 5  # timing runs per measurement; the best is reported
TARGETS = {"match_format_exactly": 100_000, "match_format_approximately": 100_000}  # completions/s
SIZES = (1_000, 10_000, 100_000, 1_000_000)  # adversarial completion sizes, in characters


def working(rng: random.Random, size: int = 2000) -> str:
    words = ["First", "we", "add", "the", "numbers", "then", "multiply", "by", "so", "that", "gives", "check:", "="]
    out = []
    while sum(len(w) + 1 for w in out) < size:
        out.append(rng.choice(words) if rng.random() < 0.7 else str(rng.randint(0, 999)))
    return " ".join(out)[:size]


def plain_set(rng):
    """Well-formatted and malformed 2 KB completions with plain-number answers."""
    completions, golds = [], []
    for i in range(N):
        gold = rng.randint(-10_000, 10_000)
        guess = gold if rng.random() < 0.4 else gold + rng.randint(-50, 50)
        body = working(rng, 1960)
        kind = i % 4
        if kind == 0:
            text = f"{body}{REASONING_END}{SOLUTION_START}{guess}{SOLUTION_END}"
        elif kind == 1:
            text = f"{body}{REASONING_END}{SOLUTION_START}{guess:,}{SOLUTION_END}<|endoftext|>"
        elif kind == 2:
            text = f"{body}{SOLUTION_START}{guess}"  # malformed: no end marker, no close
        else:
            block = f"{SOLUTION_START}{guess}{SOLUTION_END}"
            text = f"{body}{REASONING_END}{block} and more {block}"
        completions.append(text)
        golds.append(str(gold))
    return completions, golds


def latex_set(rng):
    """2 KB completions with LaTeX closed forms: fractions, radicals, decimals vs LaTeX (exact path)."""
    completions, golds = [], []
    for i in range(N):
        a, b = rng.randint(1, 500), rng.randint(501, 999)
        kind = i % 4
        if kind == 0:
            gold, pred = f"\\frac{{{a}}}{{{b}}}", f"\\frac{{{2 * a}}}{{{2 * b}}}"
        elif kind == 1:
            gold, pred = f"{a / 4}", f"\\frac{{{a}}}{{4}}"
        elif kind == 2:
            gold, pred = f"{a}\\sqrt{{{b}}}", f"\\sqrt{{{a * a * b}}}"
        else:
            gold, pred = f"\\frac{{{a}}}{{{b}}}", f"\\frac{{{a + 1}}}{{{b}}}"  # wrong
        completions.append(f"{working(rng, 1960)}{REASONING_END}{SOLUTION_START}{pred}{SOLUTION_END}")
        golds.append(gold)
    return completions, golds


def math_verify_set(rng, n: int = N // 4, group: int = 4):
    """2 KB completions only math-verify can judge (equations, pi, intervals). As in GRPO, each gold
    answer is shared by a group of `group` completions; every completion is still distinct."""
    completions, golds = [], []
    for i in range(n):
        if i % group == 0:
            a, b = rng.randint(1, 500), rng.randint(501, 999)
            kind = (i // group) % 3
        c = a + i % group  # a different prediction within the group
        if kind == 0:
            gold, pred = f"\\frac{{{a}}}{{{b}}}", f"x = \\frac{{{c}}}{{{b}}}"
        elif kind == 1:
            gold, pred = f"\\frac{{{a}\\pi}}{{{b}}}", f"\\frac{{{c}}}{{{b}}}\\pi"
        else:
            gold, pred = f"({a}, {b}]", f"({c}, {b}]"
        completions.append(f"{working(rng, 1960)}{REASONING_END}{SOLUTION_START}{pred}{SOLUTION_END}")
        golds.append(gold)
    return completions, golds


def rate(fn, completions, golds) -> float:
    """Completions per second, best of REPEATS (each run on fresh copies for the cached judge)."""
    best = float("inf")
    for r in range(REPEATS):
        if fn is rewards.check_answer:
            answers._cache.clear()
        start = time.perf_counter()
        fn(completions=completions, answer=golds)
        best = min(best, time.perf_counter() - start)
    return len(completions) / best


def adversarial(size: int) -> dict:
    def rep(piece):
        return (piece * (size // len(piece) + 1))[:size]

    return {
        "repeated markers": rep(f"{REASONING_END}{SOLUTION_START}{SOLUTION_END}"),
        "markers and digits": rep(f"{REASONING_END}12{SOLUTION_START} 3.4 {SOLUTION_END}\n"),
        "digits": rep("1"),
        "whitespace": rep(" \n\t"),
        "huge number in a block": f"w{REASONING_END}{SOLUTION_START}" + "9" * size + SOLUTION_END,
        "partial markers": rep("<SOLUTION</SOLUTIO<end_working"),
    }


def main() -> None:
    rng = random.Random(SEED)
    plain, latex, hard = plain_set(rng), latex_set(rng), math_verify_set(rng)
    # start every math-verify worker (and sympy's lazy imports) outside the timing
    answers._prefetch_math_verify(
        [(f"x = {i}", f"\\frac{{{i}}}{{3}}\\pi") for i in range(4 * answers.MATH_VERIFY_WORKERS)]
    )
    print(
        f"## Completions per second on distinct 2 KB completions ({N} per set, {N // 4} for math-verify; "
        f"best of {REPEATS}; {answers.MATH_VERIFY_WORKERS} math-verify workers)\n"
    )
    print("| reward | set | completions/s | target |")
    print("| --- | --- | ---: | ---: |")
    rows = [(fn, "plain numbers (formatted + malformed)", plain) for fn in rewards.REWARD_FUNCS]
    rows.append((rewards.check_answer, "LaTeX fractions and radicals (exact path)", latex))
    rows.append((rewards.check_answer, "LaTeX needing math-verify (equations, pi, intervals)", hard))
    targets = {**TARGETS, ("check_answer", "plain"): 20_000, ("check_answer", "LaTeX"): 1_000}
    failed = []
    for fn, label, (completions, golds) in rows:
        per_s = rate(fn, completions, golds)
        target = targets.get(fn.__name__) or targets.get((fn.__name__, label.split()[0]))
        if target and per_s < target:
            failed.append(f"{fn.__name__} on {label}")
        print(f"| {fn.__name__} | {label} | {per_s:,.0f} | {f'{target:,}' if target else '-'} |")

    print("\n## Worst case per completion size: all four rewards on one adversarial completion\n")
    print("| size (chars) | worst case | worst ms | median ms |")
    print("| ---: | --- | ---: | ---: |")
    for size in SIZES:
        times = {}
        for name, text in adversarial(size).items():
            best = float("inf")
            for _ in range(REPEATS):
                start = time.perf_counter()
                for fn in rewards.REWARD_FUNCS:
                    fn(completions=[text], answer=["42"])
                best = min(best, time.perf_counter() - start)
            times[name] = best
        worst = max(times, key=times.get)
        print(f"| {size:,} | {worst} | {times[worst] * 1e3:.2f} | {statistics.median(times.values()) * 1e3:.2f} |")
    if failed:
        print(f"\nbelow target: {', '.join(failed)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
