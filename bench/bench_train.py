"""Benchmark the GRPO training loop: this project's Unsloth path against plain TRL + transformers + PEFT
(what a user would pick instead), on a Qwen3-4B-shaped model with random weights, so nothing is
downloaded. Random weights never stop early: every completion runs to the length limit, the worst case.

    python bench/bench_train.py                          # on a CUDA GPU: LoRA and QLoRA rows for each path
    python bench/bench_train.py --completion_length=512  # any knob below, as --lowercase_name=value
    python bench/bench_train.py --smoke                  # the same code on CPU at a tiny shape (the tests run it)

Each row runs in its own process, because Unsloth patches transformers, TRL and PEFT at import. A row
loads the model, runs WARMUP_STEPS GRPO steps, then times MEASURE_STEPS more and reports: seconds per
step, generation tokens/s (completion tokens over the time in generate), training tokens/s (prompt +
completion tokens over the rest of the step: scoring, reference and policy passes, backward, optimizer)
and peak GPU memory. On a GPU it also prints generation's share of the memory-bandwidth bound: each
decode step reads every weight once, so tokens/s can be at most batch x bandwidth / weight bytes.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the project root

# -----------------------------------------------------------------------------------------------
# the model: Qwen3-4B's shape (its config.json), random weights
HIDDEN_SIZE = 2560  # hidden size
INTERMEDIATE_SIZE = 9728  # MLP width
NUM_LAYERS = 36  # decoder layers
NUM_HEADS = 32  # attention heads
NUM_KV_HEADS = 8  # key/value heads
HEAD_DIM = 128  # width of one head
VOCAB_SIZE = 151936  # vocabulary (a synthetic tokenizer of this size is built in-process)
# the recipe's training settings
LORA_RANK = 32  # adapter rank, on all seven projections
LORA_ALPHA = 64  # adapter scale numerator
NUM_GENERATIONS = 4  # completions per prompt (the recipe's 4)
PROMPTS_PER_STEP = 1  # prompts per step (the recipe's batch of 4 completions)
PROMPT_LENGTH = 256  # prompt tokens
COMPLETION_LENGTH = 256  # completion tokens (random weights always use all of them)
OPTIM = "adamw_8bit"  # optimizer (bitsandbytes 8-bit AdamW; on CPU plain AdamW)
WARMUP_STEPS = 2  # untimed steps first (compilation, allocator warm-up)
MEASURE_STEPS = 5  # timed steps
ROWS = ("unsloth-lora", "trl-lora", "unsloth-qlora", "trl-qlora")  # path-precision rows; qlora = 4-bit base
BANDWIDTH_GBS = 0.0  # GPU memory bandwidth in GB/s for the decode bound (0 = from the card's name)
SEED = 3407  # seeds the weights and sampling
# -----------------------------------------------------------------------------------------------

# --smoke: the same code on CPU in about a minute: a tiny shape, short sequences, fewer steps. The
# QLoRA rows need CUDA (bitsandbytes 4-bit) and are reported as skipped.
_SMOKE_PRESET = dict(HIDDEN_SIZE=64, INTERMEDIATE_SIZE=128, NUM_LAYERS=2, NUM_HEADS=4, NUM_KV_HEADS=2, HEAD_DIM=16,
                     VOCAB_SIZE=512, LORA_RANK=8, LORA_ALPHA=16, PROMPT_LENGTH=32, COMPLETION_LENGTH=16,
                     OPTIM="adamw_torch", WARMUP_STEPS=1, MEASURE_STEPS=2)

# memory bandwidth of common cards, GB/s (vendor data sheets); the first name found in the card's wins
_BANDWIDTH_GBS = {"H200": 4800, "H100 NVL": 3900, "H100 PCIe": 2000, "H100": 3350, "GH200": 4000, "B200": 8000,
                  "A100-SXM4-80GB": 2039, "A100 80GB PCIe": 1935, "A100": 1555, "L40S": 864, "L4": 300,
                  "A10G": 600, "A10": 600, "RTX 4090": 1008, "RTX 3090": 936, "T4": 320, "V100": 900}
_ROW_ENV = "BENCH_TRAIN_ROW"  # set for a row's own process: which row, and where to write its result


def check_knobs(k: dict) -> None:
    unknown = [r for r in k["ROWS"] if r not in ("unsloth-lora", "trl-lora", "unsloth-qlora", "trl-qlora")]
    if unknown:
        raise ValueError(f"ROWS names {unknown}; known: unsloth-lora, trl-lora, unsloth-qlora, trl-qlora")
    for name in (
        "NUM_GENERATIONS",
        "PROMPTS_PER_STEP",
        "PROMPT_LENGTH",
        "COMPLETION_LENGTH",
        "MEASURE_STEPS",
        "LORA_RANK",
    ):
        if k[name] < 1:
            raise ValueError(f"{name} must be positive, got {k[name]}")
    if k["NUM_GENERATIONS"] < 2:
        raise ValueError("NUM_GENERATIONS must be at least 2: GRPO compares completions within a group")
    if k["NUM_HEADS"] % k["NUM_KV_HEADS"]:
        raise ValueError(f"NUM_HEADS={k['NUM_HEADS']} must be a multiple of NUM_KV_HEADS={k['NUM_KV_HEADS']}")


def resolve_knobs(argv: list[str]) -> dict:
    from grpo.overrides import resolve

    return resolve(globals(), argv, "bench_train.py", check_knobs, {"smoke": _SMOKE_PRESET})


# --- the model and data, built in-process ----------------------------------------------------------
def build_tokenizer(vocab_size: int):
    """A word-level tokenizer with one token per id ("t0", "t1", ...), so that any id the random model
    samples decodes to text, and any prompt of N words is N tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"t{i}": i for i in range(vocab_size - 2)}
    vocab["<eos>"], vocab["<pad>"] = vocab_size - 2, vocab_size - 1
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>")
    fast.padding_side = "left"
    return fast


