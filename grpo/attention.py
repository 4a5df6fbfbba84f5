"""Grouped-query attention on a CPU without copying the key/value heads.

Qwen3 and SmolLM2 share each key/value head among several query heads. With a padding mask (every
batched `generate` of left-padded prompts, and every GRPO forward pass on padded completions),
transformers' `sdpa` attention copies each key/value head once per query head that reads it, in
every layer at every step, because on CUDA PyTorch's SDPA with a mask would otherwise fall back to
its slow kernel. On a CPU, SDPA's own `enable_gqa=True` reads the shared heads in place and gives the
same numbers, in less time: the same tokens come out either way (BENCHMARKS.md has the timing).

grpo/sampling.py samples within `gqa_on_cpu(model)`, which switches a model on the CPU from `sdpa` to
this attention and back; anything else (a GPU, no mask, no shared heads, another attention) runs
transformers' `sdpa` unchanged. GRPO's own steps keep `sdpa`: with this attention they were no faster.
"""

from __future__ import annotations

import contextlib

NAME = "sdpa_gqa_cpu"


def sdpa_gqa_cpu(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, is_causal=None,
                 **kwargs):
    """transformers' attention-function signature: query [b, heads, q, d], key and value
    [b, kv_heads, k, d] -> (output [b, q, heads, d], None)."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if (query.device.type != "cpu" or attention_mask is None or getattr(module, "num_key_value_groups", 1) == 1
            or kwargs.get("position_bias") is not None or kwargs.get("output_attentions")):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    out = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask,
                                                           dropout_p=dropout, scale=scaling, enable_gqa=True)
    return out.transpose(1, 2).contiguous(), None


def register() -> None:
    """Makes NAME a transformers attention implementation, with `sdpa`'s masks (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, sdpa_gqa_cpu)
    AttentionMaskInterface.register(NAME, sdpa_mask)


@contextlib.contextmanager
def gqa_on_cpu(model):
    """Within the block, a model (or the model inside a PEFT wrapper) that runs `sdpa` on the CPU runs
    NAME instead; its attention is put back after. A model elsewhere, or with another attention, is
    left as it is."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    before = getattr(inner.config, "_attn_implementation", None)
    if inner.device.type != "cpu" or before != "sdpa":
        yield
        return
    register()
    inner.set_attn_implementation(NAME)
    try:
        yield
    finally:
        inner.set_attn_implementation(before)
