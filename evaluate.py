"""Before/after evaluation: the base model vs the base model + a trained LoRA adapter.

    python evaluate.py                                   # held-out slice of the run in ./outputs
    python evaluate.py --problem_set=gsm8k --n_problems=0 --eval_dir=outputs/eval_gsm8k
    python evaluate.py --problem_set=math500 --eval_dir=outputs/eval_math500
    python evaluate.py --smoke                           # CPU: tiny smoke model, bundled held-out problems

Both models see the same problems, prompts (prompts.py) and sampling settings. A sample is correct
when the answer in its last solution block passes `answers.answers_match`, the judge `check_answer`
uses in training, so training and evaluation agree on what counts as correct.

Writes, in EVAL_DIR: a table on stdout, eval_results.json (metrics and settings), eval_report.md
(the table and a few problems side by side) and eval_accuracy.png (accuracy and format rate).
"""

import json
import os
import sys
import time

# -----------------------------------------------------------------------------------------------
RUN_DIR = "outputs"  # a train_grpo.py output folder: run_config.json and lora/
ADAPTER = ""  # LoRA adapter folder; "" = RUN_DIR/lora
BASE_MODEL = ""  # base model; "" = the run's MODEL_NAME
PROBLEM_SET = "heldout"  # heldout (the run's seeded held-out slice) | gsm8k | math500 | bundled | a .jsonl/.parquet path
N_PROBLEMS = 200  # problems to score, from the start of the set (0 = all)
N_SAMPLES = 4  # samples per problem; accuracy is pass@1 averaged over them
TEMPERATURE = 0.7  # sampling temperature (0 = greedy)
TOP_P = 0.95  # nucleus sampling
MAX_NEW_TOKENS = 1024  # completion token limit; a sample that reaches it counts as truncated
BATCH_SIZE = 16  # prompts per generate call (standard generation)
SEED = 3407  # sampling seed, the same for both models
N_SHOW = 3  # problems shown side by side in eval_report.md
EVAL_DIR = ""  # where results go; "" = RUN_DIR
# -----------------------------------------------------------------------------------------------

_SMOKE_PRESET = dict(RUN_DIR=os.path.join("outputs", "smoke"), N_PROBLEMS=50, N_SAMPLES=4, MAX_NEW_TOKENS=48, BATCH_SIZE=50)
_HUB_SETS = {
    "gsm8k": ("openai/gsm8k", "main", "test", "question", "answer"),
    "math500": ("HuggingFaceH4/MATH-500", None, "test", "problem", "answer"),
}


def check_knobs(k: dict) -> None:
    for name in ("N_SAMPLES", "MAX_NEW_TOKENS", "BATCH_SIZE"):
        if k[name] < 1:
            raise ValueError(f"{name} must be positive, got {k[name]}")
    if k["TEMPERATURE"] < 0 or not 0 < k["TOP_P"] <= 1:
        raise ValueError("TEMPERATURE must be >= 0 and TOP_P in (0, 1]")


def resolve_knobs(argv: list[str]) -> dict:
    """Defaults, then the smoke preset (if --smoke), then --name=value; exits naming a bad knob."""
    from overrides import resolve

    knobs = resolve(globals(), argv, _SMOKE_PRESET, "evaluate.py", check_knobs)
    knobs["ADAPTER"] = knobs["ADAPTER"] or os.path.join(knobs["RUN_DIR"], "lora")
    knobs["EVAL_DIR"] = knobs["EVAL_DIR"] or knobs["RUN_DIR"]
    return knobs


def read_run_config(run_dir: str) -> dict:
    path = os.path.join(run_dir, "run_config.json")
    if not os.path.exists(path):
        sys.exit(f"evaluate.py: no {path}; train first (python train_grpo.py [--smoke]) or set --run_dir")
    with open(path) as f:
        return json.load(f)


# --- problems ----------------------------------------------------------------------------------------
def gsm8k_answer(text: str) -> str:
    """GSM8K's gold answer is what follows '####' (thousands commas dropped).

    >>> gsm8k_answer("She pays 3 * 4 = 12.\\n#### 1,200")
    '1200'
    """
    return text.split("####")[-1].strip().replace(",", "")


