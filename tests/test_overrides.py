"""Command-line overrides: good values, unknown names, wrong types; all before heavy imports."""

import json
import os
import subprocess
import sys
import time

import pytest
from conftest import run_script

from grpo.overrides import OverrideError, apply_overrides

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the scripts run from the repo root

KNOBS = {"MAX_STEPS": 100, "LEARNING_RATE": 5e-6, "LOAD_IN_4BIT": False, "OUTPUT_DIR": "outputs",
         "REWARD_WEIGHTS": (1.0, 1.0), "LORA_TARGET_MODULES": ("q_proj", "v_proj")}


@pytest.mark.parametrize(
    "arg,key,value",
    [
        ("--max_steps=5", "MAX_STEPS", 5),
        ("--learning_rate=1e-5", "LEARNING_RATE", 1e-5),
        ("--learning_rate=1", "LEARNING_RATE", 1.0),
        ("--load_in_4bit=true", "LOAD_IN_4BIT", True),
        ("--load_in_4bit=0", "LOAD_IN_4BIT", False),
        ("--output_dir=runs/a", "OUTPUT_DIR", "runs/a"),
        ("--reward_weights=2,0.5", "REWARD_WEIGHTS", (2.0, 0.5)),
        ("--reward_weights=(1, 3)", "REWARD_WEIGHTS", (1.0, 3.0)),
        ("--lora_target_modules=q_proj", "LORA_TARGET_MODULES", ("q_proj",)),
    ],
)
def test_good_values(arg, key, value):
    out = apply_overrides(KNOBS, [arg])
    assert out[key] == value and type(out[key]) is type(value)
    assert KNOBS["MAX_STEPS"] == 100  # the defaults are not mutated


@pytest.mark.parametrize(
    "arg,message",
    [
        ("--max_stepz=5", "unknown knob --max_stepz"),
        ("--max_steps=5.5", "--max_steps=5.5: expected an integer"),
        ("--learning_rate=fast", "expected a number"),
        ("--load_in_4bit=maybe", "expected true or false"),
        ("--reward_weights=a,b", "expected a number"),
        ("max_steps=5", "overrides are written --name=value"),
        ("--max_steps", "overrides are written --name=value"),
    ],
)
def test_bad_values(arg, message):
    with pytest.raises(OverrideError, match=message):
        apply_overrides(KNOBS, [arg])


def test_unknown_knob_suggests_a_close_name():
    with pytest.raises(OverrideError, match="did you mean --max_steps"):
        apply_overrides(KNOBS, ["--max_step=3"])


@pytest.mark.parametrize(
    "arg,message",
    [
        ("--max_stepz=5", "unknown knob --max_stepz"),
        ("--num_generations=two", "--num_generations=two: expected an integer"),
        ("--num_generations=3", "not a multiple of NUM_GENERATIONS"),
        ("--reward_weights=1,1", "REWARD_WEIGHTS has 2 values for 4 rewards"),
        ("--reward_funcs=check_answer,nope", "not in rewards.py"),
        ("--loss_type=nonsense", "LOSS_TYPE 'nonsense' is not one of dapo, grpo"),
        ("--beta=-1", "BETA must be >= 0"),
        ("--epsilon_high=0.1", "EPSILON_HIGH (0.1) must be >= EPSILON (0.2)"),
        ("--scale_rewards=yes", "SCALE_REWARDS 'yes' is not one of group, batch, none"),
        ("--collapse_patience=-2", "COLLAPSE_PATIENCE must be >= 0"),
        ("--difficulty_prompts=-1", "DIFFICULTY_PROMPTS must be >= 0"),
    ],
)
def test_train_script_fails_fast_on_bad_overrides(arg, message, tmp_path):
    start = time.time()
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "train_grpo.py"), arg], capture_output=True, text=True, timeout=60,
        cwd=tmp_path
    )
    assert result.returncode != 0
    assert message in result.stderr
    assert time.time() - start < 20, "a bad override must fail before torch or Unsloth load"


