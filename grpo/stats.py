"""The statistics of an evaluation, where problems are the unit: the samples of one problem are correlated,
so intervals resample problems (a percentile bootstrap), and pass@k is the unbiased estimator; and GRPO's
gain over its learning-rate-0 control. evaluate.py and bench/ (eval_power.py, bench_smollm2.py,
bench_learning.py) share them.
"""

from __future__ import annotations

import math
import random

from grpo.plot_rewards import grpo_rows


def per_problem(samples: list[dict], key: str = "correct") -> list[list[bool]]:
    """The samples' `key` grouped by problem, in problem order."""
    groups: dict[int, list[bool]] = {}
    for s in samples:
        groups.setdefault(s["problem"], []).append(bool(s[key]))
    return [groups[i] for i in sorted(groups)]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct: 1 - C(n-c, k) / C(n, k).

    >>> pass_at_k(4, 1, 1), pass_at_k(4, 1, 2), pass_at_k(4, 0, 4), pass_at_k(4, 1, 4)
    (0.25, 0.5, 0.0, 1.0)
    """
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def pass_at_ks(groups: list[list[bool]]) -> dict[str, float]:
    """pass@k for k = 1 .. the samples per problem, averaged over problems."""
    n = min((len(g) for g in groups), default=0)
    return {str(k): sum(pass_at_k(len(g), sum(g), k) for g in groups) / len(groups) for k in range(1, n + 1)}


def _percentile_interval(values: list[float]) -> list[float]:
    values = sorted(values)
    last = len(values) - 1
    return [values[round(0.025 * last)], values[round(0.975 * last)]]


def bootstrap_ci(scores: list[float], resamples: int, seed: int) -> list[float]:
    """95% percentile interval of the mean of per-problem scores, resampling problems."""
    if not scores:
        return [0.0, 0.0]
    rng, n = random.Random(seed), len(scores)
    means = [sum(scores[i] for i in rng.choices(range(n), k=n)) / n for _ in range(resamples)]
    return _percentile_interval(means)


def paired_bootstrap_ci(base: list[float], trained: list[float], resamples: int, seed: int) -> list[float]:
    """95% interval of mean(trained - base): the same resampled problems for both models."""
    return bootstrap_ci([t - b for b, t in zip(base, trained)], resamples, seed)


def problem_means(samples: list[dict], key: str = "correct") -> list[float]:
    """The share of each problem's samples for which `key` holds, in problem order."""
    return [sum(g) / len(g) for g in per_problem(samples, key)]


def gain_over_control(run: list[dict], control: list[dict], window: int) -> float:
    """GRPO's measured effect: the run's mean total reward over its last `window` steps minus the
    learning-rate-0 control's over the same steps. Run and control share the seed, so they draw the
    same prompts: what differs is only what the updates did.

    >>> run, control = [{"step": s, "reward": 1.0} for s in (1, 2, 3)], [{"step": s, "reward": 0.5} for s in (1, 2, 3)]
    >>> gain_over_control(run, control, 2)
    0.5
    """
    run, control = (grpo_rows(rows) for rows in (run, control))
    if len(run) < window or [r["step"] for r in run] != [r["step"] for r in control]:
        raise ValueError(
            f"run and control must log the same steps, at least {window}: {len(run)} and {len(control)} GRPO rows"
        )
    return sum(r["reward"] for r in run[-window:]) / window - sum(r["reward"] for r in control[-window:]) / window
