"""Shared by the tests that run the project's scripts as a user would."""

import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_MODEL = os.path.join(ROOT, "outputs", "tiny-qwen3")  # the smoke preset's model, as a run from the checkout builds it


def tiny_model_in(workdir):
    """Give workdir the smoke preset's tiny model, built once per checkout, so a test's smoke run skips
    the build (about 25 s; tiny_model.py skips a folder that holds a build of the same recipe).
    One test builds it from scratch as a user's first run does (test_pipeline's smoke_run)."""
    target = os.path.join(str(workdir), "outputs", "tiny-qwen3")
    if os.path.abspath(target) == TINY_MODEL or os.path.exists(target):
        return
    subprocess.run([sys.executable, os.path.join(ROOT, "tiny_model.py"), TINY_MODEL], check=True,
                   capture_output=True, timeout=600)  # returns at once when the build is current
    shutil.copytree(TINY_MODEL, target)


def run_script(workdir, name, *args, env=None, check=True, stdin=None, timeout=600):
    """`python <repo>/<name> args...` in workdir; with check, assert exit 0 and show the log's tail if not."""
    if "--smoke" in args:
        tiny_model_in(workdir)
    result = subprocess.run([sys.executable, os.path.join(ROOT, name), *args], cwd=workdir, capture_output=True,
                            text=True, timeout=timeout, env={**os.environ, **(env or {})}, input=stdin)
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result
