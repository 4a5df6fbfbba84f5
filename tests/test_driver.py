"""A GPU box whose NVIDIA driver is older than the CUDA torch was built for: every entry point says so in
one line, before anything loads, instead of "no CUDA GPU found". The driver is faked two ways: a fake
`nvidia-smi` first on PATH (the scripts, run as a user runs them) and a fake /proc file (the fallback).
torch's CUDA is the installed one (requirements-dev.txt pins the CUDA 13.0 build; test_requirements.py
checks it), or set on torch.version in the tests of one function.
"""

import os
import stat

import pytest
import torch
from conftest import run_script

from grpo import device


def fake_nvidia_smi(folder, driver: str, rc: int = 0) -> dict:
    """A PATH whose first folder holds an `nvidia-smi` that answers as a machine with this driver does."""
    folder.mkdir(exist_ok=True)
    script = folder / "nvidia-smi"
    script.write_text(f"#!/bin/sh\necho '{driver}'\nexit {rc}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return {"PATH": f"{folder}{os.pathsep}{os.environ['PATH']}", "CUDA_VISIBLE_DEVICES": "0"}


@pytest.fixture
def no_gpu(monkeypatch):
    """torch sees no GPU, is built for CUDA 13.0, and no GPU is hidden on purpose."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


@pytest.mark.parametrize(
    "driver, cuda",
    [("580.95.05", "13.0"), ("580.65.06", "13.0"), ("575.57.08", "12.9"), ("570.124.06", "12.8"),
     ("550.54.15", "12.4"), ("535.183.01", "12.2"), ("525.60.13", "12.0"), ("470.256.02", "11.0"),
     ("418.226.00", None)],
)
def test_driver_cuda_is_the_newest_cuda_the_driver_runs(driver, cuda):
    assert device.driver_cuda(driver) == cuda


def test_the_driver_is_read_from_nvidia_smi_then_from_the_kernel_module(tmp_path, monkeypatch):
    monkeypatch.setattr(device, "PROC_DRIVER_VERSION", str(tmp_path / "absent"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert device.nvidia_driver() is None  # neither: a machine without an NVIDIA driver
    proc = tmp_path / "version"
    proc.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  570.124.06  Wed Feb 26 2025\nGCC version: 12\n")
    monkeypatch.setattr(device, "PROC_DRIVER_VERSION", str(proc))
    assert device.nvidia_driver() == "570.124.06"
    monkeypatch.setenv("PATH", fake_nvidia_smi(tmp_path / "bin", "580.95.05")["PATH"])
    assert device.nvidia_driver() == "580.95.05"  # nvidia-smi first
    monkeypatch.setenv("PATH", fake_nvidia_smi(tmp_path / "bad", "NVIDIA-SMI has failed", rc=9)["PATH"])
    assert device.nvidia_driver() == "570.124.06"  # a failing nvidia-smi: the kernel module's file


def test_no_driver_is_no_finding(no_gpu, monkeypatch):
    monkeypatch.setattr(device, "nvidia_driver", lambda: None)
    assert device.gpu_unseen("train_grpo.py") is None  # a CPU machine: the callers' own "no CUDA GPU" line


def test_a_570_driver_under_a_cuda_13_torch_names_both_and_the_ways_out(no_gpu, monkeypatch):
    monkeypatch.setattr(device, "nvidia_driver", lambda: "570.124.06")
    line = device.gpu_unseen("train_grpo.py")
    assert "\n" not in line
    for part in ("driver here is 570.124.06", "CUDA up to 12.8", "built for CUDA 13.0", "needs driver 580.65.06",
                 "update the driver", device.OLDER_DRIVER_INSTALL, "CUDA_VISIBLE_DEVICES= python train_grpo.py"):
        assert part in line, part


def test_a_driver_new_enough_that_torch_still_cannot_use_says_what_to_check(no_gpu, monkeypatch):
    monkeypatch.setattr(device, "nvidia_driver", lambda: "580.95.05")
    line = device.gpu_unseen("evaluate.py")
    assert "\n" not in line and "NVIDIA driver 580.95.05 (CUDA up to 13.0) runs" in line
    assert "torch sees no GPU" in line and "/dev/nvidia" in line and "needs driver" not in line


def test_a_cpu_build_of_torch_on_a_gpu_box(no_gpu, monkeypatch):
    monkeypatch.setattr(device, "nvidia_driver", lambda: "570.124.06")
    monkeypatch.setattr(torch.version, "cuda", None)
    assert "is a CPU build" in device.gpu_unseen("chat.py")


@pytest.mark.parametrize("hidden", ["", "-1"])
def test_gpus_hidden_on_purpose_are_no_finding(no_gpu, monkeypatch, hidden):
    monkeypatch.setattr(device, "nvidia_driver", lambda: "570.124.06")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", hidden)
    assert device.gpu_unseen("train_grpo.py") is None


def test_a_visible_gpu_changes_nothing(no_gpu, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(device, "nvidia_driver", lambda: pytest.fail("no driver lookup where torch sees the GPU"))
    assert device.gpu_unseen("train_grpo.py") is None


@pytest.mark.parametrize(
    "script, args",
    [("train_grpo.py", []), ("train_grpo.py", ["--smoke"]), ("evaluate.py", ["--smoke"]), ("chat.py", ["--smoke"]),
     ("export.py", ["--smoke"])],
)
def test_each_entry_point_ends_in_one_line_on_a_570_driver(tmp_path, script, args):
    assert torch.version.cuda == "13.0", "requirements-dev.txt pins torch's CUDA 13.0 build"
    result = run_script(tmp_path, script, *args, check=False, timeout=300,
                        env=fake_nvidia_smi(tmp_path / "bin", "570.124.06"))
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"{script}: error: the NVIDIA driver here is 570.124.06"), result.stderr[-2000:]
    assert "CUDA 13.0" in line and "update the driver" in line and device.OLDER_DRIVER_INSTALL in line


def test_train_grpo_on_a_580_driver_torch_cannot_use(tmp_path):
    result = run_script(tmp_path, "train_grpo.py", check=False, timeout=300,
                        env=fake_nvidia_smi(tmp_path / "bin", "580.95.05"))
    line = result.stderr.strip().splitlines()[-1]
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "NVIDIA driver 580.95.05 (CUDA up to 13.0) runs the installed torch" in line, line


def test_gpu_check_names_the_driver_mismatch(tmp_path):
    result = run_script(tmp_path, "bench/gpu_check.py", check=False, timeout=300,
                        env={"OUT": str(tmp_path / "out"), **fake_nvidia_smi(tmp_path / "bin", "570.124.06")})
    line = result.stderr.strip().splitlines()[-1]
    assert result.returncode != 0 and line.startswith("gpu_check.py: error: the NVIDIA driver here is 570.124.06")
