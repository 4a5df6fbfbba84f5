"""The difficulty filter (DIFFICULTY_FILTER), run after priming and before GRPO: the primed model
samples DIFFICULTY_SAMPLES completions per training prompt with GRPO's own sampling settings, each is
judged right or wrong (rewards.answer_is_right), and only the prompts whose pass rate lies inside
DIFFICULTY_BAND are kept. A prompt the model always or never solves gives every completion of its group
the same outcome, so it teaches nothing but shaping noise. DIFFICULTY_PROMPTS caps the sampling at a
seeded draw of the training prompts, for a run too short to see them all.

The pass rates are cached in DIFFICULTY_CACHE, in a file keyed by the model (and its weights'
checksum), the primed adapter's checksum, the prompts and answers, and the sampling settings, so a
second run with the same key skips the sampling. The kept count and the histogram of pass rates are
printed and saved to OUTPUT_DIR/difficulty.json. Generation uses Unsloth's vLLM engine when the
model has one (FAST_INFERENCE on a GPU) and batched transformers `generate` otherwise, each with a
progress bar.
"""

from __future__ import annotations

import hashlib
import json
import os

from grpo.cache import cache_file, same_key, set_aside
from grpo.checks import BadInput
from grpo.device import is_main_process
from grpo.record import adapter_checksum, timed

BATCH_PROMPTS = 16  # prompts per generate call (x DIFFICULTY_SAMPLES sequences)


def select(rates: list[float], band) -> list[int]:
    """Indices of the prompts whose pass rate lies in [low, high].

    >>> select([0.0, 0.25, 0.5, 1.0], (0.1, 0.9))
    [1, 2]
    """
    low, high = band
    return [i for i, rate in enumerate(rates) if low <= rate <= high]


def histogram(rates: list[float], samples: int) -> dict[str, int]:
    """How many prompts were solved 0, 1, ..., `samples` times out of `samples`.

    >>> histogram([0.0, 0.0, 0.5, 1.0], 2)
    {'0/2': 2, '1/2': 1, '2/2': 1}
    """
    counts = {f"{j}/{samples}": 0 for j in range(samples + 1)}
    for rate in rates:
        counts[f"{round(rate * samples)}/{samples}"] += 1
    return counts


def cache_key(k: dict, model, tokenizer, dataset, max_completion: int, model_sha256: str | None) -> dict:
    from grpo.sampling import grpo_stop_tokens

    rows = hashlib.sha256(json.dumps([dataset["prompt"], dataset["answer"]], default=str).encode()).hexdigest()
    return {"MODEL_NAME": k["MODEL_NAME"], "MODEL_SHA256": model_sha256, "ADAPTER": adapter_checksum(model),
            "ROWS": rows, "SAMPLES": k["DIFFICULTY_SAMPLES"], "TEMPERATURE": k["TEMPERATURE"], "MIN_P": k["MIN_P"],
            "TOP_P": k["TOP_P"], "MAX_COMPLETION": max_completion, "SEED": k["SEED"],
            "STOP_TOKENS": grpo_stop_tokens(model, tokenizer)}


def pass_rates(k: dict, model, tokenizer, dataset, judge, max_completion: int) -> tuple[list[float], float]:
    """Each prompt's share of right answers among DIFFICULTY_SAMPLES sampled completions, and the mean
    length of those completions in tokens. vLLM samples when the model carries Unsloth's engine
    (FAST_INFERENCE on a GPU); batched transformers `generate` otherwise."""
    samples = k["DIFFICULTY_SAMPLES"]
    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in dataset["prompt"]]
    sample = sample_vllm if getattr(model, "vllm_engine", None) is not None else sample_hf
    completions, tokens = sample(k, model, tokenizer, texts, max_completion)
    golds = [a for a in dataset["answer"] for _ in range(samples)]
    right = judge(completions, answer=golds)
    rates = [sum(right[i:i + samples]) / samples for i in range(0, len(right), samples)]
    return rates, tokens / max(1, len(texts) * samples)


def sampling_params(k: dict, max_completion: int):
    """vLLM's SamplingParams for the filter: GRPO's sampling settings, DIFFICULTY_SAMPLES per prompt."""
    from vllm import SamplingParams

    return SamplingParams(n=k["DIFFICULTY_SAMPLES"], temperature=k["TEMPERATURE"], top_p=k["TOP_P"],
                          min_p=k["MIN_P"], max_tokens=max_completion, seed=k["SEED"])


