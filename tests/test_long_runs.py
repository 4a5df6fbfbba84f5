"""Long runs you can stop and resume: checkpoints, --resume=auto, a clean stop on SIGINT, the manifest,
and a refusal to mix a new run into an old run's folder. Each run is the smoke preset, as a user runs it:
    python train_grpo.py --smoke --max_steps=4 --save_steps=2
    python train_grpo.py --smoke --max_steps=8 --save_steps=2 --resume=auto
"""

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import run_script

from cpu_models import tiny_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "train_grpo.py")


def train(workdir, *args, timeout=600):
    result = run_script(workdir, "train_grpo.py", "--smoke", *args, timeout=timeout)  # asserts exit 0
    return result.stdout + result.stderr


def train_steps(path):
    return [json.loads(line)["step"] for line in open(path) if '"reward"' in line]


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("resume")
    first = train(workdir, "--max_steps=4", "--save_steps=2", "--output_dir=outputs/r")
    second = train(workdir, "--max_steps=8", "--save_steps=2", "--resume=auto", "--output_dir=outputs/r")
    return workdir / "outputs" / "r", first, second


def test_resume_auto_continues_from_the_latest_checkpoint(resumed):
    out, _, log = resumed
    assert "resuming from outputs/r/checkpoint-4 (step 4)" in log
    assert train_steps(out / "metrics.jsonl") == list(range(1, 9))  # each step once, no gap
    assert (out / "checkpoint-8" / "trainer_state.json").exists()
    assert not (out / "checkpoint-2").exists()  # SAVE_TOTAL_LIMIT=2 keeps the newest two
    state = json.load(open(out / "checkpoint-8" / "trainer_state.json"))
    assert state["global_step"] == 8
    config = json.load(open(out / "run_config.json"))
    assert config["FOUND"]["RESUMED_FROM"].endswith("checkpoint-4") and config["FOUND"]["STEPS_DONE"] == 8


def test_resume_keeps_the_trained_adapter_and_the_primed_kl_reference(resumed):
    """The smoke preset primes the format and has BETA > 0: TRL freezes a copy of the primed adapter as
    the KL reference ("ref"). Checkpoints hold only the trained adapter (a "ref" subfolder would make
    transformers' resume load that one alone), and a resumed run rebuilds the same reference. A wrong
    reference shows in the KL: about 1.2 per token to the unprimed base, against under 0.01 to the primed
    model (measured on this preset)."""
    out, _, log = resumed
    assert "KL reference: the primed model" in log
    assert not list(out.glob("checkpoint-*/ref"))
    kl = {r["step"]: r["kl"] for r in map(json.loads, open(out / "metrics.jsonl")) if "reward" in r}
    assert all(value < 0.25 for value in kl.values()), kl  # steps 5..8 ran after the resume


def test_run_config_is_a_manifest(resumed):
    out, _, _ = resumed
    config = json.load(open(out / "run_config.json"))
    found = config["FOUND"]  # what the run found, apart from the knobs
    for package in ("python", "torch", "transformers", "trl", "unsloth", "peft", "math-verify"):
        assert found["VERSIONS"].get(package), package
    assert found["DEVICE"].get("cpu") or found["DEVICE"].get("gpu")
    assert found["DATA"]["rows"] == 430 and found["DATA"]["held_out"] == 50 and found["DATA"]["fingerprint"]
    assert found["TRAINER_ARGS"]["max_steps"] == 8 and found["TRAINER_ARGS"]["beta"] == config["BETA"]
    assert found["WALL_TIME_S"] > 0 and found["FINAL_METRICS"]["step"] == 8
    assert "GIT_COMMIT" in found
    card = (out / "lora" / "README.md").read_text()
    assert "None" not in card and f"base_model: {tiny_model.SHIPPED}" in card and "8 steps" in card


def test_a_new_run_into_an_old_runs_folder_is_refused_in_a_second(tmp_path):
    (tmp_path / "outputs" / "checkpoint-3").mkdir(parents=True)
    start = time.time()
    result = run_script(tmp_path, "train_grpo.py", f"--output_dir={tmp_path / 'outputs'}", check=False, timeout=60)
    assert result.returncode != 0 and "already holds another run (checkpoint-3)" in result.stderr
    assert "--resume=auto" in result.stderr and "--output_dir=NEW_FOLDER" in result.stderr
    assert time.time() - start < 20
    result = run_script(tmp_path, "train_grpo.py", "--resume=auto", f"--output_dir={tmp_path / 'empty'}", check=False,
                        timeout=60)
    assert result.returncode != 0 and "no checkpoint-N folder" in result.stderr