def build_model_folder(k: dict, folder: str) -> str:
    """Save the random-weight model of the configured shape (bf16) and its tokenizer into folder, once."""
    marker = os.path.join(folder, "bench_shape.json")
    shape = {
        n: k[n]
        for n in (
            "HIDDEN_SIZE",
            "INTERMEDIATE_SIZE",
            "NUM_LAYERS",
            "NUM_HEADS",
            "NUM_KV_HEADS",
            "HEAD_DIM",
            "VOCAB_SIZE",
            "SEED",
        )
    }
    if os.path.exists(marker) and json.load(open(marker)) == shape:
        return folder
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(k["SEED"])
    tokenizer = build_tokenizer(k["VOCAB_SIZE"])
    config = Qwen3Config(
        vocab_size=k["VOCAB_SIZE"],
        hidden_size=k["HIDDEN_SIZE"],
        intermediate_size=k["INTERMEDIATE_SIZE"],
        num_hidden_layers=k["NUM_LAYERS"],
        num_attention_heads=k["NUM_HEADS"],
        num_key_value_heads=k["NUM_KV_HEADS"],
        head_dim=k["HEAD_DIM"],
        tie_word_embeddings=True,
        max_position_embeddings=4 * (k["PROMPT_LENGTH"] + k["COMPLETION_LENGTH"]),
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        dtype="bfloat16",
    )
    device = "cuda" if torch.cuda.is_available() else "cpu"
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # built in bf16 directly: no float32 copy at twice the memory
    try:
        with torch.device(device):
            model = Qwen3ForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    model.generation_config.eos_token_id = None  # never stop early: every completion is full length
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    with open(marker, "w") as f:
        json.dump(shape, f)
    return folder


