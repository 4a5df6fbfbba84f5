"""Steps 2 and 3, the model: the base model through Unsloth (imported first, so it can patch
transformers, TRL and PEFT), then the LoRA adapter on it. On the way: vLLM only where it can run,
the smoke and SmolLM2 models' checks, LORA_TARGET_MODULES checked on a weightless skeleton, and the
weights' checksum (run_config.json's MODEL_SHA256) for a local model folder.
"""

from __future__ import annotations

import os

import prompts
from cpu_models import tiny_model
from grpo import run_files
from grpo.checks import check_target_modules


@run_files.timed("LOAD_S")
def load(k: dict):
    """The model with its LoRA adapter, and the tokenizer with the project's chat template. Sets
    k["FAST_INFERENCE"] off where vLLM cannot run, and k["MODEL_SHA256"] for a local model folder."""
    if k["FAST_INFERENCE"] and not vllm_available():
        print("generation: vLLM not available here, falling back to standard Hugging Face generation")
        k["FAST_INFERENCE"] = False
    fsdp2 = os.environ.get("UNSLOTH_FSDP2", "").lower() in ("1", "true", "yes", "on", "native")
    if fsdp2 and k["FAST_INFERENCE"] and k["VLLM_MODE"] == "colocate":
        print("generation: Unsloth's colocated vLLM does not run under UNSLOTH_FSDP2; using Hugging Face generation")
        k["FAST_INFERENCE"] = False
    import unsloth  # noqa: F401  (before trl, transformers and peft)
    from unsloth import FastLanguageModel

    if k["PRESET"] == "smollm2":  # converts the GGUF once; a folder holding anything else is left as it is
        from cpu_models import smollm2

        smollm2.build_smollm2(k["MODEL_NAME"])
    check_target_modules(k)
    k["MODEL_SHA256"] = tiny_model.weights_sha256(k["MODEL_NAME"]) if os.path.isdir(k["MODEL_NAME"]) else None
    if k["SMOKE"]:
        shipped = "the shipped build" if k["MODEL_SHA256"] == tiny_model.SHIPPED_SHA256 else "NOT the shipped build"
        print(f"model: {k['MODEL_NAME']} (model.safetensors sha256 {k['MODEL_SHA256']}, {shipped})")
    policy, tokenizer = FastLanguageModel.from_pretrained(**from_pretrained_kwargs(k))
    policy = FastLanguageModel.get_peft_model(policy, **peft_kwargs(k))
    tokenizer.chat_template = prompts.CHAT_TEMPLATE
    return policy, tokenizer


def from_pretrained_kwargs(k: dict) -> dict:
    """Keyword arguments for unsloth.FastLanguageModel.from_pretrained."""
    kwargs = dict(
        model_name=k["MODEL_NAME"],
        max_seq_length=k["MAX_SEQ_LENGTH"],
        load_in_4bit=k["LOAD_IN_4BIT"],
        fast_inference=k["FAST_INFERENCE"] and k["VLLM_MODE"] == "colocate",  # server: vLLM runs elsewhere
        max_lora_rank=k["LORA_RANK"],
    )
    if kwargs["fast_inference"]:
        kwargs["gpu_memory_utilization"] = k["GPU_MEMORY_UTILIZATION"]
    return kwargs


def peft_kwargs(k: dict) -> dict:
    """Keyword arguments for unsloth.FastLanguageModel.get_peft_model (after the model)."""
    return dict(
        r=k["LORA_RANK"],
        lora_alpha=k["LORA_ALPHA"],
        target_modules=list(k["LORA_TARGET_MODULES"]),
        use_gradient_checkpointing="unsloth",
        random_state=k["SEED"],
    )


def vllm_available() -> bool:
    import importlib.util

    import torch

    return torch.cuda.is_available() and importlib.util.find_spec("vllm") is not None
