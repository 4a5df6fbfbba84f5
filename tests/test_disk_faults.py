"""A failing disk, made the way it happens: a full disk (a small tmpfs) during checkpoint saves, and files
that no longer read (random bytes, zero bytes, a cut-off file, garbage JSON) in a checkpoint and in the
caches. Each ends in one line, nothing unreadable is reused, and the next run trains.
"""

import json
import os
import random
import subprocess

import pytest
from conftest import run_script

from grpo import cache, run_dir
from grpo.checks import BadInput

BASE = ["--smoke", "--save_steps=1", "--save_total_limit=10", "--output_dir=disk/run"]


def steps(path):
    return [json.loads(line)["step"] for line in open(path) if '"reward"' in line]


# --- the files the run reads back, checked within the formats' limits --------------------------------------
def write_checkpoint(folder, step):
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    save_file({"w": torch.zeros(4)}, str(folder / "adapter_model.safetensors"))
    torch.save({"state": {}}, folder / "optimizer.pt")
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return folder


def corrupt(path, how: str) -> None:
    size = os.path.getsize(path)
    if how == "random bytes":
        path.write_bytes(random.Random(0).randbytes(1000))
    elif how == "zero bytes":
        path.write_bytes(b"")
    elif how == "cut off":
        path.write_bytes(path.read_bytes()[: size // 2])
    elif how == "garbage JSON":
        path.write_text('{"global_step": 3,')
    elif how == "a huge header length":  # what a corrupted length asks for: never allocated
        path.write_bytes((2**62).to_bytes(8, "little") + b"{}")


@pytest.mark.parametrize("name,how", [("adapter_model.safetensors", "random bytes"),
                                      ("adapter_model.safetensors", "zero bytes"),
                                      ("adapter_model.safetensors", "cut off"),
                                      ("adapter_model.safetensors", "a huge header length"),
                                      ("optimizer.pt", "cut off"), ("optimizer.pt", "random bytes"),
                                      ("trainer_state.json", "garbage JSON")])
def test_resume_auto_falls_back_to_the_newest_checkpoint_that_reads(tmp_path, capsys, name, how):
    for step in (1, 2, 3):
        write_checkpoint(tmp_path / f"checkpoint-{step}", step)
    assert cache.unreadable(str(tmp_path / "checkpoint-3" / name)) is None
    corrupt(tmp_path / "checkpoint-3" / name, how)
    assert cache.unreadable(str(tmp_path / "checkpoint-3" / name))
    k = {"OUTPUT_DIR": str(tmp_path), "RESUME": "auto", "SMOKE": True}
    assert run_dir.resume_checkpoint(k) == str(tmp_path / "checkpoint-2")
    said = capsys.readouterr().out.strip().splitlines()
    assert len(said) == 1 and said[0].startswith(f"resume: skipping checkpoint-3: {tmp_path / 'checkpoint-3' / name}")
    with pytest.raises(BadInput, match=f"checkpoint-3/{name} cannot be loaded"):  # named: refused in one line
        run_dir.resume_checkpoint({**k, "RESUME": str(tmp_path / "checkpoint-3")})
    for step in (1, 2):
        corrupt(tmp_path / f"checkpoint-{step}" / name, how)
    with pytest.raises(BadInput, match="no checkpoint in .* can be loaded"):
        run_dir.resume_checkpoint(k)


def test_an_unreadable_difficulty_cache_entry_is_set_aside_not_reused(tmp_path, capsys):
    entry = tmp_path / "abc.json"
    entry.write_text('{"key": {"a": 1}, "rates": [0.5, ')
    aside = cache.set_aside(str(entry), "JSONDecodeError")
    assert not entry.exists() and open(aside).read().startswith('{"key"')
    assert capsys.readouterr().out.startswith(f"note: the cache entry {entry} cannot be read (JSONDecodeError); ")


# --- end to end: a full disk, then a corrupted checkpoint, then a corrupted priming cache -----------------
@pytest.fixture(scope="module")
def small_disk(tmp_path_factory):
    """A 3.5 MiB tmpfs as the output folder's disk: it fills during the fourth checkpoint of the smoke run."""
    work = tmp_path_factory.mktemp("disk")
    (work / "disk").mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3584k", "tmpfs", str(work / "disk")],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.strip()}): the full-disk run needs root")
    yield work
    subprocess.run(["umount", "-l", str(work / "disk")], capture_output=True)


@pytest.mark.slow
def test_a_full_disk_ends_in_one_line_then_the_run_resumes_past_a_corrupted_checkpoint(small_disk):
    """The disk fills during a checkpoint save: one line. Space is freed, and the newest whole checkpoint is
    corrupted too (random bytes in its adapter): --resume=auto skips the one the full disk cut off and the
    one that does not read, each in one line, resumes from the one before, and logs every step once."""
    work = small_disk
    run = work / "disk" / "run"
    full = run_script(work, "train_grpo.py", *BASE, "--max_steps=6", check=False, timeout=600)
    assert full.returncode == 1 and "Traceback" not in full.stderr, full.stderr[-3000:]
    line = full.stderr.strip().splitlines()[-1]
    assert line.startswith(f"train_grpo.py: error: the disk is full: a write to {run}"), line
    assert "MiB free there" in line and "--save_total_limit" in line and "--save_steps" in line
    assert "then go on with --resume=auto" in line
    saved = sorted(os.listdir(run))
    subprocess.run(["mount", "-o", "remount,size=64m", str(work / "disk")], check=True)  # space freed
    whole = [c for c in run_dir.checkpoints_in(str(run)) if run_dir.is_whole(c)]
    newest, before = whole[-1], whole[-2]
    corrupt(run / os.path.basename(newest) / "adapter_model.safetensors", "random bytes")
    again = run_script(work, "train_grpo.py", *BASE, "--max_steps=6", "--resume=auto", timeout=600)
    assert "resume: skipping checkpoint-" in again.stdout and "(unfinished: no trainer_state.json" in again.stdout
    bad = f"disk/run/{os.path.basename(newest)}/adapter_model.safetensors"
    assert f"resume: skipping {os.path.basename(newest)}: {bad} cannot be loaded" in again.stdout
    step = run_dir.checkpoint_step(before)
    assert f"resuming from disk/run/{os.path.basename(before)} (step {step})" in again.stdout
    assert steps(run / "metrics.jsonl") == [1, 2, 3, 4, 5, 6] and "Traceback" not in again.stderr
    assert set(saved) <= set(os.listdir(run))


@pytest.mark.slow
def test_a_corrupted_priming_cache_entry_is_set_aside_and_primed_again(small_disk):
    work = small_disk
    entries = [e for e in (work / "outputs" / "primed").iterdir() if (e / "priming_key.json").exists()]
    assert len(entries) == 1
    corrupt(entries[0] / "adapter_model.safetensors", "random bytes")
    result = run_script(work, "train_grpo.py", "--smoke", "--max_steps=1", "--output_dir=outputs/again", timeout=600)
    assert f"note: the cache entry outputs/primed/{entries[0].name} cannot be read (adapter_model.safetensors: " in (
        result.stdout)
    assert "format priming: 64 worked examples" in result.stdout and "reused the primed adapter" not in result.stdout
    assert (work / "outputs" / "primed" / f"{entries[0].name}.unreadable").is_dir()  # moved aside, not deleted
    assert cache.first_unreadable(str(entries[0])) is None  # the new entry reads
    assert steps(work / "outputs" / "again" / "metrics.jsonl") == [1]
