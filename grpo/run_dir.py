"""The run's folder, before and after training: which checkpoint to resume from (the newest that reads, and
the refusal to mix two runs in one folder), setting an earlier smoke run aside once every check has passed,
the save at the end (the adapter, the curves, the final record), and a full disk told in one line. Rank 0
alone writes; the other ranks of a torchrun run follow it.
"""

from __future__ import annotations

import json
import os
import sys
import time

from grpo import record
from grpo.cache import first_unreadable
from grpo.checks import BadInput
from grpo.device import gather, is_main_process
from grpo.record import adapter_checksum

CHECKPOINT = "checkpoint-"  # transformers' checkpoint folders: checkpoint-<step>


def start(k: dict) -> str | None:
    """Before anything heavy: quiet the other ranks and judge the output folder. Returns the checkpoint to
    resume from, or None for a new run."""
    if not is_main_process():  # torchrun / accelerate launch: every line once, from rank 0 (errors still show)
        sys.stdout = open(os.devnull, "w")
    return resume_checkpoint(k)


def finish(k: dict, run: dict, trainer, controls, started: float, argv: list[str]) -> str | None:
    """Step 7: save the adapter and tokenizer (never a diverged one), the curves and the final record; say
    how the run ended and, after a signal, how to resume it. Returns None, or the message to exit with when
    the run diverged (nothing was saved)."""
    from grpo import plot_rewards

    step = trainer.state.global_step
    model = trainer.model
    found = run["FOUND"]
    if controls.alarm.stopped:
        print(f"stopped early at step {step} of {k['MAX_STEPS']}: training collapsed (see the warning above)")
    if controls.guard.tripped:  # never save a diverged adapter; say where the last good one is
        found.update(WALL_TIME_S=round(time.time() - started, 1), STEPS_DONE=step, STOPPED_BY="non-finite",
                     **health_found(controls))
        record.write_run_config(k["OUTPUT_DIR"], run)
        checkpoints = checkpoints_in(k["OUTPUT_DIR"])
        last_good = (checkpoints[-1] if checkpoints else found.get("PRIMED_ADAPTER")
                     or f"the base model {k['MODEL_NAME']} (nothing was trained yet)")
        return controls.guard.message(last_good)
    checksums = gather(adapter_checksum(model))  # one per rank: equal when the gradients were all-reduced
    if not is_main_process():
        return None
    lora_dir = os.path.join(k["OUTPUT_DIR"], "lora")
    model.save_pretrained(lora_dir, selected_adapters=["default"])  # the policy's one adapter
    trainer.processing_class.save_pretrained(lora_dir)
    record.write_model_card(lora_dir, k, step)
    metrics_path = os.path.join(k["OUTPUT_DIR"], "metrics.jsonl")
    plot_path = plot_rewards.plot(metrics_path)
    rows = plot_rewards.read_metrics(metrics_path)
    wall = time.time() - started
    split = record.time_split(found, trainer, wall)
    found.update(WALL_TIME_S=round(wall, 1), TIME_SPLIT_S=split, STEPS_DONE=step, **health_found(controls),
                 STOPPED_BY=controls.stop.signal_name or ("collapse" if controls.alarm.stopped else None),
                 FINAL_METRICS=next((r for r in reversed(rows) if "reward" in r), None),
                 ADAPTER_CHECKSUM={**found["ADAPTER_CHECKSUM"], "end_by_rank": checksums})
    if len(set(checksums)) > 1:
        print(f"WARNING: the ranks ended with different adapter weights {checksums}: gradients were not synchronised")
    record.write_run_config(k["OUTPUT_DIR"], run)
    print(f"saved: adapter {lora_dir}, metrics {metrics_path}, curves {plot_path} ({wall:.0f} s: "
          + ", ".join(f"{name} {s:.0f} s" for name, s in split.items()) + ")")
    if controls.stop.signal_name:
        again = " ".join([a for a in argv if not a.startswith("--resume=")] + ["--resume=auto"])
        print(f"stopped by {controls.stop.signal_name} at step {step}; checkpoint-{step} saved. Resume with:\n"
              f"  python train_grpo.py {again}")
    return None


def health_found(controls) -> dict:
    """The run's health for run_config.json: the verdict on its first steps, the warnings, the peak memory."""
    from grpo.health import peak_memory_gib

    return {"HEALTH": {"verdict": controls.health.verdict, "warnings": controls.health.warnings},
            "PEAK_MEMORY_GIB": peak_memory_gib()}


def checkpoints_in(folder: str) -> list[str]:
    """The checkpoint-N folders in `folder`, oldest step first."""
    if not os.path.isdir(folder):
        return []
    names = [n for n in os.listdir(folder) if n.startswith(CHECKPOINT) and n[len(CHECKPOINT):].isdigit()]
    return [os.path.join(folder, n) for n in sorted(names, key=checkpoint_step)]


def checkpoint_step(path: str) -> int:
    return int(os.path.basename(os.path.normpath(path))[len(CHECKPOINT):])


def is_whole(checkpoint: str) -> bool:
    """Whether a checkpoint folder was saved to the end: transformers' Trainer writes trainer_state.json
    last (Trainer._save_checkpoint), so a folder without it was cut off mid-save."""
    return os.path.isfile(os.path.join(checkpoint, "trainer_state.json"))


# --- a full disk ---------------------------------------------------------------------------------------------
FULL_DISK_TEXT = ("No space left on device", "Disk quota exceeded")  # as Python and safetensors tell it
# torch.save's writer says only that a write failed (no errno): a full disk when the disk is nearly full too
WRITE_FAILED_TEXT = ("iostream error", "unexpected pos", "file write failed")
NEARLY_FULL_MIB = 64


