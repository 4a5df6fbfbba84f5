"""Every GPU check in one call, for a GPU box lent for a few minutes: the smoke run on CUDA (tiny model,
bf16, 8-bit AdamW), the training benchmark (Unsloth against plain TRL, LoRA and QLoRA, on the random
Qwen3-4B shape) and one evaluate.py pass. Each part runs in its own process group under its own time
limit, and the whole group is killed when the limit passes, so one hang cannot eat the rest or keep the
GPU's memory. Writes OUT/gpu_check.md (the card, versions, date, a table of the parts and the
benchmark's table, ready for BENCHMARKS.md) after every part, and one log per part; on SIGTERM (a lent
machine's own limit) it stops the running part's group, writes the report and exits, so the figures of
the parts done come back.

    python bench/gpu_check.py                                  # on the GPU box, OUT=outputs/gpu-check
    OUT=/some/dir python bench/gpu_check.py --bundle=.gpu/site.tar.gz   # an offline box: unpack the packages first
    python bench/gpu_check.py --dry_run=true                   # on a CPU: the same parts at CPU size

The dry run is the suite's check of this script: the same parts, in the same order, with the same
logs and table, each in its CPU form (a 2-step smoke run, `bench_train.py --smoke`, a 2-problem
evaluation). The time limits below add up to 420 s, inside a lent machine's 600 s a command, with room
for the start-up and the version probe.
"""

import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import tarfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the project root
sys.path.insert(0, ROOT)

OUT = os.environ.get("OUT") or os.path.join("outputs", "gpu-check")  # gpu_check.md and the logs (a lent box's $OUT)
WORK_DIR = os.path.join("outputs", "gpu-check-work")  # run folders and the benchmark's model (not brought back)
BUNDLE = ""  # a site-packages tarball to unpack first (an offline box); "" = the packages are installed
DRY_RUN = False  # True: every part at its CPU size, on a machine without a GPU
SMOKE_TIMEOUT_S = 100  # time limit of the smoke run
BENCH_TIMEOUT_S = 240  # time limit of the training benchmark (4 rows, each loads the 4B shape)
EVAL_TIMEOUT_S = 80  # time limit of the evaluation
EVAL_PROBLEMS = 50  # held-out problems in the evaluation (x 4 samples)


def resolve_knobs(argv):
    from grpo.overrides import resolve

    return resolve(globals(), argv, "gpu_check.py")


def unpack(bundle: str) -> str:
    """Unpack the package tarball once into /tmp/site; return the folder to put on PYTHONPATH."""
    site = os.path.join("/tmp", "site")
    if not os.path.isdir(os.path.join(site, "unsloth")):
        with tarfile.open(bundle) as tar:
            tar.extractall(site, filter="data")
    return site


class Stopped(Exception):
    """SIGTERM or SIGINT arrived while a part ran: its group was stopped; write the report and exit."""


RUNNING = {}  # the part now running: {"proc": its Popen}, for the signal handler


def group_members(pgid: int) -> list[int]:
    """The live processes of process group pgid (zombies, which hold no memory, left out), from /proc."""
    members = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(pid))
    return members


def stop_group(proc) -> None:
    """Stop a part and every process it started (its process group): SIGTERM, then SIGKILL after 10 s;
    returns once none of them is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.time() + 10
        while time.time() < deadline:
            proc.poll()  # reap the leader
            if not group_members(proc.pid):
                return
            time.sleep(0.2)


def on_signal(signum, frame):
    """Stop the running part's group and end the part (Stopped); between parts, the loop sees the flag."""
    RUNNING["signal"] = signal.Signals(signum).name
    proc = RUNNING.get("proc")
    if proc is not None:
        stop_group(proc)
        raise Stopped(RUNNING["signal"])


