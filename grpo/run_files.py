"""The run's folder, before and after training: which checkpoint to resume from (and the refusal to mix
two runs in one folder), run_config.json (every knob, the versions, the device, the data: the
manifest), the adapter's checksum, the model card, and the save at the end. Rank 0 alone writes;
the other ranks of a torchrun run follow it.
"""

from __future__ import annotations

import json
import os
import sys
import time

from grpo.overrides import BadInput

def world_size() -> int:
    """Processes in this run: torchrun and accelerate launch set WORLD_SIZE; a plain python run is 1."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Rank 0 (or a single process): the one that prints the summaries and writes the run's files."""
    return int(os.environ.get("RANK", "0")) == 0


def bf16() -> bool:
    """Whether this run trains in bfloat16: on a GPU that supports it (a CPU run trains float32)."""
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def start(k: dict) -> str | None:
    """Before anything heavy: quiet the other ranks, judge the output folder (the checkpoint to resume
    from, or None), and stop at once where this machine cannot run the chosen model."""
    if not is_main_process():  # torchrun / accelerate launch: every line once, from rank 0 (errors still show)
        sys.stdout = open(os.devnull, "w")
    resume_from = resume_checkpoint(k)
    import torch

    if not torch.cuda.is_available():
        # Unsloth's CPU fallback trains in bf16 where the CPU has AMX/AVX512-BF16 and in float32
        # elsewhere; float32 everywhere makes a CPU run do the same arithmetic on any vendor.
        os.environ.setdefault("UNSLOTH_CPU_BF16", "0")
    if not k["PRESET"] and not torch.cuda.is_available():
        sys.exit(
            "train_grpo.py: no CUDA GPU found. The full run needs one (Qwen3-4B, vLLM, 8-bit AdamW).\n"
            "On a CPU, run the smoke test of the same pipeline instead:  python train_grpo.py --smoke\n"
            "or the recipe on a small real model:  python train_grpo.py --preset=smollm2"
        )
    if k["PRESET"] == "smollm2":
        from cpu_models import smollm2

        try:
            smollm2.gguf_folder()
        except FileNotFoundError as e:
            raise BadInput(str(e)) from e
    return resume_from


def timed(name: str):
    """Decorator for a step that takes the knobs first: its wall time goes into k[name], so into
    run_config.json, and into the time split the run prints at the end."""
    import functools

    def wrap(step):
        @functools.wraps(step)
        def timed_step(k: dict, *args, **kwargs):
            start = time.time()
            try:
                return step(k, *args, **kwargs)
            finally:
                k[name] = round(time.time() - start, 1)
        return timed_step
    return wrap


def time_split(k: dict, trainer, wall: float) -> dict:
    """Seconds spent in each step: loading, priming, the difficulty filter, GRPO, and the rest."""
    grpo = next((r["train_runtime"] for r in reversed(trainer.state.log_history) if "train_runtime" in r), 0.0)
    split = {"load": k.get("LOAD_S", 0.0), "priming": k.get("PRIMING_S", 0.0), "difficulty": k.get("DIFFICULTY_S", 0.0),
             "grpo": round(grpo, 1)}
    split["other"] = round(wall - sum(split.values()), 1)
    return split


def record(k: dict, trainer, resume_from, primed, train_rows, heldout_rows, dataset) -> dict:
    """run_config.json as training starts: every knob and the values derived from them (MODEL_SHA256,
    MAX_PROMPT_LENGTH, PRIMING_REUSED_FROM), what the trainer really uses, the manifest, and the
    adapter's checksum before GRPO. Written now (a run that dies still leaves it) and again at the end."""
    used = trainer.algorithm
    model = trainer.model
    out = {**k, **used, "REQUESTED": {n: k[n] for n in used}, "WORLD_SIZE": world_size(),
           "DTYPE": str(model.dtype).removeprefix("torch."), "RESUMED_FROM": resume_from, "PRIMED_ADAPTER": primed,
           "ADAPTER_CHECKSUM": {"start": adapter_checksum(model)},
           **manifest(trainer, {"rows": len(train_rows) + len(heldout_rows), "held_out": len(heldout_rows),
                                "trained_on": len(dataset), "fingerprint": getattr(train_rows, "_fingerprint", None)})}
    write_run_config(k["OUTPUT_DIR"], out)
    return out


