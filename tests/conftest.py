"""Shared by the tests that run the project's scripts as a user would."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

if os.environ.get("PYTEST_XDIST_WORKER"):  # two workers share the cores (pytest.ini): one thread per process,
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"  # or OpenMP's spinning threads fight


def source(package: str, *parts: str) -> str:
    """A file of an installed package, as text (its GPU code is plain source even where it never runs)."""
    import importlib.util

    folder = os.path.dirname(importlib.util.find_spec(package).origin)
    with open(os.path.join(folder, *parts)) as f:
        return f.read()


def start_script(workdir, name, *args, env=None):
    """`python <repo>/<name> args...` in workdir, started and not waited for (stdout and stderr together):
    for runs side by side. finish_script waits for it."""
    return subprocess.Popen([sys.executable, os.path.join(ROOT, name), *args], cwd=workdir, text=True,
                            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def finish_script(process, timeout=900) -> str:
    """Wait for a start_script process; assert exit 0 (showing the log's tail if not); return its log."""
    out, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, out[-6000:]
    return out


def run_script(workdir, name, *args, env=None, check=True, stdin=None, timeout=600):
    """`python <repo>/<name> args...` in workdir; with check, assert exit 0 and show the log's tail if not."""
    result = subprocess.run([sys.executable, os.path.join(ROOT, name), *args], cwd=workdir, capture_output=True,
                            text=True, timeout=timeout, env={**os.environ, **(env or {})}, input=stdin)
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


# The files whose runs take longest go first, so that with two workers (pytest.ini) one of them starts
# on the learning runs while the other works through the rest; the order within a file is kept.
SLOWEST_FIRST = ("test_learning.py", "test_unsloth_trainers.py", "test_smollm2.py", "test_long_runs.py",
                 "test_gpu_check.py", "test_vllm_handoff.py", "test_disk_faults.py")


# Files whose tests share a run of a script (a training run, a dry run): every test in them is `slow`. The
# fast tier, python -m pytest -q -m "not slow", is the rest (tests of one function, or of a script that
# stops in seconds); tests elsewhere that train carry @pytest.mark.slow themselves.
SLOW_FILES = ("test_learning.py", "test_unsloth_trainers.py",
              "test_smollm2.py", "test_long_runs.py", "test_gpu_check.py", "test_pipeline.py",
              "test_priming.py", "test_difficulty.py", "test_distributed.py", "test_export.py",
              "test_vllm_handoff.py")


def pytest_collection_modifyitems(config, items):
    import pytest

    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOWEST_FIRST)))
    for item in items:
        if item.path.name in SLOW_FILES:
            item.add_marker(pytest.mark.slow)


# --- the suite leaves the checkout as it found it ---------------------------------------------------------
# Every script a test runs works in a temporary folder, never in the checkout, where a user's own runs live
# (outputs/smoke, ...). The controller process (not an xdist worker) lists the checkout's files before the
# suite and after it; a file created, changed or removed fails the session, naming it.
UNWATCHED = {".git", ".venv", ".gpu", "__pycache__", ".pytest_cache", ".hypothesis", ".ruff_cache"}


def checkout_files() -> dict:
    found = {}
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in UNWATCHED]
        for name in files:
            path = os.path.join(folder, name)
            try:
                stat = os.stat(path)
            except OSError:
                continue
            found[os.path.relpath(path, ROOT)] = (stat.st_size, stat.st_mtime_ns)
    return found


def pytest_sessionstart(session):
    if not hasattr(session.config, "workerinput"):
        session.config._checkout_before = checkout_files()


def pytest_sessionfinish(session, exitstatus):
    before = getattr(session.config, "_checkout_before", None)
    if before is None:
        return
    after = checkout_files()
    touched = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
    if touched:
        shown = ", ".join(touched[:12]) + (f" and {len(touched) - 12} more" if len(touched) > 12 else "")
        print(f"\nFAILED: the tests wrote into the checkout ({shown}); run scripts in tmp_path, never in ROOT")
        session.exitstatus = 1
