"""Reward tables: one row per case, with the reason. Run: pytest tests/test_rewards.py"""

import math

import pytest

from grpo import answers
import rewards
from grpo.answers import answers_match
from rewards import (
    check_answer,
    check_numbers,
    match_format_approximately,
    match_format_exactly,
)

E, S, C = "<end_working_out>", "<SOLUTION>", "</SOLUTION>"


def done(answer, working="Add the two numbers.", tail=""):
    """A completion in the exact format (the prompt already opened the reasoning block)."""
    return f"{working}{E}{S}{answer}{C}{tail}"


MULTILINE = "First, 12 + 30 = 42.\nThen check:\n  42 - 30 = 12.\n"

EXACT_TABLE = [
    (done("42"), 3.0, "the format"),
    (done("42", working=MULTILINE), 3.0, "multi-line reasoning"),
    ("<start_working_out>" + done("42"), 3.0, "opening marker repeated once at the start"),
    (done("42", tail="<|endoftext|>"), 3.0, "trailing EOS text"),
    (done("42", tail="  \n\n\t"), 3.0, "trailing whitespace"),
    (done("42", tail="<|endoftext|>\n<|endoftext|>"), 3.0, "EOS and newlines"),
    (done("42", working=f"w {E}\n"), 0.0, "duplicated end-of-working marker"),
    (done("42", tail=f"{S}43{C}"), 0.0, "a second solution block"),
    (done("42", tail=" I think."), 0.0, "text after the solution block"),
    (f"w{S}42{C}", 0.0, "end-of-working marker missing"),
    (f"w{E}{S}42", 0.0, "closing solution marker missing"),
    (f"w{S}42{C}{E}", 0.0, "markers out of order"),
    (f"{E}{S}42{C}", 0.0, "no working at all"),
    (f"w{E}{S}   {C}", 0.0, "empty solution"),
    (f"w{E} The answer: {S}42{C}", 0.0, "text between working and solution"),
    ("", 0.0, "empty completion"),
    (f"w{E}{S}0{C}", 3.0, "an answer of 0 is still an answer"),
]


@pytest.mark.parametrize("text,expected,why", EXACT_TABLE, ids=[r[2] for r in EXACT_TABLE])
def test_match_format_exactly(text, expected, why):
    assert match_format_exactly(completions=[text]) == [expected], why


APPROX_TABLE = [
    (done("42"), 1.5, "each marker once"),
    (done("42", working=MULTILINE), 1.5, "multi-line reasoning"),
    (f"w{S}42{C}", 0.0, "end-of-working missing: 0.5 + 0.5 - 1"),
    (f"w{E}{E}{S}42{C}", 0.0, "end-of-working twice"),
    (done("42", tail=f"{S}43{C}"), -1.5, "two solution blocks: 0.5 - 1 - 1"),
    (f"w{S}42{C}{E}", 1.5, "out of order still counts each once (the exact reward judges order)"),
    ("", -3.0, "empty completion"),
    ("just text", -3.0, "no markers"),
]


@pytest.mark.parametrize("text,expected,why", APPROX_TABLE, ids=[r[2] for r in APPROX_TABLE])
def test_match_format_approximately(text, expected, why):
    assert match_format_approximately(completions=[text]) == [expected], why


ANSWER_TABLE = [
    (done("42"), "42", 5.0, "identical"),
    (done(" 42 "), "42", 5.0, "identical but for whitespace"),
    (done("42", working=MULTILINE), "42", 5.0, "multi-line reasoning"),
    (done("1,000"), "1000", 3.5, "thousands comma"),
    (done("42.0"), "42", 3.5, "42.0 is 42"),
    (done("+42"), "42", 3.5, "leading plus"),
    (done("\u22127"), "-7", 3.5, "Unicode minus"),
    (done("-7"), "-7", 5.0, "negative answer"),
    (done("3.5"), "3.5", 5.0, "decimal answer"),
    (done("0.75"), "\\frac{3}{4}", 3.5, "decimal against a LaTeX fraction"),
    (done("\\frac{1}{2}"), "0.5", 3.5, "LaTeX fraction against a decimal"),
    (done("42."), "42", 3.5, "trailing period"),
    (done("0"), "0", 5.0, "an answer of 0"),
    (done("0.0"), "0", 3.5, "0.0 is 0"),
    (done("7"), "0", -2.5, "gold 0: no ratio credit, no division by zero"),
    (done("95"), "100", 2.0, "within 10%"),
    (done("85"), "100", 1.5, "within 20%"),
    (done("50"), "100", -2.5, "wrong answer in the right format"),
    (done("-100"), "100", -2.5, "sign flip gets no ratio credit"),
    (done("-95"), "-100", 2.0, "ratio credit works for negative gold"),
    (done("banana"), "12", -4.5, "gold is a number, the solution is not"),
    (done("41 42 43"), "42", -4.5, "a list of numbers is not a number"),
    (f"w{E}{S}41{C} no wait {S}42{C}", "42", 5.0, "only the last block counts"),
    (f"w{E}{S}42{C} no wait {S}17{C}", "42", -2.5, "an earlier right block does not count"),
    (done("42", tail="<|endoftext|>"), "42", 5.0, "trailing EOS"),
    (f"w{E}{S}42", "42", -2.0, "no complete block"),
    ("", "42", -2.0, "empty completion"),
    (done("1" * 500), "1" * 500, 5.0, "500-digit answer"),
    (done("1" * 499 + "2"), "1" * 500, 2.0, "500-digit near miss: exact arithmetic, no overflow"),
]


