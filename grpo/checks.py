"""Checks on the knobs and the model that fail in seconds, before anything heavy loads, so a bad value
costs a second and not the minutes of loading a 4B model. Each raises BadInput with a message that
names the knob or file and the fix; the entry points print it as one line and exit non-zero.
"""

from __future__ import annotations

import importlib.util
import os

from grpo.device import gpu_unseen, world_size


class BadInput(ValueError):
    """A knob, file or dataset a run cannot use: shown to the user as one line naming it, with no traceback."""


class Stopped(Exception):
    """A run stopped cleanly by a signal before GRPO (during priming): one line saying what is kept."""


LOSS_TYPES = ("dapo", "grpo", "bnpo", "dr_grpo", "cispo", "sapo", "vespo")  # those TRL and Unsloth both implement
SCALE_REWARDS = ("group", "batch", "none")
# the algorithm knobs TRL 1.15's GRPOConfig takes as strings, and the values it accepts
IMPORTANCE_SAMPLING_LEVELS = ("token", "sequence")
MULTI_OBJECTIVE_AGGREGATIONS = ("sum_then_normalize", "normalize_then_sum")
VLLM_IMPORTANCE_SAMPLING_MODES = ("token_truncate", "token_mask", "sequence_truncate", "sequence_mask")
# REPORT_TO names transformers knows, and the package each needs
TRACKERS = {"wandb": "wandb", "tensorboard": "tensorboard", "mlflow": "mlflow", "comet_ml": "comet_ml",
             "clearml": "clearml", "trackio": "trackio", "dvclive": "dvclive", "swanlab": "swanlab"}


# The knobs a single range check covers: (whether a value is good, what it must be). The message is
# "NAME must be WHAT, got VALUE"; knobs that depend on each other are checked in check_knobs.
RANGES = {
    "NUM_GENERATIONS": (lambda v: v >= 2, "at least 2: GRPO compares completions within a group"),
    "PROMPT_LENGTH_PERCENTILE": (lambda v: 0 < v <= 100, "in (0, 100]"),
    "MAX_COMPLETION_LENGTH": (lambda v: v >= 0, ">= 0 (0 = all the room left)"),
    **{name: (lambda v: v >= 1, "positive")
       for name in ("MAX_STEPS", "SAVE_STEPS", "SAVE_TOTAL_LIMIT", "MAX_SEQ_LENGTH", "LORA_RANK", "DIFFICULTY_SAMPLES",
                    "FORMAT_SFT_EPOCHS", "EVAL_SIZE")},
    "WARMUP_RATIO": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "TEMPERATURE": (lambda v: v > 0, "> 0 (GRPO samples its completions)"),
    "TOP_P": (lambda v: 0 < v <= 1, "in (0, 1] (1 = off)"),
    "MIN_P": (lambda v: 0 <= v < 1, "in [0, 1) (0 = off)"),
    "TOP_ENTROPY_QUANTILE": (lambda v: 0 <= v <= 1, "in [0, 1] (1 = every token)"),
    "BETA": (lambda v: v >= 0, ">= 0 (a KL penalty, 0 = off)"),
    "EPSILON": (lambda v: v > 0, "> 0"),
    "EVAL_STEPS": (lambda v: v >= 0, ">= 0 (0 = off)"),
    "DIFFICULTY_PROMPTS": (lambda v: v >= 0, ">= 0 (0 = every training prompt)"),
    "COLLAPSE_PATIENCE": (lambda v: v >= 0, ">= 0 (0 = off)"),
    **{name: (lambda v: v >= 0, ">= 0")
       for name in ("LEARNING_RATE", "FORMAT_SFT_LEARNING_RATE", "FORMAT_SFT_MAX_EXAMPLES",
                    "FORMAT_SFT_MAX_TOKENS")},
}
# The knobs that name one of a few values.
CHOICES = {
    "LOSS_TYPE": LOSS_TYPES,
    "SCALE_REWARDS": SCALE_REWARDS,
    "IMPORTANCE_SAMPLING_LEVEL": IMPORTANCE_SAMPLING_LEVELS,
    "MULTI_OBJECTIVE_AGGREGATION": MULTI_OBJECTIVE_AGGREGATIONS,
    "VLLM_IMPORTANCE_SAMPLING_MODE": VLLM_IMPORTANCE_SAMPLING_MODES,
    "VLLM_MODE": ("colocate", "server"),
}