def finish(k: dict, trainer, record: dict, started: float, argv: list[str]) -> None:
    """Step 7: save the adapter and tokenizer (never a diverged one), the curves and the final record;
    say how the run ended and, after a signal, how to resume it."""
    from grpo import plot_rewards

    step = trainer.state.global_step
    model = trainer.model
    if trainer.alarm.stopped:
        print(f"stopped early at step {step} of {k['MAX_STEPS']}: training collapsed (see the warning above)")
    if trainer.guard.tripped:  # never save a diverged adapter; say where the last good one is
        record.update(WALL_TIME_S=round(time.time() - started, 1), STEPS_DONE=step, STOPPED_BY="non-finite")
        write_run_config(k["OUTPUT_DIR"], record)
        found = checkpoints_in(k["OUTPUT_DIR"])
        primed = record["PRIMED_ADAPTER"]
        sys.exit(trainer.guard.message(found[-1] if found else primed or f"the base model {k['MODEL_NAME']} (nothing was trained yet)"))
    checksums = gather(adapter_checksum(model))  # one per rank: equal when the gradients were all-reduced
    if not is_main_process():
        return
    lora_dir = os.path.join(k["OUTPUT_DIR"], "lora")
    model.save_pretrained(lora_dir, selected_adapters=["default"])  # not the frozen "ref" copy of lora_primed
    trainer.processing_class.save_pretrained(lora_dir)
    write_model_card(lora_dir, k, step)
    metrics_path = os.path.join(k["OUTPUT_DIR"], "metrics.jsonl")
    plot_path = plot_rewards.plot(metrics_path)
    rows = plot_rewards.read_metrics(metrics_path)
    stop = trainer.stop
    wall = time.time() - started
    split = time_split(k, trainer, wall)
    record.update(WALL_TIME_S=round(wall, 1), TIME_SPLIT_S=split, STEPS_DONE=step,
                  STOPPED_BY=stop.signal_name or ("collapse" if trainer.alarm.stopped else None),
                  FINAL_METRICS=next((r for r in reversed(rows) if "reward" in r), None),
                  ADAPTER_CHECKSUM={**record["ADAPTER_CHECKSUM"], "end_by_rank": checksums})
    if len(set(checksums)) > 1:
        print(f"WARNING: the ranks ended with different adapter weights {checksums}: gradients were not synchronised")
    write_run_config(k["OUTPUT_DIR"], record)
    print(f"saved: adapter {lora_dir}, metrics {metrics_path}, curves {plot_path} ({wall:.0f} s: "
          + ", ".join(f"{name} {s:.0f} s" for name, s in split.items()) + ")")
    if stop.signal_name:
        again = " ".join([a for a in argv if not a.startswith("--resume=")] + ["--resume=auto"])
        print(f"stopped by {stop.signal_name} at step {step}; checkpoint-{step} saved. Resume with:\n"
              f"  python train_grpo.py {again}")


def checkpoints_in(folder: str) -> list[str]:
    """The checkpoint-N folders in `folder`, oldest step first."""
    if not os.path.isdir(folder):
        return []
    found = [n for n in os.listdir(folder) if n.startswith("checkpoint-") and n[11:].isdigit()]
    return [os.path.join(folder, n) for n in sorted(found, key=lambda n: int(n[11:]))]


def checkpoint_step(path: str) -> int:
    return int(os.path.basename(os.path.normpath(path))[11:])


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
    found = checkpoints_in(out)
    if k["RESUME"] == "auto":
        if not found:
            raise BadInput(f"--resume=auto: no checkpoint-N folder in {out} to resume from")
        return found[-1]
    if k["RESUME"]:
        if not os.path.isfile(os.path.join(k["RESUME"], "trainer_state.json")):
            raise BadInput(f"RESUME={k['RESUME']}: not a checkpoint folder (no trainer_state.json)")
        return k["RESUME"]
    if not is_main_process():  # under torchrun rank 0 alone judges (and tidies) the folder; the others follow it
        return None
    earlier = [os.path.basename(p) for p in found] + [n for n in ("metrics.jsonl",) if os.path.exists(os.path.join(out, n))]
    if earlier and k["SMOKE"] and was_smoke_run(out):  # never wipe a real run, even from --smoke
        import shutil

        for name in [os.path.basename(p) for p in found] + ["completions", "lora", "lora_primed", "format_sft", "runs"]:
            shutil.rmtree(os.path.join(out, name), ignore_errors=True)
        for name in ("metrics.jsonl", "run_config.json", "reward_curves.png"):
            if os.path.exists(os.path.join(out, name)):
                os.remove(os.path.join(out, name))
        print(f"smoke: starting over in {out} (removed the previous smoke run)")
    elif earlier:
        raise BadInput(
            f"{out} already holds another run ({', '.join(earlier[:4])}). Continue it with --resume=auto, "
            f"or start a new one with --output_dir=NEW_FOLDER (or delete {out})"
        )
    return None