def test_sigint_finishes_the_step_saves_and_resumes(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, SCRIPT, "--smoke", "--max_steps=500", "--output_dir=outputs/s"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    metrics = tmp_path / "outputs" / "s" / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and (not metrics.exists() or len(train_steps(metrics)) < 3):
        time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, out[-2000:] + err[-2000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "SIGINT received" in out and "--resume=auto" in out
    steps = train_steps(metrics)
    last = steps[-1]
    assert steps == list(range(1, last + 1)) and last < 500
    run = tmp_path / "outputs" / "s"
    assert (run / f"checkpoint-{last}").is_dir() and (run / "lora" / "adapter_model.safetensors").exists()
    assert json.load(open(run / "run_config.json"))["FOUND"]["STOPPED_BY"] == "SIGINT"
    log = train(tmp_path, f"--max_steps={last + 2}", "--resume=auto", "--output_dir=outputs/s")
    assert f"resuming from outputs/s/checkpoint-{last} (step {last})" in log
    assert train_steps(metrics) == list(range(1, last + 3))


def test_sigkill_while_saving_every_step_then_resume_auto(tmp_path):
    """Spot boxes are preempted and the OOM killer sends SIGKILL, which can land in the middle of Trainer's
    save. A run saving every step (accumulation 2, through the non-finite guard) is killed twice at a
    random moment and resumed each time; then a kill mid-save is made certain (the newest checkpoint
    loses trainer_state.json, the file Trainer writes last) and the last resume must skip that folder.
    No traceback, and each step once in metrics.jsonl."""
    import random

    from conftest import finish_script, start_script

    args = ["--smoke", "--max_steps=8", "--save_steps=1", "--gradient_accumulation_steps=2",
            "--per_device_train_batch_size=8", "--output_dir=outputs/k"]
    run = tmp_path / "outputs" / "k"
    for attempt, rows_before_kill in enumerate((2, 4)):
        process = start_script(tmp_path, "train_grpo.py", *args, *(["--resume=auto"] if attempt else []))
        deadline = time.time() + 300
        while time.time() < deadline and process.poll() is None and (
            not (run / "metrics.jsonl").exists() or len(train_steps(run / "metrics.jsonl")) < rows_before_kill
        ):
            time.sleep(0.1)
        time.sleep(random.uniform(0, 1.5))  # somewhere in the next step or its save
        process.kill()
        out, _ = process.communicate(timeout=60)
        assert "Traceback" not in out, out[-3000:]
    newest = sorted(run.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))[-1]
    (newest / "trainer_state.json").unlink(missing_ok=True)
    log = finish_script(start_script(tmp_path, "train_grpo.py", *args, "--resume=auto"), timeout=600)
    assert f"resume: skipping {newest.name} (unfinished" in log and "Traceback" not in log
    assert train_steps(run / "metrics.jsonl") == list(range(1, 9))  # none missing, none twice
    rows = [json.loads(line) for line in open(run / "metrics.jsonl") if '"reward"' in line]
    assert all(math.isfinite(r["grad_norm"]) and math.isfinite(r["loss"]) for r in rows)
    assert json.load(open(run / "run_config.json"))["FOUND"]["STEPS_DONE"] == 8


def test_tensorboard_logs_offline_and_smoke_starts_over_by_itself(tmp_path):
    """One folder, two runs (each run costs ~15 s of imports, so the two checks share them)."""
    train(tmp_path, "--max_steps=2", "--report_to=tensorboard", "--output_dir=outputs/o")
    events = list((tmp_path / "outputs" / "o").rglob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    log = train(tmp_path, "--max_steps=3", "--output_dir=outputs/o")
    assert "smoke: starting over in outputs/o; the previous smoke run is now in outputs/o.prev" in log
    assert train_steps(tmp_path / "outputs" / "o" / "metrics.jsonl") == [1, 2, 3]
    assert not list((tmp_path / "outputs" / "o").rglob("events.out.tfevents.*"))  # the first run's files went with it
    aside = tmp_path / "outputs" / "o.prev"  # whole, not in part: nothing of the first run is lost
    assert train_steps(aside / "metrics.jsonl") == [1, 2] and list(aside.rglob("events.out.tfevents.*"))
    assert (aside / "lora" / "adapter_model.safetensors").exists() and (aside / "run_config.json").exists()


def test_smoke_never_wipes_a_real_run(tmp_path):
    real = tmp_path / "outputs" / "real"
    (real / "checkpoint-50").mkdir(parents=True)
    (real / "run_config.json").write_text(json.dumps({"SMOKE": False, "MODEL_NAME": "unsloth/Qwen3-4B-Base"}))
    result = run_script(tmp_path, "train_grpo.py", "--smoke", f"--output_dir={real}", check=False, timeout=60)
    assert result.returncode != 0 and "already holds another run (checkpoint-50)" in result.stderr
    assert (real / "checkpoint-50").is_dir()


def test_smoke_never_writes_over_a_model_folder_the_user_named(tmp_path):
    """--smoke --model_name=FOLDER loads the user's model as it is and leaves the folder untouched."""
    import hashlib
    import shutil

    mine = tmp_path / "my-model"
    shutil.copytree(tiny_model.SHIPPED, mine)
    (mine / "tiny_model.json").unlink()  # no longer the builder's: a model of the user's
    (mine / "NOTES.md").write_text("my model\n")
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in mine.iterdir()}
    train(tmp_path, "--max_steps=1", f"--model_name={mine}", "--output_dir=outputs/mine")
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in mine.iterdir()}
    assert after == before
    assert json.load(open(tmp_path / "outputs" / "mine" / "run_config.json"))["MODEL_NAME"] == str(mine)