def part(name: str, args: list[str], timeout: int, k: dict, env: dict) -> dict:
    """Run one part in its own process group under its time limit; its output goes to OUT/<name>.log."""
    started = time.time()
    log = os.path.join(k["OUT"], f"{name}.log")
    print(f"{name}: {' '.join(args)} (limit {timeout} s)", flush=True)
    with open(log, "w") as f:
        os.makedirs(k["WORK_DIR"], exist_ok=True)  # the parts' working folder: what they write stays in it
        proc = subprocess.Popen([sys.executable, os.path.join(ROOT, args[0]), *args[1:]], cwd=k["WORK_DIR"], stdout=f,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)  # its own process group
        RUNNING["proc"] = proc
        print(f"{name}: process group {proc.pid}", flush=True)
        try:
            rc = proc.wait(timeout=timeout)
            status = "ok" if rc == 0 else f"failed (exit {rc})"
        except subprocess.TimeoutExpired:
            stop_group(proc)
            status = f"timed out after {timeout} s"
        except Stopped as e:
            stop_group(proc)  # the handler stopped it already; make sure
            return {"part": name, "status": f"stopped by {e}", "seconds": round(time.time() - started), "log": log}
        finally:
            RUNNING.pop("proc", None)
        stop_group(proc)  # a part that exited may have left processes of its group behind
    seconds = time.time() - started
    print(f"{name}: {status}, {seconds:.0f} s", flush=True)
    return {"part": name, "status": status, "seconds": round(seconds), "log": log}


