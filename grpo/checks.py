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


def check_knobs(k: dict, reward_module) -> None:
    """Cheap consistency checks, so a bad combination fails before the model loads."""
    from grpo.data import ANSWER_FORMATS, is_local_path  # here: grpo.data imports this module
    unknown = [n for n in k["REWARD_FUNCS"] if not callable(getattr(reward_module, n, None))]
    if unknown:
        raise BadInput(
            f"REWARD_FUNCS names {unknown}, not in rewards.py; known: "
            f"{[f.__name__ for f in reward_module.REWARD_FUNCS]}"
        )
    if len(k["REWARD_WEIGHTS"]) != len(k["REWARD_FUNCS"]):
        raise BadInput(f"REWARD_WEIGHTS has {len(k['REWARD_WEIGHTS'])} values for {len(k['REWARD_FUNCS'])} rewards")
    if k["NUM_GENERATIONS"] < 2:
        raise BadInput("NUM_GENERATIONS must be at least 2: GRPO compares completions within a group")
    batch = k["PER_DEVICE_TRAIN_BATCH_SIZE"] * k["GRADIENT_ACCUMULATION_STEPS"] * world_size()
    if batch % k["NUM_GENERATIONS"]:
        raise BadInput(
            f"PER_DEVICE_TRAIN_BATCH_SIZE x GRADIENT_ACCUMULATION_STEPS x processes ({world_size()}) = {batch} "
            f"completions per step is not a multiple of NUM_GENERATIONS = {k['NUM_GENERATIONS']}"
        )
    if not 0 < k["PROMPT_LENGTH_PERCENTILE"] <= 100:
        raise BadInput(f"PROMPT_LENGTH_PERCENTILE must be in (0, 100], got {k['PROMPT_LENGTH_PERCENTILE']}")
    if k["MAX_COMPLETION_LENGTH"] < 0:
        raise BadInput(f"MAX_COMPLETION_LENGTH must be >= 0 (0 = all the room left), got {k['MAX_COMPLETION_LENGTH']}")
    for name in ("MAX_STEPS", "SAVE_STEPS", "SAVE_TOTAL_LIMIT", "MAX_SEQ_LENGTH", "LORA_RANK"):
        if k[name] < 1:
            raise BadInput(f"{name} must be positive, got {k[name]}")
    if not 0 <= k["WARMUP_RATIO"] < 1:
        raise BadInput(f"WARMUP_RATIO must be in [0, 1), got {k['WARMUP_RATIO']}")
    if k["TEMPERATURE"] <= 0:
        raise BadInput(f"TEMPERATURE must be > 0 (GRPO samples its completions), got {k['TEMPERATURE']}")
    if not 0 < k["TOP_P"] <= 1:
        raise BadInput(f"TOP_P must be in (0, 1] (1 = off), got {k['TOP_P']}")
    if not 0 <= k["MIN_P"] < 1:
        raise BadInput(f"MIN_P must be in [0, 1) (0 = off), got {k['MIN_P']}")
    if k["LEARNING_RATE"] < 0:
        raise BadInput(f"LEARNING_RATE must be >= 0, got {k['LEARNING_RATE']}")
    if k["LOSS_TYPE"] not in LOSS_TYPES:
        raise BadInput(f"LOSS_TYPE {k['LOSS_TYPE']!r} is not one of {', '.join(LOSS_TYPES)}")
    if k["SCALE_REWARDS"] not in SCALE_REWARDS:
        raise BadInput(f"SCALE_REWARDS {k['SCALE_REWARDS']!r} is not one of {', '.join(SCALE_REWARDS)}")
    for knob, allowed in (("IMPORTANCE_SAMPLING_LEVEL", IMPORTANCE_SAMPLING_LEVELS),
                          ("MULTI_OBJECTIVE_AGGREGATION", MULTI_OBJECTIVE_AGGREGATIONS),
                          ("VLLM_IMPORTANCE_SAMPLING_MODE", VLLM_IMPORTANCE_SAMPLING_MODES)):
        if k[knob] not in allowed:
            raise BadInput(f"{knob} {k[knob]!r} is not one of {', '.join(allowed)}")
    if not 0 <= k["TOP_ENTROPY_QUANTILE"] <= 1:
        raise BadInput(f"TOP_ENTROPY_QUANTILE must be in [0, 1] (1 = every token), got {k['TOP_ENTROPY_QUANTILE']}")
    if (k["LOSS_TYPE"] == "vespo" and k["FAST_INFERENCE"] and k["VLLM_IMPORTANCE_SAMPLING_CORRECTION"]
            and not k["VLLM_IMPORTANCE_SAMPLING_MODE"].startswith("token_")):
        raise BadInput(
            f"LOSS_TYPE=vespo weights tokens by the vLLM importance ratio, which TRL and Unsloth allow only per "
            f"token: --vllm_importance_sampling_mode=token_truncate (or token_mask), not "
            f"{k['VLLM_IMPORTANCE_SAMPLING_MODE']}, or --vllm_importance_sampling_correction=false"
        )
    if k["BETA"] < 0:
        raise BadInput(f"BETA must be >= 0 (a KL penalty, 0 = off), got {k['BETA']}")
    if k["EPSILON"] <= 0:
        raise BadInput(f"EPSILON must be > 0, got {k['EPSILON']}")
    if k["EPSILON_HIGH"] < k["EPSILON"]:
        raise BadInput(
            f"EPSILON_HIGH ({k['EPSILON_HIGH']}) must be >= EPSILON ({k['EPSILON']}): clip-higher widens the upper "
            "range"
        )
    if k["EVAL_STEPS"] < 0 or k["EVAL_SIZE"] < 1:
        raise BadInput(
            f"EVAL_STEPS must be >= 0 (0 = off) and EVAL_SIZE >= 1, got {k['EVAL_STEPS']} and {k['EVAL_SIZE']}"
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
    if (
        k["FORMAT_SFT_EPOCHS"] < 1
        or k["FORMAT_SFT_LEARNING_RATE"] < 0
        or min(k["FORMAT_SFT_MAX_EXAMPLES"], k["FORMAT_SFT_MAX_TOKENS"]) < 0
    ):
        raise BadInput(
            "FORMAT_SFT_EPOCHS must be >= 1, FORMAT_SFT_LEARNING_RATE >= 0, "
            "FORMAT_SFT_MAX_EXAMPLES and FORMAT_SFT_MAX_TOKENS >= 0"
        )
    if (
        k["FORMAT_SFT"]
        and is_local_path(k["FORMAT_SFT_DATASET"])
        and not os.path.exists(k["FORMAT_SFT_DATASET"])
    ):
        raise BadInput(f"FORMAT_SFT_DATASET: no such file {k['FORMAT_SFT_DATASET']}")
    if k["VLLM_MODE"] not in ("colocate", "server"):
        raise BadInput(f"VLLM_MODE {k['VLLM_MODE']!r} is not one of colocate, server")
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
    if k["DIFFICULTY_SAMPLES"] < 1:
        raise BadInput(f"DIFFICULTY_SAMPLES must be positive, got {k['DIFFICULTY_SAMPLES']}")
    if k["DIFFICULTY_PROMPTS"] < 0:
        raise BadInput(f"DIFFICULTY_PROMPTS must be >= 0 (0 = every training prompt), got {k['DIFFICULTY_PROMPTS']}")
    if k["COLLAPSE_PATIENCE"] < 0:
        raise BadInput(f"COLLAPSE_PATIENCE must be >= 0 (0 = off), got {k['COLLAPSE_PATIENCE']}")
    if k["SMOKE"] and not os.path.isdir(k["MODEL_NAME"]):
        raise BadInput(
            f"--smoke: no tiny model in {k['MODEL_NAME']}; build one with  python cpu_models/tiny_model.py "
            f"{k['MODEL_NAME']}"
        )
    if k["ANSWER_FORMAT"] not in ANSWER_FORMATS:
        raise BadInput(f"ANSWER_FORMAT {k['ANSWER_FORMAT']!r} is not one of {', '.join(ANSWER_FORMATS)}")
    if not (k["DATASET_PROMPT_COLUMN"] and k["DATASET_ANSWER_COLUMN"]):
        raise BadInput("DATASET_PROMPT_COLUMN and DATASET_ANSWER_COLUMN must name the dataset's columns")
    if is_local_path(k["DATASET_NAME"]) and not os.path.exists(k["DATASET_NAME"]):
        raise BadInput(f"DATASET_NAME: no such file {k['DATASET_NAME']}")


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