def free_mib(path: str) -> float:
    """Free space on the disk that holds `path` (or its nearest existing parent), in MiB."""
    import shutil

    path = os.path.abspath(path)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return shutil.disk_usage(path).free / 2**20


def disk_full(error: BaseException, out: str) -> bool:
    """Whether `error` (or what caused it) is a write to a full disk: OSError ENOSPC or EDQUOT, as Python
    raises it, or told in safetensors' text; or torch's failed write while the disk under `out` is nearly
    full."""
    import errno

    while error is not None:
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(text in str(error) for text in FULL_DISK_TEXT):
            return True
        if any(text in str(error) for text in WRITE_FAILED_TEXT) and free_mib(out) < NEARLY_FULL_MIB:
            return True
        error = error.__cause__ or error.__context__
    return False


def disk_full_message(error: BaseException, out: str) -> str:
    """One line: the folder that filled, the space left there, and what to do next."""
    folder = os.path.dirname(os.path.abspath(getattr(error, "filename", None) or os.path.join(out, "x")))
    free = free_mib(folder)
    go_on = ("then go on with --resume=auto (a checkpoint cut off by the full disk is skipped)"
             if any(is_whole(c) for c in checkpoints_in(out)) else "then run the same command again")
    return (f"the disk is full: a write to {folder} failed with {free:.0f} MiB free there. What was saved before "
            f"stays as it was. Free space, or lower --save_total_limit, or raise --save_steps; {go_on}")


def earlier_run(out: str) -> list[str]:
    """What an earlier run left in `out`: its checkpoints and metrics (empty for a new folder)."""
    return [os.path.basename(p) for p in checkpoints_in(out)] + [
        n for n in ("metrics.jsonl",) if os.path.exists(os.path.join(out, n))
    ]


def set_aside_previous(k: dict, resume_from: str | None) -> None:
    """After every check has passed, and before the run writes anything: an earlier smoke run in
    OUTPUT_DIR (the only kind a new run may replace, resume_checkpoint decided) moves, whole, to
    OUTPUT_DIR.prev, replacing an older one there, so nothing of it is mixed in and nothing is lost."""
    import shutil

    out = os.path.normpath(k["OUTPUT_DIR"])
    if resume_from or not is_main_process() or not (k["SMOKE"] and earlier_run(out) and was_smoke_run(out)):
        return
    aside = out + ".prev"
    shutil.rmtree(aside, ignore_errors=True)
    try:
        os.replace(out, aside)
    except OSError:  # OUTPUT_DIR is a mount point (or busy): move what it holds instead
        os.makedirs(aside)
        for name in os.listdir(out):
            shutil.move(os.path.join(out, name), os.path.join(aside, name))
    print(f"smoke: starting over in {out}; the previous smoke run is now in {aside}")


def was_smoke_run(folder: str) -> bool:
    """Whether the run in `folder` was a smoke run, by its run_config.json (no record: not known to be)."""
    try:
        with open(os.path.join(folder, "run_config.json")) as f:
            return json.load(f).get("SMOKE") is True
    except (OSError, ValueError):
        return False


def resume_checkpoint(k: dict) -> str | None:
    """The checkpoint to resume from (RESUME: "" = none, "auto" = the latest in OUTPUT_DIR, or a path).

    A new run never mixes silently with an earlier one in the same OUTPUT_DIR: it is refused, except
    that a smoke run starts over by itself in the folder of an earlier smoke run."""
    out = k["OUTPUT_DIR"]
    checkpoints = checkpoints_in(out)
    if k["RESUME"] == "auto":
        whole = [c for c in checkpoints if is_whole(c)]
        if not whole:
            raise BadInput(
                f"--resume=auto: no {'whole ' if checkpoints else ''}checkpoint-N folder in {out} to resume from"
            )
        unfinished = [os.path.basename(c) for c in checkpoints if checkpoint_step(c) > checkpoint_step(whole[-1])]
        if unfinished and is_main_process():
            print(f"resume: skipping {', '.join(unfinished)} (unfinished: no trainer_state.json, which Trainer "
                  f"writes last, as a kill during the save leaves it); left as it is")
        for checkpoint in reversed(whole):  # the newest that reads
            bad = first_unreadable(checkpoint)
            if not bad:
                return checkpoint
            if is_main_process():
                print(f"resume: skipping {os.path.basename(checkpoint)}: {bad[0]} cannot be loaded ({bad[1]}); "
                      f"left as it is")
        raise BadInput(f"--resume=auto: no checkpoint in {out} can be loaded (each is named above); start a new run "
                       f"with --output_dir=NEW_FOLDER")
    if k["RESUME"]:
        if not is_whole(k["RESUME"]):
            raise BadInput(f"RESUME={k['RESUME']}: not a checkpoint folder (no trainer_state.json)")
        bad = first_unreadable(k["RESUME"])  # what resuming will load, read without loading it (grpo/cache.py)
        if bad:  # named now, before the model loads, not as a traceback mid-resume
            raise BadInput(f"{bad[0]} cannot be loaded ({bad[1]}); resume from an earlier checkpoint with "
                           f"--resume=PATH, or move {os.path.basename(os.path.normpath(k['RESUME']))} aside")
        return k["RESUME"]
    if not is_main_process():  # under torchrun rank 0 alone judges the folder; the others follow it
        return None
    earlier = earlier_run(out)
    if earlier and not (k["SMOKE"] and was_smoke_run(out)):  # a smoke run starts over; a real one never
        raise BadInput(
            f"{out} already holds another run ({', '.join(earlier[:4])}). Continue it with --resume=auto, "
            f"or start a new one with --output_dir=NEW_FOLDER (or delete {out})"
        )
    return None