def load_problem_set(k: dict, run: dict) -> tuple[list[dict], str]:
    """Rows with 'prompt' and 'solution', and a one-line description of where they came from."""
    import prompts

    name = k["PROBLEM_SET"]
    if name == "heldout":
        raw = prompts.load_problems(run["DATASET_NAME"], run["DATASET_CONFIG"], run["DATASET_SPLIT"])
        _train, heldout = prompts.split_holdout(raw, run["HOLDOUT_SIZE"], run["SEED"])
        if len(heldout) == 0:
            sys.exit("evaluate.py: the run held nothing out (HOLDOUT_SIZE=0); pick another --problem_set")
        rows, source = heldout.to_list(), f"held-out slice of {run['DATASET_NAME']} (seed {run['SEED']})"
    elif name in _HUB_SETS:
        from datasets import load_dataset

        hub, config, split, q, a = _HUB_SETS[name]
        data = load_dataset(hub, config, split=split)
        answer = gsm8k_answer if name == "gsm8k" else str
        rows, source = [{"prompt": r[q], "solution": answer(r[a])} for r in data], f"{hub} {split}"
    elif name == "bundled":
        rows, source = prompts.read_jsonl(prompts.BUNDLED_PROBLEMS), "bundled problems (includes rows the smoke run trains on)"
    else:
        rows, source = prompts.load_problems(name).to_list(), name
    if k["N_PROBLEMS"]:
        rows = rows[: k["N_PROBLEMS"]]
    return rows, f"{source}, {len(rows)} problems"


# --- scoring ---------------------------------------------------------------------------------------
def score_samples(samples: list[dict], golds: list[str]) -> list[dict]:
    """Judge each sample (dicts with text, n_tokens, truncated, problem index) with the training judge."""
    from answers import answers_match
    from rewards import is_exact_format, judged_answer

    for s in samples:
        gold = golds[s["problem"]]
        s["extracted"] = judged_answer(s["text"])
        s["correct"] = s["extracted"] is not None and answers_match(s["extracted"], gold)
        s["exact_format"] = is_exact_format(s["text"])
    return samples


def summarize(samples: list[dict]) -> dict:
    n = max(1, len(samples))
    return {
        "accuracy": sum(s["correct"] for s in samples) / n,
        "format_rate": sum(s["exact_format"] for s in samples) / n,
        "mean_completion_tokens": sum(s["n_tokens"] for s in samples) / n,
        "truncation_rate": sum(s["truncated"] for s in samples) / n,
        "n_samples": len(samples),
    }


METRICS = ("accuracy", "format_rate", "mean_completion_tokens", "truncation_rate")


def table(results: dict) -> str:
    base, trained = results["base"], results["trained"]
    lines = ["| metric | base | trained | change |", "| --- | ---: | ---: | ---: |"]
    for m in METRICS:
        fmt = "{:.1f}" if m == "mean_completion_tokens" else "{:.3f}"
        lines.append(f"| {m} | {fmt.format(base[m])} | {fmt.format(trained[m])} | {trained[m] - base[m]:+.3f} |")
    return "\n".join(lines)


# --- generation ------------------------------------------------------------------------------------
def chat_prompts(rows: list[dict], tokenizer) -> list[str]:
    import prompts

    return [
        tokenizer.apply_chat_template(prompts.make_conversation(r)["prompt"], add_generation_prompt=True, tokenize=False)
        for r in rows
    ]


def generate_hf(model, tokenizer, texts: list[str], k: dict, label: str) -> list[dict]:
    """Batched sampling with transformers, N_SAMPLES per prompt, with a progress bar."""
    import torch
    from tqdm.auto import tqdm

    torch.manual_seed(k["SEED"])
    tokenizer.padding_side = "left"
    sampling = dict(do_sample=True, temperature=k["TEMPERATURE"], top_p=k["TOP_P"]) if k["TEMPERATURE"] > 0 else dict(do_sample=False)
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    samples = []
    for start in tqdm(range(0, len(texts), k["BATCH_SIZE"]), desc=f"generating ({label})", unit="batch"):
        batch = texts[start : start + k["BATCH_SIZE"]]
        enc = tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        with torch.no_grad():
            out = model.generate(
                **enc, max_new_tokens=k["MAX_NEW_TOKENS"], num_return_sequences=k["N_SAMPLES"],
                pad_token_id=pad, eos_token_id=eos, **sampling,
            )
        completions = out[:, enc["input_ids"].shape[1] :].tolist()
        for j, ids in enumerate(completions):
            n = next((i for i, t in enumerate(ids) if t in (eos, pad)), len(ids))
            samples.append({
                "problem": start + j // k["N_SAMPLES"],
                "text": tokenizer.decode(ids[:n], skip_special_tokens=True),
                "n_tokens": n,
                "truncated": n == len(ids) and n >= k["MAX_NEW_TOKENS"],
            })
    return samples


def run_hf(k: dict, base_name: str, tokenizer, texts: list[str]) -> dict:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(base_name, dtype=dtype).to(device)
    model = PeftModel.from_pretrained(model, k["ADAPTER"]).eval()
    with model.disable_adapter():
        base = generate_hf(model, tokenizer, texts, k, "base")
    trained = generate_hf(model, tokenizer, texts, k, "trained")
    return {"base": base, "trained": trained}


