"""How large a gain can one evaluation show? Splits the noise in GRPO's measured change (trained minus
primed, from evaluate.py's eval_samples.jsonl) into its two sources, and prints what follows for a
run's claim that its paired 95% interval lies above 0.

    python bench/eval_power.py outputs/smollm2-s11-preset outputs/smollm2-s17-preset --effect=0.025

The two sources, per run:
- **the draw**: each sample is a coin, so scoring the same problems again (`evaluate.py --seed=S`)
  moves the change. Estimated from how a problem's paired samples (the j-th of each model, as
  `evaluate.compare` pairs them) disagree with each other: the within-problem variance of
  (trained right) - (primed right), `within` below. It shrinks with more samples per problem.
- **the problems**: GRPO helps some problems and not others, so another 100 held-out problems would
  give another change. What is left of the spread of the per-problem changes once the draw's share
  (within / n_samples) is taken off: `between`. More samples per problem do not shrink it.

The standard error of the change is then sqrt((between + within / n_samples) / n_problems), the
normal reading of the interval `evaluate.py` bootstraps. From it: the chance that a run whose true gain
is EFFECT shows an interval above 0; the smallest true gain it shows four times in five; and the
samples per problem (at N_PROBLEMS) or the problems (at N_SAMPLES) that EFFECT would need for that.

A folder's `eval_s*/` subfolders (`evaluate.py --eval_dir=R/eval_sS --seed=S`, the same run scored
again) are read as further draws: the table then sets the draws' observed spread beside the
predicted one, a check of the split above.
"""

import glob
import json
import math
import os
import sys
from statistics import NormalDist, variance

# -----------------------------------------------------------------------------------------------
EFFECT = 0.025  # the true gain whose chances are printed (about GRPO's mean over the preset's seeds)
N_PROBLEMS = 100  # the evaluation's held-out problems
N_SAMPLES = 4  # the evaluation's samples per problem
POWER = 0.8  # "shows it": the interval lies above 0 this often
# -----------------------------------------------------------------------------------------------

_Z = 1.959964  # the 95% interval's half-width in standard errors

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from grpo.stats import bootstrap_ci, per_problem  # noqa: E402

_NORMAL = NormalDist()


def paired_differences(samples: list[dict]) -> list[list[int]]:
    """Per problem, in problem order: (trained right) - (primed right) for each pair of samples, the
    j-th of one model with the j-th of the other, each -1, 0 or +1."""
    primed, trained = (per_problem([s for s in samples if s["model"] == m]) for m in ("primed", "trained"))
    return [[int(t) - int(p) for p, t in zip(ps, ts)] for ps, ts in zip(primed, trained)]


def pool(draws: list[list[list[int]]]) -> list[list[int]]:
    """Draws of one run as one: each problem's pairs from every draw together."""
    return [sum(pairs, []) for pairs in zip(*draws)]


def noise_parts(diffs: list[list[int]]) -> dict:
    """The change, and its noise split in two (see the module's docstring): `within`, the variance of
    one pair's difference inside a problem; `between`, the variance of the problems' true changes. Needs
    at least 2 problems and 2 samples per problem."""
    n_samples = min(len(d) for d in diffs)
    if len(diffs) < 2 or n_samples < 2:
        raise ValueError("the split needs at least 2 problems and 2 paired samples per problem")
    diffs = [d[:n_samples] for d in diffs]
    means = [sum(d) / n_samples for d in diffs]
    within = sum(variance(d) for d in diffs) / len(diffs)
    between = max(0.0, variance(means) - within / n_samples)
    return {"change": sum(means) / len(means), "within": within, "between": between,
            "n_problems": len(diffs), "n_samples": n_samples}


def standard_error(parts: dict, n_problems: int, n_samples: int, draw_only: bool = False) -> float:
    """The change's standard error at n_problems x n_samples; with draw_only, over draws of the same
    problems (what `evaluate.py --seed` moves)."""
    between = 0.0 if draw_only else parts["between"]
    return math.sqrt((between + parts["within"] / n_samples) / n_problems)


def chance_shown(effect: float, se: float) -> float:
    """The chance that a paired 95% interval lies above 0 when the true gain is `effect`."""
    return _NORMAL.cdf(effect / se - _Z) if se > 0 else float(effect > 0)


def smallest_shown(se: float, power: float) -> float:
    """The smallest true gain whose interval lies above 0 with chance `power`."""
    return (_Z + _NORMAL.inv_cdf(power)) * se


def samples_needed(parts: dict, effect: float, n_problems: int, power: float) -> float:
    """Samples per problem at n_problems for `effect` to be shown with chance `power`; inf when the
    problems' own spread alone is too wide at that many problems."""
    room = n_problems * (effect / (_Z + _NORMAL.inv_cdf(power))) ** 2 - parts["between"]
    return math.ceil(parts["within"] / room) if room > 0 else math.inf


def problems_needed(parts: dict, effect: float, n_samples: int, power: float) -> int:
    """Held-out problems at n_samples for `effect` to be shown with chance `power`."""
    variance_each = parts["between"] + parts["within"] / n_samples
    return math.ceil(variance_each * ((_Z + _NORMAL.inv_cdf(power)) / effect) ** 2)


def read_samples(folder: str) -> list[dict]:
    with open(os.path.join(folder, "eval_samples.jsonl")) as f:
        return [json.loads(line) for line in f]


def draws_of(folder: str) -> list[str]:
    """The run's own evaluation, then each eval_s*/ scored again."""
    again = sorted(
        d for d in glob.glob(os.path.join(folder, "eval_s*")) if os.path.exists(os.path.join(d, "eval_samples.jsonl"))
    )
    return [folder, *again]


