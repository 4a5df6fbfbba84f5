"""Benchmark the recipe on a real pretrained model on CPU: `--preset=smollm2` (SmolLM2-135M-Instruct),
several seeds and a learning-rate-0 control, each primed, GRPO-trained and evaluated on the held-out
problems. Prints one table; copy it into BENCHMARKS.md.

    python bench/bench_smollm2.py --jobs=2             # seeds 3407 and 2, the control and the ablations (hours)
    python bench/bench_smollm2.py --seeds=3407 --ablations= --max_steps=12

The claim it checks: held-out accuracy in the solution block rises from the primed model to the
GRPO-trained one by more than its noise (the paired 95% interval of the change excludes 0), lenient
accuracy does not fall, and check_answer rises during GRPO while the control stays flat. With two
prompts per step, check_answer's first and last windows are different problems, so the table also
gives the run's check_answer minus the control's at the same steps (same seed, same prompts).
"""

import json
import math
import os
import subprocess
import sys
import time

SEEDS = (3407, 2)  # seeds of the learning runs
CONTROL_SEED = 3407  # the learning-rate-0 control runs with this seed
ABLATIONS = (
    "gate-off:--outcome_gate=false",
    "filter-off:--difficulty_filter=false",
)  # name:--knob=value ..., each on CONTROL_SEED
MAX_STEPS = 0  # GRPO steps per run (0 = the preset's)
N_SAMPLES = 4  # evaluation samples per held-out problem (each run's 100), at the run's own completion length
WINDOW = 10  # steps averaged at each end of a run for check_answer
OUT = os.path.join("outputs", "bench-smollm2")  # one folder per run inside
JOBS = 1  # runs at once; each gets its share of the CPU cores as threads (2 on 2 cores: about 1.5x faster in all)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the project root
sys.path.insert(0, ROOT)


def resolve_knobs(argv):
    from grpo.overrides import resolve

    return resolve(globals(), argv, "bench_smollm2.py")


