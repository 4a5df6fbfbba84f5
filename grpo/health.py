"""Judgments about a run's health, on plain values (logged metric dicts, checksums, numbers), so each can be
tested without a trainer; grpo/callbacks.py is the TRL plumbing that calls them.

A GRPO run can fail quietly for hours. The signs show in the first few steps:
  - truncation: most completions cut at MAX_COMPLETION_LENGTH (`completions/clipped_ratio` high), so no
    completion reaches its answer and the rewards cannot rise;
  - a still adapter: the LoRA weights unchanged after the first steps (a learning rate of 0, or no
    gradient reaching the adapter), so the policy never moves;
  - collapse: every group scoring alike (`frac_reward_zero_std` 1.0), so every advantage is zero; or
    nearly every completion truncated, step after step (CollapseWatch, COLLAPSE_PATIENCE);
  - a non-finite loss, gradient norm or adapter weight (the non-finite guard stops the run).
Each warning is one line starting `WARNING:` that names the knob to change. After the first VERDICT_STEPS
steps one `first N steps:` line sums the run up: healthy, with its figures, or the warnings that fired.
"""

from __future__ import annotations

import math

EARLY_STEPS = 3  # the truncation and still-adapter checks look at the first this many steps
VERDICT_STEPS = 10  # the verdict line comes after this many steps (or at the end of a shorter run)
TRUNCATION_LIMIT = 0.8  # mean completions/clipped_ratio over the early steps at or above this: truncation
ZERO_STD_LIMIT = 1.0  # frac_reward_zero_std at or above this: no group has a learning signal
CLIPPED_LIMIT = 0.95  # completions/clipped_ratio at or above this: nearly every completion truncated

ADVICE = ("try a lower LEARNING_RATE, a KL term to the reference (--beta=0.04), "
          "--mask_truncated_completions=true, a longer MAX_COMPLETION_LENGTH, or format priming "
          "before GRPO so the model starts inside the format")
NONFINITE_ADVICE = (
    "Usual remedies: a lower LEARNING_RATE (try a tenth), gradient clipping kept on "
    "(transformers' max_grad_norm, 1.0 by default), a KL term to the reference (--beta=0.04), "
    "and float32 rather than bf16/fp16 where the values overflow"
)


# --- early warnings ----------------------------------------------------------------------------------------
def truncation_warning(rows: list[dict], max_completion_length: int) -> str | None:
    """A warning when most completions of the first steps hit the length limit, else None. rows: the logged
    metrics of the first steps.

    >>> truncation_warning([{"completions/clipped_ratio": 1.0}] * 3, 4)[:61]
    'WARNING: 100% of completions in the first 3 steps were cut at'
    >>> truncation_warning([{"completions/clipped_ratio": 0.5}] * 3, 64) is None
    True
    """
    ratios = [r["completions/clipped_ratio"] for r in rows if r.get("completions/clipped_ratio") is not None]
    share = sum(ratios) / len(ratios) if ratios else 0.0
    if share < TRUNCATION_LIMIT:
        return None
    return (
        f"WARNING: {share:.0%} of completions in the first {len(ratios)} steps were cut at the length limit "
        f"({max_completion_length} tokens), so few reach an answer and the rewards cannot rise: raise "
        f"--max_completion_length (or --max_seq_length, which bounds it), or prime the format so answers come "
        f"sooner"
    )


def still_adapter_warning(before: str, after: str, steps: int, learning_rate: float) -> str | None:
    """A warning when the adapter's checksum is the same after `steps` optimizer steps as before them.

    >>> still_adapter_warning("ab12", "ab12", 3, 0.0)[:58]
    'WARNING: the LoRA adapter has not changed in the first 3 s'
    >>> still_adapter_warning("ab12", "cd34", 3, 5e-6) is None
    True
    """
    if before != after:
        return None
    return (
        f"WARNING: the LoRA adapter has not changed in the first {steps} steps (LEARNING_RATE={learning_rate:g}): "
        f"nothing is training. Check --learning_rate (> 0), that the groups carry a signal "
        f"(frac_reward_zero_std below 1), and that LORA_TARGET_MODULES names layers that reach the loss"
    )


