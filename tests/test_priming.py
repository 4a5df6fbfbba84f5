"""Format priming, the recipe's SFT step, through Unsloth + TRL's SFTTrainer on the same LoRA that
GRPO then trains; the primed adapter kept apart; evaluate.py showing base, primed and trained.
    python train_grpo.py --smoke --format_sft_max_examples=24 --max_steps=2
    python evaluate.py --smoke --n_problems=6 --n_samples=2
"""

import json
import time

import pytest
from grpo import data as grpo_data
from conftest import run_script

import prompts

script = run_script


@pytest.fixture(scope="module")
def primed_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("priming")
    log = script(workdir, "train_grpo.py", "--smoke", "--format_sft_max_examples=24", "--max_steps=2").stdout
    return workdir, workdir / "outputs" / "smoke", log


def test_priming_runs_before_grpo_and_logs_its_losses(primed_run):
    _, out, log = primed_run
    assert "format priming: 24 worked examples x 1 epochs" in log
    rows = [json.loads(line) for line in open(out / "metrics.jsonl")]
    sft = [r for r in rows if r.get("phase") == "sft"]
    assert [r["sft_step"] for r in sft] == list(range(1, 25)) and all(r["loss"] > 0 for r in sft)
    assert [r["step"] for r in rows if "reward" in r] == [1, 2]  # then GRPO, numbered from 1
    assert rows.index(sft[-1]) < next(i for i, r in enumerate(rows) if "reward" in r)
    assert json.load(open(out / "run_config.json"))["FOUND"]["PRIMED_ADAPTER"].endswith("lora_primed")


def test_primed_adapter_is_kept_apart_and_grpo_moved_on_from_it(primed_run):
    from safetensors.torch import load_file

    _, out, _ = primed_run
    primed = load_file(str(out / "lora_primed" / "adapter_model.safetensors"))
    trained = load_file(str(out / "lora" / "adapter_model.safetensors"))
    assert any(w.abs().max() > 0 for name, w in primed.items() if "lora_B" in name)  # SFT trained the adapter
    assert set(primed) == set(trained)
    assert any((primed[n] - trained[n]).abs().max() > 0 for n in primed)  # GRPO changed it further
    assert "Format priming only" in (out / "lora_primed" / "README.md").read_text()


def test_evaluation_shows_base_primed_and_trained(primed_run):
    workdir, out, _ = primed_run
    log = script(workdir, "evaluate.py", "--smoke", "--n_problems=6", "--n_samples=2").stdout
    results = json.load(open(out / "eval_results.json"))
    for label in ("base", "primed", "trained"):
        assert results[label]["n_samples"] == 12, label
    assert results["base"]["format_rate"] == 0  # the smoke model's builder never shows it the markers
    assert "accuracy_ci95" in results["change_from_primed"]
    assert "| metric | base | primed | trained | change | GRPO change (trained - primed) |" in log


def test_a_second_run_reuses_the_priming_and_trains_exactly_as_the_first(primed_run):
    """Same model, examples, priming knobs and seed: the second run loads the cached primed adapter,
    says so, records it, and its GRPO steps are the first run's, value for value (the trainer reseeds)."""
    workdir, out, _ = primed_run
    log = script(workdir, "train_grpo.py", "--smoke", "--format_sft_max_examples=24", "--max_steps=2",
                 "--output_dir=outputs/again").stdout
    again = workdir / "outputs" / "again"
    line = next(line for line in log.splitlines() if line.startswith("format priming:"))
    assert line.startswith("format priming: reused the primed adapter in outputs/primed/"), line
    config = json.load(open(again / "run_config.json"))
    assert (
        config["FOUND"]["PRIMING_REUSED_FROM"].startswith("outputs/primed/")
        and config["FOUND"]["PRIMING_REUSED_FROM"] in line
    )
    assert json.load(open(out / "run_config.json"))["FOUND"]["PRIMING_REUSED_FROM"] is None  # the first run primed
    def rows(path):  # the training values, without the process's memory (a measurement of this process)
        return [{n: v for n, v in json.loads(line).items() if n != "memory/peak_gib"} for line in open(path)]

    first, second = rows(out / "metrics.jsonl"), rows(again / "metrics.jsonl")
    assert len([r for r in second if r.get("phase") == "sft"]) == 24 and second == first
    assert (again / "lora_primed" / "adapter_model.safetensors").read_bytes() == (
        out / "lora_primed" / "adapter_model.safetensors"
    ).read_bytes()

    fresh = script(
        workdir,
        "train_grpo.py",
        "--smoke",
        "--format_sft_max_examples=24",
        "--max_steps=1",
        "--reuse_priming=false",
        "--output_dir=outputs/fresh",
    ).stdout
    assert "format priming: 24 worked examples x 1 epochs" in fresh and "reused" not in fresh
    assert json.load(open(workdir / "outputs" / "fresh" / "run_config.json"))["FOUND"]["PRIMING_REUSED_FROM"] is None


def test_worked_examples_without_the_columns_are_refused_before_the_model_loads(tmp_path):
    bad = tmp_path / "worked.jsonl"
    bad.write_text('{"question": "q", "answer": "1"}\n')
    start = time.time()
    result = script(
        tmp_path, "train_grpo.py", "--smoke", "--format_sft=true", f"--format_sft_dataset={bad}", check=False
    )
    assert (
        result.returncode != 0
        and "missing column(s) ['problem', 'generated_solution', 'expected_answer']" in result.stderr
    )
    assert "Traceback" not in result.stderr and "Qwen3ForCausalLM on" not in result.stdout + result.stderr
    assert time.time() - start < 30


@pytest.mark.parametrize(
    "solution,answer,expected,why",
    [
        ("2 + 2 = 4", "4", "2 + 2 = 4<end_working_out><SOLUTION>4</SOLUTION>", "working, end marker, answer block"),
        (
            "<think>\nadd them\n</think>",
            " 4 ",
            "add them<end_working_out><SOLUTION>4</SOLUTION>",
            "think tags and spaces dropped",
        ),
    ],
)
def test_worked_completion_table(solution, answer, expected, why):
    assert prompts.worked_completion(solution, answer) == expected, why


def test_bundled_worked_examples_are_in_the_format_and_never_held_out_problems():
    from rewards import is_exact_format, judged_answer

    worked = grpo_data.read_jsonl(grpo_data.BUNDLED_WORKED_EXAMPLES)
    problems = {row["prompt"] for row in grpo_data.read_jsonl(grpo_data.BUNDLED_PROBLEMS)}
    assert len(worked) == 200 and not {row["problem"] for row in worked} & problems
    for row in worked:
        example = grpo_data.to_sft_example(row)
        reply = example["completion"][0]["content"]
        assert reply.startswith(prompts.REASONING_START)
        body = reply[len(prompts.REASONING_START) :]
        assert is_exact_format(body) and judged_answer(body) == row["expected_answer"]
        assert row["expected_answer"] in row["generated_solution"]  # the working reaches the answer