def run(script, *args, threads=0):
    started = time.time()
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads)) if threads else None
    proc = subprocess.run([sys.executable, os.path.join(ROOT, script), *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.exit(f"bench_smollm2.py: {script} {' '.join(args)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
    return time.time() - started


def finished(folder, k):
    """A run of this benchmark already trained and evaluated in folder (reused, so an interrupted
    benchmark picks up where it stopped)."""
    try:
        config = json.load(open(os.path.join(folder, "run_config.json")))
        evaluated = json.load(open(os.path.join(folder, "eval_results.json")))
    except (OSError, ValueError):
        return None
    steps = k["MAX_STEPS"] or config.get("MAX_STEPS")
    found = config.get("FOUND", config)  # a run recorded before run_config.json kept its findings apart
    done = found.get("STEPS_DONE") == steps and evaluated.get("trained", {}).get("n_samples")
    return found["WALL_TIME_S"] if done else None


def one(k, name, seed, extra=()):
    folder = os.path.join(k["OUT"], name)
    train_s = finished(folder, k)
    threads = max(1, (os.cpu_count() or 1) // k["JOBS"]) if k["JOBS"] > 1 else 0
    if train_s is None:
        print(f"{name}: priming, filter, GRPO, evaluation (seed {seed}) in {folder}", flush=True)
        steps = [f"--max_steps={k['MAX_STEPS']}"] if k["MAX_STEPS"] else []
        train_s = run(
            "train_grpo.py",
            "--preset=smollm2",
            f"--seed={seed}",
            *steps,
            f"--output_dir={folder}",
            *extra,
            threads=threads,
        )
        eval_s = run(
            "evaluate.py", f"--run_dir={folder}", f"--n_samples={k['N_SAMPLES']}", "--n_problems=0", threads=threads
        )
        print(f"{name}: done, {train_s:.0f} s of training, {eval_s:.0f} s of evaluation", flush=True)
    else:
        print(f"{name}: reusing the finished run in {folder}", flush=True)
    return summarize(k, name, seed, folder, train_s)


def check_answer_by_step(folder):
    """{GRPO step: mean check_answer reward} from a run's metrics.jsonl."""
    rows = [json.loads(line) for line in open(os.path.join(folder, "metrics.jsonl"))]
    return {r["step"]: r["rewards/check_answer/mean"] for r in rows if "rewards/check_answer/mean" in r}


def versus_control(run, control, window):
    """check_answer of a run minus the control's, averaged over the first and the last `window` steps
    both have. With few prompts per step, which prompts a step draws move check_answer far more than
    training does; a run and its control of the same seed draw the same prompts, so their difference
    at each step leaves the training's effect. Returns (first, last); (nan, nan) with no common steps."""
    steps = sorted(set(run) & set(control))
    if not steps:
        return float("nan"), float("nan")
    diffs = [run[s] - control[s] for s in steps]
    w = min(window, len(diffs))
    return sum(diffs[:w]) / w, sum(diffs[-w:]) / w


def reinforced_wrong(folder):
    """From a run's logged completions (completions/*.parquet): the share of the completions that GRPO
    pushed up (advantage > 0) whose answer was wrong (check_answer below its "equivalent" score), and
    the share of groups (one prompt's completions at one step) that held no right answer yet still
    carried a signal, for instance from check_answer's partial credit for near misses.
    Returns (nan, nan) when nothing was logged."""
    import glob

    import pandas as pd

    from rewards import ANSWER_EQUIVALENT

    files = sorted(glob.glob(os.path.join(folder, "completions", "*.parquet")))
    if not files:
        return float("nan"), float("nan")
    d = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    d["right"] = d["check_answer"] >= ANSWER_EQUIVALENT
    pushed = d[d["advantage"] > 1e-6]
    groups = d.groupby([d["step"], d["prompt"].map(str)])
    no_right_but_signal = groups.apply(lambda g: not g["right"].any() and bool((g["advantage"].abs() > 1e-6).any()))
    return float((~pushed["right"]).mean()) if len(pushed) else float("nan"), float(no_right_but_signal.mean())


def summarize(k, name, seed, folder, train_s):
    """One table row from a trained and evaluated run folder."""
    by_step = check_answer_by_step(folder)
    answer = list(by_step.values())
    w = min(k["WINDOW"], len(answer))
    results = json.load(open(os.path.join(folder, "eval_results.json")))
    wrong_pushed, no_right_signal = reinforced_wrong(folder)
    return {
        "name": name,
        "seed": seed,
        "train_s": train_s,
        "steps": len(answer),
        "check_answer": by_step,
        "pushed_up_but_wrong": wrong_pushed,
        "groups_without_a_right_answer_but_a_signal": no_right_signal,
        "check_answer_first": sum(answer[:w]) / w,
        "check_answer_last": sum(answer[-w:]) / w,
        **results,
    }


def add_control_differences(k, results):
    """For each learning run of the control's seed: check_answer minus the control's, first and last window."""
    control = next((r for r in results if r["name"] == "control"), None)
    for r in results:
        r["vs_control"] = (float("nan"), float("nan"))
        if control and r is not control and r["seed"] == control["seed"]:
            r["vs_control"] = versus_control(r["check_answer"], control["check_answer"], k["WINDOW"])


def per_problem_change(folder):
    """Each held-out problem's accuracy change (trained minus primed, over its samples) from a run's
    eval_samples.jsonl, in problem order."""
    from grpo.stats import problem_means

    samples = [json.loads(line) for line in open(os.path.join(folder, "eval_samples.jsonl"))]
    primed, trained = (problem_means([s for s in samples if s["model"] == m]) for m in ("primed", "trained"))
    return [t - p for p, t in zip(primed, trained)]


def pooled_change(folders, resamples=4000, seed=0):
    """GRPO's held-out change averaged over runs (each run's mean change, then their mean), with a 95%
    interval that resamples each run's problems. The seeds stay fixed: the interval covers which
    problems were held out, not which prompts a seed drew, so read it beside the spread of the runs.
    For runs of different seeds, each with its own held-out problems; the same run scored again shares
    its problems, and `bench/eval_power.py`'s `pooled_draws` pools those. Returns (mean, [low, high],
    [each run's change])."""
    import random

    from grpo.stats import _percentile_interval

    changes = [per_problem_change(f) for f in folders]
    means = [sum(c) / len(c) for c in changes]
    rng = random.Random(seed)
    draws = [sum(sum(rng.choices(c, k=len(c))) / len(c) for c in changes) / len(changes) for _ in range(resamples)]
    return sum(means) / len(means), _percentile_interval(draws), means


def fmt(result, label, metric):
    r = result[label]
    lo, hi = r[f"{metric}_ci95"] if f"{metric}_ci95" in r else (float("nan"), float("nan"))
    return f"{r[metric]:.3f} [{lo:.3f}, {hi:.3f}]"


def table(results):
    lines = [
        "| run | steps | train s | check_answer first -> last | minus control's, first -> last | accuracy primed "
        "| accuracy trained | GRPO change [95% CI] | lenient primed | lenient trained | format trained "
        "| pushed up but wrong | groups with no right answer but a signal | held-out samples wrong -> right / right "
        "-> wrong |",
        "| --- | ---: | ---: | --- | --- | --- | --- | --- | --- | --- | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        change = r.get("change_from_primed", {})
        lo, hi = change.get("accuracy_ci95", (float("nan"), float("nan")))
        first, last = r.get("vs_control", (float("nan"), float("nan")))
        versus = "" if math.isnan(first) else f"{first:+.2f} -> {last:+.2f}"
        flips = change.get("flips")  # absent from evaluations made before evaluate.py counted them
        flipped = f"{flips['wrong_to_right']} / {flips['right_to_wrong']}" if flips else ""
        lines.append(
            f"| {r['name']} | {r['steps']} | {r['train_s']:.0f} | {r['check_answer_first']:+.2f} -> "
            f"{r['check_answer_last']:+.2f} "
            f"| {versus} "
            f"| {fmt(r, 'primed', 'accuracy')} | {fmt(r, 'trained', 'accuracy')} "
            f"| {change.get('accuracy', float('nan')):+.3f} [{lo:+.3f}, {hi:+.3f}] "
            f"| {r['primed']['accuracy_lenient']:.3f} | {r['trained']['accuracy_lenient']:.3f} "
            f"| {r['trained']['format_rate']:.2f} | {r['pushed_up_but_wrong']:.2f} "
            f"| {r['groups_without_a_right_answer_but_a_signal']:.2f} | {flipped} |"
        )
    return "\n".join(lines)


def plot(results, path, window):
    """Two panels: check_answer during GRPO (moving average) of each run and the control; and held-out
    accuracy of each run's primed and trained adapters, with their 95% intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from grpo.plot_rewards import smooth

    fig, (curves, bars) = plt.subplots(1, 2, figsize=(12, 4.2))
    for r in results:
        by_step = r["check_answer"]
        steps = sorted(by_step)
        control = r["name"] == "control"
        curves.plot(
            steps,
            smooth([by_step[s] for s in steps], window),
            color="gray" if control else None,
            linestyle="--" if control else "-",
            label=f"control, lr 0 (seed {r['seed']})" if control else r["name"],
        )
    curves.set(
        xlabel="GRPO step",
        ylabel=f"check_answer, mean of the last {window} steps",
        title="check_answer during GRPO (the control has lr 0)",
    )
    curves.legend()
    learning = [r for r in results if r["name"] != "control"]
    for i, label in enumerate(("primed", "trained")):
        xs = [j + (i - 0.5) * 0.35 for j in range(len(learning))]
        values = [r[label]["accuracy"] for r in learning]
        errors = [
            [v - r[label]["accuracy_ci95"][0] for v, r in zip(values, learning)],
            [r[label]["accuracy_ci95"][1] - v for v, r in zip(values, learning)],
        ]
        bars.bar(
            xs,
            values,
            width=0.35,
            yerr=errors,
            capsize=4,
            label=label,
            color="tab:green" if label == "primed" else "tab:blue",
        )
    bars.set_xticks(
        range(len(learning)),
        [
            f"{r['name']}\nchange {c['accuracy']:+.3f}\n[{c['accuracy_ci95'][0]:+.3f}, {c['accuracy_ci95'][1]:+.3f}]"
            for r in learning
            for c in [r["change_from_primed"]]
        ],
    )
    bars.set(
        ylim=(0, 1),
        ylabel="held-out accuracy (solution block)",
        title="held-out accuracy (95% intervals); below: GRPO's change [paired]",
    )
    bars.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def planned_runs(k):
    """(name, seed, extra flags) of each run: the seeds, the lr-0 control, then each ablation (the
    preset with one lever changed) on the control's seed, so it draws the same prompts."""
    runs = [(f"seed{seed}", seed, ()) for seed in k["SEEDS"]]
    runs.append(("control", k["CONTROL_SEED"], ("--learning_rate=0",)))
    for ablation in k["ABLATIONS"]:
        name, _, flags = ablation.partition(":")
        runs.append((name, k["CONTROL_SEED"], tuple(flags.split())))
    return runs


def main(argv):
    from concurrent.futures import ThreadPoolExecutor

    k = resolve_knobs(argv)
    if k["JOBS"] < 1:
        sys.exit("bench_smollm2.py: JOBS must be at least 1")
    runs = planned_runs(k)
    with ThreadPoolExecutor(max_workers=k["JOBS"]) as pool:
        results = list(pool.map(lambda r: one(k, *r), runs))
    add_control_differences(k, results)
    plot(results, os.path.join(k["OUT"], "bench_smollm2.png"), k["WINDOW"])
    print()
    print(table(results))
    seeds = [r for r in results if r["name"].startswith("seed")]
    if len(seeds) > 1:
        mean, (lo, hi), each = pooled_change([os.path.join(k["OUT"], r["name"]) for r in seeds])
        print(
            f"\nGRPO's change over the {len(seeds)} seeds: {mean:+.3f} [{lo:+.3f}, {hi:+.3f}] (problems resampled, "
            f"seeds fixed); the seeds' own changes {', '.join(f'{c:+.3f}' for c in each)}"
        )
    print(f"\nplot: {os.path.join(k['OUT'], 'bench_smollm2.png')}")
    with open(os.path.join(k["OUT"], "bench_results.json"), "w") as f:
        json.dump(results, f, indent=2, default=str)


if __name__ == "__main__":
    main(sys.argv[1:])
