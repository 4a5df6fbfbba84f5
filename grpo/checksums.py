"""Checksums that say which weights a run used: the base model's file (a local folder) and the trainable
LoRA weights (equal on every rank of a data-parallel run whose gradients were all-reduced).
"""

from __future__ import annotations

import os


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