# --- collapse ----------------------------------------------------------------------------------------------
def collapse_signal(logs: dict) -> str | None:
    """The name of the metric that says this step has no learning signal, or None.

    >>> collapse_signal({"frac_reward_zero_std": 1.0, "completions/clipped_ratio": 0.2})
    'frac_reward_zero_std'
    >>> collapse_signal({"frac_reward_zero_std": 0.5, "completions/clipped_ratio": 1.0})
    'completions/clipped_ratio'
    >>> collapse_signal({"frac_reward_zero_std": 0.5, "completions/clipped_ratio": 0.5}) is None
    True
    """
    if logs.get("frac_reward_zero_std", 0.0) >= ZERO_STD_LIMIT:
        return "frac_reward_zero_std"
    if logs.get("completions/clipped_ratio", 0.0) >= CLIPPED_LIMIT:
        return "completions/clipped_ratio"
    return None


class CollapseWatch:
    """The collapse alarm's state machine, apart from the trainer so it can be tested on plain dicts.

    `update(logs, step)` returns a warning (once per collapse episode) when the signal has held
    for `patience` consecutive steps, else None. `patience` 0 turns it off. When every group scores alike
    because every completion is cut at the limit, the warning says so: truncation is the cause to fix.
    """

    def __init__(self, patience: int):
        self.patience = patience
        self.run = 0  # consecutive steps with a signal
        self.warned = False
        self.collapsed_at: int | None = None  # step of the first warning

    def update(self, logs: dict, step: int) -> str | None:
        if self.patience < 1 or "reward" not in logs:
            return None
        signal = collapse_signal(logs)
        if signal is None:
            self.run, self.warned = 0, False
            return None
        self.run += 1
        if self.run < self.patience or self.warned:
            return None
        self.warned = True
        if self.collapsed_at is None:
            self.collapsed_at = step
        clipped = logs.get("completions/clipped_ratio", float("nan"))
        said = (
            f"WARNING: training collapse at step {step}: {signal} = {logs[signal]:.2f} for {self.run} "
            f"consecutive steps (total reward {logs['reward']:.2f}, completions clipped {clipped:.2f})."
        )
        if signal == "frac_reward_zero_std" and clipped >= CLIPPED_LIMIT:  # the cause is the length limit
            return (f"{said} Nearly every completion is cut at the length limit, so the completions of a group "
                    "score alike and every advantage is zero: raise --max_completion_length (or --max_seq_length) "
                    f"first; then, if it persists, {ADVICE}.")
        return (f"{said} Every group scores the same, so every advantage is zero and the policy cannot move. If "
                f"the reward is at its maximum the problems are too easy; otherwise {ADVICE}.")


# --- non-finite values -------------------------------------------------------------------------------------
def first_nonfinite(logs: dict) -> str | None:
    """The first of the logged loss and gradient norm that is NaN or infinite, as "name = value", or None.

    >>> first_nonfinite({"loss": 0.1, "grad_norm": float("inf")})
    'grad_norm = inf'
    >>> first_nonfinite({"loss": 0.1, "grad_norm": 2.0}) is None
    True
    """
    for key in ("loss", "grad_norm"):
        value = logs.get(key)
        if value is not None and not math.isfinite(float(value)):
            return f"{key} = {value}"
    return None


def first_nonfinite_weight(model) -> str | None:
    """The name of the first trainable (adapter) weight holding a NaN or an infinity, or None."""
    import torch

    trainable = [(name, param.detach()) for name, param in model.named_parameters() if param.requires_grad]
    if not trainable or bool(torch.stack([torch.isfinite(p).all() for _, p in trainable]).all()):
        return None  # one device sync per step, not one per adapter tensor
    return next(name for name, p in trainable if not bool(torch.isfinite(p).all()))


def is_nonfinite_sampling_error(error: BaseException) -> bool:
    """Whether an exception from training is sampling that met NaN or infinite probabilities: weights
    that are finite but so large that the logits overflow fail here, one step after the update."""
    text = str(error)
    return isinstance(error, RuntimeError) and ("probability tensor contains" in text or "device-side assert" in text)


# --- memory ------------------------------------------------------------------------------------------------
def peak_memory_gib() -> float:
    """The process's peak memory so far, in GiB: what PyTorch reserved on the GPU on CUDA (what an
    out-of-memory error runs into), the peak resident memory on a CPU."""
    import torch

    if torch.cuda.is_available():
        return round(torch.cuda.max_memory_reserved() / 2**30, 3)
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)  # Linux reports KiB


