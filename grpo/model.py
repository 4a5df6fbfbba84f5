"""Steps 2 and 3, the model: the base model through Unsloth (imported first, so it can patch
transformers, TRL and PEFT), then the LoRA adapter on it. On the way: whether vLLM generates (decided
after Unsloth is imported, from what Unsloth decided), the smoke and SmolLM2 models' checks,
LORA_TARGET_MODULES checked on a weightless skeleton, and the weights' checksum for a local model folder.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import prompts
from grpo import device, unsloth_cpu
from grpo.checks import BadInput, check_target_modules
from grpo.record import timed, weights_sha256


@dataclass
class Loaded:
    """What steps 2 and 3 loaded, handed on whole to the steps after them: the policy (the base model with its
    LoRA adapter), its tokenizer, and the findings so far (run_config.json's FOUND), which each later step adds
    to: FAST_INFERENCE_USED, whether vLLM generates in this run (FAST_INFERENCE asks; this says what ran), and
    MODEL_SHA256, the weights' checksum for a local model folder (None for a Hub id), to start with."""

    model: object
    tokenizer: object
    found: dict


@timed("LOAD_S")
def load(k: dict) -> Loaded:
    """The base model through Unsloth, its LoRA adapter, and its tokenizer with the run's chat template."""
    device.import_unsloth()  # first: it patches trl, transformers and peft
    from unsloth import FastLanguageModel

    loader = FastLanguageModel
    if unsloth_cpu.requested():  # UNSLOTH_ALLOW_CPU=1 on a CPU: Unsloth's generated trainers, a stock loader
        unsloth_cpu.generate_trainers()
        loader = unsloth_cpu.model_loader()
    fast = k["FAST_INFERENCE"]
    if fast:
        why_not = vllm_unusable()
        if why_not is None and fsdp2() and k["VLLM_MODE"] == "colocate":
            why_not = "Unsloth's colocated vLLM does not run under UNSLOTH_FSDP2"
        if why_not:
            print(f"generation: {why_not}; using Hugging Face generation (slower)")
            fast = False
    if k["PRESET"] == "smollm2":  # converts the GGUF once; a folder holding anything else is left as it is
        from cpu_models import smollm2

        smollm2.build_smollm2(k["MODEL_NAME"])
    sizes = check_target_modules(k)
    if sizes is not None:
        expected_memory(k, sizes, fast)
    sha = weights_sha256(k["MODEL_NAME"]) if os.path.isdir(k["MODEL_NAME"]) else None
    if k["SMOKE"]:
        from cpu_models import tiny_model

        shipped = "the shipped build" if sha == tiny_model.SHIPPED_SHA256 else "NOT the shipped build"
        print(f"model: {k['MODEL_NAME']} (model.safetensors sha256 {sha}, {shipped})")
    policy, tokenizer = loader.from_pretrained(**from_pretrained_kwargs(k, fast))
    if fast and k["VLLM_MODE"] == "colocate" and getattr(policy, "vllm_engine", None) is None:
        # Unsloth switched vLLM off itself (a GPU below compute capability 7, DGX Spark): TRL must not
        # then start a second engine of its own
        print("generation: Unsloth loaded the model without vLLM; using Hugging Face generation (slower)")
        fast = False
    policy = loader.get_peft_model(policy, **peft_kwargs(k))
    choose_chat_template(k, tokenizer)
    return Loaded(policy, tokenizer, {"FAST_INFERENCE_USED": fast, "MODEL_SHA256": sha})


def expected_memory(k: dict, sizes: dict, fast: bool) -> None:
    """On a GPU, before the weights load: one line with the card's free memory and what this configuration
    is expected to need (health.memory_estimate). An estimate, never a refusal."""
    import torch

    if not torch.cuda.is_available():
        return
    from grpo.health import memory_estimate

    free, total = (b / 2**30 for b in torch.cuda.mem_get_info())
    vllm = k["GPU_MEMORY_UTILIZATION"] if fast and k["VLLM_MODE"] == "colocate" else 0.0
    need = memory_estimate(sizes, k["LOAD_IN_4BIT"], vllm, total)
    print(f"memory: {torch.cuda.get_device_name(0)} has {free:.1f} of {total:.1f} GiB free; this configuration "
          f"needs about {need['total']:.1f} GiB before activations (an estimate: weights {need['weights']:.1f}"
          + (f", inside vLLM's {need['vllm']:.1f} (GPU_MEMORY_UTILIZATION={vllm})" if vllm else "")
          + f", LoRA with gradients and optimizer {need['lora']:.1f})")


def from_pretrained_kwargs(k: dict, fast: bool) -> dict:
    """Keyword arguments for unsloth.FastLanguageModel.from_pretrained (fast: whether vLLM generates, as
    load decided)."""
    kwargs = dict(
        model_name=k["MODEL_NAME"],
        max_seq_length=k["MAX_SEQ_LENGTH"],
        load_in_4bit=k["LOAD_IN_4BIT"],
        fast_inference=fast and k["VLLM_MODE"] == "colocate",  # server: vLLM runs elsewhere
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


def choose_chat_template(k: dict, tokenizer) -> None:
    """The recipe's base-model template (prompts.py), or with USE_MODEL_CHAT_TEMPLATE the model's own (an
    instruct model's); one line says which. The saved tokenizer keeps it, so evaluate.py and chat.py prompt
    as training did."""
    own = bool(getattr(tokenizer, "chat_template", None))
    if k["USE_MODEL_CHAT_TEMPLATE"]:
        if not own:
            raise BadInput(f"USE_MODEL_CHAT_TEMPLATE: {k['MODEL_NAME']} has no chat template of its own (a base "
                           "model); use the recipe's: --use_model_chat_template=false")
        print("chat template: the model's own (USE_MODEL_CHAT_TEMPLATE); the system prompt still asks for the format")
        return
    tokenizer.chat_template = prompts.CHAT_TEMPLATE
    print("chat template: the recipe's base-model one (prompts.py)"
          + ("; the model's own is replaced (--use_model_chat_template=true keeps it)" if own else ""))


def fsdp2() -> bool:
    return os.environ.get("UNSLOTH_FSDP2", "").lower() in ("1", "true", "yes", "on", "native")


def vllm_unusable() -> str | None:
    """None when vLLM can generate here, else why not, in a few words. Call it after `import unsloth`:
    Unsloth probes vLLM at import and, finding its binary broken (an ABI or CUDA mismatch), disables it
    (unsloth/import_fixes.py, VLLM_BROKEN); asking before that would see an installed vLLM that
    from_pretrained(fast_inference=True) then refuses."""
    import importlib.util

    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU"
    import_fixes = sys.modules.get("unsloth.import_fixes")  # only where Unsloth is loaded (not evaluate.py)
    if getattr(import_fixes, "VLLM_BROKEN", False):
        return f"Unsloth disabled vLLM ({(import_fixes.VLLM_DISABLED_REASON or 'broken install').splitlines()[0]})"
    if importlib.util.find_spec("vllm") is None:
        return "vLLM is not installed (pip install -r requirements.txt installs it)"
    try:
        import vllm  # noqa: F401
    except Exception as e:  # a broken build Unsloth did not recognise: any error, never a crash
        return f"vLLM does not import ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
    if torch.cuda.get_device_capability()[0] < 7:
        return "vLLM needs a GPU of compute capability 7 or newer"
    return None
