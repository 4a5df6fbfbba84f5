"""Unsloth's generated trainers on a machine without a GPU: the code a GPU user trains through, on a CPU.

On a GPU, `import unsloth` rewrites TRL's trainers from their source (unsloth/models/rl.py,
rl_replacements.py) into `unsloth_compiled_cache/` and puts them in TRL's place, so `trl.GRPOTrainer`
is `UnslothGRPOTrainer` and `trl.SFTTrainer` is `UnslothSFTTrainer`. Without a GPU, Unsloth loads its
CPU fallback (stock transformers + PEFT + TRL) and nothing is rewritten.

`UNSLOTH_ALLOW_CPU=1`, set before `import unsloth`, is Unsloth's own switch for CPU-only CI
(unsloth_zoo/device_type.py): the import takes the GPU path with no device. Under it Unsloth still skips
three steps, `PatchFastRL` (unsloth/models/rl.py), `_patch_trl_trainer` (unsloth/trainer.py) and
`patch_sft_trainer` (unsloth/context_parallel.py); generate_trainers() runs those three with the flag
lifted, exactly as a GPU import runs them. Only the model loader stays stock: Unsloth's
`FastLanguageModel.from_pretrained` queries the CUDA device and its fast forward is Triton, so
`unsloth_zoo.cpu.FastCPUModel` (transformers + PEFT) loads the model, which the generated trainers accept.

    UNSLOTH_ALLOW_CPU=1 python train_grpo.py --smoke     # the smoke run through Unsloth's generated trainers

The patching is process-wide: one process per run. The tests of this path are tests/test_unsloth_trainers.py.
"""

from __future__ import annotations

import os


def requested() -> bool:
    """Whether this process runs Unsloth's GPU import path without a GPU (UNSLOTH_ALLOW_CPU=1, no CUDA)."""
    if os.environ.get("UNSLOTH_ALLOW_CPU", "0") != "1":
        return False
    import torch

    return not torch.cuda.is_available()


def generate_trainers() -> None:
    """Run the three steps a GPU `import unsloth` runs and UNSLOTH_ALLOW_CPU skips, so that TRL's
    GRPOTrainer and SFTTrainer are Unsloth's generated ones. Call it after `import unsloth`, before any
    trainer is built; it is idempotent."""
    import unsloth  # noqa: F401  (under UNSLOTH_ALLOW_CPU: the GPU import path)

    if getattr(unsloth, "_IS_CPU_BACKEND", False):
        raise RuntimeError(
            "UNSLOTH_ALLOW_CPU=1 must be set before `import unsloth`: Unsloth loaded its CPU fallback instead"
        )
    import trl

    if trl.GRPOTrainer.__name__ == "UnslothGRPOTrainer":
        return
    from unsloth.context_parallel import patch_sft_trainer
    from unsloth.models.rl import PatchFastRL
    from unsloth.trainer import _patch_trl_trainer

    os.environ["UNSLOTH_ALLOW_CPU"] = "0"  # the three skip themselves under the flag
    try:
        PatchFastRL()
        _patch_trl_trainer()
        patch_sft_trainer()
    finally:
        os.environ["UNSLOTH_ALLOW_CPU"] = "1"
    if trl.GRPOTrainer.__name__ != "UnslothGRPOTrainer":
        raise RuntimeError(f"Unsloth did not generate its GRPO trainer (trl.GRPOTrainer is {trl.GRPOTrainer})")


def model_loader():
    """The loader for this path: unsloth_zoo's CPU loader (Unsloth's own runs only on a GPU)."""
    from unsloth_zoo.cpu import FastCPUModel

    return FastCPUModel
