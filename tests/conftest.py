"""Shared by the tests that run the project's scripts as a user would."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_script(workdir, name, *args, env=None, check=True, stdin=None, timeout=600):
    """`python <repo>/<name> args...` in workdir; with check, assert exit 0 and show the log's tail if not."""
    result = subprocess.run([sys.executable, os.path.join(ROOT, name), *args], cwd=workdir, capture_output=True,
                            text=True, timeout=timeout, env={**os.environ, **(env or {})}, input=stdin)
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result
