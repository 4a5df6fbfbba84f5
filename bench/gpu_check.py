"""Every GPU check in one call, for a GPU box lent for a few minutes: the smoke run on CUDA (tiny model,
bf16, 8-bit AdamW), the training benchmark (Unsloth against plain TRL, LoRA and QLoRA, on the random
Qwen3-4B shape) and one evaluate.py pass. Each part runs in its own process under its own time limit,
so one hang cannot eat the rest. Writes OUT/gpu_check.md (the card, versions, date, a table of the
parts and the benchmark's table, ready for BENCHMARKS.md) and one log per part.

    python bench/gpu_check.py                                  # on the GPU box, OUT=outputs/gpu-check
    OUT=/some/dir python bench/gpu_check.py --bundle=.gpu/site.tar.gz   # an offline box: unpack the packages first
    python bench/gpu_check.py --dry_run=true                   # on a CPU: the same parts at CPU size

The dry run is the suite's check of this script: the same parts, in the same order, with the same
logs and table, each in its CPU form (a 2-step smoke run, `bench_train.py --smoke`, a 2-problem
evaluation). The time limits below fit the whole check in under 8 minutes of a 15-minute lease.
"""

import datetime
import json
import os
import platform
import subprocess
import sys
import tarfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the project root
sys.path.insert(0, ROOT)

OUT = os.environ.get("OUT") or os.path.join("outputs", "gpu-check")  # gpu_check.md and the logs (the device tool's $OUT)
WORK_DIR = os.path.join("outputs", "gpu-check-work")  # run folders and the benchmark's model (not brought back)
BUNDLE = ""  # a site-packages tarball to unpack first (an offline box); "" = the packages are installed
DRY_RUN = False  # True: every part at its CPU size, on a machine without a GPU
SMOKE_TIMEOUT_S = 150  # time limit of the smoke run
BENCH_TIMEOUT_S = 330  # time limit of the training benchmark (4 rows, each loads the 4B shape)
EVAL_TIMEOUT_S = 90  # time limit of the evaluation
EVAL_PROBLEMS = 50  # held-out problems in the evaluation (x 4 samples)


def resolve_knobs(argv):
    from grpo.overrides import resolve

    return resolve(globals(), argv, {}, "gpu_check.py")


def unpack(bundle: str) -> str:
    """Unpack the package tarball once into /tmp/site; return the folder to put on PYTHONPATH."""
    site = os.path.join("/tmp", "site")
    if not os.path.isdir(os.path.join(site, "unsloth")):
        with tarfile.open(bundle) as tar:
            tar.extractall(site, filter="data")
    return site


def part(name: str, args: list[str], timeout: int, k: dict, env: dict) -> dict:
    """Run one part as its own process under its time limit; its output goes to OUT/<name>.log."""
    started = time.time()
    log = os.path.join(k["OUT"], f"{name}.log")
    print(f"{name}: {' '.join(args)} (limit {timeout} s)", flush=True)
    with open(log, "w") as f:
        try:
            rc = subprocess.run([sys.executable, *args], cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=env,
                                timeout=timeout).returncode
            status = "ok" if rc == 0 else f"failed (exit {rc})"
        except subprocess.TimeoutExpired:
            status = f"timed out after {timeout} s"
    seconds = time.time() - started
    print(f"{name}: {status}, {seconds:.0f} s", flush=True)
    return {"part": name, "status": status, "seconds": round(seconds), "log": log}


