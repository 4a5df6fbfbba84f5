"""The two install commands: requirements.txt (the GPU box, vLLM included) resolves with pip and its vLLM
is one TRL and Unsloth each support; requirements-dev.txt (the CPU tests) pins the same versions, torch
and vLLM included. The resolver check asks the package registry (a dry run: nothing is downloaded but
metadata, and no CUDA is needed).
"""

import json
import os
import re
import subprocess
import sys
import warnings

import pytest
from conftest import ROOT


def pins(name: str) -> dict:
    """{package: version} for every `package==version` line of a requirements file (markers ignored)."""
    found = {}
    with open(os.path.join(ROOT, name)) as f:
        for line in f:
            m = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s;#,]+)", line)
            if m:
                found[m.group(1).lower().replace("_", "-")] = m.group(2)
    return found


def test_the_cpu_stack_pins_what_the_gpu_box_pins():
    gpu, cpu = pins("requirements.txt"), pins("requirements-dev.txt")
    assert "vllm" in gpu, "requirements.txt must install vLLM: the recipe's generation path"
    # torch and vLLM included: the tests train on the GPU box's torch and hand adapters to its vLLM
    assert {p: cpu.get(p) for p in gpu} == gpu


def test_the_cpu_stack_refuses_the_local_cpu_build_of_torch():
    """A find-links folder here holds torch-2.13.0+cpu, which pip prefers to the registry's 2.13.0 and
    which breaks the registry's torchvision; the CPU stack's requirement excludes it."""
    from packaging.requirements import Requirement

    line = next(x for x in open(os.path.join(ROOT, "requirements-dev.txt")) if re.match(r"torch\s*==", x))
    spec = Requirement(line.split("#")[0].strip()).specifier
    assert spec.contains("2.13.0") and not spec.contains("2.13.0+cpu")


def test_the_installed_torch_is_the_pinned_one_and_loads_torchvision():
    import torch
    import torchvision  # noqa: F401  (Unsloth imports it: a mismatched pair fails here)

    assert torch.__version__.split("+")[0] == pins("requirements-dev.txt")["torch"]
    assert torch.ops.torchvision.nms is not None


@pytest.fixture(scope="module")
def resolved(tmp_path_factory):
    """What `pip install -r requirements.txt` would install on this Linux x86-64 box, by pip's resolver."""
    report = tmp_path_factory.mktemp("resolve") / "report.json"
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                             "--report", str(report), "-r", os.path.join(ROOT, "requirements.txt")],
                            capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert result.returncode == 0, "requirements.txt does not resolve:\n" + result.stderr[-3000:]
    return {i["metadata"]["name"].lower().replace("_", "-"): i["metadata"]["version"]
            for i in json.load(open(report))["install"]}


@pytest.mark.slow
def test_gpu_requirements_resolve_with_every_pin_as_written(resolved):
    for package, version in pins("requirements.txt").items():
        assert resolved.get(package, "").split("+")[0] == version, (package, resolved.get(package))


@pytest.mark.slow
def test_the_resolved_vllm_is_one_the_installed_trl_supports(resolved, monkeypatch):
    """TRL states its range in is_vllm_available (a warning outside it): ask it about the resolved vLLM."""
    import trl.import_utils as trl_imports

    assert "vllm" in resolved, "requirements.txt installs no vLLM"
    monkeypatch.setattr(
        trl_imports, "_is_package_available", lambda name, return_version=False: (True, resolved["vllm"])
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert trl_imports.is_vllm_available()
    assert not [str(w.message) for w in caught if "vLLM" in str(w.message)]
    # the guard can fail: a vLLM outside TRL's range does warn
    monkeypatch.setattr(trl_imports, "_is_package_available", lambda name, return_version=False: (True, "0.33.0"))
    with pytest.warns(UserWarning, match="TRL currently supports vLLM versions"):
        trl_imports.is_vllm_available()


@pytest.mark.slow
def test_the_resolved_vllm_is_inside_the_range_unsloth_checked_its_patches_on(resolved):
    """Unsloth's vLLM interception (unsloth/models/rl_replacements.py) names the vLLM releases it was
    checked across; a version bump that moves past them fails here."""
    import importlib.util

    from packaging.version import Version

    source = open(
        os.path.join(os.path.dirname(importlib.util.find_spec("unsloth").origin), "models", "rl_replacements.py")
    ).read()
    ranges = re.findall(r"vLLM (\d+\.\d+\.\d+)-(\d+\.\d+\.\d+)", source)
    assert ranges, "Unsloth no longer states the vLLM releases its patches were checked on: re-read rl_replacements.py"
    low, high = max(Version(lo) for lo, _ in ranges), min(Version(hi) for _, hi in ranges)
    assert low <= Version(resolved["vllm"]) <= high, (resolved["vllm"], str(low), str(high))
