"""A bad knob or data file ends in one line that names it and the fix, with no traceback, and before the
model loads wherever the check needs no model (the data and sampling cases take seconds)."""

import os
import subprocess
import sys
import time

import pytest
from conftest import ROOT

ROWS = {
    "two.jsonl": '{"prompt": "1+1?", "solution": "2"}\n{"prompt": "2+3?", "solution": "5"}\n',
    "null.jsonl": '{"prompt": "1+1?", "solution": "2"}\n{"prompt": "2+2?", "solution": null}\n',
    "blank.jsonl": '{"prompt": "1+1?", "solution": "2"}\n\n{"prompt": "  ", "solution": "5"}\n',
}


def refused(tmp_path, *args) -> str:
    for name, text in ROWS.items():
        (tmp_path / name).write_text(text)
    # as from a fresh shell: `import unsloth` in another test of this worker sets HF_HUB_ENABLE_HF_TRANSFER,
    # which huggingface_hub now warns about at import
    env = {n: v for n, v in os.environ.items() if n != "HF_HUB_ENABLE_HF_TRANSFER"}
    started = time.time()
    result = subprocess.run([sys.executable, os.path.join(ROOT, "train_grpo.py"), "--smoke", *args], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("train_grpo.py: error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    return errors[0], time.time() - started, result.stdout + result.stderr


@pytest.mark.parametrize("args,message", [
    (["--temperature=-1"], "TEMPERATURE must be > 0"),
    (["--top_p=0"], "TOP_P must be in (0, 1]"),
    (["--min_p=1.5"], "MIN_P must be in [0, 1)"),
    (["--dataset_name=two.jsonl"], "HOLDOUT_SIZE=50 with two.jsonl: holdout of 50 rows leaves nothing to train on"),
    (["--dataset_name=null.jsonl", "--holdout_size=0"], "null.jsonl, line 2: 'solution' is null"),
    (["--dataset_name=blank.jsonl", "--holdout_size=0"], "blank.jsonl, line 3: 'prompt' is empty"),
    # the algorithm knobs TRL takes as strings, numbers and flags (docs/algorithm.md)
    (["--importance_sampling_level=seq"], "IMPORTANCE_SAMPLING_LEVEL 'seq' is not one of token, sequence"),
    (["--multi_objective_aggregation=gdpo"],
     "MULTI_OBJECTIVE_AGGREGATION 'gdpo' is not one of sum_then_normalize, normalize_then_sum"),
    (["--top_entropy_quantile=1.5"], "TOP_ENTROPY_QUANTILE must be in [0, 1]"),
    (["--top_entropy_quantile=most"], "--top_entropy_quantile=most: expected a number"),
    (["--vllm_importance_sampling_correction=maybe"], "--vllm_importance_sampling_correction=maybe: expected true"),
    (["--vllm_importance_sampling_mode=geometric_mask"], "VLLM_IMPORTANCE_SAMPLING_MODE 'geometric_mask' is not one"),
    (["--loss_type=vespo", "--fast_inference=true", "--vllm_importance_sampling_correction=true"],
     "LOSS_TYPE=vespo weights tokens by the vLLM importance ratio"),
    # Unsloth cannot sync a 4-bit model into `trl vllm-serve` (tests/test_vllm_handoff.py guards its raise)
    (["--fast_inference=true", "--vllm_mode=server", "--load_in_4bit=true"],
     "VLLM_MODE=server with LOAD_IN_4BIT=true: Unsloth cannot send a 4-bit model's weights"),
])
def test_bad_sampling_knobs_and_data_files_are_one_line_in_seconds(tmp_path, args, message):
    line, seconds, output = refused(tmp_path, *args)
    assert message in line and seconds < 30, (line, seconds)  # the model never loads: seconds, on any CPU
    assert output.strip() == line  # that line alone: no progress bar, no warning


@pytest.mark.slow
def test_a_sequence_length_no_prompt_fits_is_one_line_naming_the_knob(tmp_path):
    line, _, _ = refused(tmp_path, "--max_seq_length=10")
    assert "leave no room in MAX_SEQ_LENGTH=10: raise --max_seq_length" in line


@pytest.mark.parametrize("args,message", [
    (["--dataset_name=" + os.path.join(ROOT, "data", "gsm8k_style.jsonl")],
     "missing column(s) ['prompt', 'solution']; found columns ['question', 'answer']"),
    (["--dataset_name=" + os.path.join(ROOT, "data", "gsm8k_style.jsonl"), "--dataset_prompt_column=question",
      "--dataset_answer_column=answer", "--answer_format=boxed"],
     "gsm8k_style.jsonl, line 1: ANSWER_FORMAT=boxed finds no answer in 'answer'"),
    (["--dataset_name=" + os.path.join(ROOT, "data", "math_style.jsonl"), "--dataset_prompt_column=problem",
      "--dataset_answer_column=solution", "--answer_format=gsm8k"],
     "math_style.jsonl, line 1: ANSWER_FORMAT=gsm8k finds no answer in 'solution'"),
    (["--answer_format=latex"], "ANSWER_FORMAT 'latex' is not one of plain, gsm8k, boxed"),
])
def test_columns_and_an_answer_rule_that_do_not_fit_the_data_are_one_line(tmp_path, args, message):
    line, seconds, _ = refused(tmp_path, *args)
    assert message in line and seconds < 30, (line, seconds)