@pytest.mark.parametrize(
    "args,message",
    [
        (["--eval_steps=-1"], "EVAL_STEPS must be >= 0"),
        (["--eval_steps=25", "--eval_size=501"], "EVAL_SIZE=501 is more than the 500 held-out rows"),
        (
            ["--smoke", "--eval_steps=5", "--eval_size=3"],
            "EVAL_SIZE x NUM_GENERATIONS = 24 completions must fill whole batches",
        ),
    ],
)
def test_eval_knobs_are_checked_before_anything_loads(args, message, tmp_path):
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "train_grpo.py"), *args], capture_output=True, text=True, timeout=60,
        cwd=tmp_path
    )
    assert result.returncode != 0 and message in result.stderr, result.stderr


@pytest.mark.parametrize(
    "module",
    [
        "train_grpo",
        "evaluate",
        "export",
        "chat",
        "rewards",
        "prompts",
        "grpo.plot_rewards",
        "grpo.overrides",
        "grpo.callbacks",
        "grpo.answers",
        "grpo.checks",
        "grpo.data",
        "grpo.model",
        "grpo.priming",
        "grpo.difficulty",
        "grpo.trainer",
        "grpo.run_dir",
        "grpo.record",
        "grpo.device",
        "grpo.cache",
        "grpo.llama_cpp",
        "grpo.stats",
        "grpo.presets",
        "cpu_models.tiny_model",
        "cpu_models.smollm2",
    ],
)
def test_modules_import_nothing_heavy(module):
    heavy = ("torch", "unsloth", "trl", "transformers", "datasets", "math_verify", "sympy", "matplotlib")
    code = f"import sys, {module}; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_knobs_are_one_block_of_commented_constants():
    import train_grpo
    from grpo.overrides import knobs_of

    source = open(train_grpo.__file__).read().splitlines()
    knob_lines = [i for i, line in enumerate(source) if line.split(" = ")[0] in knobs_of(vars(train_grpo))]
    assert len(knob_lines) == len(knobs_of(vars(train_grpo)))
    block = source[min(knob_lines) : max(knob_lines) + 1]
    for line in block:
        assert line.startswith("#") or " # " in line or "  # " in line, f"knob without a comment: {line}"


def test_bad_dataset_fails_before_the_model_loads(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "solution": "1"}\n')
    result = run_script(tmp_path, "train_grpo.py", "--smoke", f"--dataset_name={bad}", check=False, timeout=120)
    assert result.returncode != 0
    assert "missing column(s) ['prompt']; found columns ['question', 'solution']" in result.stderr
    assert "Traceback" not in result.stderr and "Unsloth" not in result.stdout + result.stderr


def tree(folder) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


@pytest.mark.parametrize("args", [["--dataset_name=bad.jsonl"],  # this one loads Unsloth first: slow
                                  pytest.param(["--lora_target_modules=q,v"], marks=pytest.mark.slow)])
def test_a_refused_smoke_run_leaves_the_previous_smoke_run_as_it_was(tmp_path, args):
    """A data file, a target module or a length refused: the earlier smoke run in outputs/smoke keeps every
    file (its adapter, metrics, evaluation), because nothing is moved before every check has passed."""
    (tmp_path / "bad.jsonl").write_text('{"question": "q", "answer": "1"}\n')
    previous = tmp_path / "outputs" / "smoke"
    (previous / "lora").mkdir(parents=True)
    (previous / "run_config.json").write_text(json.dumps({"SMOKE": True}))
    for name in ("metrics.jsonl", "eval_results.json", "lora/adapter_model.safetensors"):
        (previous / name).write_text("{}\n")
    before = tree(previous)
    result = run_script(tmp_path, "train_grpo.py", "--smoke", *args, check=False, timeout=300)
    assert result.returncode != 0 and "train_grpo.py: error:" in result.stderr and "Traceback" not in result.stderr
    assert "starting over" not in result.stdout
    assert tree(previous) == before and not (tmp_path / "outputs" / "smoke.prev").exists()


