"""Benchmark the recipe on a real pretrained model on CPU: `--preset=smollm2` (SmolLM2-135M-Instruct),
several seeds and a learning-rate-0 control, each primed, GRPO-trained and evaluated on the held-out
problems. Prints one table; copy it into BENCHMARKS.md.

    python bench_smollm2.py                      # seeds 3407 and 2, and the control (about an hour on 2 cores)
    python bench_smollm2.py --seeds=3407 --max_steps=20

The claim it checks: held-out accuracy in the solution block rises from the primed model to the
GRPO-trained one by more than its noise (the paired 95% interval of the change excludes 0), lenient
accuracy does not fall, and check_answer rises during GRPO while the control stays flat.
"""

import json
import os
import subprocess
import sys
import time

SEEDS = (3407, 2)  # seeds of the learning runs
CONTROL_SEED = 3407  # the learning-rate-0 control runs with this seed
MAX_STEPS = 40  # GRPO steps per run (the preset's)
N_SAMPLES = 2  # evaluation samples per held-out problem
MAX_NEW_TOKENS = 96  # evaluation completion limit (the preset's MAX_COMPLETION_LENGTH)
WINDOW = 10  # steps averaged at each end of a run for check_answer
OUT = os.path.join("outputs", "bench-smollm2")  # one folder per run inside

HERE = os.path.dirname(os.path.abspath(__file__))


def resolve_knobs(argv):
    from overrides import resolve

    return resolve(globals(), argv, {}, "bench_smollm2.py")


def run(script, *args):
    started = time.time()
    proc = subprocess.run([sys.executable, os.path.join(HERE, script), *args], capture_output=True, text=True)
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
    done = config.get("STEPS_DONE") == k["MAX_STEPS"] and evaluated.get("trained", {}).get("n_samples")
    return config["WALL_TIME_S"] if done else None


def one(k, name, seed, extra=()):
    folder = os.path.join(k["OUT"], name)
    train_s = finished(folder, k)
    if train_s is None:
        train_s = run("train_grpo.py", "--preset=smollm2", f"--seed={seed}", f"--max_steps={k['MAX_STEPS']}",
                      f"--output_dir={folder}", *extra)
        run("evaluate.py", f"--run_dir={folder}", f"--n_samples={k['N_SAMPLES']}",
            f"--max_new_tokens={k['MAX_NEW_TOKENS']}", "--n_problems=0")
    else:
        print(f"{name}: reusing the finished run in {folder}", flush=True)
    return summarize(k, name, seed, folder, train_s)


def summarize(k, name, seed, folder, train_s):
    """One table row from a trained and evaluated run folder."""
    rows = [json.loads(line) for line in open(os.path.join(folder, "metrics.jsonl"))]
    grpo = [r for r in rows if "reward" in r]
    answer = [r["rewards/check_answer/mean"] for r in grpo]
    w = min(k["WINDOW"], len(answer))
    results = json.load(open(os.path.join(folder, "eval_results.json")))
    return {"name": name, "seed": seed, "train_s": train_s, "steps": len(answer),
            "check_answer_first": sum(answer[:w]) / w, "check_answer_last": sum(answer[-w:]) / w, **results}


def fmt(result, label, metric):
    r = result[label]
    lo, hi = r[f"{metric}_ci95"] if f"{metric}_ci95" in r else (float("nan"), float("nan"))
    return f"{r[metric]:.3f} [{lo:.3f}, {hi:.3f}]"


def table(results):
    lines = ["| run | steps | train s | check_answer first -> last | accuracy primed | accuracy trained | GRPO change [95% CI] "
             "| lenient primed | lenient trained | format trained |",
             "| --- | ---: | ---: | --- | --- | --- | --- | --- | --- | ---: |"]
    for r in results:
        change = r.get("change_from_primed", {})
        lo, hi = change.get("accuracy_ci95", (float("nan"), float("nan")))
        lines.append(f"| {r['name']} | {r['steps']} | {r['train_s']:.0f} | {r['check_answer_first']:+.2f} -> {r['check_answer_last']:+.2f} "
                     f"| {fmt(r, 'primed', 'accuracy')} | {fmt(r, 'trained', 'accuracy')} "
                     f"| {change.get('accuracy', float('nan')):+.3f} [{lo:+.3f}, {hi:+.3f}] "
                     f"| {r['primed']['accuracy_lenient']:.3f} | {r['trained']['accuracy_lenient']:.3f} "
                     f"| {r['trained']['format_rate']:.2f} |")
    return "\n".join(lines)


def main(argv):
    k = resolve_knobs(argv)
    results = []
    for seed in k["SEEDS"]:
        print(f"seed {seed}: priming, {k['MAX_STEPS']} GRPO steps, evaluation", flush=True)
        results.append(one(k, f"seed{seed}", seed))
    print(f"control (lr 0, seed {k['CONTROL_SEED']})", flush=True)
    results.append(one(k, "control", k["CONTROL_SEED"], ["--learning_rate=0"]))
    print()
    print(table(results))
    with open(os.path.join(k["OUT"], "bench_results.json"), "w") as f:
        json.dump(results, f, indent=2, default=str)


if __name__ == "__main__":
    main(sys.argv[1:])
