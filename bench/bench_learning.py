"""Does the smoke preset learn on any tiny model, not just the shipped one? Each build seed stands in
for another CPU (a CPU of another vendor builds another model from the same seed); each GRPO seed
for another trajectory. Every cell runs the smoke preset and its learning-rate-0 control with the
same seed (so the same prompts), and reports GRPO's gain: the mean total reward over the last WINDOW
steps, run minus control. The learning test's bar is MARGIN; every cell must clear it.

    python bench/bench_learning.py                       # 3 builds x 3 seeds (BENCHMARKS.md has its time)
    python bench/bench_learning.py --extra="--beta=0.1"  # the same with a preset change, to compare

With FALSIFY, one shuffled-rewards run per build (bench/shuffled_rewards.py): rewards that say nothing
about the completions should not clear the bar (BENCHMARKS.md has how often they do). Prints a
markdown table; copy it into BENCHMARKS.md.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)

BUILDS = (3407, 1, 2)  # tiny-model build seeds (tiny_model.py --seed); 3407 is the shipped recipe
SEEDS = (3407, 13, 5)  # GRPO seeds, each with its own control
MAX_STEPS = 80  # GRPO steps per run (the learning test's)
WINDOW = 30  # last steps averaged for the gain (the learning test's)
MARGIN = 0.5  # the learning test's bar for the gain
MAX_END_CLIPPED = 0.5  # and its no-collapse bar: share of completions clipped over the last 20 steps
FALSIFY = True  # also one shuffled-rewards run per build, on the first GRPO seed
EXTRA = ""  # more train_grpo.py overrides for every run, space-separated
JOBS = 2  # runs at once, each with its share of the cores as threads
OUT = os.path.join("outputs", "bench-learning")  # builds and runs, one folder each


def resolve_knobs(argv):
    from grpo.overrides import resolve

    return resolve(globals(), argv, "bench_learning.py")


def run(args, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=_ROOT)
    if proc.returncode != 0:
        sys.exit(f"bench_learning.py: {' '.join(args)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}")


def train(k, name, model, seed, extra, threads, script="train_grpo.py"):
    """One run into OUT/name (reused when it finished before); returns its GRPO metrics rows."""
    from grpo import plot_rewards

    folder = os.path.join(k["OUT"], name)
    try:
        done = (
            json.load(open(os.path.join(folder, "run_config.json"))).get("FOUND", {}).get("STEPS_DONE")
            == k["MAX_STEPS"]
        )
    except (OSError, ValueError):
        done = False
    if not done:
        shutil.rmtree(folder, ignore_errors=True)  # a run that failed or was stopped part-way starts again
        started = time.time()
        run(
            [
                os.path.join(_ROOT, script),
                "--smoke",
                f"--model_name={model}",
                f"--seed={seed}",
                f"--max_steps={k['MAX_STEPS']}",
                f"--output_dir={folder}",
                *k["EXTRA"].split(),
                *extra,
            ],
            threads,
        )
        print(f"  {name}: {time.time() - started:.0f} s", flush=True)
    return plot_rewards.grpo_rows(plot_rewards.read_metrics(os.path.join(folder, "metrics.jsonl")))


def main(argv):
    from grpo import stats

    k = resolve_knobs(argv)
    k["OUT"] = os.path.abspath(k["OUT"])
    threads = max(1, (os.cpu_count() or 1) // k["JOBS"])
    models = {b: os.path.join(k["OUT"], f"build-{b}") for b in k["BUILDS"]}
    jobs = []
    for b in k["BUILDS"]:
        for s in k["SEEDS"]:
            jobs += [(f"b{b}-s{s}", models[b], s, ()), (f"b{b}-s{s}-control", models[b], s, ("--learning_rate=0",))]
        if k["FALSIFY"]:
            jobs.append((f"b{b}-s{k['SEEDS'][0]}-shuffled", models[b], k["SEEDS"][0], ()))
    print(
        f"{len(k['BUILDS'])} builds x {len(k['SEEDS'])} seeds, {len(jobs)} runs of {k['MAX_STEPS']} steps, "
        f"{k['JOBS']} at a time, {threads} thread(s) each",
        flush=True,
    )
    with ThreadPoolExecutor(k["JOBS"]) as pool:  # the builds first (a finished one returns at once), then the runs
        list(
            pool.map(
                lambda b: run([os.path.join(_ROOT, "cpu_models", "tiny_model.py"), models[b], f"--seed={b}"], threads),
                k["BUILDS"],
            )
        )
        futures = {
            name: pool.submit(
                train,
                k,
                name,
                model,
                seed,
                extra,
                threads,
                "bench/shuffled_rewards.py" if name.endswith("shuffled") else "train_grpo.py",
            )
            for name, model, seed, extra in jobs
        }
        rows = {name: f.result() for name, f in futures.items()}
    w = k["WINDOW"]
    lines = [
        f"| build | GRPO seed | first 20 | run, last {w} | control, last {w} | gain | clipped at end | clears "
        f"{k['MARGIN']} |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    gains = []
    for name, model, seed, extra in jobs:
        if name.endswith("control"):
            continue
        b = name.split("-")[0][1:]
        run_rows, control = rows[name], rows[f"b{b}-s{seed}-control"]
        gain = stats.gain_over_control(run_rows, control, w)
        clipped = sum(r["completions/clipped_ratio"] for r in run_rows[-20:]) / 20
        ok = gain >= k["MARGIN"] and clipped < k["MAX_END_CLIPPED"]
        label = f"{seed} (shuffled rewards)" if name.endswith("shuffled") else str(seed)
        if not name.endswith("shuffled"):
            gains.append(gain)
        lines.append(
            f"| {b} | {label} | {sum(r['reward'] for r in run_rows[:20]) / 20:+.2f} | "
            f"{sum(r['reward'] for r in run_rows[-w:]) / w:+.2f} | {sum(r['reward'] for r in control[-w:]) / w:+.2f} "
            "| "
            f"{gain:+.2f} | {clipped:.2f} | {'yes' if ok else '**no**'} |"
        )
    from cpu_models import tiny_model
    from grpo.record import weights_sha256

    lines.append("")
    lines += [
        f"build {b}: model.safetensors sha256 {weights_sha256(models[b])}"
        + (" (the shipped build)" if weights_sha256(models[b]) == tiny_model.SHIPPED_SHA256 else "")
        for b in k["BUILDS"]
    ]
    table = "\n".join(lines)
    print(table)
    print(
        f"learning cells: gain {min(gains):+.2f} to {max(gains):+.2f}; "
        f"{sum(g >= k['MARGIN'] for g in gains)} of {len(gains)} clear {k['MARGIN']}"
    )
    with open(os.path.join(k["OUT"], "table.md"), "w") as f:
        f.write(table + "\n")
    print(f"plot: {plot(k, rows, os.path.join(k['OUT'], 'learning_vs_control.png'))}")


def plot(k, rows, path):
    """One panel per build x seed: the total reward (moving average of 10 steps) of the run, its control
    and, where run, the shuffled-rewards run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from grpo import plot_rewards, stats

    builds, seeds = k["BUILDS"], k["SEEDS"]
    fig, axes = plt.subplots(
        len(builds), len(seeds), figsize=(3.6 * len(seeds), 2.6 * len(builds)), sharex=True, sharey=True, squeeze=False
    )
    for i, b in enumerate(builds):
        for j, s in enumerate(seeds):
            ax = axes[i][j]
            for suffix, label, color in (
                ("", "GRPO", "tab:blue"),
                ("-control", "lr-0 control", "tab:gray"),
                ("-shuffled", "shuffled rewards", "tab:red"),
            ):
                series = rows.get(f"b{b}-s{s}{suffix}")
                if series:
                    ax.plot(
                        [r["step"] for r in series],
                        plot_rewards.smooth([r["reward"] for r in series], 10),
                        label=label,
                        color=color,
                    )
            gain = stats.gain_over_control(rows[f"b{b}-s{s}"], rows[f"b{b}-s{s}-control"], k["WINDOW"])
            ax.set_title(f"build {b}, seed {s}: gain {gain:+.2f}", fontsize=9)
            ax.axvspan(k["MAX_STEPS"] - k["WINDOW"], k["MAX_STEPS"], color="0.93")
    axes[0][0].legend(fontsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("GRPO step")
    for row in axes:
        row[0].set_ylabel("total reward")
    fig.suptitle(
        f"Smoke preset: GRPO against its lr-0 control (gain = mean of the shaded last {k['WINDOW']} steps)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return path


if __name__ == "__main__":
    main(sys.argv[1:])
