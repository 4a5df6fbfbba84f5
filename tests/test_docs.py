"""The docs a user reads: CI runs the README's own test command, and every relative link in the README,
BENCHMARKS.md and docs/ names a file in the repository."""

import os
import re

from conftest import ROOT


def read(name: str) -> str:
    with open(os.path.join(ROOT, name), encoding="utf-8") as f:
        return f.read()


def test_ci_runs_the_readmes_test_command():
    command = next(line for line in read("README.md").splitlines()
                   if "pip install -q -r requirements-dev.txt" in line and "pytest" in line)
    after_venv = command.strip().split(" && ", 1)[1]  # .ci/run makes its venv with python3, the rest is the same
    assert after_venv.startswith(". .venv/bin/activate") and after_venv in read(".ci/run")


def test_every_relative_link_resolves():
    pages = ["README.md", "BENCHMARKS.md"] + [os.path.join("docs", n) for n in os.listdir(os.path.join(ROOT, "docs"))
                                               if n.endswith(".md")]
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", read(page)):
            if "://" in target:
                continue
            path = os.path.normpath(os.path.join(ROOT, os.path.dirname(page), target))
            assert os.path.exists(path), f"{page}: {target}"