def prompts_dataset(k: dict, n: int):
    import random

    from datasets import Dataset

    rng = random.Random(k["SEED"])
    words = [" ".join(f"t{rng.randrange(k['VOCAB_SIZE'] - 2)}" for _ in range(k["PROMPT_LENGTH"])) for _ in range(n)]
    return Dataset.from_dict({"prompt": words, "answer": ["0"] * n})


class _TorchLogProbs:
    """A plain-torch stand-in for TRL 1.15's chunked log-prob kernel, which is written in Triton and so
    cannot run without a GPU. Used only by the plain-TRL rows of `--smoke` on a CPU: same five outputs,
    with the logits materialised. A CPU row checks the code and the table, not speed."""

    @staticmethod
    def apply(
        hidden, weight, bias, targets, temperature, chunk_size, softcap=None, logit_scale=1.0, outputs=("entropy",)
    ):
        import torch

        z = hidden @ weight.t() + (bias if bias is not None else 0)
        z = z * logit_scale
        if softcap:
            z = softcap * torch.tanh(z / softcap)
        z = z.float() / temperature
        logp = torch.log_softmax(z, dim=-1)
        token = logp.gather(-1, targets[:, None]).squeeze(-1)
        entropy = -(logp.exp() * logp).sum(-1) if "entropy" in outputs else None
        log_sum_sq = torch.logsumexp(2 * logp, -1).detach() if "log_sum_sq_probs" in outputs else None
        mean_logits = z.mean(-1).detach() if "mean_logits" in outputs else None
        is_top1 = (z.argmax(-1) == targets) if "is_top1" in outputs else None
        return token, entropy, log_sum_sq, mean_logits, is_top1