def environment(env: dict) -> dict:
    """Versions and the device, read by the same Python the parts run under."""
    code = ("import json, importlib.metadata as m, torch\n"
            "v = {}\n"
            "for d in ('torch', 'transformers', 'trl', 'unsloth', 'peft', 'accelerate', 'datasets', 'bitsandbytes', 'vllm'):\n"
            "    try: v[d] = m.version(d)\n"
            "    except m.PackageNotFoundError: pass\n"
            "card = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None\n"
            "print(json.dumps({'versions': v, 'card': card, 'cuda': torch.version.cuda}))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    if proc.returncode != 0:
        return {"versions": {}, "card": None, "error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def report(k: dict, info: dict, parts: list[dict]) -> str:
    smoke_dir = os.path.join(k["WORK_DIR"], "smoke")
    lines = [f"# GPU check, {datetime.date.today().isoformat()}{' (CPU dry run)' if k['DRY_RUN'] else ''}", "",
             f"Machine: {info.get('card') or platform.processor() or platform.machine()} "
             f"(CUDA {info.get('cuda')}), Python {platform.python_version()}; "
             + ", ".join(f"{d} {v}" for d, v in info.get("versions", {}).items()), "",
             "| part | status | wall time |", "| --- | --- | ---: |"]
    lines += [f"| {p['part']} | {p['status']} | {p['seconds']} s |" for p in parts]
    try:
        config = json.load(open(os.path.join(smoke_dir, "run_config.json")))
        final = config.get("FINAL_METRICS") or {}
        lines += ["", f"Smoke run: {config['STEPS_DONE']} steps, {config['DTYPE']}, optim "
                  f"{config['TRAINER_ARGS'].get('optim')}, {config['WALL_TIME_S']} s, final total reward "
                  f"{final.get('reward')}, model sha256 {config.get('MODEL_SHA256')}"]
    except (OSError, ValueError, KeyError):
        lines += ["", "Smoke run: no run_config.json (see smoke.log)"]
    bench_log = open(os.path.join(k["OUT"], "bench_train.log")).read() if os.path.exists(os.path.join(k["OUT"], "bench_train.log")) else ""
    table = [line for line in bench_log.splitlines() if line.startswith("|") or "s/step /" in line or line.startswith("CPU:")]
    if table:
        lines += ["", "Training benchmark (`bench/bench_train.py`):", ""] + table
    try:
        results = json.load(open(os.path.join(smoke_dir, "eval_results.json")))
        lines += ["", "Evaluation (`evaluate.py --smoke`): " + ", ".join(
            f"{label} accuracy {results[label]['accuracy']:.3f} format {results[label]['format_rate']:.3f}"
            for label in ("base", "primed", "trained") if label in results)]
    except (OSError, ValueError, KeyError):
        lines += ["", "Evaluation: no eval_results.json (see evaluate.log)"]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    k = resolve_knobs(argv)
    os.makedirs(k["OUT"], exist_ok=True)
    k["OUT"], k["WORK_DIR"] = os.path.abspath(k["OUT"]), os.path.abspath(k["WORK_DIR"])
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if k["BUNDLE"]:
        site = unpack(k["BUNDLE"])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (site, ROOT, env.get("PYTHONPATH")) if p)
    info = environment(env)
    if not info.get("card") and not k["DRY_RUN"]:
        sys.exit(f"gpu_check.py: no CUDA GPU found ({info.get('error') or 'torch sees none'}). "
                 "On a CPU:  python bench/gpu_check.py --dry_run=true")
    smoke_dir = os.path.join(k["WORK_DIR"], "smoke")
    cpu = k["DRY_RUN"]
    parts = [
        part("smoke", ["train_grpo.py", "--smoke", f"--output_dir={smoke_dir}", *(["--max_steps=2"] if cpu else [])],
             k["SMOKE_TIMEOUT_S"], k, env),
        part("bench_train", [os.path.join("bench", "bench_train.py"), *(["--smoke"] if cpu else [])],
             k["BENCH_TIMEOUT_S"], k, env),
        part("evaluate", ["evaluate.py", "--smoke", f"--run_dir={smoke_dir}",
                          *(["--n_problems=2", "--n_samples=1"] if cpu else [f"--n_problems={k['EVAL_PROBLEMS']}"])],
             k["EVAL_TIMEOUT_S"], k, env),
    ]
    text = report(k, info, parts)
    with open(os.path.join(k["OUT"], "gpu_check.md"), "w") as f:
        f.write(text)
    print("\n" + text)
    if any(p["status"] != "ok" for p in parts):
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