def environment(env: dict) -> dict:
    """Versions and the device, read by the same Python the parts run under."""
    code = (
        "import json, importlib.metadata as m, torch\n"
        "v = {}\n"
        "for d in ('torch', 'transformers', 'trl', 'unsloth', 'peft', 'accelerate', 'datasets', 'bitsandbytes', "
        "'vllm'):\n"
        "    try: v[d] = m.version(d)\n"
        "    except m.PackageNotFoundError: pass\n"
        "card = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None\n"
        f"import sys; sys.path.insert(0, {ROOT!r})\n"
        "from grpo.device import driver_cuda, gpu_unseen, nvidia_driver\n"
        "driver = nvidia_driver()\n"
        "print(json.dumps({'versions': v, 'card': card, 'cuda': torch.version.cuda, 'driver': driver,\n"
        "                  'driver_cuda': driver and driver_cuda(driver),\n"
        "                  'unseen': gpu_unseen('bench/gpu_check.py')}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    if proc.returncode != 0:
        return {"versions": {}, "card": None, "error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def report(k: dict, info: dict, parts: list[dict]) -> str:
    smoke_dir = os.path.join(k["WORK_DIR"], "smoke")
    lines = [
        f"# GPU check, {datetime.date.today().isoformat()}{' (CPU dry run)' if k['DRY_RUN'] else ''}",
        "",
        f"Machine: {info.get('card') or platform.processor() or platform.machine()} "
        f"(NVIDIA driver {info.get('driver')}, which runs CUDA up to {info.get('driver_cuda')}; torch built for "
        f"CUDA {info.get('cuda')}), Python {platform.python_version()}; "
        + ", ".join(f"{d} {v}" for d, v in info.get("versions", {}).items()),
        "",
        "| part | status | wall time |",
        "| --- | --- | ---: |",
    ]
    lines += [f"| {p['part']} | {p['status']} | {p['seconds']} s |" for p in parts]
    try:
        config = json.load(open(os.path.join(smoke_dir, "run_config.json")))["FOUND"]
        final = config.get("FINAL_METRICS") or {}
        lines += [
            "",
            f"Smoke run: {config['STEPS_DONE']} steps, {config['DTYPE']}, optim "
            f"{config['TRAINER_ARGS'].get('optim')}, {config['WALL_TIME_S']} s, final total reward "
            f"{final.get('reward')}, model sha256 {config.get('MODEL_SHA256')}",
            "",
            f"Trainers: GRPO {config.get('GRPO_TRAINER')} (source sha256 {config.get('GRPO_TRAINER_SHA256')}), "
            f"priming {config.get('PRIMING_TRAINER')}; KL at step 1 {first_kl(smoke_dir)}",
            "",
            f"Health: {(config.get('HEALTH') or {}).get('verdict')}; peak memory {config.get('PEAK_MEMORY_GIB')} GiB",
        ]
    except (OSError, ValueError, KeyError):
        lines += ["", "Smoke run: no run_config.json (see smoke.log)"]
    bench_log = (
        open(os.path.join(k["OUT"], "bench_train.log")).read()
        if os.path.exists(os.path.join(k["OUT"], "bench_train.log"))
        else ""
    )
    table = [
        line
        for line in bench_log.splitlines()
        if line.startswith("|") or "s/step /" in line or line.startswith(("CPU:", "Decode bound:"))
    ]
    if table:
        lines += ["", "Training benchmark (`bench/bench_train.py`):", ""] + table
    try:
        results = json.load(open(os.path.join(smoke_dir, "eval_results.json")))
        lines += [
            "",
            "Evaluation (`evaluate.py --smoke`): "
            + ", ".join(
                f"{label} accuracy {results[label]['accuracy']:.3f} format {results[label]['format_rate']:.3f}"
                for label in ("base", "primed", "trained")
                if label in results
            ),
        ]
    except (OSError, ValueError, KeyError):
        lines += ["", "Evaluation: no eval_results.json (see evaluate.log)"]
    return "\n".join(lines) + "\n"


def first_kl(run_dir: str):
    """The smoke run's KL to its reference at step 1 (about 0 when the reference is the primed adapter)."""
    from grpo.plot_rewards import grpo_rows, read_metrics

    try:
        return next((row.get("kl") for row in grpo_rows(read_metrics(os.path.join(run_dir, "metrics.jsonl")))), None)
    except (OSError, ValueError):
        return None


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
        sys.exit(
            f"gpu_check.py: error: {info['unseen']}" if info.get("unseen") else
            f"gpu_check.py: no CUDA GPU found ({info.get('error') or 'torch sees none'}). "
            "On a CPU:  python bench/gpu_check.py --dry_run=true"
        )
    smoke_dir = os.path.join(k["WORK_DIR"], "smoke")
    cpu = k["DRY_RUN"]
    plan = [
        (
            "smoke",
            ["train_grpo.py", "--smoke", f"--output_dir={smoke_dir}", *(["--max_steps=2"] if cpu else [])],
            k["SMOKE_TIMEOUT_S"],
        ),
        (
            "bench_train",
            [os.path.join("bench", "bench_train.py"), *(["--smoke"] if cpu else [])],
            k["BENCH_TIMEOUT_S"],
        ),
        (
            "evaluate",
            [
                "evaluate.py",
                "--smoke",
                f"--run_dir={smoke_dir}",
                *(["--n_problems=2", "--n_samples=1"] if cpu else [f"--n_problems={k['EVAL_PROBLEMS']}"]),
            ],
            k["EVAL_TIMEOUT_S"],
        ),
    ]
    parts = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    for name, args, limit in plan:
        if RUNNING.get("signal"):  # arrived between parts
            parts.append({"part": name, "status": f"stopped by {RUNNING['signal']}", "seconds": 0, "log": ""})
        else:
            try:
                parts.append(part(name, args, limit, k, env))
            except Stopped as e:  # arrived while a timed-out part was being stopped
                parts.append({"part": name, "status": f"stopped by {e}", "seconds": 0, "log": ""})
        write_report(k, info, parts)
        if parts[-1]["status"].startswith("stopped by"):
            print(f"gpu_check.py: {parts[-1]['status']}; the report keeps the parts done", flush=True)
            sys.exit(143)
    print("\n" + write_report(k, info, parts))
    if any(p["status"] != "ok" for p in parts):
        sys.exit(1)


def write_report(k: dict, info: dict, parts: list[dict]) -> str:
    """Rewrite OUT/gpu_check.md with the parts so far (after every part: a stop loses none of them)."""
    text = report(k, info, parts)
    with open(os.path.join(k["OUT"], "gpu_check.md"), "w") as f:
        f.write(text)
    return text


if __name__ == "__main__":
    main(sys.argv[1:])