def memory_estimate(sizes: dict, load_in_4bit: bool, vllm_share: float, card_gib: float) -> dict:
    """The GPU memory a configuration needs before activations, in GiB. sizes: the model's parameter counts
    (`linear`, the projections 4-bit loading quantizes; `other`, embeddings and norms; `lora`, the adapter).
    The base weights are bf16, or 4-bit (NF4, a 4-byte scale per 64 weights) for the projections; the LoRA
    weights are fp32 with fp32 gradients and two 1-byte 8-bit AdamW states. With vLLM (vllm_share > 0),
    Unsloth's vLLM takes GPU_MEMORY_UTILIZATION of the card for its KV cache and the weights, which it
    shares with training. An estimate: activations and the CUDA context come on top.

    >>> e = memory_estimate({"linear": 3_600_000_000, "other": 400_000_000, "lora": 66_000_000}, False, 0.0, 80.0)
    >>> round(e["weights"], 2), round(e["lora"], 2), e["vllm"], round(e["total"], 2)
    (7.45, 0.61, 0.0, 8.07)
    >>> round(memory_estimate({"linear": 3_600_000_000, "other": 400_000_000, "lora": 0}, True, 0.5, 80.0)["total"], 1)
    40.0
    """
    linear_bytes = 0.5 + 4 / 64 if load_in_4bit else 2.0
    weights = (sizes["linear"] * linear_bytes + sizes["other"] * 2.0) / 2**30
    lora = sizes["lora"] * (4 + 4 + 2) / 2**30
    vllm = vllm_share * card_gib
    return {"weights": weights, "lora": lora, "vllm": vllm, "total": (vllm if vllm else weights) + lora}


# --- the verdict -------------------------------------------------------------------------------------------
def verdict(rows: list[dict], warnings: list[str], partial: bool = False) -> str:
    """One line on the first steps: healthy with its figures, or the warnings that fired. `partial`: the run
    stopped before VERDICT_STEPS, so the line names the checks that ran rather than calling it healthy.

    >>> rows = [{"reward": -4.5, "completions/mean_length": 40, "completions/clipped_ratio": 0.1,
    ...          "frac_reward_zero_std": 0.25, "memory/peak_gib": 1.2},
    ...         {"reward": -2.1, "completions/mean_length": 56, "completions/clipped_ratio": 0.14,
    ...          "frac_reward_zero_std": 0.35, "memory/peak_gib": 1.25}]
    >>> print(verdict(rows, []))  # doctest: +NORMALIZE_WHITESPACE
    first 2 steps: healthy: reward -4.50 -> -2.10, completions 48 tokens (12% cut),
    0.30 of groups without signal, peak 1.25 GiB
    >>> print(verdict(rows, ["WARNING: the LoRA adapter has not changed in the first 2 steps (...)"]))
    ... # doctest: +NORMALIZE_WHITESPACE
    first 2 steps: NOT healthy (1 warning: the LoRA adapter has not changed in the first 2 steps):
    reward -4.50 -> -2.10, completions 48 tokens (12% cut), 0.30 of groups without signal, peak 1.25 GiB
    >>> print(verdict(rows, [], partial=True))  # doctest: +NORMALIZE_WHITESPACE
    first 2 steps: no warning from the checks that ran (cut completions, a still adapter); too few steps to
    judge the learning signal: reward -4.50 -> -2.10, completions 48 tokens (12% cut),
    0.30 of groups without signal, peak 1.25 GiB
    """

    def mean(key):
        values = [r[key] for r in rows if r.get(key) is not None]
        return sum(values) / len(values) if values else float("nan")

    figures = (
        f"reward {rows[0]['reward']:.2f} -> {rows[-1]['reward']:.2f}, completions "
        f"{mean('completions/mean_length'):.0f} tokens ({mean('completions/clipped_ratio'):.0%} cut), "
        f"{mean('frac_reward_zero_std'):.2f} of groups without signal, peak "
        f"{max((r.get('memory/peak_gib') or 0.0) for r in rows):.2f} GiB"
    )
    if not warnings and partial:
        return (f"first {len(rows)} steps: no warning from the checks that ran (cut completions, a still "
                f"adapter); too few steps to judge the learning signal: {figures}")
    if not warnings:
        return f"first {len(rows)} steps: healthy: {figures}"
    names = "; ".join(w.removeprefix("WARNING: ").split(" (")[0].split(":")[0] for w in warnings)
    return (
        f"first {len(rows)} steps: NOT healthy ({len(warnings)} warning{'s' if len(warnings) > 1 else ''}: "
        f"{names}): {figures}"
    )