# --- one row, in its own process ---------------------------------------------------------------------
def run_row(k: dict, row: str, folder: str) -> dict:
    path, precision = row.split("-")
    os.environ.setdefault("UNSLOTH_CPU_BF16", "0")  # as train_grpo.py: float32 on any CPU
    if path == "unsloth":
        import unsloth  # noqa: F401  (first, so that it patches the libraries below)
    import torch
    import trl.extras.profiling as profiling
    from trl import GRPOConfig, GRPOTrainer

    import rewards

    timings = {}  # TRL times its generate call; keep what it would send to a tracker
    log_metrics = profiling.ProfilingContext._log_metrics

    def record(self, duration):
        timings.setdefault(self.name.rsplit(".", 1)[-1] if "generate" in self.name else self.name, []).append(duration)
        return log_metrics(self, duration)

    profiling.ProfilingContext._log_metrics = record
    cuda = torch.cuda.is_available()
    if path == "trl" and not cuda:
        import trl.trainer.utils

        trl.trainer.utils._ChunkedLogProbFunction = _TorchLogProbs
    four_bit = precision == "qlora"
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    max_seq = k["PROMPT_LENGTH"] + k["COMPLETION_LENGTH"]
    peft_config = None
    if path == "unsloth":
        from unsloth import FastLanguageModel

        model, tokenizer = FastLanguageModel.from_pretrained(
            model_name=folder,
            max_seq_length=max_seq,
            load_in_4bit=four_bit,
            fast_inference=False,
            max_lora_rank=k["LORA_RANK"],
        )
        model = FastLanguageModel.get_peft_model(
            model,
            r=k["LORA_RANK"],
            lora_alpha=k["LORA_ALPHA"],
            target_modules=targets,
            use_gradient_checkpointing="unsloth",
            random_state=k["SEED"],
        )
    else:
        from peft import LoraConfig
        from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

        quant = (
            BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_compute_dtype=torch.bfloat16,
                bnb_4bit_use_double_quant=True,
            )
            if four_bit
            else None
        )
        model = AutoModelForCausalLM.from_pretrained(
            folder,
            dtype=torch.bfloat16 if cuda else torch.float32,
            quantization_config=quant,
            device_map="cuda" if cuda else None,
        )
        tokenizer = AutoTokenizer.from_pretrained(folder)
        peft_config = LoraConfig(
            r=k["LORA_RANK"], lora_alpha=k["LORA_ALPHA"], target_modules=targets, task_type="CAUSAL_LM"
        )
    steps = k["WARMUP_STEPS"] + k["MEASURE_STEPS"]
    batch = k["PROMPTS_PER_STEP"] * k["NUM_GENERATIONS"]
    config = GRPOConfig(
        output_dir=tempfile.mkdtemp(prefix="bench_train_"),
        max_steps=steps,
        learning_rate=5e-6,
        per_device_train_batch_size=batch,
        num_generations=k["NUM_GENERATIONS"],
        max_completion_length=k["COMPLETION_LENGTH"],
        temperature=1.0,
        optim=k["OPTIM"] if cuda else "adamw_torch",
        bf16=cuda and torch.cuda.is_bf16_supported(),
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        gradient_checkpointing=True,
        seed=k["SEED"],
        use_vllm=False,
    )
    step_times = []

    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == k["WARMUP_STEPS"] and cuda:
                torch.cuda.reset_peak_memory_stats()
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            step_times.append(time.perf_counter() - self.t0)

    trainer = GRPOTrainer(
        model=model,
        processing_class=tokenizer,
        args=config,
        peft_config=peft_config,
        reward_funcs=[rewards.match_format_approximately, rewards.check_numbers],
        train_dataset=prompts_dataset(k, steps * k["PROMPTS_PER_STEP"] * 4),
        callbacks=[Clock()],
    )
    trainer.train()
    generate = timings.get("generate") or timings.get("generate_batch") or []
    measured = slice(k["WARMUP_STEPS"], steps)
    step_s = sum(step_times[measured]) / k["MEASURE_STEPS"]
    gen_s = sum(generate[measured]) / k["MEASURE_STEPS"] if len(generate) >= steps else float("nan")
    lengths = [r["completions/mean_length"] for r in trainer.state.log_history if "completions/mean_length" in r][
        measured
    ]
    completion_tokens = batch * sum(lengths) / len(lengths)
    weights = sum(
        p.numel() * p.element_size() for p in model.parameters()
    )  # bytes read per decode step (4-bit: packed)
    result = {
        "row": row,
        "step_s": step_s,
        "generate_s": gen_s,
        "completion_tokens_per_step": completion_tokens,
        "generation_tok_s": completion_tokens / gen_s if gen_s == gen_s else float("nan"),
        "train_tok_s": batch * (k["PROMPT_LENGTH"] + completion_tokens) / (step_s - gen_s)
        if gen_s == gen_s
        else float("nan"),
        "peak_gpu_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "weight_bytes": weights,
        "batch": batch,
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
    }
    return result


def bandwidth_gbs(k: dict, device: str) -> tuple[float, str]:
    if k["BANDWIDTH_GBS"] > 0:
        return k["BANDWIDTH_GBS"], "--bandwidth_gbs"
    for name, gbs in _BANDWIDTH_GBS.items():
        if name.lower() in device.lower():
            return gbs, f"{name} data sheet"
    return 0.0, "unknown card: pass --bandwidth_gbs"


HEADER = (
    "| row | s/step | generation tok/s | training tok/s | peak GPU GiB | decode bound share |\n"
    "| --- | ---: | ---: | ---: | ---: | ---: |"
)


def row_line(k: dict, r: dict) -> str:
    """One row of the table, printed as soon as the row finishes (a run stopped later keeps it)."""
    if "skipped" in r:
        return f"| {r['row']} | skipped: {r['skipped']} | | | | |"
    share = "-"
    if r["device"] != "cpu":
        gbs, _ = bandwidth_gbs(k, r["device"])
        if gbs:
            bound = r["batch"] * gbs * 1e9 / r["weight_bytes"]  # tokens/s if decode only streamed the weights
            share = f"{r['generation_tok_s'] / bound:.0%}"
    peak = f"{r['peak_gpu_gib']:.1f}" if r["peak_gpu_gib"] is not None else "-"
    return (
        f"| {r['row']} | {r['step_s']:.3f} | {r['generation_tok_s']:.0f} | {r['train_tok_s']:.0f} | {peak} | {share} |"
    )