def test_a_learning_rate_that_diverges_ends_in_the_guards_message_and_saves_no_adapter(tmp_path):
    """--learning_rate=1e30: the first update makes the adapter's weights so large that the next step's
    sampling meets inf/NaN logits. The run stops with one paragraph, no traceback, exit 1, no lora/."""
    result = run_script(tmp_path, "train_grpo.py", "--smoke", "--learning_rate=1e30", "--max_steps=4",
                        "--output_dir=outputs/nf", check=False, timeout=600)
    out = tmp_path / "outputs" / "nf"
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stdout + result.stderr
    message = next(line for line in result.stderr.splitlines() if "non-finite" in line)
    assert "training stopped at GRPO step 2" in message and "LEARNING_RATE" in message
    assert f"the last good one is {os.path.join('outputs', 'nf', 'lora_primed')}" in message
    assert not (out / "lora").exists() and not list(out.glob("checkpoint-*"))
    assert (out / "lora_primed" / "adapter_model.safetensors").exists()
    assert json.load(open(out / "run_config.json"))["FOUND"]["STOPPED_BY"] == "non-finite"


def test_a_missing_tiny_model_is_refused_before_anything_loads(tmp_path):
    result = run_script(tmp_path, "train_grpo.py", "--smoke", f"--model_name={tmp_path / 'nothing'}", check=False,
                        timeout=60)
    assert result.returncode != 0 and "no tiny model in" in result.stderr
    assert "python cpu_models/tiny_model.py" in result.stderr


def signal_when(workdir, marker: str, script: str, *args, delay: float = 1.0, sig=signal.SIGTERM):
    """Start `script args` in workdir, send `sig` `delay` seconds after a line holding `marker` appears;
    returns (exit code, the whole log, seconds from the signal to the exit)."""
    from conftest import start_script

    proc = start_script(workdir, script, *args)
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if marker in line:
            break
    else:
        pytest.fail("the marker never appeared:\n" + "".join(seen)[-3000:])
    time.sleep(delay)
    proc.send_signal(sig)
    sent = time.time()
    rest, _ = proc.communicate(timeout=120)
    return proc.returncode, "".join(seen) + rest, time.time() - sent


def test_sigterm_during_priming_stops_after_the_step_in_one_line_and_keeps_nothing_part_made(tmp_path):
    """SIGTERM during format priming (the first long step of a GPU run): the step finishes, the run ends in
    one line within seconds naming the step and the command that goes on, and no part-primed adapter
    reaches the priming cache."""
    code, log, seconds = signal_when(tmp_path, "format priming:", "train_grpo.py", "--smoke", "--output_dir=outputs/t")
    assert code == 1 and "Traceback" not in log and seconds < 20, (code, seconds, log[-3000:])
    line = log.strip().splitlines()[-1]
    assert line.startswith("train_grpo.py: stopped by SIGTERM during format priming, at step "), line
    assert line.endswith("priming starts again next time. Start again with:  python train_grpo.py --smoke "
                         "--output_dir=outputs/t"), line
    assert not list((tmp_path / "outputs" / "primed").glob("*/priming_key.json"))  # nothing cached part-made


def test_sigterm_while_loading_and_during_evaluation_end_in_one_line(tmp_path):
    code, log, _ = signal_when(tmp_path, "data:", "train_grpo.py", "--smoke", "--output_dir=outputs/l", delay=0.2)
    line = log.strip().splitlines()[-1]
    assert code == 1 and "Traceback" not in log, log[-3000:]
    assert line.startswith("train_grpo.py: stopped by SIGTERM before GRPO started"), line
    assert line.endswith("Start again with:  python train_grpo.py --smoke --output_dir=outputs/l"), line
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run_dir = tmp_path / "run"  # a run folder with an untrained adapter: enough for evaluate.py to sample
    get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model.SHIPPED),
                   LoraConfig(r=4, target_modules=["q_proj"])).save_pretrained(run_dir / "lora")
    AutoTokenizer.from_pretrained(tiny_model.SHIPPED).save_pretrained(run_dir / "lora")
    (run_dir / "run_config.json").write_text(json.dumps({"MODEL_NAME": tiny_model.SHIPPED, "SMOKE": True}))
    code, log, _ = signal_when(tmp_path, "expected:", "evaluate.py", "--smoke", f"--run_dir={run_dir}",
                               "--problem_set=bundled", "--max_new_tokens=200", delay=0.5)
    line = log.strip().splitlines()[-1]
    assert code == 1 and "Traceback" not in log and line.startswith("evaluate.py: stopped by SIGTERM"), log[-3000:]
    assert not (run_dir / "eval_results.json").exists()
