"""Sampling several completions per prompt with transformers `generate`, reading each prompt once.

`generate(num_return_sequences=n)` copies every prompt n times before its first forward pass, so the
prompt is read n times. Here the prompts' KV cache is computed once per batch and copied to the n
samples; `generate` then reads only each prompt's last token, since on a CPU the repeated prefill is a
large share of the sampling time. evaluate.py and the difficulty
filter sample this way; greedy, it gives exactly what plain `generate` gives (tests/test_evaluate.py).

`generate(do_sample=True)` then spends about a quarter of its time on a 49k-token vocabulary choosing
each token: top-p sorts the whole vocabulary, and the draw makes one random number per token.
`TopDraw` draws from the same distribution (temperature, then top-p and min-p as transformers' warpers
keep tokens) on the 64 likeliest tokens, and looks at the whole vocabulary only for a row whose kept set
reaches 64. evaluate.py samples through it, in less time (BENCHMARKS.md). The difficulty filter keeps
`generate`'s own draw:
its draws decide which prompts GRPO trains on, and every recorded run was made with them.
While it samples, a model on the CPU runs grpo/attention.py's attention, which reads shared key/value
heads in place instead of copying them.
"""

from __future__ import annotations


class TopDraw:
    """A logits processor that draws the next token itself, from the distribution that
    `generate(do_sample=True, temperature=t, top_p=p, min_p=m)` samples from, and returns scores that
    are -inf everywhere but at the drawn token, so `generate(do_sample=False)` takes it.

    The draw uses the `k` likeliest tokens, sorted; a row whose kept set reaches the k-th token is drawn
    again over the whole vocabulary. Each row takes one uniform number per step by inverse CDF, so two
    models sampled with the same seed use the same random numbers (evaluate.py's flip counts pair them).

    >>> import torch
    >>> torch.manual_seed(0) and None
    >>> scores = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    >>> TopDraw(temperature=1.0, top_p=0.5)(None, scores)  # 0.64 of the mass is token 0: top-p keeps it alone
    tensor([[0., -inf, -inf, -inf]])
    """

    def __init__(self, temperature: float, top_p: float = 1.0, min_p: float | None = None, k: int = 64):
        if temperature <= 0:
            raise ValueError("TopDraw samples: temperature must be > 0 (greedy is do_sample=False alone)")
        self.temperature, self.top_p, self.min_p, self.k = temperature, top_p, min_p or 0.0, k

    def kept(self, probs):
        """Which of each row's tokens, sorted by falling probability, the warpers keep: top-p keeps a token
        while the mass before it is under top_p; min-p keeps those at least min_p times the top one."""
        import torch

        keep = torch.ones_like(probs, dtype=torch.bool)
        if self.top_p < 1.0:
            keep &= (probs.cumsum(-1) - probs) < self.top_p
        if self.min_p > 0:
            keep &= probs >= self.min_p * probs[:, :1]
        keep[:, 0] = True
        return keep

    @staticmethod
    def draw(probs, ids, keep, u):
        """Inverse CDF over each row's kept tokens (a prefix of the sorted row), at that row's uniform u."""
        import torch

        cdf = (probs * keep).cumsum(-1)
        j = torch.searchsorted(cdf, u * cdf[:, -1:], right=True)
        return ids.gather(1, torch.minimum(j, keep.sum(-1, keepdim=True) - 1))

    def __call__(self, input_ids, scores):
        import torch

        logp = torch.log_softmax(scores.float() / self.temperature, dim=-1)
        u = torch.rand(scores.shape[0], 1, device=scores.device)  # one per row and step, whichever path below
        k = min(self.k, logp.shape[-1])
        top, ids = logp.topk(k, dim=-1)
        probs = top.exp()
        keep = self.kept(probs)
        token = self.draw(probs, ids, keep, u)
        wide = keep[:, -1] if k < logp.shape[-1] else torch.zeros_like(keep[:, 0])
        if wide.any():  # the kept set may go on past the k-th token: draw those rows over every token
            probs_all, ids_all = logp[wide].exp().sort(dim=-1, descending=True)
            token[wide] = self.draw(probs_all, ids_all, self.kept(probs_all), u[wide])
        return torch.full_like(scores, float("-inf")).scatter_(1, token, 0.0)