def check_knobs(k: dict, reward_module) -> None:
    """Cheap consistency checks, so a bad value or combination fails before the model loads."""
    from grpo.data import ANSWER_FORMATS, is_local_path  # here: grpo.data imports this module

    for name, (good, what) in RANGES.items():
        if not good(k[name]):
            raise BadInput(f"{name} must be {what}, got {k[name]}")
    for name, allowed in {**CHOICES, "ANSWER_FORMAT": ANSWER_FORMATS}.items():
        if k[name] not in allowed:
            raise BadInput(f"{name} {k[name]!r} is not one of {', '.join(allowed)}")
    unknown = [n for n in k["REWARD_FUNCS"] if not callable(getattr(reward_module, n, None))]
    if unknown:
        raise BadInput(
            f"REWARD_FUNCS names {unknown}, not in rewards.py; known: "
            f"{[f.__name__ for f in reward_module.REWARD_FUNCS]}"
        )
    if len(k["REWARD_WEIGHTS"]) != len(k["REWARD_FUNCS"]):
        raise BadInput(f"REWARD_WEIGHTS has {len(k['REWARD_WEIGHTS'])} values for {len(k['REWARD_FUNCS'])} rewards")
    batch = k["PER_DEVICE_TRAIN_BATCH_SIZE"] * k["GRADIENT_ACCUMULATION_STEPS"] * world_size()
    if batch % k["NUM_GENERATIONS"]:
        raise BadInput(
            f"PER_DEVICE_TRAIN_BATCH_SIZE x GRADIENT_ACCUMULATION_STEPS x processes ({world_size()}) = {batch} "
            f"completions per step is not a multiple of NUM_GENERATIONS = {k['NUM_GENERATIONS']}"
        )
    if (k["LOSS_TYPE"] == "vespo" and k["FAST_INFERENCE"] and k["VLLM_IMPORTANCE_SAMPLING_CORRECTION"]
            and not k["VLLM_IMPORTANCE_SAMPLING_MODE"].startswith("token_")):
        raise BadInput(
            f"LOSS_TYPE=vespo weights tokens by the vLLM importance ratio, which TRL and Unsloth allow only per "
            f"token: --vllm_importance_sampling_mode=token_truncate (or token_mask), not "
            f"{k['VLLM_IMPORTANCE_SAMPLING_MODE']}, or --vllm_importance_sampling_correction=false"
        )
    if k["EPSILON_HIGH"] < k["EPSILON"]:
        raise BadInput(
            f"EPSILON_HIGH ({k['EPSILON_HIGH']}) must be >= EPSILON ({k['EPSILON']}): clip-higher widens the upper "
            "range"
        )
    if k["EVAL_STEPS"] and k["EVAL_SIZE"] > k["HOLDOUT_SIZE"]:
        raise BadInput(f"EVAL_SIZE={k['EVAL_SIZE']} is more than the {k['HOLDOUT_SIZE']} held-out rows (HOLDOUT_SIZE)")
    if k["EVAL_STEPS"] and (k["EVAL_SIZE"] * k["NUM_GENERATIONS"]) % k["PER_DEVICE_TRAIN_BATCH_SIZE"]:
        raise BadInput(
            f"EVAL_SIZE x NUM_GENERATIONS = {k['EVAL_SIZE'] * k['NUM_GENERATIONS']} completions must fill whole "
            f"batches of PER_DEVICE_TRAIN_BATCH_SIZE = {k['PER_DEVICE_TRAIN_BATCH_SIZE']}"
        )
    for tracker in (t.strip() for t in k["REPORT_TO"].split(",")):
        if tracker in ("none", "all", ""):
            continue
        if tracker not in TRACKERS:
            raise BadInput(f"REPORT_TO names {tracker!r}; known: none, {', '.join(sorted(TRACKERS))}")
        if importlib.util.find_spec(TRACKERS[tracker]) is None:
            raise BadInput(
                f"REPORT_TO={tracker} but the {TRACKERS[tracker]} package is not installed: "
                f"pip install {TRACKERS[tracker]}   (or --report_to=none)"
            )
    if k["FAST_INFERENCE"] and k["VLLM_MODE"] == "server" and k["LOAD_IN_4BIT"]:
        # Unsloth cannot sync a quantized model into `trl vllm-serve` (unsloth/models/rl_replacements.py,
        # _unsloth_vllm_sync_kind): it raises at the first generation, after the model has loaded
        raise BadInput(
            "VLLM_MODE=server with LOAD_IN_4BIT=true: Unsloth cannot send a 4-bit model's weights to `trl "
            "vllm-serve`, so it stops at the first step. Use --vllm_mode=colocate (Unsloth's own vLLM), or a "
            "16-bit base: --load_in_4bit=false"
        )
    band = tuple(k["DIFFICULTY_BAND"])
    if len(band) != 2 or not 0 <= band[0] <= band[1] <= 1:
        raise BadInput(
            f"DIFFICULTY_BAND must be two pass rates low,high with 0 <= low <= high <= 1, got {k['DIFFICULTY_BAND']}"
        )
    if k["SMOKE"] and not os.path.isdir(k["MODEL_NAME"]):
        raise BadInput(
            f"--smoke: no tiny model in {k['MODEL_NAME']}; build one with  python cpu_models/tiny_model.py "
            f"{k['MODEL_NAME']}"
        )
    if not (k["DATASET_PROMPT_COLUMN"] and k["DATASET_ANSWER_COLUMN"]):
        raise BadInput("DATASET_PROMPT_COLUMN and DATASET_ANSWER_COLUMN must name the dataset's columns")
    for name in ("DATASET_NAME", "FORMAT_SFT_DATASET"):
        if (name == "DATASET_NAME" or k["FORMAT_SFT"]) and is_local_path(k[name]) and not os.path.exists(k[name]):
            raise BadInput(f"{name}: no such file {k[name]}")


