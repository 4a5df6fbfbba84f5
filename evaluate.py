"""Before/after evaluation: the base model vs the base model + a trained LoRA adapter.

    python evaluate.py                                   # held-out slice of the run in ./outputs
    python evaluate.py --problem_set=gsm8k --n_problems=0 --eval_dir=outputs/eval_gsm8k
    python evaluate.py --problem_set=math500 --eval_dir=outputs/eval_math500
    python evaluate.py --smoke                           # CPU: tiny smoke model, bundled held-out problems

Both models see the same problems, prompts (prompts.py) and sampling settings. A sample is correct
when the answer in its last solution block passes `answers.answers_match`, the judge `check_answer`
uses in training, so training and evaluation agree on what counts as correct.

Writes, in EVAL_DIR: a table on stdout, eval_results.json (metrics and settings), eval_samples.jsonl
(every sample with its extracted answer and verdicts), eval_report.md (the table and a few problems
side by side) and eval_accuracy.png (accuracy and format rate).
"""

import json
import os
import re
import sys
import time

from grpo import data
from grpo.stats import bootstrap_ci, paired_bootstrap_ci, pass_at_ks, per_problem, problem_means

# -----------------------------------------------------------------------------------------------
RUN_DIR = "outputs"  # a train_grpo.py output folder: run_config.json and lora/
ADAPTER = ""  # LoRA adapter folder; "" = RUN_DIR/lora
BASE_MODEL = ""  # base model; "" = the run's MODEL_NAME
PROBLEM_SET = "heldout"  # heldout (the run's held-out rows) | gsm8k | math500 | aime2024 | aime2025 | bundled | a file
N_PROBLEMS = 200  # problems to score, from the start of the set (0 = all)
N_SAMPLES = 4  # samples per problem; accuracy is pass@1 averaged over them
TEMPERATURE = 0.7  # sampling temperature (0 = greedy)
TOP_P = 0.95  # nucleus sampling
MAX_NEW_TOKENS = 0  # completion token limit (0 = the run's max_completion_length); reaching it counts as truncated
BATCH_SIZE = 16  # most prompts per generate call (standard generation); KV_CACHE_GIB may lower it
KV_CACHE_GIB = 6.0  # bound on one generate call's KV cache: Qwen3-4B's 8 GB of bf16 weights + 6 fit a 24 GB card
SEED = 3407  # sampling seed, the same for both models
N_SHOW = 3  # problems shown side by side in eval_report.md
BOOTSTRAP_RESAMPLES = 2000  # resamples of the problems for each 95% interval
EVAL_DIR = ""  # where results go; "" = RUN_DIR
# -----------------------------------------------------------------------------------------------

_SMOKE_PRESET = dict(
    RUN_DIR=os.path.join("outputs", "smoke"), N_PROBLEMS=50, N_SAMPLES=4, MAX_NEW_TOKENS=64, BATCH_SIZE=50
)
_HUB_SETS = {  # name: (Hub id, config, split, problem column, answer column), as on each dataset card
    "gsm8k": ("openai/gsm8k", "main", "test", "question", "answer"),
    "math500": ("HuggingFaceH4/MATH-500", None, "test", "problem", "answer"),
    "aime2024": ("HuggingFaceH4/aime_2024", None, "train", "problem", "answer"),  # 30 problems, AIME 2024 I and II
    "aime2025": ("MathArena/aime_2025", None, "train", "problem", "answer"),  # 30 problems; the answer is an integer
}
# 30 problems give a noisy pass@1: more samples per problem, unless --n_samples says otherwise
_SET_DEFAULTS = {"aime2024": {"N_SAMPLES": 16}, "aime2025": {"N_SAMPLES": 16}}


