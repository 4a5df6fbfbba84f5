"""The run's record, run_config.json: the knobs as the user asked for them (top level, as in the knob block)
and, apart from them under "FOUND", what the run found and decided (whether vLLM generated, the weights'
checksum, the prompt budget, the priming reused, what the trainer really uses, the manifest of versions,
device, code and data, and at the end the time split and how the run ended). Also each step's timer and
the adapter's model card, and the checksums that say which weights a run used: the base model's file (a
local folder) and the trainable LoRA weights (equal on every rank of a data-parallel run whose gradients were
all-reduced). Rank 0 alone writes.
"""

from __future__ import annotations

import functools
import json
import os
import time

from grpo.device import is_main_process, world_size


def weights_sha256(model_dir: str) -> str | None:
    """The sha256 of model_dir's model.safetensors (None when it has none): which weights a run loaded."""
    import hashlib

    path = os.path.join(model_dir, "model.safetensors")
    if not os.path.isfile(path):
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):  # in 16 MB pieces: a local 4B model is 8 GB
            digest.update(chunk)
    return digest.hexdigest()


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


def timed(name: str):
    """Decorator for a step that returns its findings (a dict, a tuple ending in one, or a record with `.found`):
    adds the step's wall time to them as `name`, for run_config.json and the time split the run prints at the end."""

    def wrap(step):
        @functools.wraps(step)
        def timed_step(*args, **kwargs):
            start = time.time()
            out = step(*args, **kwargs)
            (out[-1] if isinstance(out, tuple) else getattr(out, "found", out))[name] = round(time.time() - start, 1)
            return out
        return timed_step
    return wrap


def time_split(found: dict, trainer, wall: float) -> dict:
    """Seconds spent in each step: loading, priming, the difficulty filter, GRPO, and the rest."""
    grpo = next((r["train_runtime"] for r in reversed(trainer.state.log_history) if "train_runtime" in r), 0.0)
    split = {"load": found.get("LOAD_S", 0.0), "priming": found.get("PRIMING_S", 0.0),
             "difficulty": found.get("DIFFICULTY_S", 0.0), "grpo": round(grpo, 1)}
    split["other"] = round(wall - sum(split.values()), 1)
    return split


def start(k: dict, found: dict, trainer, algorithm: dict, data: dict) -> dict:
    """run_config.json as training starts: the knobs, and under FOUND the steps' findings, the algorithm
    knobs as the trainer holds them, the manifest and the adapter's checksum before GRPO. Written now (a
    run that dies still leaves it) and again at the end (finish)."""
    model = trainer.model
    found = {**found, **trainer_source(trainer), "ALGORITHM_USED": algorithm, "WORLD_SIZE": world_size(),
             "DTYPE": str(model.dtype).removeprefix("torch."), "ADAPTER_CHECKSUM": {"start": adapter_checksum(model)},
             **manifest(trainer, data)}
    out = {**k, "FOUND": found}
    write_run_config(k["OUTPUT_DIR"], out)
    return out


def library_class(trainer) -> type:
    """The library's trainer class under the project's own subclass (grpo/trainer.py's outcome judge)."""
    return next(c for c in type(trainer).__mro__ if not c.__module__.startswith("grpo."))


def trainer_source(trainer) -> dict:
    """Which GRPO trainer ran: GRPO_TRAINER, the library class under the project's own subclass (TRL's
    `GRPOTrainer`, or Unsloth's generated `UnslothGRPOTrainer` on a GPU and under UNSLOTH_ALLOW_CPU=1), its
    source file and that file's sha256, so that a GPU run and the CPU tier can be compared line for line."""
    import hashlib
    import inspect

    library = library_class(trainer)
    try:
        path = inspect.getsourcefile(library)
        with open(path, "rb") as f:
            sha = hashlib.sha256(f.read()).hexdigest()
    except (OSError, TypeError):  # no source file to read (a class built at run time)
        path = sha = None
    return {"GRPO_TRAINER": library.__name__, "GRPO_TRAINER_FILE": path, "GRPO_TRAINER_SHA256": sha}


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
        def git(*args) -> str:
            return subprocess.run(["git", *args], cwd=here, capture_output=True, text=True, timeout=10).stdout.strip()

        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
        commit = (commit + ("+uncommitted changes" if dirty else "")) or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    args = json.loads(json.dumps(trainer.args.to_dict(), default=str))
    return {"VERSIONS": versions, "DEVICE": device, "GIT_COMMIT": commit, "DATA": data, "TRAINER_ARGS": args}


def write_run_config(output_dir: str, record: dict) -> None:
    if not is_main_process():
        return
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "run_config.json"), "w") as f:
        json.dump(record, f, indent=2, default=str)


def write_model_card(lora_dir: str, k: dict, steps: int, primed_only: bool = False) -> None:
    """A short README.md beside the adapter: what it was trained from, on what, and how to load it."""
    training = (
        f"Format priming only (SFT on `{k['FORMAT_SFT_DATASET']}`, {k['FORMAT_SFT_EPOCHS']} epochs), before GRPO."
        if primed_only
        else f"Trained with GRPO (TRL's GRPOTrainer through Unsloth) for {steps} steps on `{k['DATASET_NAME']}`"
        + (f", after format priming on `{k['FORMAT_SFT_DATASET']}`" if k["FORMAT_SFT"] else "")
        + ","
    )
    card = f"""---
base_model: {k["MODEL_NAME"]}
library_name: peft
tags: [grpo, lora, math, reasoning]
---
# LoRA adapter: GRPO math reasoning on {k["MODEL_NAME"]}

{training}
GRPO rewards {", ".join(k["REWARD_FUNCS"])} (weights {", ".join(map(str, k["REWARD_WEIGHTS"]))}).
Loss `{k["LOSS_TYPE"]}`, beta {k["BETA"]}, learning rate {k["LEARNING_RATE"]}, LoRA rank {k["LORA_RANK"]}.
The prompts use the trainer's system prompt and chat template (saved with the tokenizer here).
`run_config.json` and `metrics.jsonl` one folder up hold every setting and every step.

```python
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

base = AutoModelForCausalLM.from_pretrained("{k["MODEL_NAME"]}")
model = PeftModel.from_pretrained(base, "{lora_dir}")
tokenizer = AutoTokenizer.from_pretrained("{lora_dir}")
```
"""
    with open(os.path.join(lora_dir, "README.md"), "w", encoding="utf-8") as f:
        f.write(card)
