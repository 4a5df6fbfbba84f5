"""The CPU run learns against its learning-rate-0 control on more than one seed, the evaluation
agrees, and a run forced to collapse says so (and, if asked, stops and saves).

Every run is the smoke preset on the shipped tiny model, seeded, through the real Unsloth + TRL path:
    python train_grpo.py --smoke --max_steps=80 --seed=S [--learning_rate=0]
    python evaluate.py --smoke --run_dir=...
The measure is GRPO's gain: the mean total reward over the last WINDOW steps, learning run minus its
control of the same seed (so the same prompts). bench/bench_learning.py checks it over 3 tiny-model
builds x 3 seeds, and runs with shuffled rewards, which can clear the bar on one seed by chance: so the
test asks it of both seeds (docs/cpu_evidence.md). Four runs, two at a time, one CPU thread each.
"""

import json

import pytest
from conftest import finish_script, run_script, start_script

from grpo import plot_rewards, stats

STEPS = 80  # the bar holds at 80 steps on every build and seed measured (docs/cpu_evidence.md)
SEEDS = (3407, 13)  # 3407 is the preset's default seed; 13 was held back when the preset was chosen
WINDOW = 30  # last steps averaged for the gain
MIN_GAIN = 0.5  # each learning run ends at least this far above its control (3 builds x 3 seeds did)
MAX_END_CLIPPED = 0.5  # a collapsed run ends with nearly every completion at the length limit


def start(workdir, script, *args):
    return start_script(workdir, script, *args, env={"OMP_NUM_THREADS": "1"})  # two runs side by side, a core each


finish = finish_script


def run(workdir, script, *args):
    result = run_script(workdir, script, *args, timeout=900)
    return result.stdout + result.stderr


def rows_of(workdir, name):
    """The GRPO steps' rows (not the format-priming SFT's, which come first)."""
    return plot_rewards.grpo_rows(plot_rewards.read_metrics(workdir / "outputs" / name / "metrics.jsonl"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A learning run and its control for each seed, two processes at a time."""
    workdir = tmp_path_factory.mktemp("learning")
    common = ["--smoke", f"--max_steps={STEPS}"]
    logs = {}
    for seed in SEEDS:
        jobs = {
            f"learn{seed}": start(
                workdir, "train_grpo.py", *common, f"--seed={seed}", f"--output_dir=outputs/learn{seed}"
            ),
            f"control{seed}": start(
                workdir,
                "train_grpo.py",
                *common,
                f"--seed={seed}",
                "--learning_rate=0",
                f"--output_dir=outputs/control{seed}",
            ),
        }
        logs.update({name: finish(job) for name, job in jobs.items()})
    return workdir, logs


@pytest.mark.parametrize("seed", SEEDS)
def test_learning_run_beats_its_control_without_collapse(runs, seed):
    workdir, logs = runs
    rows, control = rows_of(workdir, f"learn{seed}"), rows_of(workdir, f"control{seed}")
    assert len(rows) == len(control) == STEPS
    gain = stats.gain_over_control(rows, control, WINDOW)
    end_clipped = sum(r["completions/clipped_ratio"] for r in rows[-20:]) / 20
    print(f"seed {seed}: gain over the control, last {WINDOW} steps {gain:+.2f}; clipped at the end {end_clipped:.2f}")
    assert gain >= MIN_GAIN, (seed, gain)
    assert end_clipped < MAX_END_CLIPPED, (seed, end_clipped)
    assert "collapse" not in logs[f"learn{seed}"]


def test_controls_adapter_never_moves(runs):
    """Each control samples from the primed model throughout: its adapter at the end is the one priming
    left, bit for bit (the checksum GRPO started from), so its reward moves only with prompts and sampling."""
    workdir, _ = runs
    for seed in SEEDS:
        config = json.load(open(workdir / "outputs" / f"control{seed}" / "run_config.json"))
        checksum = config["FOUND"]["ADAPTER_CHECKSUM"]
        assert checksum["end_by_rank"] == [checksum["start"]], seed


def test_the_first_steps_verdicts_and_the_memory_in_every_row(runs):
    """The lr-0 controls' adapter never moves: each says so at step 3 (grpo/health.py). The learning runs
    print no warning and a healthy verdict; every GRPO row records the process's peak memory."""
    workdir, logs = runs
    for seed in SEEDS:
        control = [line for line in logs[f"control{seed}"].splitlines() if line.startswith("WARNING:")]
        assert len(control) == 1 and "the LoRA adapter has not changed in the first 3 steps" in control[0], control
        learn = logs[f"learn{seed}"].splitlines()
        assert not [line for line in learn if line.startswith("WARNING:")], seed
        assert any(line.startswith("first 10 steps: healthy: reward ") for line in learn), seed
        for name in (f"learn{seed}", f"control{seed}"):
            assert all(r["memory/peak_gib"] > 0 for r in rows_of(workdir, name)), name
            found = json.load(open(workdir / "outputs" / name / "run_config.json"))["FOUND"]
            assert found["PEAK_MEMORY_GIB"] >= max(r["memory/peak_gib"] for r in rows_of(workdir, name))


def test_run_config_records_the_algorithm_the_trainer_used(runs):
    workdir, _ = runs
    config = json.load(open(workdir / "outputs" / f"learn{SEEDS[0]}" / "run_config.json"))
    import train_grpo

    smoke = train_grpo.resolve_knobs(["--smoke"])
    for knob in ("LOSS_TYPE", "BETA", "EPSILON", "EPSILON_HIGH", "SCALE_REWARDS", "MASK_TRUNCATED_COMPLETIONS"):
        assert config[knob] == smoke[knob], knob
    assert config["FOUND"]["DTYPE"] == "float32"  # the CPU path trains float32 on every vendor


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
    # the smoke preset's evaluation settings, spelled out but for the completion length: 0, the run's own (64)
    out = run(
        workdir,
        "evaluate.py",
        f"--run_dir=outputs/control{SEEDS[0]}",
        "--n_problems=50",
        "--n_samples=4",
        "--batch_size=50",
    )
    assert "samples each of up to 64 tokens" in out
    results = json.load(open(workdir / "outputs" / f"control{SEEDS[0]}" / "eval_results.json"))
    assert results["trained"]["format_rate"] == results["primed"]["format_rate"], results
    assert results["trained"]["accuracy"] == results["primed"]["accuracy"], results
    assert results["base"]["format_rate"] == 0, results


# --- a run forced to collapse -------------------------------------------------------------------
COLLAPSE = [
    "--smoke",
    "--learning_rate=0.02",
    "--beta=0",
    "--mask_truncated_completions=false",
    "--collapse_patience=3",
]


@pytest.fixture(scope="module")
def collapsed(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("collapse")
    warn = start(workdir, "train_grpo.py", *COLLAPSE, "--max_steps=20", "--output_dir=outputs/warn")
    stop = start(
        workdir, "train_grpo.py", *COLLAPSE, "--max_steps=60", "--stop_on_collapse=true", "--output_dir=outputs/stop"
    )
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
