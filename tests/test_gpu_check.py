"""The GPU checks in one script (bench/gpu_check.py), checked on the CPU by its dry run: every part in
order, each under its own limit, one log per part, and the table for BENCHMARKS.md. The training
benchmark's CPU table is checked here too (bench/bench_train.py --smoke is the dry run's second part).
    python bench/gpu_check.py --dry_run=true
"""

import os
import sys

import pytest
from conftest import ROOT, run_script, start_script


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu-check")
    result = run_script(tmp, "bench/gpu_check.py", "--dry_run=true", f"--work_dir={tmp / 'work'}", timeout=900,
                        env={"OUT": str(tmp / "out")})  # asserts exit 0
    return tmp / "out", result.stdout


def test_dry_run_runs_every_part_and_writes_the_report(dry_run):
    out, log = dry_run
    report = (out / "gpu_check.md").read_text()
    assert "(CPU dry run)" in report and "| part | status | wall time |" in report
    for part in ("smoke", "bench_train", "evaluate"):
        assert f"| {part} | ok |" in report, part
        assert (out / f"{part}.log").stat().st_size > 0, part
    assert "Smoke run: 2 steps, float32" in report and "Evaluation (`evaluate.py --smoke`): base accuracy" in report
    assert "Trainers: GRPO GRPOTrainer (source sha256 " in report and "priming SFTTrainer" in report  # stock TRL here
    kl = float(report.split("KL at step 1 ")[1].split()[0])
    assert kl < 0.25  # the primed reference
    # 2 steps: the checks that ran are named, and "healthy" is kept for a run past health.VERDICT_STEPS
    assert "Health: first 2 steps: no warning from the checks that ran (cut completions, a still adapter)" in report
    assert sorted(os.listdir(out)) == [
        "bench_train.log",
        "evaluate.log",
        "gpu_check.md",
        "smoke.log",
    ]  # what comes back
    assert "expected: up to " in (out / "evaluate.log").read_text()  # evaluate.py's measured estimate, before sampling


def test_bench_train_smoke_prints_both_paths_and_their_ratio(dry_run):
    out, _ = dry_run
    table = (out / "bench_train.log").read_text()
    assert "| row | s/step | generation tok/s | training tok/s | peak GPU GiB | decode bound share |" in table
    for row in ("unsloth-lora", "trl-lora"):
        cells = next(line for line in table.splitlines() if line.startswith(f"| {row} |")).split("|")
        assert float(cells[2]) > 0 and float(cells[3]) > 0 and float(cells[4]) > 0, cells  # measured, not blank
    assert "| unsloth-qlora | skipped: 4-bit needs CUDA" in table
    assert "lora: plain TRL's s/step / Unsloth's = " in table
    assert "| unsloth-lora |" in (out / "gpu_check.md").read_text()  # the table reaches the report


def test_without_a_gpu_the_real_check_stops_and_names_the_dry_run(tmp_path):
    result = run_script(tmp_path, "bench/gpu_check.py", check=False, timeout=300, env={"OUT": str(tmp_path / "out")})
    assert result.returncode != 0 and "no CUDA GPU found" in result.stderr and "--dry_run=true" in result.stderr


def process_groups() -> dict:
    """{pid: process group} of every live process on this machine (from /proc; zombies hold nothing)."""
    groups = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if fields[0] != "Z":
                groups[int(pid)] = int(fields[2])
        except (OSError, IndexError, ValueError):
            pass
    return groups


def part_groups(log: str) -> dict:
    """{part: its process group} from gpu_check.py's own lines."""
    return {line.split(":")[0]: int(line.rsplit(" ", 1)[1]) for line in log.splitlines() if ": process group " in line}


def test_the_limits_fit_a_lent_machines_command():
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    import gpu_check

    assert gpu_check.SMOKE_TIMEOUT_S + gpu_check.BENCH_TIMEOUT_S + gpu_check.EVAL_TIMEOUT_S <= 420


@pytest.mark.slow
def test_sigterm_in_the_second_part_keeps_the_first_parts_row_and_leaves_no_process(tmp_path):
    """A lent machine's limit stops the command with SIGTERM: the report must keep what was done."""
    import signal
    import time

    out = tmp_path / "out"
    proc = start_script(tmp_path, "bench/gpu_check.py", "--dry_run=true", f"--work_dir={tmp_path / 'work'}",
                        env={"OUT": str(out)})  # stdout and stderr together
    lines = []
    for line in proc.stdout:  # wait until the benchmark's row process is under way, then stop the check
        lines.append(line)
        if line.startswith("bench_train: process group"):
            deadline = time.time() + 120
            while "row unsloth-lora" not in (out / "bench_train.log").read_text() and time.time() < deadline:
                time.sleep(0.5)
            time.sleep(2)
            proc.send_signal(signal.SIGTERM)
            break
    rest, _ = proc.communicate(timeout=120)
    log = "".join(lines) + rest
    assert proc.returncode == 143, log[-3000:]
    report = (out / "gpu_check.md").read_text()
    assert "| smoke | ok |" in report and "| bench_train | stopped by SIGTERM |" in report, report
    assert "| evaluate |" not in report and "Smoke run: 2 steps" in report
    groups = part_groups(log)
    assert set(groups) == {"smoke", "bench_train"}
    left = [pid for pid, group in process_groups().items() if group in groups.values()]
    assert not left, f"processes of a stopped part still run: {left}"


@pytest.mark.slow
def test_a_part_over_its_limit_is_stopped_with_all_it_started(tmp_path):
    out = tmp_path / "out"
    result = run_script(tmp_path, "bench/gpu_check.py", "--dry_run=true", f"--work_dir={tmp_path / 'work'}",
                        "--smoke_timeout_s=4", "--bench_timeout_s=6", check=False, timeout=300, env={"OUT": str(out)})
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    report = (out / "gpu_check.md").read_text()
    assert "| smoke | timed out after 4 s |" in report and "| bench_train | timed out after 6 s |" in report, report
    assert "| evaluate | failed" in report  # no smoke run to evaluate: it says so and stops
    groups = part_groups(result.stdout)
    assert len(groups) == 3
    left = [pid for pid, group in process_groups().items() if group in groups.values()]
    assert not left, f"processes of a timed-out part still run: {left}"
