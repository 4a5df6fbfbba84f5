"""Draw the reward curves of a run from its metrics.jsonl.

    python grpo/plot_rewards.py outputs/smoke      # writes outputs/smoke/reward_curves.png
    python grpo/plot_rewards.py outputs            # the same for every run folder under outputs/

One panel per reward and one for the total: raw values per step (faint) and a moving average;
with EVAL_STEPS, the held-out evaluations as orange points on the same panels; with FORMAT_SFT,
a first panel with the priming SFT's loss.
A last panel shows the run's health: the share of completions cut at the length limit and the
share of groups with no learning signal (all completions scored alike), both near 1.0 = collapse,
and on its right-hand axis the process's peak memory in GiB (memory/peak_gib).
With OUTCOME_GATE it also shows the shares of groups gated as all right and as all wrong; with
REINFORCE_RIGHT_ONLY, the share of moving completions whose advantage it zeroed.
train_grpo.py calls this at the end of every run.
"""

from __future__ import annotations

import json
import os
import sys


HEALTH = {"completions/clipped_ratio": "clipped at the limit", "frac_reward_zero_std": "groups without signal",
          "gate/all_right": "groups gated: all right", "gate/all_wrong": "groups gated: all wrong",
          "right_only/zeroed": "advantages zeroed (right only)"}
HEALTH_COLORS = {"completions/clipped_ratio": "tab:red", "frac_reward_zero_std": "tab:gray",
                 "gate/all_right": "tab:green", "gate/all_wrong": "tab:purple",
                 "right_only/zeroed": "tab:olive"}


def read_metrics(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def grpo_rows(rows: list[dict]) -> list[dict]:
    """The GRPO training steps' rows of a metrics file: not the priming SFT's, not the evaluations'."""
    return [r for r in rows if r.get("phase") != "sft" and "reward" in r]


def smooth(values: list[float], window: int) -> list[float]:
    """Trailing moving average; the first points average what exists so far."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot(metrics_path: str, out_path: str | None = None) -> str:
    """Write the PNG next to the metrics file (or at out_path); return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    all_rows = read_metrics(metrics_path)
    rows = [r for r in all_rows if "reward" in r]  # training steps
    held_out = [r for r in all_rows if "eval_reward" in r]  # evaluations on held-out prompts (EVAL_STEPS)
    if not rows:
        raise ValueError(f"{metrics_path} has no training rows: did the run log any step?")
    out_path = out_path or os.path.join(os.path.dirname(metrics_path) or ".", "reward_curves.png")
    series = [k for k in rows[0] if k.startswith("rewards/") and k.endswith("/mean")] + ["reward"]
    health = [k for k in HEALTH if any(r.get(k) is not None for r in rows)]
    priming = [r for r in all_rows if r.get("phase") == "sft" and r.get("loss") is not None]  # format-priming SFT
    window = max(1, len(rows) // 10)
    panels = len(series) + bool(health) + bool(priming)
    fig, axes = plt.subplots(1, panels, figsize=(3.2 * panels, 3.0), squeeze=False)
    if priming:
        ax = axes[0][0]
        losses = [r["loss"] for r in priming]
        steps = [r.get("sft_step", i + 1) for i, r in enumerate(priming)]
        ax.plot(steps, losses, color="tab:green", alpha=0.3, linewidth=1)
        ax.plot(steps, smooth(losses, max(1, len(losses) // 10)), color="tab:green", linewidth=2)
        ax.set_title("format priming (SFT loss)", fontsize=10)
        ax.set_xlabel("SFT step")
        ax.grid(alpha=0.3)
        axes = [axes[0][1:]]
    for ax, key in zip(axes[0], series):
        points = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
        steps, values = [p[0] for p in points], [p[1] for p in points]
        ax.plot(steps, values, color="tab:blue", alpha=0.3, linewidth=1, label="per step")
        ax.plot(steps, smooth(values, window), color="tab:blue", linewidth=2, label=f"mean of {window}")
        points = [(r["step"], r[f"eval_{key}"]) for r in held_out if r.get(f"eval_{key}") is not None]
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], "o-", color="tab:orange", markersize=4,
                    linewidth=1, label="held-out eval")
        ax.set_title("total reward" if key == "reward" else key.split("/")[1], fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    if health:
        ax = axes[0][-1]
        for key in health:
            points = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
            ax.plot([p[0] for p in points], smooth([p[1] for p in points], window), color=HEALTH_COLORS[key],
                    linewidth=2, label=HEALTH[key])
        ax.set_ylim(-0.05, 1.05)
        ax.set_title("run health (1.0 = collapse)", fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
        memory = [(r["step"], r["memory/peak_gib"]) for r in rows if r.get("memory/peak_gib") is not None]
        if memory:  # on its own axis, in GiB
            right = ax.twinx()
            right.plot([p[0] for p in memory], [p[1] for p in memory], color="tab:cyan", linestyle="--", linewidth=1.5,
                       label="peak memory (GiB)")
            right.set_ylim(0, max(p[1] for p in memory) * 1.6)
            right.set_ylabel("peak memory, GiB", fontsize=8)
            right.legend(fontsize=7, loc="center right")
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return out_path


def find_metrics(target: str) -> list[str]:
    """metrics.jsonl files for a path: the file itself, the one in a run folder, or one per run
    folder directly under it (`outputs` holds `outputs/smoke`, ...)."""
    if os.path.isfile(target):
        return [target]
    path = os.path.join(target, "metrics.jsonl")
    if os.path.exists(path):
        return [path]
    if not os.path.isdir(target):
        return []
    found = (os.path.join(target, name, "metrics.jsonl") for name in os.listdir(target))
    return sorted(path for path in found if os.path.isfile(path))


def main(argv: list[str]) -> None:
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        sys.exit("usage: python grpo/plot_rewards.py RUN_DIR  (a folder with metrics.jsonl, or a folder of such runs)")
    paths = find_metrics(argv[0])
    if not paths:
        sys.exit(f"plot_rewards.py: no metrics.jsonl in {argv[0]} or in the folders directly under it")
    for path in paths:
        print(plot(path))


if __name__ == "__main__":
    main(sys.argv[1:])