def installed_versions(dists) -> dict:
    """{distribution: version} for those of `dists` that are installed."""
    import importlib.metadata

    versions = {}
    for dist in dists:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


def cache_file(folder: str, key: dict, suffix: str = "") -> str:
    """Where the cache entry for `key` lives in `folder`: named by a hash of the key as JSON."""
    import hashlib

    return os.path.join(folder, hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16] + suffix)


def same_key(stored, key: dict) -> bool:
    """Whether a key read back from a cache entry is `key` (compared as the JSON it was written as)."""
    return stored == json.loads(json.dumps(key, default=str))


def manifest(trainer, data: dict) -> dict:
    """What a run needs to be understood later: versions, device, code commit, data, trainer settings."""
    import platform
    import subprocess

    import torch

    versions = {"python": platform.python_version(), **installed_versions(
        ("torch", "transformers", "trl", "unsloth", "unsloth_zoo", "peft", "accelerate", "datasets",
         "math-verify", "bitsandbytes", "vllm"))}
    if torch.cuda.is_available():
        device = {"gpu": torch.cuda.get_device_name(0), "gpu_count": torch.cuda.device_count()}
    else:
        cpu = platform.processor() or platform.machine()
        try:
            with open("/proc/cpuinfo") as f:
                cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
        except OSError:
            pass
        device = {"cpu": cpu, "cpu_threads": torch.get_num_threads()}
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                                    capture_output=True, text=True, timeout=10).stdout.strip())
        commit = (commit + ("+uncommitted changes" if dirty else "")) or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    args = json.loads(json.dumps(trainer.args.to_dict(), default=str))
    return {"VERSIONS": versions, "DEVICE": device, "GIT_COMMIT": commit, "DATA": data, "TRAINER_ARGS": args}


def adapter_checksum(model) -> str:
    """A short hash of every trainable (LoRA) weight, bit for bit: equal on every rank of a data-parallel
    run whose gradients were all-reduced, and different once the weights have trained."""
    import hashlib

    digest = hashlib.sha256()
    for name, param in sorted(model.named_parameters()):
        if param.requires_grad:
            digest.update(name.encode())
            digest.update(param.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def gather(value) -> list:
    """`value` from every process, in rank order (a one-item list when not distributed)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return [value]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def write_run_config(output_dir: str, record: dict) -> None:
    if not is_main_process():
        return
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "run_config.json"), "w") as f:
        json.dump(record, f, indent=2, default=str)


def write_model_card(lora_dir: str, k: dict, steps: int, primed_only: bool = False) -> None:
    """A short README.md beside the adapter: what it was trained from, on what, and how to load it."""
    training = (f"Format priming only (SFT on `{k['FORMAT_SFT_DATASET']}`, {k['FORMAT_SFT_EPOCHS']} epochs), before GRPO."
                if primed_only else
                f"Trained with GRPO (TRL's GRPOTrainer through Unsloth) for {steps} steps on `{k['DATASET_NAME']}`"
                + (f", after format priming on `{k['FORMAT_SFT_DATASET']}`" if k["FORMAT_SFT"] else "") + ",")
    card = f"""---
base_model: {k['MODEL_NAME']}
library_name: peft
tags: [grpo, lora, math, reasoning]
---
# LoRA adapter: GRPO math reasoning on {k['MODEL_NAME']}

{training}
GRPO rewards {', '.join(k['REWARD_FUNCS'])} (weights {', '.join(map(str, k['REWARD_WEIGHTS']))}).
Loss `{k['LOSS_TYPE']}`, beta {k['BETA']}, learning rate {k['LEARNING_RATE']}, LoRA rank {k['LORA_RANK']}.
The prompts use the trainer's system prompt and chat template (saved with the tokenizer here).
`run_config.json` and `metrics.jsonl` one folder up hold every setting and every step.

```python
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

base = AutoModelForCausalLM.from_pretrained("{k['MODEL_NAME']}")
model = PeftModel.from_pretrained(base, "{lora_dir}")
tokenizer = AutoTokenizer.from_pretrained("{lora_dir}")
```
"""
    with open(os.path.join(lora_dir, "README.md"), "w", encoding="utf-8") as f:
        f.write(card)


