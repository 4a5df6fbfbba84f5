"""The CPU run learns on more than one seed, a learning-rate-0 control does not, the evaluation
agrees, and a run forced to collapse says so (and, if asked, stops and saves).

Every run is the smoke preset, seeded, through the real Unsloth + TRL path:
    python train_grpo.py --smoke --max_steps=120 --seed=S [--learning_rate=0]
    python evaluate.py --smoke --run_dir=...
The three 120-step runs start together, one CPU thread each, to keep the wall time down.
"""

import json
import os
import subprocess
import sys

import pytest
from conftest import tiny_model_in

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 120  # about 50 s of GRPO per run on a 2-core CPU
SEEDS = (3407, 13)  # 3407 was among the seeds the smoke preset was tuned on; 13 was held back
WINDOW = 20  # steps averaged at each end
MIN_RISE = 1.0  # each learning run's total reward must rise by at least this much
MAX_CONTROL_RISE = 0.5  # the control may drift by sampling noise, not by this much
MAX_END_CLIPPED = 0.5  # a collapsed run ends with nearly every completion at the length limit


def start(workdir, script, *args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, os.path.join(ROOT, script), *args], cwd=workdir, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process, timeout=900):
    out, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, out[-6000:]
    return out


def run(workdir, script, *args):
    return finish(start(workdir, script, *args))


def rows_of(workdir, name):
    """The GRPO steps' rows (not the format-priming SFT's, which come first)."""
    rows = [json.loads(line) for line in open(workdir / "outputs" / name / "metrics.jsonl")]
    return [r for r in rows if r.get("phase") != "sft"]


def rise(rows):
    assert len(rows) == STEPS
    first = sum(r["reward"] for r in rows[:WINDOW]) / WINDOW
    last = sum(r["reward"] for r in rows[-WINDOW:]) / WINDOW
    return first, last


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("learning")
    tiny_model_in(workdir)  # built once, before three runs want it
    common = ["--smoke", f"--max_steps={STEPS}"]
    jobs = {f"learn{seed}": start(workdir, "train_grpo.py", *common, f"--seed={seed}", f"--output_dir=outputs/learn{seed}")
            for seed in SEEDS}
    jobs["control"] = start(workdir, "train_grpo.py", *common, "--learning_rate=0", "--output_dir=outputs/control")
    logs = {name: finish(job) for name, job in jobs.items()}
    return workdir, logs


@pytest.mark.parametrize("seed", SEEDS)
def test_learning_run_rises_without_collapse(runs, seed):
    workdir, logs = runs
    rows = rows_of(workdir, f"learn{seed}")
    first, last = rise(rows)
    end_clipped = sum(r["completions/clipped_ratio"] for r in rows[-WINDOW:]) / WINDOW
    print(f"seed {seed}: first {WINDOW} steps {first:.2f} -> last {WINDOW} {last:.2f}, clipped at the end {end_clipped:.2f}")
    assert last - first >= MIN_RISE, (seed, first, last)
    assert end_clipped < MAX_END_CLIPPED, (seed, end_clipped)
    assert "collapse" not in logs[f"learn{seed}"]


def test_control_stays_flat(runs):
    workdir, _ = runs
    first, last = rise(rows_of(workdir, "control"))
    print(f"control (lr 0): {first:.2f} -> {last:.2f}")
    assert abs(last - first) < MAX_CONTROL_RISE, (first, last)


def test_run_config_records_the_algorithm_the_trainer_used(runs):
    workdir, _ = runs
    config = json.load(open(workdir / "outputs" / f"learn{SEEDS[0]}" / "run_config.json"))
    import train_grpo

    smoke = train_grpo.resolve_knobs(["--smoke"])
    for knob in ("LOSS_TYPE", "BETA", "EPSILON", "EPSILON_HIGH", "SCALE_REWARDS", "MASK_TRUNCATED_COMPLETIONS"):
        assert config[knob] == smoke[knob], knob
    assert config["DTYPE"] == "float32"  # the CPU path trains float32 on every vendor


def test_evaluation_agrees_trained_beats_base_on_format(runs):
    workdir, _ = runs
    name = f"learn{SEEDS[0]}"
    out = run(workdir, "evaluate.py", "--smoke", f"--run_dir=outputs/{name}")
    results = json.load(open(workdir / "outputs" / name / "eval_results.json"))
    print(out[-800:])
    assert results["trained"]["format_rate"] > results["base"]["format_rate"] + 0.1, results
    for file in ("eval_report.md", "eval_accuracy.png", "reward_curves.png"):
        assert (workdir / "outputs" / name / file).exists(), file
    assert "| format_rate |" in out  # the before/after table is printed


def test_control_adapter_is_the_primed_one(runs):
    """At GRPO learning rate 0 the adapter stays as priming left it, so the evaluation sees no change
    from primed to trained, while priming itself changed the format rate from the base's zero."""
    workdir, _ = runs
    run(workdir, "evaluate.py", "--smoke", "--run_dir=outputs/control")
    results = json.load(open(workdir / "outputs" / "control" / "eval_results.json"))
    assert results["trained"]["format_rate"] == results["primed"]["format_rate"], results
    assert results["trained"]["accuracy"] == results["primed"]["accuracy"], results
    assert results["base"]["format_rate"] == 0, results


# --- a run forced to collapse -------------------------------------------------------------------
COLLAPSE = ["--smoke", "--learning_rate=0.02", "--beta=0", "--mask_truncated_completions=false", "--collapse_patience=3"]


@pytest.fixture(scope="module")
def collapsed(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("collapse")
    tiny_model_in(workdir)
    warn = start(workdir, "train_grpo.py", *COLLAPSE, "--max_steps=20", "--output_dir=outputs/warn")
    stop = start(workdir, "train_grpo.py", *COLLAPSE, "--max_steps=60", "--stop_on_collapse=true",
                 "--output_dir=outputs/stop")
    return workdir, finish(warn), finish(stop)


def test_forced_collapse_warns_and_goes_on(collapsed):
    workdir, warn_log, _ = collapsed
    line = next(line for line in warn_log.splitlines() if "collapse" in line)
    assert "WARNING: training collapse at step" in line
    assert "frac_reward_zero_std" in line or "completions/clipped_ratio" in line
    assert "--beta" in line and "LEARNING_RATE" in line
    assert len(rows_of(workdir, "warn")) == 20  # warning only: the run went on to the end
    assert "stopped early" not in warn_log


def test_stop_on_collapse_saves_and_exits_zero_early(collapsed):
    workdir, _, stop_log = collapsed  # finish() already asserted exit status 0
    rows = rows_of(workdir, "stop")
    assert "STOP_ON_COLLAPSE is set" in stop_log and "stopped early at step" in stop_log
    assert len(rows) < 60
    assert f"stopped early at step {rows[-1]['step']} of 60" in stop_log
    out = workdir / "outputs" / "stop"
    for name in ("lora/adapter_model.safetensors", "reward_curves.png", "run_config.json"):
        assert (out / name).exists(), name
