"""The difficulty filter (DIFFICULTY_FILTER): the primed model samples each training prompt, the pass
rates are cached and reused, the histogram is printed and saved, and prompts outside the band are
dropped (all of them, for the tiny model, which never answers right: a clear error).
    python train_grpo.py --smoke --dataset_name=40_problems.jsonl --holdout_size=8 --difficulty_filter=true ...
"""

import json

import pytest
from conftest import ROOT, run_script

from grpo.difficulty import histogram, select


def test_band_and_histogram_tables():
    rates = [0.0, 0.125, 0.5, 0.875, 1.0]
    assert select(rates, (0.1, 0.9)) == [1, 2, 3]
    assert select(rates, (0.0, 1.0)) == [0, 1, 2, 3, 4]
    assert select(rates, (1.0, 1.0)) == [4]
    assert histogram(rates, 8) == {"0/8": 1, "1/8": 1, "2/8": 0, "3/8": 0, "4/8": 1, "5/8": 0, "6/8": 0, "7/8": 1, "8/8": 1}


@pytest.fixture(scope="module")
def filtered(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("difficulty")
    rows = open(f"{ROOT}/data/problems.jsonl").read().splitlines()[:40]
    (workdir / "p40.jsonl").write_text("\n".join(rows) + "\n")
    common = ["--smoke", "--dataset_name=p40.jsonl", "--holdout_size=8", "--difficulty_filter=true",
              "--difficulty_samples=2", "--max_steps=1"]
    first = run_script(workdir, "train_grpo.py", *common, "--difficulty_band=0,1", "--output_dir=outputs/all")
    second = run_script(workdir, "train_grpo.py", *common, "--output_dir=outputs/band", check=False)
    return workdir, first, second


def test_every_prompt_is_sampled_and_the_histogram_saved(filtered):
    workdir, first, _ = filtered
    assert "difficulty: 29 prompts x 2 completions of up to 64 tokens" in first.stdout
    saved = json.load(open(workdir / "outputs" / "all" / "difficulty.json"))
    assert saved["of"] == saved["kept"] == 29 and sum(saved["histogram"].values()) == 29
    assert 1 <= saved["mean_completion_tokens"] <= 64  # real completions were sampled
    assert "kept 29 of 29 prompts in [0, 1]" in first.stdout
    assert json.load(open(workdir / "outputs" / "all" / "run_config.json"))["DIFFICULTY_KEPT"] == 29


def test_a_second_run_reuses_the_pass_rates_and_a_band_nothing_fits_is_refused(filtered):
    workdir, _, second = filtered
    assert "difficulty: reused the pass rates in outputs/difficulty/" in second.stdout
    assert "difficulty: 29 prompts x 2" not in second.stdout  # no sampling the second time
    assert second.returncode != 0 and "DIFFICULTY_FILTER kept none of the 29 prompts" in second.stderr
    assert "Traceback" not in second.stderr
