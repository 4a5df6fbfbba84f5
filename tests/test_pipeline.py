"""The real Unsloth + TRL pipeline on CPU (no mocks), and the production configuration.

Unsloth is imported first, as in train_grpo.py, so it can patch transformers, trl and peft.
"""

import json
import math
import os
import subprocess
import sys

import unsloth  # noqa: F401  (must precede transformers/trl/peft)
import pytest
from grpo import data as grpo_data

from cpu_models import tiny_model
import train_grpo
from grpo import checks, data, model, presets, trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "train_grpo.py")


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """`python train_grpo.py --smoke` exactly as a user runs it, in a fresh folder."""
    workdir = tmp_path_factory.mktemp("smoke")
    result = subprocess.run(
        [sys.executable, SCRIPT, "--smoke"], cwd=workdir, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return workdir, result.stdout + result.stderr


def test_smoke_writes_adapter_metrics_curves_and_logs(smoke_run):
    workdir, log = smoke_run
    out = workdir / "outputs" / "smoke"
    for name in ("lora/adapter_config.json", "lora/adapter_model.safetensors", "lora/tokenizer_config.json",
                 "metrics.jsonl", "reward_curves.png", "run_config.json"):
        assert (out / name).exists(), name
    assert "saved: adapter" in log and "generation: " not in log  # smoke sets FAST_INFERENCE off: no vLLM line
    # a healthy run: no warning of the project's, and the verdict after its 10 steps
    assert not [line for line in log.splitlines() if line.startswith("WARNING:")]
    assert "\nfirst 10 steps: healthy: reward " in log
    # a log a person reads: one short line a step (metrics.jsonl keeps every figure), no raw dicts, and none of
    # the library lines that ask nothing of a CPU user (grpo/device.py, CPU_QUIET)
    assert "step 10/10: reward " in log and "priming 64/64: loss " in log and "{'loss'" not in log
    for quiet in ("broken vLLM binary extension", "register_constant()", "kernels-community", "supported: text LoRA"):
        assert quiet not in log, quiet
    assert "memory: " not in log  # the GPU memory estimate is for a GPU only
    # the shipped tiny model, the same bits on any machine, recorded in the manifest
    assert "(model.safetensors sha256 " + tiny_model.SHIPPED_SHA256 + ", the shipped build)" in log
    config = json.load(open(out / "run_config.json"))
    assert config["FOUND"]["MODEL_SHA256"] == tiny_model.SHIPPED_SHA256
    # the time split: each step's seconds, the rest in "other", adding up to the wall time
    split = config["FOUND"]["TIME_SPLIT_S"]
    assert list(split) == ["load", "priming", "difficulty", "grpo", "other"]
    assert split["load"] > 0 and split["priming"] > 0 and split["grpo"] > 0 and split["difficulty"] < 1  # filter off
    assert sum(split.values()) == pytest.approx(config["FOUND"]["WALL_TIME_S"], abs=0.5)
    assert f"grpo {split['grpo']:.0f} s" in log


def test_completion_tables_show_what_check_answer_judged(smoke_run):
    import pandas as pd

    workdir, _ = smoke_run
    tables = sorted((workdir / "outputs" / "smoke" / "completions").glob("*.parquet"))
    assert tables
    table = pd.read_parquet(tables[-1])
    for column in ("completion", "check_answer", "extracted_answer", "gold_answer"):
        assert column in table.columns, column
    assert table["gold_answer"].str.len().gt(0).all()


def test_smoke_metrics_have_one_row_per_step_with_every_reward(smoke_run):
    workdir, _ = smoke_run
    rows = [json.loads(line) for line in open(workdir / "outputs" / "smoke" / "metrics.jsonl")]
    assert rows[0]["phase"] == "sft"  # format priming's rows come first
    rows = [r for r in rows if r.get("phase") != "sft"]
    steps = presets.SMOKE["MAX_STEPS"]
    assert [r["step"] for r in rows] == list(range(1, steps + 1))
    for row in rows:
        for name in train_grpo.REWARD_FUNCS:
            assert math.isfinite(row[f"rewards/{name}/mean"]), (name, row)
        for key in ("reward", "completions/mean_length", "frac_reward_zero_std"):
            assert math.isfinite(row[key]), (key, row)
    # the total is the weighted sum of the per-reward means (weights are all 1 by default)
    for row in rows:
        total = sum(row[f"rewards/{n}/mean"] for n in train_grpo.REWARD_FUNCS)
        assert abs(total - row["reward"]) < 1e-3


def test_adapter_loads_onto_the_tiny_base_and_changed(smoke_run):
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    workdir, _ = smoke_run
    base_dir = tiny_model.SHIPPED
    lora_dir = workdir / "outputs" / "smoke" / "lora"
    # PEFT initialises every lora_B to zero, so the adapter starts as a no-op: any non-zero B was trained.
    weights = load_file(str(lora_dir / "adapter_model.safetensors"))
    lora_b = [w for name, w in weights.items() if "lora_B" in name]
    assert lora_b and all(w.abs().max() > 0 for w in lora_b)

    tokenizer = AutoTokenizer.from_pretrained(str(lora_dir))
    ids = tokenizer("What is 2+3?", return_tensors="pt")["input_ids"]
    base = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    with torch.no_grad():
        before = base(ids).logits
    tuned = PeftModel.from_pretrained(base, str(lora_dir))
    with torch.no_grad():
        after = tuned(ids).logits
    assert (after - before).abs().max() > 1e-4


ALGORITHM = {"LOSS_TYPE": "dr_grpo", "BETA": 0.04, "EPSILON": 0.2, "EPSILON_HIGH": 0.28,
             "SCALE_REWARDS": "none", "MASK_TRUNCATED_COMPLETIONS": True}


@pytest.fixture(scope="module")
def variant_run(tmp_path_factory):
    """A smoke run with another loss, a KL term, clip-higher, masking, the outcome gate, right-only
    advantages, and held-out evaluation every 2 steps."""
    workdir = tmp_path_factory.mktemp("variant")
    args = [f"--{k.lower()}={v}" for k, v in ALGORITHM.items()]
    result = subprocess.run(
        [
            sys.executable,
            SCRIPT,
            "--smoke",
            "--max_steps=4",
            "--eval_steps=2",
            "--outcome_gate=true",
            "--reinforce_right_only=true",
            *args,
        ],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return workdir / "outputs" / "smoke", result.stdout


def test_algorithm_knobs_reach_the_trainer_and_run_config(variant_run):
    out, log = variant_run
    config = json.load(open(out / "run_config.json"))
    for knob, value in ALGORITHM.items():
        assert config[knob] == value and config["FOUND"]["ALGORITHM_USED"][knob] == value, knob
    assert "algorithm: loss_type=dr_grpo, beta=0.04" in log
    rows = [json.loads(line) for line in open(out / "metrics.jsonl") if '"reward"' in line]
    assert len(rows) == 4 and all("kl" in row for row in rows)  # a KL term is computed only when beta > 0


def test_the_outcome_gate_runs_and_logs_the_share_of_groups_it_gated(variant_run):
    out, log = variant_run
    assert "outcome gate: groups whose answers are all right or all wrong get zero advantage" in log
    assert json.load(open(out / "run_config.json"))["OUTCOME_GATE"] is True
    rows = [json.loads(line) for line in open(out / "metrics.jsonl") if '"reward"' in line]
    for row in rows:
        assert (
            0 <= row["gate/all_right"]
            and 0 <= row["gate/all_wrong"]
            and row["gate/all_right"] + row["gate/all_wrong"] <= 1
        )
    # the tiny model is nearly never right: its groups are mostly all wrong, and gated ones count as having no signal
    assert sum(r["gate/all_wrong"] for r in rows) / len(rows) > 0.5
    assert all(r["frac_reward_zero_std"] >= r["gate/all_right"] + r["gate/all_wrong"] - 1e-6 for r in rows)


def test_right_only_advantages_run_and_log_the_share_they_zeroed(variant_run):
    out, log = variant_run
    assert "right only: completions judged wrong get zero advantage, right ones only a positive one" in log
    assert json.load(open(out / "run_config.json"))["REINFORCE_RIGHT_ONLY"] is True
    rows = [json.loads(line) for line in open(out / "metrics.jsonl") if '"reward"' in line]
    assert len(rows) == 4 and all(0 <= r["right_only/zeroed"] <= 1 for r in rows)


def test_held_out_evaluation_rows_during_training(variant_run):
    out, log = variant_run
    rows = [json.loads(line) for line in open(out / "metrics.jsonl")]
    evals = [r for r in rows if "eval_reward" in r]
    assert [r["step"] for r in evals] == [2, 4]
    assert [r["step"] for r in rows if "reward" in r] == [1, 2, 3, 4]  # training rows unchanged
    for row in evals:
        assert set(row) >= {"eval_reward", "eval_completions/mean_length"} | {
            f"eval_rewards/{n}/mean" for n in train_grpo.REWARD_FUNCS
        }
        assert "reward" not in row  # an evaluation row never passes for a training step
        total = sum(row[f"eval_rewards/{n}/mean"] for n in train_grpo.REWARD_FUNCS)
        assert abs(total - row["eval_reward"]) < 1e-3
    assert "eval: 16 held-out prompts x 8 completions every 2 steps" in log


def test_eval_prompts_come_from_the_held_out_slice_only():
    from cpu_models import tiny_model

    knobs = train_grpo.resolve_knobs(["--smoke", "--eval_steps=5", "--eval_size=50"])
    train, heldout = data.load_problems(knobs)
    tokenizer = tiny_model.build_tokenizer(grpo_data.read_jsonl(grpo_data.BUNDLED_PROBLEMS))
    evals = data.build_eval_dataset(knobs, heldout, tokenizer, max_prompt_length=10_000)
    asked = {conversation[-1]["content"] for conversation in evals["prompt"]}
    assert len(asked) == 50 and not asked & set(train["prompt"])


def test_every_loss_type_we_accept_is_implemented_by_trl_and_unsloth():
    """LOSS_TYPE is checked before torch loads, against a list; that list must match the libraries."""
    import importlib.util

    sources = {
        name: open(importlib.util.find_spec(name).origin).read()
        for name in ("trl.trainer.grpo_trainer", "unsloth_zoo.rl_replacements")
    }
    for loss in checks.LOSS_TYPES:
        for name, text in sources.items():
            assert f'"{loss}"' in text or f"'{loss}'" in text, (loss, name)


def test_production_grpo_config_accepts_every_field():
    from trl import GRPOConfig

    knobs = train_grpo.resolve_knobs([])
    kwargs = trainer.grpo_config_kwargs(knobs, trainer.completion_budget(knobs, 201), bf16=True, fast=True)
    config = GRPOConfig(**kwargs)  # a renamed or removed field raises TypeError here
    assert config.max_completion_length == knobs["MAX_SEQ_LENGTH"] - 201 == 1847
    # Unsloth's CPU fallback swaps the 8-bit optimizer and bf16 (GPU-only); report_to is normalised.
    cpu_rewritten = {"optim", "bf16", "report_to"}
    for key, value in kwargs.items():
        if key not in cpu_rewritten:
            assert getattr(config, key) == value, key
    assert config.num_generations == 4 and config.per_device_train_batch_size % config.num_generations == 0


LOADER_CHECK = """
import inspect, json, sys
import unsloth
from unsloth.models.loader import FastLanguageModel  # the GPU loader, whatever this machine has
def names(fn):
    return [p.name for p in inspect.signature(fn).parameters.values() if p.kind is not p.VAR_KEYWORD]
print(json.dumps({"from_pretrained": names(FastLanguageModel.from_pretrained),
                  "get_peft_model": names(FastLanguageModel.get_peft_model)}))
"""


def test_unsloth_signatures_name_every_keyword_we_pass(tmp_path):
    result = subprocess.run(  # in tmp_path: import unsloth writes unsloth_compiled_cache/ where it runs
        [sys.executable, "-c", LOADER_CHECK], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-2000:]
    accepted = json.loads(result.stdout.strip().splitlines()[-1])
    production = train_grpo.resolve_knobs([])
    for kwargs, fn in (
        (model.from_pretrained_kwargs(production, True), "from_pretrained"),
        (model.peft_kwargs(production), "get_peft_model"),
    ):
        unknown = set(kwargs) - set(accepted[fn])
        assert not unknown, f"FastLanguageModel.{fn} has no parameter(s) {unknown}"


SHAPES = {  # the bundled sets in other datasets' shapes (data/make_problems.py), trained on by the knobs alone
    "gsm8k": ["--dataset_name=" + os.path.join(ROOT, "data", "gsm8k_style.jsonl"), "--dataset_prompt_column=question",
              "--dataset_answer_column=answer", "--answer_format=gsm8k"],
    "math": ["--dataset_name=" + os.path.join(ROOT, "data", "math_style.jsonl"), "--dataset_prompt_column=problem",
             "--dataset_answer_column=solution", "--answer_format=boxed"],
}

# One process, as a user who edited rewards.py alone: a fifth reward added to its one list, then a smoke run
# on each of the two shapes by the knobs alone (each its own main(), as train_grpo.py runs it).
OWN_DATA_AND_REWARD = """
import json, sys
sys.path.insert(0, {root!r})
import rewards


def shorter_is_better(completions, **kwargs):  # a fifth reward, added to rewards.py's one list and nowhere else
    return [-len(c[0]["content"]) / 100 for c in completions]


rewards.shorter_is_better = shorter_is_better
rewards.REWARDS["shorter_is_better"] = 0.5
import train_grpo

if sys.argv[1] == "help":
    train_grpo.resolve_knobs(["--help"])
for shape, args in {shapes!r}.items():
    if sys.argv[1] == "train":
        train_grpo.main(["--smoke", *args, "--holdout_size=20", "--max_steps=1", "--output_dir=outputs/" + shape])
"""


@pytest.fixture(scope="module")
def own_data_and_reward(tmp_path_factory):
    work = tmp_path_factory.mktemp("own")

    def run(mode):
        result = subprocess.run([sys.executable, "-c", OWN_DATA_AND_REWARD.format(root=ROOT, shapes=SHAPES), mode],
                                cwd=work, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result.stdout

    return work, run("help"), run("train")


@pytest.mark.slow
def test_a_fifth_reward_added_in_rewards_py_alone_reaches_help_the_log_and_the_metrics(own_data_and_reward):
    work, help_text, log = own_data_and_reward
    assert "shorter_is_better" in next(line for line in help_text.splitlines() if "--reward_funcs " in line)
    assert "\nrewards: match_format_exactly x1, match_format_approximately x1, check_answer x1, check_numbers x1, " \
           "shorter_is_better x0.5\n" in log
    assert "shorter_is_better " in next(line for line in log.splitlines() if line.startswith("step 1/1: reward"))
    for shape in SHAPES:
        row = next(json.loads(x) for x in open(work / "outputs" / shape / "metrics.jsonl") if '"reward"' in x)
        assert row["rewards/shorter_is_better/mean"] < 0


@pytest.mark.slow
def test_a_set_in_gsm8k_or_math_shape_trains_by_the_knobs_alone_and_evaluates_on_its_own_rows(own_data_and_reward):
    work, _, log = own_data_and_reward
    assert log.count("chat template: the recipe's base-model one (prompts.py)") == 2
    for shape, args in SHAPES.items():
        found = json.load(open(work / "outputs" / shape / "run_config.json"))
        assert found["ANSWER_FORMAT"] == args[3].split("=")[1] and found["FOUND"]["STEPS_DONE"] == 1, shape
    out = work / "outputs" / "gsm8k"
    evaluated = subprocess.run([sys.executable, os.path.join(ROOT, "evaluate.py"), f"--run_dir={out}", "--n_samples=1",
                                "--max_new_tokens=16"], cwd=work, capture_output=True, text=True, timeout=600)
    assert evaluated.returncode == 0, evaluated.stdout[-3000:] + evaluated.stderr[-3000:]
    source_file = SHAPES["gsm8k"][0].split("=", 1)[1]
    assert f"held-out slice of {source_file} (seed 3407), 20 problems" in evaluated.stdout
    # each held-out row is scored against the number after '####', not the worked solution
    numbers = {r["answer"].split("#### ")[1].replace(",", "") for r in map(json.loads, open(source_file))}
    golds = {json.loads(line)["gold"] for line in open(out / "eval_samples.jsonl")}
    assert len(golds) > 5 and golds <= numbers, golds - numbers
