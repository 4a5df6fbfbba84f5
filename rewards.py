"""The four GRPO rewards and the one parser of completions they share.

Each reward follows TRL's calling convention: keyword arguments (`completions`, the dataset's
`answer` column, and whatever else TRL passes, taken by `**kwargs`), and one float per completion.
Completions may be message lists (`[{"role": "assistant", "content": ...}]`) or plain strings.

Guarantees, each proved by tests/test_rewards*.py:
- no reward raises, and every score is a finite float, whatever the model emitted;
- the work per completion is linear in its length (no backtracking regex: we scan with
  str.find/rfind/count, then parse only the short last solution block);
- nothing prints; extracted answers go to TRL's completion table through `log_extra`.

Where we depart from the public recipe (Unsloth's Qwen3 (4B) GRPO notebook), and why:
- only the last complete solution block is judged; a second block or trailing text loses the
  exact-format reward, so the model cannot hedge with several answers;
- equivalence is exact first (Decimal: `1,000` = `1000.0`; Fraction: `\\frac{1}{2}` = `0.5`,
  `2\\sqrt{3}` = `\\sqrt{12}`), then math-verify for other LaTeX (`x = 5`, intervals, pi), with
  a hard time bound in any thread;
- ratio partial credit only compares plain numbers, as a relative error (safe for 0, negatives,
  500-digit numbers);
- `check_numbers` pays only for a block holding exactly one number, so listing numbers never helps.

Whether an answer equals the gold one is answers.py's job (`answers_match`), shared with
evaluate.py. Pure at import: math-verify loads in a worker process on the first LaTeX comparison.
"""

from __future__ import annotations

import re
from decimal import Decimal

from grpo.answers import MAX_ANSWER_CHARS, _prefetch_math_verify, answers_match, parse_plain_number
from prompts import REASONING_END, REASONING_START, SOLUTION_END, SOLUTION_START

# --- scores (the recipe's scale; docs/rewards.md explains each) -----------------------------------
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

# --- parsing ------------------------------------------------------------------------------------
EOS_TEXTS = ("<|endoftext|>", "<|im_end|>", "</s>", "<eos>")  # stripped from the end (at most 4)

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


def numbers_in(text: str) -> list[Decimal]:
    """Every number written in `text` (commas as thousands separators), in order."""
    out = []
    for m in _NUMBER_IN_TEXT.finditer(text):
        value = parse_plain_number(m.group().rstrip(","))
        if value is not None:
            out.append(value)
    return out


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


def answer_is_right(completions, answer=(), **kwargs) -> list[bool]:
    """The binary outcome of each completion: its judged answer (the last solution block) equals the gold
    one by `answers_match`. No partial credit, no format: the outcome gate (OUTCOME_GATE) uses it to tell
    groups that are all right or all wrong, whatever the shaped rewards say. Never raises.

    >>> completions = ["w<end_working_out><SOLUTION>1,000</SOLUTION>", "<SOLUTION>999</SOLUTION>", "no block"]
    >>> answer_is_right(completions, ["1000"] * 3)
    [True, False, False]

    | solution block | gold   | right | why                                 |
    |----------------|--------|-------|-------------------------------------|
    | `1,000`        | `1000` | True  | equal as numbers                    |
    | `999`          | `1000` | False | within 10% earns check_answer 2.0, but it is wrong |
    | (no block)     | `1000` | False | nothing to judge                    |
    """
    texts = _texts(completions)
    golds = _answers(answer, len(texts))
    return [bool(_safe(lambda: answers_match(judged_answer(t), g), None, False)) for t, g in zip(texts, golds)]


# The rewards a run pays, each with its weight in the total: the one list. To add a reward, write its
# function above and name it here; train_grpo.py's REWARD_FUNCS and REWARD_WEIGHTS knobs default to this
# (--reward_funcs / --reward_weights choose among them for one run), and metrics.jsonl, the log and the
# reward curves take each reward's name from it.
REWARDS = {
    "match_format_exactly": 1.0,
    "match_format_approximately": 1.0,
    "check_answer": 1.0,
    "check_numbers": 1.0,
}
REWARD_FUNCS = [globals()[name] for name in REWARDS]  # the functions, in the same order
