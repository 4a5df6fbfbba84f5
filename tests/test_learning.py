"""The CPU run learns, a learning-rate-0 control does not, and the evaluation agrees.

Both runs are the smoke preset with more steps, seeded, through the real Unsloth + TRL path:
    python train_grpo.py --smoke --max_steps=120 [--learning_rate=0]
    python evaluate.py --smoke --run_dir=...
"""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 120  # about 70 s of GRPO on a 2-core CPU
WINDOW = 20  # steps averaged at each end
MIN_RISE = 1.0  # the learning run's total reward must rise by at least this much
MAX_CONTROL_RISE = 0.5  # the control may drift by sampling noise, not by this much


def run(workdir, script, *args):
    result = subprocess.run([sys.executable, os.path.join(ROOT, script), *args], cwd=workdir,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def rise(workdir, name):
    rows = [json.loads(line) for line in open(workdir / "outputs" / name / "metrics.jsonl")]
    assert len(rows) == STEPS
    first = sum(r["reward"] for r in rows[:WINDOW]) / WINDOW
    last = sum(r["reward"] for r in rows[-WINDOW:]) / WINDOW
    return first, last


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("learning")
    common = ["--smoke", f"--max_steps={STEPS}"]
    run(workdir, "train_grpo.py", *common, "--output_dir=outputs/learn")
    run(workdir, "train_grpo.py", *common, "--learning_rate=0", "--output_dir=outputs/control")
    return workdir


def test_learning_run_rises_and_control_does_not(runs):
    first, last = rise(runs, "learn")
    c_first, c_last = rise(runs, "control")
    print(f"learning: first {WINDOW} steps {first:.2f} -> last {WINDOW} {last:.2f}; "
          f"control (lr 0): {c_first:.2f} -> {c_last:.2f}")
    assert last - first >= MIN_RISE, (first, last)
    assert c_last - c_first < MAX_CONTROL_RISE, (c_first, c_last)


def test_evaluation_agrees_trained_beats_base_on_format(runs):
    out = run(runs, "evaluate.py", "--smoke", "--run_dir=outputs/learn")
    results = json.load(open(runs / "outputs" / "learn" / "eval_results.json"))
    print(out[-800:])
    assert results["trained"]["format_rate"] > results["base"]["format_rate"] + 0.1, results
    for name in ("eval_report.md", "eval_accuracy.png", "reward_curves.png"):
        assert (runs / "outputs" / "learn" / name).exists(), name
    assert "| format_rate |" in out  # the before/after table is printed


def test_control_adapter_is_the_base(runs):
    """At learning rate 0 the adapter stays a no-op, so the evaluation sees no change at all."""
    run(runs, "evaluate.py", "--smoke", "--run_dir=outputs/control")
    results = json.load(open(runs / "outputs" / "control" / "eval_results.json"))
    assert results["trained"]["format_rate"] == results["base"]["format_rate"], results