def test_full_run_without_a_gpu_stops_and_names_the_smoke_run(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the full run would start")
    result = subprocess.run([sys.executable, os.path.join(ROOT, "train_grpo.py")], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    assert result.returncode != 0
    assert "no CUDA GPU found" in result.stderr and "python train_grpo.py --smoke" in result.stderr


@pytest.mark.parametrize("script", ["train_grpo.py", "evaluate.py"])
def test_help_lists_every_knob_with_default_and_comment_and_exits_zero(script, tmp_path):
    import importlib

    from grpo.overrides import knobs_of

    result = subprocess.run([sys.executable, os.path.join(ROOT, script), "--help"], capture_output=True, text=True,
                            timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    module = importlib.import_module(script[:-3])
    for name in knobs_of(vars(module)):
        assert f"--{name.lower()} " in result.stdout, name
    assert (
        "optimizer steps" in result.stdout or "samples per problem" in result.stdout
    )  # comments, read from the source
    assert "usage: python " + script in result.stdout


def test_evaluate_knobs_are_one_block_of_commented_constants():
    import evaluate
    from grpo.overrides import knob_comments, knobs_of

    comments = knob_comments(open(evaluate.__file__).read())
    assert set(knobs_of(vars(evaluate))) == set(comments), (
        "every evaluate.py knob has a one-line comment, and only knobs are UPPER_CASE"
    )


@pytest.mark.parametrize(
    "content,message",
    [
        ("", "the file is empty"),
        ("\n\n", "no rows (only blank lines)"),
        ('{"prompt": "a", "solution": "1"}\n{"prompt": "b", solution: 2}\n', "line 2: not valid JSON"),
        ('{"prompt": "a", "solution": "1"}\n[1, 2]\n', "line 2: expected a JSON object, got list"),
    ],
)
def test_bad_dataset_files_are_refused_naming_the_file_and_line(tmp_path, content, message):
    path = tmp_path / "problems.jsonl"
    path.write_text(content)
    start = time.time()
    result = run_script(tmp_path, "train_grpo.py", "--smoke", f"--dataset_name={path}", check=False, timeout=120)
    assert result.returncode != 0 and str(path) in result.stderr and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and time.time() - start < 30


def test_parquet_with_the_wrong_columns_is_refused(tmp_path):
    import pandas as pd

    path = tmp_path / "problems.parquet"
    pd.DataFrame({"question": ["q"], "answer": ["1"]}).to_parquet(path)
    result = run_script(tmp_path, "train_grpo.py", "--smoke", f"--dataset_name={path}", check=False, timeout=120)
    assert result.returncode != 0 and "missing column(s) ['prompt', 'solution']" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_tracker_that_is_not_installed_is_refused_before_torch(tmp_path):
    import importlib.util

    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    start = time.time()
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "train_grpo.py"), "--report_to=wandb"], capture_output=True, text=True,
        timeout=60, cwd=tmp_path
    )
    assert result.returncode != 0 and "pip install wandb" in result.stderr
    assert time.time() - start < 20


def test_target_modules_the_model_lacks_are_refused_before_the_weights_load(tmp_path):
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "train_grpo.py"), "--smoke", "--lora_target_modules=q,v"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode != 0
    assert "LORA_TARGET_MODULES names ['q', 'v']" in result.stderr and "q_proj" in result.stderr
    assert "Qwen3ForCausalLM on" not in result.stdout + result.stderr  # Unsloth's loading line: never reached


@pytest.mark.parametrize(
    "args,message",
    [
        (["--preset=nope"], "--preset=nope: no such preset; known: smoke, smollm2"),
        (["--smoke", "--preset=smollm2"], "one preset at a time, got smoke, smollm2"),
    ],
)
def test_presets_are_checked_before_anything_loads(args, message, tmp_path):
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "train_grpo.py"), *args], capture_output=True, text=True, timeout=60,
        cwd=tmp_path
    )
    assert result.returncode != 0 and message in result.stderr


def test_a_preset_applies_before_the_overrides():
    import train_grpo

    knobs = train_grpo.resolve_knobs(["--preset=smollm2", "--max_steps=3"])
    assert knobs["PRESET"] == "smollm2" and not knobs["SMOKE"]
    assert knobs["MODEL_NAME"].endswith("smollm2-135m-instruct") and knobs["MAX_STEPS"] == 3
    assert train_grpo.resolve_knobs(["--smoke"])["PRESET"] == "smoke"
