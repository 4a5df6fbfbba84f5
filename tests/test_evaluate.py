"""evaluate.py's pure parts: answer parsing, scoring, the table, problem sets, knob errors.
The end-to-end evaluation on the tiny model runs in test_learning.py."""

import json
import os
import subprocess
import sys

import pytest

import evaluate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the scripts run from the repo root


def test_gsm8k_answer_follows_the_marker():
    assert evaluate.gsm8k_answer("Work: 2 * 600 = 1,200.\n#### 1,200") == "1200"
    assert evaluate.gsm8k_answer("#### -3") == "-3"


def sample(problem, text, n_tokens=5, truncated=False):
    return {"problem": problem, "text": text, "n_tokens": n_tokens, "truncated": truncated}


def test_scoring_uses_the_training_judge_on_the_last_block():
    golds = ["42", "0.5"]
    samples = evaluate.score_samples([
        sample(0, "w<end_working_out><SOLUTION>42</SOLUTION>"),
        sample(0, "w<end_working_out><SOLUTION>7</SOLUTION> <SOLUTION>42</SOLUTION>"),  # last block, bad format
        sample(1, "w<end_working_out><SOLUTION>\\frac{1}{2}</SOLUTION>"),
        sample(1, "the answer is 0.5", n_tokens=48, truncated=True),  # no block: not judged
    ], golds)
    assert [s["correct"] for s in samples] == [True, True, True, False]
    assert [s["exact_format"] for s in samples] == [True, False, True, False]
    summary = evaluate.summarize(samples)
    assert summary == {"accuracy": 0.75, "format_rate": 0.5, "mean_completion_tokens": 15.75,
                       "truncation_rate": 0.25, "n_samples": 4}


def test_table_shows_the_change_against_base():
    base = {"accuracy": 0.25, "format_rate": 0.5, "mean_completion_tokens": 100.0, "truncation_rate": 0.1}
    trained = {"accuracy": 0.5, "format_rate": 0.75, "mean_completion_tokens": 80.0, "truncation_rate": 0.0}
    text = evaluate.table({"base": base, "trained": trained})
    assert "| accuracy | 0.250 | 0.500 | +0.250 |" in text
    assert "| mean_completion_tokens | 100.0 | 80.0 | -20.000 |" in text


def test_local_problem_set(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(json.dumps({"prompt": f"q{i}", "solution": str(i)}) for i in range(5)))
    knobs = evaluate.resolve_knobs([f"--problem_set={path}", "--n_problems=3"])
    rows, source = evaluate.load_problem_set(knobs, run={})
    assert [r["solution"] for r in rows] == ["0", "1", "2"] and "3 problems" in source


def test_heldout_set_is_the_slice_training_never_sees(tmp_path):
    import prompts
    import train_grpo

    run = train_grpo.resolve_knobs(["--smoke"])
    rows, _ = evaluate.load_problem_set(evaluate.resolve_knobs(["--smoke"]), run)
    raw = prompts.load_problems(run["DATASET_NAME"])
    train, _ = prompts.split_holdout(raw, run["HOLDOUT_SIZE"], run["SEED"])
    assert len(rows) == run["HOLDOUT_SIZE"]
    assert not {r["prompt"] for r in rows} & set(train["prompt"])


@pytest.mark.parametrize("arg,message", [("--n_samples=many", "expected an integer"), ("--bogus=1", "unknown knob"), ("--n_samples=0", "N_SAMPLES must be positive")])
def test_bad_overrides_fail_fast(arg, message):
    result = subprocess.run([sys.executable, "evaluate.py", arg], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode != 0 and message in result.stderr


def test_missing_run_is_a_clear_error(tmp_path):
    result = subprocess.run([sys.executable, "evaluate.py", f"--run_dir={tmp_path}"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode != 0 and "run_config.json" in result.stderr
