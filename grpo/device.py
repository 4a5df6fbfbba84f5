"""The processes and the device: how many processes run (torchrun, accelerate launch), which one is rank 0,
gathering a value from every rank, and the training precision. Loads torch only inside the functions.
"""

from __future__ import annotations

import os


def world_size() -> int:
    """Processes in this run: torchrun and accelerate launch set WORLD_SIZE; a plain python run is 1."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Rank 0 (or a single process): the one that prints the summaries and writes the run's files."""
    return int(os.environ.get("RANK", "0")) == 0


def gather(value) -> list:
    """`value` from every process, in rank order (a one-item list when not distributed)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return [value]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def bf16() -> bool:
    """Whether this run trains in bfloat16: on a GPU that supports it (a CPU run trains float32)."""
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