def check_knobs(k: dict) -> None:
    for name in ("N_SAMPLES", "BATCH_SIZE", "BOOTSTRAP_RESAMPLES"):
        if k[name] < 1:
            raise ValueError(f"{name} must be positive, got {k[name]}")
    if k["KV_CACHE_GIB"] <= 0:
        raise ValueError(f"KV_CACHE_GIB must be > 0, got {k['KV_CACHE_GIB']}")
    if k["MAX_NEW_TOKENS"] < 0:
        raise ValueError(f"MAX_NEW_TOKENS must be >= 0 (0 = the run's completion length), got {k['MAX_NEW_TOKENS']}")
    if k["TEMPERATURE"] < 0 or not 0 < k["TOP_P"] <= 1:
        raise ValueError("TEMPERATURE must be >= 0 and TOP_P in (0, 1]")


def resolve_knobs(argv: list[str]) -> dict:
    """Defaults, then the smoke preset (if --smoke), then --name=value; exits naming a bad knob."""
    from grpo.overrides import resolve

    knobs = resolve(globals(), argv, "evaluate.py", check_knobs, {"smoke": _SMOKE_PRESET})
    for name, value in _SET_DEFAULTS.get(knobs["PROBLEM_SET"], {}).items():
        if not any(a.startswith(f"--{name.lower()}=") for a in argv):
            knobs[name] = value
    knobs["ADAPTER"] = knobs["ADAPTER"] or os.path.join(knobs["RUN_DIR"], "lora")
    knobs["EVAL_DIR"] = knobs["EVAL_DIR"] or knobs["RUN_DIR"]
    return knobs


def read_run_config(run_dir: str) -> dict:
    path = os.path.join(run_dir, "run_config.json")
    if not os.path.exists(path):
        sys.exit(f"evaluate.py: no {path}; train first (python train_grpo.py [--smoke]) or set --run_dir")
    with open(path) as f:
        return json.load(f)


def primed_adapter(k: dict, run: dict) -> str | None:
    """The run's primed adapter, when the adapter evaluated grew from it: the run's lora/ or one of
    its checkpoint-N/ folders."""
    from grpo.run_dir import checkpoints_in

    primed = run.get("FOUND", {}).get("PRIMED_ADAPTER")
    if not primed or not os.path.isdir(primed):
        return None
    adapter = os.path.realpath(k["ADAPTER"])
    own = [os.path.join(k["RUN_DIR"], "lora"), *checkpoints_in(k["RUN_DIR"])]
    return primed if any(os.path.realpath(folder) == adapter for folder in own) else None


# --- problems ----------------------------------------------------------------------------------------
def load_problem_set(k: dict, run: dict) -> tuple[list[dict], str]:
    """Rows with 'prompt' and 'solution', and a one-line description of where they came from."""

    name = k["PROBLEM_SET"]
    if name == "heldout":
        raw = data.read_problems_of(run)  # with the run's columns and answer rule, as it trained
        _train, heldout = data.split_holdout(raw, run["HOLDOUT_SIZE"], run["SEED"])
        if len(heldout) == 0:
            sys.exit("evaluate.py: the run held nothing out (HOLDOUT_SIZE=0); pick another --problem_set")
        rows, source = heldout.to_list(), f"held-out slice of {run['DATASET_NAME']} (seed {run['SEED']})"
    elif name in _HUB_SETS:
        hub, config, split, q, a = _HUB_SETS[name]
        rule = "gsm8k" if name == "gsm8k" else "plain"  # GSM8K's answers end in '#### N'
        rows, source = data.read_problems(hub, config, split, (q, a), rule).to_list(), f"{hub} {split}"
    elif name == "bundled":
        rows, source = (
            data.read_jsonl(data.BUNDLED_PROBLEMS),
            "bundled problems (includes rows the smoke run trains on)",
        )
    else:
        rows, source = data.read_problems(name).to_list(), name
    if k["N_PROBLEMS"]:
        rows = rows[: k["N_PROBLEMS"]]
    return rows, f"{source}, {len(rows)} problems"