@pytest.mark.parametrize("text,gold,expected,why", ANSWER_TABLE, ids=[r[3] for r in ANSWER_TABLE])
def test_check_answer(text, gold, expected, why):
    assert check_answer(completions=[text], answer=[gold]) == [expected], why


NUMBERS_TABLE = [
    (done("42"), "42", 3.5, "equal"),
    (done("The answer is 1,024"), "1024", 3.5, "comma and words around one number"),
    (done("x = -3"), "-3", 3.5, "negative"),
    (done("3.50"), "3.5", 3.5, "equal as decimals"),
    (done("0"), "0", 3.5, "an answer of 0"),
    (done("4"), "3", -1.5, "wrong number in the right format"),
    (done("1 2 3"), "3", -1.5, "listing numbers pays no more than one wrong number"),
    (done("none"), "3", -2.5, "no number"),
    (f"w{E}{S}4{C} 3", "3", -1.5, "a number after the block does not count"),
    ("", "3", -2.5, "empty completion"),
    (done("\\frac{1}{2}"), "\\frac{1}{2}", 0.0, "gold not a plain number: not applicable"),
]


@pytest.mark.parametrize("text,gold,expected,why", NUMBERS_TABLE, ids=[r[3] for r in NUMBERS_TABLE])
def test_check_numbers(text, gold, expected, why):
    assert check_numbers(completions=[text], answer=[gold]) == [expected], why


MATCH_TABLE = [
    ("1,000", "1000.0", True, "numeric, commas and trailing zeros"),
    ("-0", "0", True, "negative zero"),
    ("0.3333333", "0.33333333", False, "math-verify rounds these equal; exact numbers do not"),
    ("123456789012345678", "123456789012345679", False, "beyond float precision"),
    ("\\frac{1}{2}", "0.5", True, "LaTeX fraction"),
    ("2\\sqrt{3}", "\\sqrt{12}", True, "radicals"),
    ("x = 5", "5", True, "an equation naming the value"),
    ("\\boxed{5}", "5", True, "boxed"),
    ("[1, 2]", "[1,2]", True, "interval"),
    ("3/4", "0.75", True, "slash fraction, exact path"),
    ("\\frac{2}{3}\\sqrt{8}", "\\frac{4}{3}\\sqrt{2}", True, "radical normalised exactly"),
    ("\\sqrt{12}", "3\\sqrt{2}", False, "different radicals"),
    ("-\\frac{1}{2}", "\\frac{-1}{2}", True, "sign outside or inside the fraction"),
    ("\\frac{1}{3}", "0.3333333", False, "exact path: no rounding"),
    ("6", "5", False, "different numbers"),
    ("", "5", False, "empty prediction"),
    ("5", "", False, "empty gold"),
]


@pytest.mark.parametrize("pred,gold,expected,why", MATCH_TABLE, ids=[r[3] for r in MATCH_TABLE])
def test_answers_match(pred, gold, expected, why):
    assert answers_match(pred, gold) is expected, why


def test_message_list_and_string_completions_agree():
    text = done("42")
    as_messages = [[{"role": "assistant", "content": text}]]
    for fn in rewards.REWARD_FUNCS:
        assert fn(completions=as_messages, answer=["42"]) == fn(completions=[text], answer=["42"]), fn.__name__


def test_one_finite_float_per_completion_with_trl_kwargs():
    completions = [done("42"), "", None, 17, [{"role": "assistant", "content": None}]]
    kwargs = dict(prompts=[[]] * 5, completion_ids=[[1]] * 5, answer=["42"] * 5, trainer_state=None,
                  log_metric=lambda *a: None)
    for fn in rewards.REWARD_FUNCS:
        out = fn(completions=completions, **kwargs)
        assert len(out) == 5 and all(isinstance(x, float) and math.isfinite(x) for x in out), fn.__name__


def test_log_extra_records_what_was_judged():
    logged = {}
    check_answer(
        completions=[done("41"), "no block"],
        answer=[" 42 ", "7"],
        log_extra=lambda column, values: logged.__setitem__(column, values),
    )
    assert logged == {"extracted_answer": ["41", None], "gold_answer": ["42", "7"]}


def test_rewards_never_print(capsys):
    for fn in rewards.REWARD_FUNCS:
        fn(completions=[done("42"), done("\\frac{1}{2}")], answer=["42", "0.5"])
    assert capsys.readouterr() == ("", "")


def test_each_reward_docstring_has_an_example_that_runs_and_a_table():
    import doctest

    for fn in rewards.REWARD_FUNCS:
        examples = doctest.DocTestFinder().find(fn, fn.__name__, globs=vars(rewards))
        assert sum(len(t.examples) for t in examples) > 0 and "| " in fn.__doc__, fn.__name__
        for test in examples:
            assert doctest.DocTestRunner().run(test).failed == 0, fn.__name__


def test_the_trainers_rewards_are_rewards_py_s_in_order_each_with_a_weight():
    import train_grpo

    assert tuple(f.__name__ for f in rewards.REWARD_FUNCS) == train_grpo.REWARD_FUNCS == tuple(rewards.REWARDS)
    assert train_grpo.REWARD_WEIGHTS == tuple(rewards.REWARDS.values())


@pytest.mark.parametrize("module", [rewards, answers], ids=["rewards", "answers"])
def test_docstring_examples_run(module):
    import doctest

    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