def sample_vllm(k: dict, model, tokenizer, texts: list[str], max_completion: int) -> tuple[list[str], int]:
    """DIFFICULTY_SAMPLES completions per prompt (prompt by prompt) from Unsloth's colocated vLLM
    engine, with the live (primed) adapter passed as the LoRA request, as Unsloth's GRPO passes it.
    No stop ids are passed, as TRL's colocated sampling passes none (trl/generation/vllm_generation.py):
    both stop where vLLM does by default, at the tokenizer's eos and the generation config's."""
    params = sampling_params(k, max_completion)
    lora = model.load_lora("difficulty_filter_lora", load_tensors=True)
    outputs = model.fast_generate(texts, sampling_params=params, lora_request=lora, use_tqdm=True)
    done = [c for out in outputs for c in out.outputs]
    return [c.text for c in done], sum(len(c.token_ids) for c in done)


def sample_hf(k: dict, model, tokenizer, texts: list[str], max_completion: int) -> tuple[list[str], int]:
    """The same with transformers `generate`, BATCH_PROMPTS prompts per call, with a progress bar."""
    from grpo.sampling import sample_texts

    done = sample_texts(model, tokenizer, texts, k["DIFFICULTY_SAMPLES"], BATCH_PROMPTS, "difficulty: sampling",
                        k["SEED"], do_sample=True, temperature=k["TEMPERATURE"], top_p=k["TOP_P"],
                        min_p=k["MIN_P"] or None, max_new_tokens=max_completion)  # stops where GRPO stops: the default
    return [s["text"] for s in done], sum(s["n_tokens"] for s in done)


@timed("DIFFICULTY_S")
def filter_prompts(k: dict, loaded, dataset, judge, max_completion: int):
    """(The training prompts whose pass rate under the loaded (primed) policy lies in DIFFICULTY_BAND, all of them
    when DIFFICULTY_FILTER is off; findings: DIFFICULTY_KEPT, how many were kept, None when off)."""
    if not k["DIFFICULTY_FILTER"]:
        return dataset, {"DIFFICULTY_KEPT": None}
    if 0 < k["DIFFICULTY_PROMPTS"] < len(dataset):  # a seeded draw, so a second run draws the same prompts
        print(f"difficulty: a seeded draw of {k['DIFFICULTY_PROMPTS']} of the {len(dataset)} training prompts")
        dataset = dataset.shuffle(seed=k["SEED"]).select(range(k["DIFFICULTY_PROMPTS"]))
    model, tokenizer = loaded.model, loaded.tokenizer
    key = cache_key(k, model, tokenizer, dataset, max_completion, loaded.found["MODEL_SHA256"])
    path = cache_file(k["DIFFICULTY_CACHE"], key, ".json")
    rates = None
    if os.path.exists(path):
        try:
            with open(path) as f:
                cached = json.load(f)
            if same_key(cached.get("key"), key):
                rates, mean_tokens = cached["rates"], cached["mean_completion_tokens"]
                if len(rates) != len(dataset) or not all(0 <= r <= 1 for r in rates):
                    raise ValueError(f"{len(rates)} pass rates for {len(dataset)} prompts, or one outside [0, 1]")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            rates = None
            if is_main_process():
                set_aside(path, f"{type(e).__name__}: {e}")
    if rates is not None:
        print(f"difficulty: reused the pass rates in {path} (same model, adapter, prompts and sampling)")
    else:
        print(
            f"difficulty: {len(dataset)} prompts x {k['DIFFICULTY_SAMPLES']} completions of up to {max_completion} "
            "tokens"
        )
        rates, mean_tokens = pass_rates(k, model, tokenizer, dataset, judge, max_completion)
        if is_main_process():
            os.makedirs(k["DIFFICULTY_CACHE"], exist_ok=True)
            with open(path, "w") as f:
                json.dump({"key": key, "rates": rates, "mean_completion_tokens": mean_tokens}, f)
    keep = select(rates, k["DIFFICULTY_BAND"])
    counts = histogram(rates, k["DIFFICULTY_SAMPLES"])
    print(
        f"difficulty: pass rates {', '.join(f'{b}: {n}' for b, n in counts.items())}; kept {len(keep)} of "
        f"{len(rates)} prompts in [{k['DIFFICULTY_BAND'][0]:g}, {k['DIFFICULTY_BAND'][1]:g}]"
    )
    if is_main_process():
        os.makedirs(k["OUTPUT_DIR"], exist_ok=True)
        with open(os.path.join(k["OUTPUT_DIR"], "difficulty.json"), "w") as f:
            json.dump({"band": list(k["DIFFICULTY_BAND"]), "kept": len(keep), "of": len(rates), "histogram": counts,
                       "samples": k["DIFFICULTY_SAMPLES"], "mean_completion_tokens": mean_tokens, "cache": path},
                      f, indent=1)
    if not keep:
        raise BadInput(
            f"DIFFICULTY_FILTER kept none of the {len(rates)} prompts (pass rates {counts}); "
            f"widen DIFFICULTY_BAND or prime more"
        )
    return dataset.select(keep), {"DIFFICULTY_KEPT": len(keep)}