def preflight(k: dict) -> None:
    """Stop at once where this machine cannot run the chosen model: a GPU torch cannot use (a driver older
    than torch's CUDA, ...), the full run without a CUDA GPU, the SmolLM2 preset without its GGUF file.
    On a CPU, also make the arithmetic the same on every vendor."""
    import torch

    if not torch.cuda.is_available():
        # Unsloth's CPU fallback trains in bf16 where the CPU has AMX/AVX512-BF16 and in float32
        # elsewhere; float32 everywhere makes a CPU run do the same arithmetic on any vendor.
        os.environ.setdefault("UNSLOTH_CPU_BF16", "0")
    unseen = gpu_unseen("train_grpo.py")
    if unseen:  # an NVIDIA driver is here and torch cannot use it: a driver older than torch's CUDA, ...
        raise BadInput(unseen)
    if not k["PRESET"] and not torch.cuda.is_available():
        raise BadInput(
            "no CUDA GPU found (no NVIDIA driver). The full run needs one (Qwen3-4B, vLLM, 8-bit AdamW).\n"
            "On a CPU, run the smoke test of the same pipeline instead:  python train_grpo.py --smoke\n"
            "or the recipe on a small real model:  python train_grpo.py --preset=smollm2"
        )
    if k["PRESET"] == "smollm2":
        from cpu_models import smollm2

        try:
            smollm2.gguf_folder()
        except FileNotFoundError as e:
            raise BadInput(str(e)) from e


def check_target_modules(k: dict) -> dict | None:
    """Raise BadInput when LORA_TARGET_MODULES names a layer the model lacks. Reads only the
    model's config and builds a weightless skeleton on the meta device, so it runs before the
    weights load. Skipped (with a note, returning None) when the config cannot be read. Returns the
    skeleton's parameter counts (health.memory_estimate's sizes): `linear` (the projections), `other`
    (embeddings, norms, an untied head) and `lora` (the adapter LORA_RANK and the targets make)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(k["MODEL_NAME"])
        with torch.device("meta"):
            skeleton = AutoModelForCausalLM.from_config(config)
    except Exception as e:  # offline without a cached config, a custom architecture, ...
        print(f"note: LORA_TARGET_MODULES not checked before loading ({type(e).__name__}: {e})")
        return None
    linear = sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, module in skeleton.named_modules()
            if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] != "lm_head"
        }
    )
    missing = [m for m in k["LORA_TARGET_MODULES"] if m not in linear]
    if missing:
        raise BadInput(
            f"LORA_TARGET_MODULES names {missing}, which {k['MODEL_NAME']} does not have; "
            f"its linear layers are: {','.join(linear)}"
        )
    layers = [(name.rsplit(".", 1)[-1], m) for name, m in skeleton.named_modules() if isinstance(m, torch.nn.Linear)]
    total = sum(p.numel() for p in skeleton.parameters())
    projections = sum(m.weight.numel() for leaf, m in layers if leaf != "lm_head")
    lora = sum(k["LORA_RANK"] * (m.in_features + m.out_features) for leaf, m in layers
               if leaf in k["LORA_TARGET_MODULES"])
    return {"linear": projections, "other": total - projections, "lora": lora}
