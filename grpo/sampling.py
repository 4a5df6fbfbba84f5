"""Sampling several completions per prompt with transformers `generate`, reading each prompt once.

`generate(num_return_sequences=n)` copies every prompt n times before its first forward pass, so the
prompt is read n times. Here the prompts' KV cache is computed once per batch and copied to the n
samples; `generate` then reads only each prompt's last token. On a 2-core CPU, with 80-token prompts
and 4 samples, that prefill was about a quarter of the sampling time. evaluate.py and the difficulty
filter sample this way; greedy, it gives exactly what plain `generate` gives (tests/test_evaluate.py).
While it samples, a model on the CPU runs grpo/attention.py's attention, which reads shared key/value
heads in place instead of copying them.
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


def sample_texts(model, tokenizer, texts: list[str], copies: int, batch_prompts: int, desc: str, seed: int,
                 **generate_kwargs) -> list[dict]:
    """`copies` completions of each chat-formatted prompt in `texts`, `batch_prompts` prompts per
    `generate` call, with a progress bar. One dict per completion, in prompt order: the prompt's index,
    the decoded text up to where `generate` stopped (its first eos or pad), that length in tokens, and
    whether it ran to max_new_tokens. evaluate.py and the difficulty filter sample through this. The
    model is in eval mode and the tokenizer pads left while it runs; both are put back after."""
    import torch
    from tqdm.auto import tqdm

    from grpo.attention import gqa_on_cpu

    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    was_training = model.training
    model.eval()
    torch.manual_seed(seed)
    eos = generate_kwargs.get("eos_token_id", model.generation_config.eos_token_id)  # where generate stops
    stops = {*(eos if isinstance(eos, (list, tuple)) else [eos]), tokenizer.pad_token_id} - {None}
    limit = generate_kwargs["max_new_tokens"]
    samples = []
    try:
        with gqa_on_cpu(model):
            for start in tqdm(range(0, len(texts), batch_prompts), desc=desc, unit="batch"):
                enc = tokenizer(texts[start:start + batch_prompts], return_tensors="pt", padding=True,
                                add_special_tokens=False).to(model.device)
                ids = enc["input_ids"]
                out = generate_repeated(model, ids, enc["attention_mask"], copies, pad_token_id=tokenizer.pad_token_id,
                                        **generate_kwargs)
                for j, new in enumerate(out[:, ids.shape[1]:].tolist()):
                    m = next((i for i, t in enumerate(new) if t in stops), len(new))
                    samples.append({"problem": start + j // copies,
                                    "text": tokenizer.decode(new[:m], skip_special_tokens=True),
                                    "n_tokens": m, "truncated": m == len(new) and m >= limit})
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return samples
