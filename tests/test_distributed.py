"""Past one process: torchrun data parallelism on CPU (gloo), the Slurm launcher and vLLM's modes.
(The training benchmark's CPU table is checked in test_gpu_check.py.)
    torchrun --standalone --nproc_per_node=2 train_grpo.py --smoke --max_steps=2 --save_steps=2
    torchrun --standalone --nproc_per_node=2 train_grpo.py --smoke --max_steps=3 --save_steps=2 --resume=auto
"""

import json
import os
import stat
import subprocess
import sys

import pytest
from conftest import ROOT, run_script

SCRIPT = os.path.join(ROOT, "train_grpo.py")


def torchrun(workdir, *args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            SCRIPT,
            "--smoke",
            "--output_dir=outputs/ddp",
            *args,
        ],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result.stdout


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """2 steps with a checkpoint, then a resumed run to step 3, both on 2 processes."""
    workdir = tmp_path_factory.mktemp("ddp")
    torchrun(workdir, "--max_steps=2", "--save_steps=2")
    return workdir / "outputs" / "ddp", torchrun(workdir, "--max_steps=3", "--save_steps=2", "--resume=auto")


def test_two_processes_write_one_run(ddp_run):
    out, log = ddp_run
    rows = [json.loads(line) for line in open(out / "metrics.jsonl")]
    assert [r["step"] for r in rows if "reward" in r] == [1, 2, 3]  # one row per step, not one per rank
    assert (out / "lora" / "adapter_model.safetensors").exists()
    config = json.load(open(out / "run_config.json"))
    assert config["FOUND"]["WORLD_SIZE"] == 2 and config["FOUND"]["STEPS_DONE"] == 3
    # every summary line once, counting both processes' completions
    assert log.count("run: 3 steps, 4 prompts x 8 completions per step over 2 processes") == 1
    assert log.count("saved: adapter") == 1


def test_resume_under_torchrun_continues_with_the_primed_reference(ddp_run):
    out, log = ddp_run
    assert log.count("resuming from outputs/ddp/checkpoint-2 (step 2)") == 1
    kl = [json.loads(line)["kl"] for line in open(out / "metrics.jsonl") if '"reward"' in line]
    assert len(kl) == 3 and kl[2] < 0.25  # ~1.2 against the unprimed base (test_long_runs)


def test_ranks_hold_identical_trained_lora_weights(ddp_run):
    """The proof that the gradients were all-reduced: after the steps, both ranks' LoRA weights hash to
    the same value, and that value is not the one GRPO started from."""
    out, _ = ddp_run
    checksum = json.load(open(out / "run_config.json"))["FOUND"]["ADAPTER_CHECKSUM"]
    assert len(checksum["end_by_rank"]) == 2
    assert checksum["end_by_rank"][0] == checksum["end_by_rank"][1]
    assert checksum["end_by_rank"][0] != checksum["start"]


def test_batch_check_counts_every_process(tmp_path, monkeypatch):
    """GRPO's groups are formed from every process's completions, so the check is on the global count:
    4 per process x 2 processes = 8 completions, one group of 8, is accepted (one process alone would
    be refused); 6 x 2 = 12 is refused, naming the processes."""
    bad = run_script(tmp_path, "train_grpo.py", "--smoke", "--per_device_train_batch_size=6", check=False, timeout=60,
                     env={"WORLD_SIZE": "2"})
    assert bad.returncode != 0 and "x processes (2) = 12 completions per step" in bad.stderr
    import train_grpo

    with pytest.raises(SystemExit):
        train_grpo.resolve_knobs(["--smoke", "--per_device_train_batch_size=4"])  # one process: 4 < 8
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert train_grpo.resolve_knobs(["--smoke", "--per_device_train_batch_size=4"])["PER_DEVICE_TRAIN_BATCH_SIZE"] == 4


def test_slurm_script_builds_the_torchrun_command(tmp_path):
    """bash -n, then the script run with stand-ins for srun, scontrol and torchrun that print their
    arguments: one torchrun per node, the job's node count and GPUs, the head node as rendezvous."""
    launcher = os.path.join(ROOT, "scripts", "slurm_train.sh")
    assert subprocess.run(["bash", "-n", launcher]).returncode == 0
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stubs = {"scontrol": "echo node-a; echo node-b", "srun": 'echo "srun $*"', "torchrun": 'echo "torchrun $*"'}
    for name, body in stubs.items():
        path = bin_dir / name
        path.write_text(f"#!/bin/bash\n{body}\n")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "SLURM_JOB_NODELIST": "node-[a-b]",
        "SLURM_JOB_NUM_NODES": "2",
        "SLURM_GPUS_ON_NODE": "4",
        "SLURM_JOB_ID": "77",
    }
    result = subprocess.run(
        ["bash", launcher, "--max_steps=300"], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    for part in (
        "srun --kill-on-bad-exit=1 torchrun",
        "--nnodes=2",
        "--nproc_per_node=4",
        "--rdzv_id=77",
        "--rdzv_backend=c10d",
        "--rdzv_endpoint=node-a:29500",
        "train_grpo.py --max_steps=300",
    ):
        assert part in line, (part, line)


def test_vllm_mode_chooses_where_generation_runs():
    """colocate: Unsloth loads vLLM into the training process (fast_inference). server: the model loads
    without it and TRL's config points at `trl vllm-serve`. Both fields exist in TRL's GRPOConfig."""
    import dataclasses

    from trl import GRPOConfig

    import train_grpo
    from grpo import model, trainer

    colocate = train_grpo.resolve_knobs([])
    assert model.from_pretrained_kwargs(colocate, True)["fast_inference"] is True
    assert "vllm_mode" not in trainer.grpo_config_kwargs(colocate, 100, True, True)
    server = train_grpo.resolve_knobs(["--vllm_mode=server", "--vllm_server_url=http://10.0.0.5:8000"])
    assert model.from_pretrained_kwargs(server, True)["fast_inference"] is False
    kwargs = trainer.grpo_config_kwargs(server, 100, True, True)
    assert kwargs["use_vllm"] is True and kwargs["vllm_mode"] == "server"
    assert kwargs["vllm_server_base_url"] == "http://10.0.0.5:8000"
    fields = {f.name for f in dataclasses.fields(GRPOConfig)}
    assert {"vllm_mode", "vllm_server_base_url", "use_vllm"} <= fields
    with pytest.raises(SystemExit):
        train_grpo.resolve_knobs(["--vllm_mode=remote"])