# --- scoring ---------------------------------------------------------------------------------------
_BOXED = "\\boxed{"
_ANSWER_IS = re.compile(r"answer is[:\s]*\$?\s*([^\n$]{1,200}?)\s*\$?\s*(?:\.\s|\.$|\n|$)", re.IGNORECASE)
_NUMBER = re.compile(r"[+\-\u2212]?\d[\d,]*(?:\.\d+)?")
_TAIL_CHARS = 4000  # lenient extraction looks at the end of a completion only (bounded work)


def last_boxed(text: str) -> str | None:
    r"""The content of the last `\boxed{...}`, braces balanced, or None.

    >>> last_boxed(r"so \boxed{\frac{1}{2}} or \boxed{3}")
    '3'
    """
    start = text.rfind(_BOXED)
    if start < 0:
        return None
    depth, i = 1, start + len(_BOXED)
    for j in range(i, min(len(text), i + 1000)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j].strip() or None
    return None


def lenient_answer(text: str) -> str | None:
    r"""The final answer wherever the model put it: the last complete solution block, else the last
    `\boxed{}`, else "answer is ...", else the last number. None when there is none.

    | completion                                              | answer       | found by        |
    |---------------------------------------------------------|--------------|-----------------|
    | `...<SOLUTION>12</SOLUTION>`                            | `12`         | solution block  |
    | `... so \boxed{12}. Check: 3 * 4 = 12`                  | `12`         | last boxed      |
    | `The answer is 45.`                                     | `45`         | "answer is"     |
    | `27 + 18 = 45`                                          | `45`         | last number     |
    | `no idea`                                               | None         | nothing         |

    >>> lenient_answer("27 + 18 = 45, so the answer is $45$.")
    '45'
    """
    from rewards import judged_answer

    try:
        block = judged_answer(text)
        if block is not None:
            return block
        tail = text[-_TAIL_CHARS:]
        boxed = last_boxed(tail)
        if boxed is not None:
            return boxed
        found = _ANSWER_IS.findall(tail)
        if found:
            return found[-1].strip().rstrip(".")
        numbers = _NUMBER.findall(tail)
        return numbers[-1].rstrip(",") if numbers else None
    except Exception:
        return None


def score_samples(samples: list[dict], golds: list[str]) -> list[dict]:
    """Judge each sample (dicts with text, n_tokens, truncated, problem index) with the training judge:
    strictly (the last solution block, as check_answer does) and leniently (wherever the answer is)."""
    from grpo.answers import answers_match
    from rewards import is_exact_format, judged_answer

    for s in samples:
        gold = golds[s["problem"]]
        s["extracted"] = judged_answer(s["text"])
        s["correct"] = s["extracted"] is not None and answers_match(s["extracted"], gold)
        s["lenient_extracted"] = lenient_answer(s["text"])
        s["lenient_correct"] = s["correct"] or (
            s["lenient_extracted"] is not None and answers_match(s["lenient_extracted"], gold)
        )
        s["exact_format"] = is_exact_format(s["text"])
    return samples


def summarize(samples: list[dict], resamples: int = 0, seed: int = 0) -> dict:
    n = max(1, len(samples))
    out = {
        "accuracy": sum(s["correct"] for s in samples) / n,
        "accuracy_lenient": sum(s["lenient_correct"] for s in samples) / n,
        "format_rate": sum(s["exact_format"] for s in samples) / n,
        "mean_completion_tokens": sum(s["n_tokens"] for s in samples) / n,
        "truncation_rate": sum(s["truncated"] for s in samples) / n,
        "n_samples": len(samples),
    }
    if resamples:
        for key, name in (
            ("correct", "accuracy"),
            ("lenient_correct", "accuracy_lenient"),
            ("exact_format", "format_rate"),
        ):
            out[f"{name}_ci95"] = bootstrap_ci(problem_means(samples, key), resamples, seed)
        out["pass_at_k"] = pass_at_ks(per_problem(samples))
    return out