def summary(k: dict, results: list[dict]) -> str:
    """The lines under the table: each precision's ratio of plain TRL to Unsloth, and what the figures are."""
    lines = []
    done = {r["row"]: r for r in results if "skipped" not in r}
    for precision in ("lora", "qlora"):
        a, b = done.get(f"unsloth-{precision}"), done.get(f"trl-{precision}")
        if a and b:
            lines.append(
                f"{precision}: plain TRL's s/step / Unsloth's = {b['step_s'] / a['step_s']:.2f}x"
                + (
                    f"; peak memory Unsloth / TRL = {a['peak_gpu_gib'] / b['peak_gpu_gib']:.2f}"
                    if a["peak_gpu_gib"]
                    else ""
                )
            )
    gpu = next((r["device"] for r in done.values() if r["device"] != "cpu"), None)
    if gpu:
        gbs, source = bandwidth_gbs(k, gpu)
        if gbs:
            lines.append(f"Decode bound: batch x bandwidth / weight bytes, bandwidth {gbs:g} GB/s ({source}).")
    elif done:
        lines.append(
            "CPU: a check of the code and of this table, not a speed figure; the plain-TRL rows run TRL's "
            "Triton log-prob kernel as a torch stand-in."
        )
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    k = resolve_knobs(argv)
    row_env = os.environ.get(_ROW_ENV)
    if row_env:  # a row's own process
        row, folder, out = row_env.split("|")
        with open(out, "w") as f:
            json.dump(run_row(k, row, folder), f)
        return
    import torch

    cuda = torch.cuda.is_available()
    if not k["SMOKE"] and not cuda:
        sys.exit(
            "bench_train.py: no CUDA GPU found. On a CPU, run the same code at a tiny shape:  python "
            "bench/bench_train.py --smoke"
        )
    folder = os.path.join("outputs", "bench-model-smoke" if k["SMOKE"] else "bench-model")
    print(
        f"model: Qwen3 shape {k['NUM_LAYERS']} layers x {k['HIDDEN_SIZE']} wide, vocab {k['VOCAB_SIZE']}, random "
        f"weights -> {folder}"
    )
    build_model_folder(k, folder)
    results = []
    print(HEADER, flush=True)
    for row in k["ROWS"]:
        if row.endswith("qlora") and not cuda:
            results.append({"row": row, "skipped": "4-bit needs CUDA"})
            print(row_line(k, results[-1]), flush=True)
            continue
        out = tempfile.mktemp(suffix=".json")
        print(
            f"row {row}: {k['WARMUP_STEPS']} warm-up + {k['MEASURE_STEPS']} timed steps, "
            f"{k['PROMPTS_PER_STEP']} x {k['NUM_GENERATIONS']} completions of {k['COMPLETION_LENGTH']} tokens",
            flush=True,
        )
        started = time.time()
        proc = subprocess.run(
            [sys.executable, os.path.abspath(__file__), *argv],
            env={**os.environ, _ROW_ENV: f"{row}|{folder}|{out}"},
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0 or not os.path.exists(out):
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["no output"]
            results.append({"row": row, "skipped": f"failed ({tail[0][:120]})"})
            print(proc.stdout[-2000:] + proc.stderr[-4000:], file=sys.stderr)
        else:
            results.append(json.load(open(out)))
            print(f"row {row}: done in {time.time() - started:.0f} s", flush=True)
        print(row_line(k, results[-1]), flush=True)  # each row as it finishes: a stopped run keeps the rows done
    print()
    print(summary(k, results), flush=True)
    if any("skipped" in r and r["skipped"].startswith("failed") for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
