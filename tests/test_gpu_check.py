"""The GPU checks in one script (bench/gpu_check.py), checked on the CPU by its dry run: every part in
order, each under its own limit, one log per part, and the table for BENCHMARKS.md. The training
benchmark's CPU table is checked here too (bench/bench_train.py --smoke is the dry run's second part).
    python bench/gpu_check.py --dry_run=true
"""

import os
import subprocess
import sys

import pytest
from conftest import ROOT

SCRIPT = os.path.join(ROOT, "bench", "gpu_check.py")


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu-check")
    env = {**os.environ, "OUT": str(tmp / "out")}
    result = subprocess.run([sys.executable, SCRIPT, "--dry_run=true", f"--work_dir={tmp / 'work'}"], capture_output=True,
                            text=True, timeout=900, cwd=tmp, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return tmp / "out", result.stdout


def test_dry_run_runs_every_part_and_writes_the_report(dry_run):
    out, log = dry_run
    report = (out / "gpu_check.md").read_text()
    assert "(CPU dry run)" in report and "| part | status | wall time |" in report
    for part in ("smoke", "bench_train", "evaluate"):
        assert f"| {part} | ok |" in report, part
        assert (out / f"{part}.log").stat().st_size > 0, part
    assert "Smoke run: 2 steps, float32" in report and "Evaluation (`evaluate.py --smoke`): base accuracy" in report
    assert sorted(os.listdir(out)) == ["bench_train.log", "evaluate.log", "gpu_check.md", "smoke.log"]  # what comes back


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
    result = subprocess.run([sys.executable, SCRIPT], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                            env={**os.environ, "OUT": str(tmp_path / "out")})
    assert result.returncode != 0 and "no CUDA GPU found" in result.stderr and "--dry_run=true" in result.stderr