def pooled_draws(pooled: list[list[int]], resamples: int = 4000, seed: int = 0) -> tuple[float, list[float]]:
    """The change over every draw of one run (`pool(draws)`), with a 95% interval that resamples the
    problems once for all draws: they are the same problems, so their changes move together.
    (`bench_smollm2.pooled_change` resamples each folder's problems apart, which is right for runs of
    different seeds, each with its own held-out problems, and too narrow here.)"""
    means = [sum(p) / len(p) for p in pooled]
    return sum(means) / len(means), bootstrap_ci(means, resamples, seed)


def row(folder: str, k: dict) -> dict:
    """One run's figures: its draws pooled for the split (the same problems, more pairs), each draw's change."""
    draws = [paired_differences(read_samples(d)) for d in draws_of(folder)]
    changes = [noise_parts(d)["change"] for d in draws]
    pairs = pool(draws)
    pooled = noise_parts(pairs)
    se = standard_error(pooled, k["N_PROBLEMS"], k["N_SAMPLES"])
    return {
        "run": folder,
        "changes": changes,
        "parts": pooled,
        "se": se,
        "pooled": pooled_draws(pairs),
        "draw_sd": standard_error(pooled, k["N_PROBLEMS"], k["N_SAMPLES"], draw_only=True),
        "observed_draw_sd": math.sqrt(variance(changes)) if len(changes) > 1 else None,
        "chance": chance_shown(k["EFFECT"], se),
        "smallest": smallest_shown(se, k["POWER"]),
        "samples_needed": samples_needed(pooled, k["EFFECT"], k["N_PROBLEMS"], k["POWER"]),
        "problems_needed": problems_needed(pooled, k["EFFECT"], k["N_SAMPLES"], k["POWER"]),
    }


def table(rows: list[dict], k: dict) -> str:
    size = f"{k['N_PROBLEMS']} x {k['N_SAMPLES']}"
    shown = f"{k['POWER']:.0%}"
    lines = [
        f"| run | change, each draw | all draws pooled [95% CI] | draws' spread, observed / predicted at {size} | "
        "problems' spread (sd) | pair spread (sd) | "
        f"standard error at {size} | chance of an interval above 0 at a true {k['EFFECT']:+.3f} | smallest gain shown "
        f"{shown} of the time | "
        f"samples a problem for {k['EFFECT']:+.3f} at {k['N_PROBLEMS']} problems | problems for it at "
        f"{k['N_SAMPLES']} samples |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        observed = f"{r['observed_draw_sd']:.3f}" if r["observed_draw_sd"] is not None else "-"
        mean, (lo, hi) = r["pooled"]
        lines.append(
            f"| {r['run']} | {', '.join(f'{c:+.3f}' for c in r['changes'])} | {mean:+.3f} [{lo:+.3f}, {hi:+.3f}] | "
            f"{observed} / {r['draw_sd']:.3f} | "
            f"{math.sqrt(r['parts']['between']):.3f} | {math.sqrt(r['parts']['within']):.3f} | {r['se']:.3f} | "
            f"{r['chance']:.2f} | {r['smallest']:+.3f} | {r['samples_needed']} | {r['problems_needed']} |"
        )
    return "\n".join(lines)


def check_knobs(k: dict) -> None:
    if k["EFFECT"] <= 0 or not 0 < k["POWER"] < 1 or k["N_PROBLEMS"] < 1 or k["N_SAMPLES"] < 1:
        raise ValueError("EFFECT must be > 0, POWER in (0, 1), N_PROBLEMS and N_SAMPLES at least 1")


def main(argv: list[str]) -> None:
    from grpo.overrides import resolve

    folders = [a for a in argv if not a.startswith("--")]
    k = resolve(globals(), [a for a in argv if a.startswith("--")], "eval_power.py", check_knobs)
    if not folders:
        sys.exit("eval_power.py: name one or more run folders, each with evaluate.py's eval_samples.jsonl")
    missing = [f for f in folders if not os.path.exists(os.path.join(f, "eval_samples.jsonl"))]
    if missing:
        sys.exit(f"eval_power.py: no eval_samples.jsonl in {', '.join(missing)}; run evaluate.py --run_dir=R first")
    try:
        rows = [row(f, k) for f in folders]
    except ValueError as e:  # one sample a problem: nothing to split the draw from
        sys.exit(f"eval_power.py: {e} (evaluate.py --n_samples=2 or more)")
    print(table(rows, k))
    within = sum(r["parts"]["within"] for r in rows) / len(rows)
    between = sum(r["parts"]["between"] for r in rows) / len(rows)
    mean = {"within": within, "between": between}
    se = standard_error(mean, k["N_PROBLEMS"], k["N_SAMPLES"])
    print(
        f"\nThe runs' variances averaged: standard error {se:.3f} at {k['N_PROBLEMS']} x {k['N_SAMPLES']} "
        f"(the draw alone {standard_error(mean, k['N_PROBLEMS'], k['N_SAMPLES'], draw_only=True):.3f}); "
        f"a true {k['EFFECT']:+.3f} shows an interval above 0 with chance {chance_shown(k['EFFECT'], se):.2f}, "
        f"three runs in a row {chance_shown(k['EFFECT'], se) ** 3:.3f}; the smallest gain shown "
        f"{k['POWER']:.0%} of the time is {smallest_shown(se, k['POWER']):+.3f}, and three runs in a row "
        f"{smallest_shown(se, k['POWER'] ** (1 / 3)):+.3f} each."
    )


if __name__ == "__main__":
    main(sys.argv[1:])