def run_vllm(k: dict, base_name: str, texts: list[str], lora_rank: int) -> dict:
    """vLLM with the adapter applied as a LoRA request; the base is the same engine without it."""
    from vllm import LLM, SamplingParams
    from vllm.lora.request import LoRARequest

    llm = LLM(model=base_name, enable_lora=True, max_lora_rank=max(lora_rank, 8), seed=k["SEED"])
    params = SamplingParams(n=k["N_SAMPLES"], temperature=k["TEMPERATURE"], top_p=k["TOP_P"],
                            max_tokens=k["MAX_NEW_TOKENS"], seed=k["SEED"])
    results = {}
    for label, lora in (("base", None), ("trained", LoRARequest("trained", 1, os.path.abspath(k["ADAPTER"])))):
        outputs = llm.generate(texts, params, lora_request=lora)
        results[label] = [
            {"problem": i, "text": o.text, "n_tokens": len(o.token_ids), "truncated": o.finish_reason == "length"}
            for i, out in enumerate(outputs) for o in out.outputs
        ]
    return results


def load_tokenizer(k: dict):
    import prompts
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(k["ADAPTER"])
    tokenizer.chat_template = prompts.CHAT_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


# --- reports ---------------------------------------------------------------------------------------
def write_report(path: str, results: dict, rows: list[dict], samples: dict, n_show: int) -> None:
    lines = [f"# Evaluation: base vs trained\n", f"{results['problems']}\n", table(results), "",
             "Settings: " + ", ".join(f"{key}={value}" for key, value in results["settings"].items()), ""]
    for i, row in enumerate(rows[:n_show]):
        base = next(s for s in samples["base"] if s["problem"] == i)
        trained = next(s for s in samples["trained"] if s["problem"] == i)
        lines += [f"## Problem {i + 1}", "", row["prompt"], "", f"Gold answer: `{row['solution']}`", "",
                  "| | base | trained |", "| --- | --- | --- |",
                  f"| extracted answer | `{base['extracted']}` | `{trained['extracted']}` |",
                  f"| correct | {base['correct']} | {trained['correct']} |", "",
                  "Base completion:", "", "```", base["text"], "```", "",
                  "Trained completion:", "", "```", trained["text"], "```", ""]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


def write_chart(path: str, results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["accuracy", "format_rate"]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    width = 0.38
    for offset, label, color in ((-width / 2, "base", "tab:gray"), (width / 2, "trained", "tab:blue")):
        values = [results[label][n] for n in names]
        bars = ax.bar([i + offset for i in range(len(names))], values, width, label=label, color=color)
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.set_xticks(range(len(names)), ["accuracy (pass@1)", "exact format rate"])
    ax.set_ylim(0, 1.1)
    ax.set_title(results["problem_set"], fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str]) -> dict:
    k = resolve_knobs(argv)
    start = time.time()
    run = read_run_config(k["RUN_DIR"])
    if not os.path.isdir(k["ADAPTER"]):
        sys.exit(f"evaluate.py: no adapter folder {k['ADAPTER']}")
    base_name = k["BASE_MODEL"] or run["MODEL_NAME"]
    rows, source = load_problem_set(k, run)
    if not rows:
        sys.exit(f"evaluate.py: no problems in {k['PROBLEM_SET']}")
    print(f"eval: {source}, {k['N_SAMPLES']} samples each, base {base_name}, adapter {k['ADAPTER']}")

    import torch

    use_vllm = False
    if torch.cuda.is_available():
        import importlib.util

        use_vllm = importlib.util.find_spec("vllm") is not None
    if not use_vllm:
        print("generation: vLLM not available here, using batched transformers generation")
    tokenizer = load_tokenizer(k)
    texts = chat_prompts(rows, tokenizer)
    samples = run_vllm(k, base_name, texts, run["LORA_RANK"]) if use_vllm else run_hf(k, base_name, tokenizer, texts)
    golds = [str(r["solution"]) for r in rows]
    settings = {key: k[key] for key in ("N_SAMPLES", "TEMPERATURE", "TOP_P", "MAX_NEW_TOKENS", "SEED")}
    settings["engine"] = "vllm" if use_vllm else "transformers"
    results = {"problem_set": k["PROBLEM_SET"], "problems": source, "base_model": base_name, "adapter": k["ADAPTER"],
               "settings": settings}
    for label in ("base", "trained"):
        results[label] = summarize(score_samples(samples[label], golds))
    results["change"] = {m: results["trained"][m] - results["base"][m] for m in METRICS}

    os.makedirs(k["EVAL_DIR"], exist_ok=True)
    with open(os.path.join(k["EVAL_DIR"], "eval_results.json"), "w") as f:
        json.dump(results, f, indent=2)
    write_report(os.path.join(k["EVAL_DIR"], "eval_report.md"), results, rows, samples, k["N_SHOW"])
    write_chart(os.path.join(k["EVAL_DIR"], "eval_accuracy.png"), results)
    print(table(results))
    print(f"wrote eval_results.json, eval_report.md, eval_accuracy.png in {k['EVAL_DIR']} ({time.time() - start:.0f} s)")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