def compare(base_samples: list[dict], trained_samples: list[dict], resamples: int, seed: int) -> dict:
    """Trained minus base for each metric, and paired 95% intervals for the accuracies and the format rate.
    Also the samples that flipped, pairing the j-th sample of each problem: both models sample with the
    same seed in the same order, so where the models agree their draws agree (until a batch stops at a
    different length, which shifts the later batches' draws: same_text is a lower bound on the samples
    training left alone). The accuracy change is (wrong_to_right - right_to_wrong) over the samples: a
    change near 0 can hide many flips both ways (a model that moved without learning) or few (one that
    barely moved)."""
    base, trained = summarize(base_samples), summarize(trained_samples)
    change = {m: trained[m] - base[m] for m in _METRICS}
    for key, name in (
        ("correct", "accuracy"),
        ("lenient_correct", "accuracy_lenient"),
        ("exact_format", "format_rate"),
    ):
        change[f"{name}_ci95"] = paired_bootstrap_ci(
            problem_means(base_samples, key), problem_means(trained_samples, key), resamples, seed
        )
    pairs = [(b, t) for b, t in zip(base_samples, trained_samples) if b["problem"] == t["problem"]]
    change["flips"] = {
        "right_to_wrong": sum(b["correct"] and not t["correct"] for b, t in pairs),
        "wrong_to_right": sum(t["correct"] and not b["correct"] for b, t in pairs),
        "same_text": sum(b.get("text") == t.get("text") for b, t in pairs),
        "paired": len(pairs),
    }
    return change


def flips_line(results: dict) -> str:
    """One sentence per change: how many paired samples turned right or wrong, and how many kept their text."""
    lines = []
    for key, start in (("change", "base"), ("change_from_primed", "primed")):
        f = results.get(key, {}).get("flips")
        if f:
            lines.append(
                f"{start} -> trained, sample for sample (same sampling seed): {f['wrong_to_right']} wrong turned "
                "right, "
                f"{f['right_to_wrong']} right turned wrong, {f['same_text']} of {f['paired']} the same text."
            )
    return "\n".join(lines)


_METRICS = ("accuracy", "accuracy_lenient", "format_rate", "mean_completion_tokens", "truncation_rate")


