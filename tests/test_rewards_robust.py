"""Rewards never raise, always return finite floats, stay linear on 1 MB, and bound math-verify.

Property-based tests (hypothesis) over model-like garbage, plus a fixed adversarial corpus.
"""

import math
import multiprocessing
import queue
import threading
import time

import pytest

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grpo import answers
import rewards
from grpo.answers import answers_match
from rewards import check_answer, check_numbers, match_format_exactly

E, S, C = "<end_working_out>", "<SOLUTION>", "</SOLUTION>"
MB = 1_000_000
STALL_LIMIT_S = 120  # the whole corpus takes well under a second; a backtracking pattern takes hours

PIECES = [
    "<start_working_out>", E, S, C, "<SOLUTION", "</SOLUTIO", "<end_working", "<|endoftext|>", "<|im_end|>",
    "0", "7", "42", "-0", "+3", "\u22125", "1e999", "nan", "inf", "-inf", "1" * 500, "1,000", "3.14", ".5", "1,00",
    " ", "\n", "\t", "\x00", "\u200b", "\ud800", "\U0001F600", "$", "\\frac{1}{2}", "\\boxed{", "}", "{", "x = 5",
    "\\sqrt{", "^", "!", "/", ",", ".", "The answer is ",
]
pieces_text = st.lists(st.sampled_from(PIECES) | st.text(max_size=20), max_size=30).map("".join)
any_text = st.one_of(st.text(), pieces_text)
completion = st.one_of(
    any_text,
    st.none(),
    st.integers(),
    st.floats(allow_nan=True),
    st.lists(
        st.fixed_dictionaries(
            {"role": st.just("assistant"), "content": st.one_of(any_text, st.none(), st.integers())}
        ),
        max_size=2,
    ),
    st.fixed_dictionaries({"content": any_text}),
)
gold = st.one_of(
    any_text,
    st.sampled_from(["0", "-0", "42", "1e999", "nan", "inf", "", " ", "1" * 500, "\\frac{1}{2}", "banana"]),
    st.none(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
)
PROPERTY_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_finite_floats(out, n, name):
    assert isinstance(out, list) and len(out) == n, name
    for x in out:
        assert type(x) is float and math.isfinite(x), (name, x)


@PROPERTY_SETTINGS
@given(st.lists(st.tuples(completion, gold), min_size=1, max_size=4))
def test_every_reward_returns_one_finite_float_per_completion(pairs):
    completions = [c for c, _ in pairs]
    answers = [a for _, a in pairs]
    for fn in rewards.REWARD_FUNCS:
        assert_finite_floats(
            fn(completions=completions, answer=answers, log_extra=lambda *a: None), len(pairs), fn.__name__
        )


@PROPERTY_SETTINGS
@given(any_text, any_text)
def test_answers_match_is_total(pred, gold_text):
    assert answers_match(pred, gold_text) in (True, False)


@PROPERTY_SETTINGS
@given(
    any_text, st.sampled_from(["42", "-7", "0", "3.5", "1,000", "abc", ""]), st.sampled_from(["42", "-7", "0", "3.5"])
)
def test_only_the_last_solution_block_is_judged(prefix, answer, gold_text):
    block = f"{S}{answer}{C}"
    for fn in (check_answer, check_numbers):
        assert fn(completions=[prefix + block], answer=[gold_text]) == fn(completions=[block], answer=[gold_text])


@PROPERTY_SETTINGS
@given(
    any_text.filter(
        lambda s: (
            s.strip() and not s.strip().endswith(C) and not any(s.rstrip().endswith(e) for e in rewards.EOS_TEXTS)
        )
    )
)
def test_text_after_the_solution_block_loses_the_exact_format_reward(suffix):
    good = f"working{E}{S}42{C}"
    assert match_format_exactly(completions=[good]) == [3.0]
    assert match_format_exactly(completions=[good + suffix]) == [0.0]


@PROPERTY_SETTINGS
@given(st.lists(st.integers(-(10**6), 10**6), min_size=2, max_size=20), st.integers(-(10**6), 10**6))
def test_listing_numbers_never_pays_more_than_one_number(numbers, gold_value):
    listed = check_numbers(completions=[f"w{E}{S}{' '.join(map(str, numbers))}{C}"], answer=[str(gold_value)])[0]
    single_wrong = check_numbers(completions=[f"w{E}{S}{gold_value + 1}{C}"], answer=[str(gold_value)])[0]
    assert listed <= single_wrong


def repeat_to(piece, size=MB):
    return (piece * (size // len(piece) + 1))[:size]


ADVERSARIAL = {
    "repeated solution start": lambda n: repeat_to(S, n),
    "repeated solution end": lambda n: repeat_to(C, n),
    "repeated end of working": lambda n: repeat_to(E, n),
    "repeated whole blocks": lambda n: repeat_to(f"{S}1{C}", n),
    "markers and digits": lambda n: repeat_to(f"{E}12{S} 3.4 {C}\n", n),
    "digits": lambda n: repeat_to("1", n),
    "digits and commas": lambda n: repeat_to("1,", n),
    "whitespace": lambda n: repeat_to(" \n\t", n),
    "EOS text": lambda n: repeat_to("<|endoftext|>", n),
    "partial markers": lambda n: repeat_to("<SOLUTION</SOLUTIO<end_working", n),
    "one huge number in a block": lambda n: f"w{E}{S}" + "9" * n + C,
    "many numbers in a block": lambda n: f"w{E}{S}" + repeat_to("1 ", n) + C,
    "format then whitespace": lambda n: f"w{E}{S}4{C}" + " " * n,
    "NUL bytes": lambda n: repeat_to("\x00" + S, n),
    "unicode": lambda n: repeat_to("\u2212\U0001f600\u200b" + C, n),
}


def time_all_rewards(text):
    """Best of 3 runs of all four rewards on one completion, in seconds."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for fn in rewards.REWARD_FUNCS:
            assert_finite_floats(fn(completions=[text], answer=["42"]), 1, fn.__name__)
        best = min(best, time.perf_counter() - start)
    return best


def _measure_corpus(queue):
    queue.put(
        {name: (time_all_rewards(make(MB // 10)), time_all_rewards(make(MB))) for name, make in ADVERSARIAL.items()}
    )


@pytest.fixture(scope="module")
def corpus_timings():
    """Time the corpus in a forked child, so a backtracking regex fails the test instead of hanging it."""
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    child = ctx.Process(target=_measure_corpus, args=(results,))
    child.start()
    try:
        return results.get(timeout=STALL_LIMIT_S)
    except queue.Empty:
        pytest.fail(f"the rewards took over {STALL_LIMIT_S} s on the 1 MB adversarial corpus: a stall")
    finally:
        child.kill()
        child.join()


def test_adversarial_corpus_one_megabyte_never_stalls(corpus_timings):
    # A stall guard, not a speed target (BENCHMARKS.md holds the measured speed: a few ms per MB).
    for name, (_small, large) in corpus_timings.items():
        assert large < 0.5, f"{name}: {large:.3f} s for all four rewards on 1 MB"


def test_reward_time_grows_linearly_with_length(corpus_timings):
    # 10x the text must cost about 10x the time; a quadratic scan would cost 100x.
    for name, (small, large) in corpus_timings.items():
        assert large < 40 * max(small, 2e-4), f"{name}: {small * 1e3:.2f} ms -> {large * 1e3:.2f} ms"


def test_math_verify_is_time_bounded_in_a_worker_thread():
    """A tower of powers makes sympy compute forever; the call still returns, off the main thread."""
    answers_match("x = \\frac{1}{2}", "0.5")  # warm the worker (an equation needs math-verify)
    result, elapsed = [], []

    def call():
        start = time.perf_counter()
        result.append(answers_match("2^{2^{2^{2^{40}}}}", "\\frac{7}{3}"))
        elapsed.append(time.perf_counter() - start)

    thread = threading.Thread(target=call)
    thread.start()
    thread.join(timeout=60)
    assert result == [False]
    assert elapsed[0] < answers.MATH_VERIFY_TIMEOUT_S + 5
    assert answers_match("x = 7", "7")  # the worker restarts after the kill


def test_a_dead_worker_is_replaced():
    assert answers_match("x = \\frac{1}{4}", "0.25")
    for worker in answers._POOL.workers:
        if worker.proc is not None:
            worker.proc.kill()
            worker.proc.wait()
    assert answers_match("y = \\frac{3}{4}", "0.75")


def test_rewards_from_many_threads_agree():
    texts = [f"w{E}{S}x = \\frac{{{i}}}{{2}}{C}" for i in range(1, 9)]  # equations: math-verify
    golds = [str(i / 2) for i in range(1, 9)]
    expected = check_answer(completions=texts, answer=golds)
    outputs = [None] * 4

    def work(j):
        outputs[j] = check_answer(completions=texts, answer=golds)

    threads = [threading.Thread(target=work, args=(j,)) for j in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outputs == [expected] * 4 and expected == [3.5] * 8
