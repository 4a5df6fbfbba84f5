"""Sampling several completions per prompt with transformers `generate`, reading each prompt once.

`generate(num_return_sequences=n)` copies every prompt n times before its first forward pass, so the
prompt is read n times. Here the prompts' KV cache is computed once per batch and copied to the n
samples; `generate` then reads only each prompt's last token. On a 2-core CPU, with 80-token prompts
and 4 samples, that prefill was about a quarter of the sampling time. evaluate.py and the difficulty
filter sample this way; greedy, it gives exactly what plain `generate` gives (tests/test_evaluate.py).
"""

from __future__ import annotations


def prefill(model, ids, mask, copies: int):
    """The KV cache of left-padded prompts, positions counted from each prompt's first real token (as
    `generate` counts them), each row repeated `copies` times."""
    from transformers import DynamicCache

    positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache()
    model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True,
          logits_to_keep=1)
    cache.batch_repeat_interleave(copies)
    return cache


def generate_repeated(model, ids, mask, copies: int, **generate_kwargs):
    """`copies` sampled continuations of each left-padded prompt, in prompt order (a prompt's copies
    are neighbours), as one tensor of prompt + completion ids, like `generate(num_return_sequences=copies)`."""
    import torch

    with torch.no_grad():
        cache = prefill(model, ids[:, :-1], mask[:, :-1], copies)  # all but the last token: generate reads that one
        return model.generate(input_ids=ids.repeat_interleave(copies, 0), attention_mask=mask.repeat_interleave(copies, 0),
                              past_key_values=cache, **generate_kwargs)