def _cell(stats: dict, m: str) -> str:
    if m == "mean_completion_tokens":
        return f"{stats[m]:.1f}"
    ci = stats.get(f"{m}_ci95")
    return f"{stats[m]:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def table(results: dict) -> str:
    """The before/after table: 95% intervals in brackets (bootstrap over problems; paired for the
    changes). With a primed adapter: a primed column, and the change from primed to trained (GRPO's part)."""
    labels = [m for m in ("base", "primed", "trained") if m in results]
    changes = [("change", "base", "change")]  # (results key, the model it starts from, column title)
    if "change_from_primed" in results:
        changes.append(("change_from_primed", "primed", "GRPO change (trained - primed)"))
    lines = [
        "| metric | " + " | ".join(labels) + " | " + " | ".join(title for *_, title in changes) + " |",
        "| --- |" + " ---: |" * (len(labels) + len(changes)),
    ]
    trained = results["trained"]
    for m in _METRICS:
        cells = [_cell(results[label], m) for label in labels]
        for key, start, _ in changes:
            ci = results.get(key, {}).get(f"{m}_ci95")
            cells.append(f"{trained[m] - results[start][m]:+.3f}" + (f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else ""))
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    for k in results["base"].get("pass_at_k") or {}:
        cells = [f"{results[label]['pass_at_k'][k]:.3f}" for label in labels]
        cells += [f"{trained['pass_at_k'][k] - results[start]['pass_at_k'][k]:+.3f}" for _, start, _ in changes]
        lines.append(f"| pass@{k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --- generation ------------------------------------------------------------------------------------
def chat_prompts(rows: list[dict], tokenizer) -> list[str]:
    import prompts

    return [
        tokenizer.apply_chat_template(
            prompts.make_conversation(r)["prompt"], add_generation_prompt=True, tokenize=False
        )
        for r in rows
    ]


def kv_bytes_per_token(config, dtype_bytes: int) -> int:
    """Bytes of KV cache one token takes: a key and a value per layer and key/value head.

    >>> from types import SimpleNamespace as C  # Qwen3-4B: 36 layers, 8 KV heads of 128, bf16
    >>> kv_bytes_per_token(C(num_hidden_layers=36, num_key_value_heads=8, head_dim=128), 2)
    147456
    """
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return 2 * config.num_hidden_layers * heads * head_dim * dtype_bytes


def prompts_per_call(k: dict, config, dtype_bytes: int, longest_prompt: int) -> int:
    """Prompts per generate call: BATCH_SIZE, lowered until the call's KV cache (N_SAMPLES sequences a
    prompt, each up to the longest prompt + MAX_NEW_TOKENS) fits in KV_CACHE_GIB; at least 1.

    >>> from types import SimpleNamespace as C
    >>> qwen3_4b = C(num_hidden_layers=36, num_key_value_heads=8, head_dim=128)
    >>> knobs = {"BATCH_SIZE": 16, "N_SAMPLES": 4, "MAX_NEW_TOKENS": 1848, "KV_CACHE_GIB": 6.0}
    >>> prompts_per_call(knobs, qwen3_4b, 2, 200)
    5
    """
    per_prompt = k["N_SAMPLES"] * (longest_prompt + k["MAX_NEW_TOKENS"]) * kv_bytes_per_token(config, dtype_bytes)
    return max(1, min(k["BATCH_SIZE"], int(k["KV_CACHE_GIB"] * 2**30 // per_prompt)))


def expected_time(model, tokenizer, texts: list[str], k: dict, batch: int, n_models: int) -> str:
    """A measured estimate before sampling: a short greedy probe on the first batch gives the seconds of one
    decode step; every call then runs at most MAX_NEW_TOKENS steps. An upper bound: samples that all stop
    early end their call sooner."""
    import torch

    probe_tokens = 8
    side, tokenizer.padding_side = tokenizer.padding_side, "left"  # as sample_texts pads
    try:
        enc = tokenizer(texts[:batch], return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        ids = enc["input_ids"].repeat_interleave(k["N_SAMPLES"], dim=0)
        mask = enc["attention_mask"].repeat_interleave(k["N_SAMPLES"], dim=0)
        with torch.no_grad():
            started = time.time()
            model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=probe_tokens,
                           min_new_tokens=probe_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
            step = (time.time() - started) / probe_tokens
    finally:
        tokenizer.padding_side = side
    calls = -(-len(texts) // batch)
    total = n_models * calls * k["MAX_NEW_TOKENS"] * step
    return (
        f"expected: up to {total / 60:.1f} min for {n_models} models "
        f"({calls} call{'s' * (calls != 1)} of {batch} prompts x "
        f"{k['N_SAMPLES']} samples each, up to {k['MAX_NEW_TOKENS']} tokens at {step * 1000:.0f} ms a decode "
        "step, measured); calls whose samples all stop early take less"
    )


def generate_hf(model, tokenizer, texts: list[str], k: dict, label: str, batch: int | None = None) -> list[dict]:
    """Batched sampling with transformers, N_SAMPLES per prompt (each prompt read once, each token drawn
    among the likeliest: grpo/sampling.py), `batch` prompts per call (BATCH_SIZE when not given), with a
    progress bar."""
    from grpo.sampling import sample_texts, top_draw_kwargs

    sampling = top_draw_kwargs(k["TEMPERATURE"], k["TOP_P"]) if k["TEMPERATURE"] > 0 else dict(do_sample=False)
    return sample_texts(model, tokenizer, texts, k["N_SAMPLES"], batch or k["BATCH_SIZE"], f"generating ({label})",
                        k["SEED"], max_new_tokens=k["MAX_NEW_TOKENS"], eos_token_id=tokenizer.eos_token_id, **sampling)


def load_for_sampling(base_name: str, adapter: str | None, device: str, dtype):
    """The base model, with a LoRA adapter when one is named. In float32 the adapter is merged into the
    weights: the same model up to rounding, and sampling skips the adapter's two extra matmuls in every
    layer (about 10% of a CPU's sampling time). In bfloat16 a merge would round part of the adapter away,
    so there it stays apart."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_name, dtype=dtype).to(device)
    if adapter:
        model = PeftModel.from_pretrained(model, adapter)
        if dtype == torch.float32:
            model = model.merge_and_unload()
    return model.eval()


def run_hf(k: dict, base_name: str, tokenizer, texts: list[str], primed: str | None = None) -> dict:
    """Samples from the base, the primed adapter (if any) and the trained adapter, one model at a time."""
    import gc

    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    models = [("base", None)]
    if primed:
        models.append(("primed", primed))
    models.append(("trained", k["ADAPTER"]))
    results = {}
    for label, adapter in models:
        model = load_for_sampling(base_name, adapter, device, dtype)
        if label == "base":  # the batch that bounds the KV cache, and the time it will take, before any sampling
            longest = max(map(len, tokenizer(texts, add_special_tokens=False)["input_ids"]))  # one batched call
            batch = prompts_per_call(k, model.config, torch.finfo(dtype).bits // 8, longest)
            if batch < k["BATCH_SIZE"]:
                print(
                    f"eval: {batch} prompts per call, not {k['BATCH_SIZE']}: their KV cache must fit "
                    f"KV_CACHE_GIB={k['KV_CACHE_GIB']:g}"
                )
            print(expected_time(model, tokenizer, texts, k, batch, len(models)), flush=True)
        results[label] = generate_hf(model, tokenizer, texts, k, label, batch)
        del model
        gc.collect()  # the next model loads into the memory this one held
    return results


def vllm_requests(k: dict, primed: str | None = None) -> tuple:
    """vLLM's SamplingParams for the knobs, and (label, LoRARequest) per model; the base has none."""
    from vllm import SamplingParams
    from vllm.lora.request import LoRARequest

    params = SamplingParams(
        n=k["N_SAMPLES"],
        temperature=k["TEMPERATURE"],
        top_p=k["TOP_P"],
        max_tokens=k["MAX_NEW_TOKENS"],
        seed=k["SEED"],
    )
    models = [("base", None)]
    if primed:
        models.append(("primed", LoRARequest("primed", 2, os.path.abspath(primed))))
    models.append(("trained", LoRARequest("trained", 1, os.path.abspath(k["ADAPTER"]))))
    return params, models


def run_vllm(k: dict, base_name: str, texts: list[str], lora_rank: int, primed: str | None = None) -> dict:
    """vLLM with each adapter applied as a LoRA request; the base is the same engine without one."""
    from vllm import LLM

    llm = LLM(model=base_name, enable_lora=True, max_lora_rank=max(lora_rank, 8), seed=k["SEED"])
    params, models = vllm_requests(k, primed)
    results = {}
    for label, lora in models:
        outputs = llm.generate(texts, params, lora_request=lora)
        results[label] = [
            {"problem": i, "text": o.text, "n_tokens": len(o.token_ids), "truncated": o.finish_reason == "length"}
            for i, out in enumerate(outputs)
            for o in out.outputs
        ]
    return results


_HOW_TO_READ = (
    "How to read these numbers: accuracy is pass@1, the share of samples whose answer is right. "
    "Strict counts only the answer in the last solution block, as the check_answer reward does; "
    "lenient takes the final answer wherever the model wrote it (solution block, then the last "
    "\\boxed{}, then 'answer is ...', then the last number). Strict minus lenient is what the format "
    "costs. Brackets are 95% intervals from a bootstrap over problems; the change's interval is "
    "paired (both models answer the same problems), so a change whose interval holds 0 may be noise. "
    "pass@k is the chance that at least one of k samples is right (unbiased estimator from all samples)."
)


# --- reports ---------------------------------------------------------------------------------------
def write_report(path: str, results: dict, rows: list[dict], samples: dict, n_show: int) -> None:
    lines = [
        "# Evaluation: base vs trained\n",
        f"{results['problems']}\n",
        table(results),
        "",
        flips_line(results),
        "",
        "Settings: " + ", ".join(f"{key}={value}" for key, value in results["settings"].items()),
        "",
        _HOW_TO_READ,
        "",
    ]
    for i, row in enumerate(rows[:n_show]):
        base = next(s for s in samples["base"] if s["problem"] == i)
        trained = next(s for s in samples["trained"] if s["problem"] == i)
        lines += [
            f"## Problem {i + 1}",
            "",
            row["prompt"],
            "",
            f"Gold answer: `{row['solution']}`",
            "",
            "| | base | trained |",
            "| --- | --- | --- |",
            f"| answer in the solution block (strict) | `{base['extracted']}` | `{trained['extracted']}` |",
            f"| correct (strict) | {base['correct']} | {trained['correct']} |",
            f"| answer found anywhere (lenient) | `{base['lenient_extracted']}` | `{trained['lenient_extracted']}` |",
            f"| correct (lenient) | {base['lenient_correct']} | {trained['lenient_correct']} |",
            "",
            "Base completion:",
            "",
            "```",
            base["text"],
            "```",
            "",
            "Trained completion:",
            "",
            "```",
            trained["text"],
            "```",
            "",
        ]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


def write_chart(path: str, results: dict) -> None:
    """Bars for strict and lenient accuracy (with their 95% intervals) and the exact-format rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["accuracy", "accuracy_lenient", "format_rate"]
    fig, ax = plt.subplots(figsize=(6, 3.4))
    labels = [m for m in ("base", "primed", "trained") if m in results]
    width = 0.8 / len(labels)
    colors = {"base": "tab:gray", "primed": "tab:green", "trained": "tab:blue"}
    for i, label in enumerate(labels):
        offset, color = (i - (len(labels) - 1) / 2) * width, colors[label]
        stats = results[label]
        values = [stats[n] for n in names]
        errors = [
            [max(0.0, v - stats.get(f"{n}_ci95", [v, v])[0]) for n, v in zip(names, values)],
            [max(0.0, stats.get(f"{n}_ci95", [v, v])[1] - v) for n, v in zip(names, values)],
        ]
        bars = ax.bar(
            [i + offset for i in range(len(names))], values, width, yerr=errors, capsize=3, label=label, color=color
        )
        ax.bar_label(bars, fmt="%.2f", fontsize=8, padding=2)
    ax.set_xticks(range(len(names)), ["accuracy (strict)", "accuracy (lenient)", "exact format rate"])
    ax.set_ylim(0, 1.15)
    ax.set_title(f"{results['problem_set']}: pass@1 with 95% bootstrap intervals", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str]) -> dict:
    k = resolve_knobs(argv)
    start = time.time()
    from grpo.device import gpu_unseen, quiet_cpu_lines

    quiet_cpu_lines()
    unseen = gpu_unseen("evaluate.py")  # a GPU torch cannot use (an old driver): say so, not a silent CPU eval
    if unseen:
        sys.exit(f"evaluate.py: error: {unseen}")
    run = read_run_config(k["RUN_DIR"])
    if not os.path.isdir(k["ADAPTER"]):
        sys.exit(f"evaluate.py: no adapter folder {k['ADAPTER']}")
    base_name = k["BASE_MODEL"] or run["MODEL_NAME"]
    if not k["MAX_NEW_TOKENS"]:  # sample as long as the run trained to (1024 when the run does not say)
        k["MAX_NEW_TOKENS"] = (run.get("FOUND", {}).get("TRAINER_ARGS") or {}).get("max_completion_length") or 1024
    rows, source = load_problem_set(k, run)
    if not rows:
        sys.exit(f"evaluate.py: no problems in {k['PROBLEM_SET']}")
    print(
        f"eval: {source}, {k['N_SAMPLES']} samples each of up to {k['MAX_NEW_TOKENS']} tokens, base {base_name}, "
        f"adapter {k['ADAPTER']}"
    )

    from grpo.model import vllm_unusable

    why_not = vllm_unusable()  # a broken vLLM install falls back too, never crashes
    use_vllm = why_not is None
    if not use_vllm:
        print(f"generation: {why_not}; using batched transformers generation")

    tokenizer = data.load_tokenizer(k["ADAPTER"], run.get("USE_MODEL_CHAT_TEMPLATE", False))
    texts = chat_prompts(rows, tokenizer)
    primed = primed_adapter(k, run)  # format priming kept apart: base, primed, trained
    if primed:
        print(f"eval: also the primed adapter {primed}, to separate what GRPO added from what priming taught")
    samples = (
        run_vllm(k, base_name, texts, run["LORA_RANK"], primed)
        if use_vllm
        else run_hf(k, base_name, tokenizer, texts, primed)
    )
    golds = [str(r["solution"]) for r in rows]
    settings = {key: k[key] for key in ("N_SAMPLES", "TEMPERATURE", "TOP_P", "MAX_NEW_TOKENS", "SEED")}
    settings["engine"] = "vllm" if use_vllm else "transformers"
    if not use_vllm and k["TEMPERATURE"] > 0:  # how each token was drawn: results are comparable only within one
        settings["sampler"] = "TopDraw (grpo/sampling.py)"
    results = {
        "problem_set": k["PROBLEM_SET"],
        "problems": source,
        "base_model": base_name,
        "adapter": k["ADAPTER"],
        "settings": settings,
    }
    resamples, seed = k["BOOTSTRAP_RESAMPLES"], k["SEED"]
    settings["interval"] = f"95% percentile bootstrap over problems, {resamples} resamples (paired for the change)"
    for label in samples:
        results[label] = summarize(score_samples(samples[label], golds), resamples, seed)
    results["change"] = compare(samples["base"], samples["trained"], resamples, seed)
    if "primed" in samples:  # what GRPO added on top of the priming
        results["change_from_primed"] = compare(samples["primed"], samples["trained"], resamples, seed)

    os.makedirs(k["EVAL_DIR"], exist_ok=True)
    with open(os.path.join(k["EVAL_DIR"], "eval_results.json"), "w") as f:
        json.dump(results, f, indent=2)
    with open(os.path.join(k["EVAL_DIR"], "eval_samples.jsonl"), "w") as f:  # every sample, to see what changed
        for label, scored in samples.items():
            for s in scored:
                f.write(json.dumps({"model": label, "gold": golds[s["problem"]], **s}) + "\n")
    write_report(os.path.join(k["EVAL_DIR"], "eval_report.md"), results, rows, samples, k["N_SHOW"])
    write_chart(os.path.join(k["EVAL_DIR"], "eval_accuracy.png"), results)
    print(table(results))
    print(flips_line(results))
    print(
        f"wrote eval_results.json, eval_samples.jsonl, eval_report.md, eval_accuracy.png in {k['EVAL_DIR']} "
        f"({time.time() - start:.0f} s)"
    )
    return results


if __name__ == "__main__":
    from grpo.callbacks import sigterm_as_ctrl_c

    sigterm_as_ctrl_c()
    try:
        main(sys.argv[1:])
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM while sampling: the results are written only at the end
        again = " ".join(["python evaluate.py", *sys.argv[1:]])
        sys.exit(f"\nevaluate.py: stopped by {str(e) or 'SIGINT'}; nothing was written (the results are written "
                 f"at the end). Start again with:  {again}")