def top_draw_kwargs(temperature: float, top_p: float = 1.0, min_p: float | None = None) -> dict:
    """`generate` keyword arguments that sample through `TopDraw` (temperature > 0)."""
    from transformers import LogitsProcessorList

    return dict(do_sample=False, logits_processor=LogitsProcessorList([TopDraw(temperature, top_p, min_p)]))


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
        return model.generate(
            input_ids=ids.repeat_interleave(copies, 0),
            attention_mask=mask.repeat_interleave(copies, 0),
            past_key_values=cache,
            **generate_kwargs,
        )


def grpo_stop_tokens(model, tokenizer) -> list[int]:
    """The token ids GRPO's own sampling stops at, as TRL's GRPOTrainer sets them: the tokenizer's eos
    (the token the chat template ends a turn with) first, then the model's generation config's. The
    difficulty filter samples with these (`sample_texts`' default), so its pass rates are GRPO's.
    Reading the generation config alone is not enough: TRL's SFTTrainer adds the tokenizer's eos to it,
    so after a fresh priming a model stopped at the turn's end and after a reused priming it did not
    (SmolLM2's GGUF tokenizer ends turns with id 1, its config stops at 2), and the same seed kept other
    prompts.

    >>> import types
    >>> model = types.SimpleNamespace(generation_config=types.SimpleNamespace(eos_token_id=2))
    >>> grpo_stop_tokens(model, types.SimpleNamespace(eos_token_id=1))
    [1, 2]
    """
    configured = model.generation_config.eos_token_id
    configured = [] if configured is None else [configured] if isinstance(configured, int) else list(configured)
    first = [] if tokenizer.eos_token_id is None else [tokenizer.eos_token_id]
    return [*first, *[t for t in configured if t not in first]]


def sample_texts(
    model, tokenizer, texts: list[str], copies: int, batch_prompts: int, desc: str, seed: int, **generate_kwargs
) -> list[dict]:
    """`copies` completions of each chat-formatted prompt in `texts`, `batch_prompts` prompts per
    `generate` call, with a progress bar. One dict per completion, in prompt order: the prompt's index,
    the decoded text up to where `generate` stopped (its first eos or pad), that length in tokens, and
    whether it ran to max_new_tokens. evaluate.py and the difficulty filter sample through this. Without
    an `eos_token_id`, it stops where GRPO's sampling does (`grpo_stop_tokens`). The model is in eval
    mode and the tokenizer pads left while it runs; both are put back after."""
    import torch
    from tqdm.auto import tqdm

    from grpo.attention import gqa_on_cpu

    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    was_training = model.training
    model.eval()
    torch.manual_seed(seed)
    eos = generate_kwargs.setdefault("eos_token_id", grpo_stop_tokens(model, tokenizer))  # where generate stops
    stops = {*(eos if isinstance(eos, (list, tuple)) else [eos]), tokenizer.pad_token_id} - {None}
    limit = generate_kwargs["max_new_tokens"]
    samples = []
    try:
        with gqa_on_cpu(model):
            for start in tqdm(range(0, len(texts), batch_prompts), desc=desc, unit="batch"):
                enc = tokenizer(
                    texts[start : start + batch_prompts], return_tensors="pt", padding=True, add_special_tokens=False
                ).to(model.device)
                ids = enc["input_ids"]
                out = generate_repeated(
                    model, ids, enc["attention_mask"], copies, pad_token_id=tokenizer.pad_token_id, **generate_kwargs
                )
                for j, new in enumerate(out[:, ids.shape[1] :].tolist()):
                    m = next((i for i, t in enumerate(new) if t in stops), len(new))
                    samples.append(
                        {
                            "problem": start + j // copies,
                            "text": tokenizer.decode(new[:m], skip_special_tokens=True),
                            "n_tokens": m,
                            "truncated": m == len(new) and m >= limit,
                        }
                    )
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return samples
