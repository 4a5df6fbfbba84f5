"""The TRL plumbing of what the trainer reports and guards while it runs: the metrics file (GRPO's and the
priming SFT's), the early health checks and verdict, the collapse alarm, a clean stop on a signal, the
one-line-a-step progress and the non-finite guard. The judgments themselves (what counts as truncation, a still
adapter, a collapse, a non-finite value) are in grpo/health.py, on plain values.

`metrics.jsonl` gets one row per training step, with the process's peak memory (`memory/peak_gib`), and,
with EVAL_STEPS, one row per held-out evaluation whose keys start with `eval_` (`eval_reward`, ...).

All seven are transformers TrainerCallbacks built by small factories (make_*), so importing this module
loads nothing heavy. `grpo/trainer.py` hands six to GRPOTrainer, `grpo/priming.py` the SFT one to SFTTrainer.
"""

from __future__ import annotations

import json
import os

from grpo import health
from grpo.health import CollapseWatch

METRIC_KEYS = ("reward", "reward_std", "frac_reward_zero_std", "completions/mean_length",
               "completions/clipped_ratio", "loss", "grad_norm", "learning_rate", "kl", "entropy",
               "clip_ratio/region_mean", "gate/all_right", "gate/all_wrong", "right_only/zeroed")


def metrics_row(logs: dict, step: int, reward_names: list[str]) -> dict:
    """One metrics.jsonl row from a trainer log dict: step, each reward's mean, total, length, ...

    >>> metrics_row({"reward": 1.5, "rewards/a/mean": 1.5, "loss": 0.0, "epoch": 1}, 3, ["a"])
    {'step': 3, 'rewards/a/mean': 1.5, 'reward': 1.5, 'loss': 0.0}
    """
    row = {"step": step}
    for name in reward_names:
        row[f"rewards/{name}/mean"] = logs.get(f"rewards/{name}/mean")
    for key in METRIC_KEYS:
        if key in logs:
            row[key] = logs[key]
    return row


def eval_row(logs: dict, step: int, reward_names: list[str]) -> dict:
    """A held-out evaluation's row: the same metrics as a training row, each key prefixed `eval_`.

    >>> eval_row({"eval_reward": 0.5, "eval_rewards/a/mean": 0.5, "eval_loss": 0.0}, 10, ["a"])
    {'step': 10, 'eval_rewards/a/mean': 0.5, 'eval_reward': 0.5, 'eval_loss': 0.0}
    """
    row = metrics_row({key[5:]: value for key, value in logs.items() if key.startswith("eval_")}, step, reward_names)
    return {"step": step, **{f"eval_{key}": value for key, value in row.items() if key != "step"}}


def make_metrics_callback(path: str, reward_names: list[str]):
    """A TrainerCallback that appends one JSON line per logged training step to `path`."""
    from transformers import TrainerCallback

    class MetricsFile(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                keep_rows_up_to(path, state.global_step)  # 0 on a new run; the checkpoint's step on a resume

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or not state.is_world_process_zero:
                return
            if "reward" in logs:
                row = metrics_row(logs, state.global_step, reward_names)
                row["memory/peak_gib"] = health.peak_memory_gib()
            elif "eval_reward" in logs:
                row = eval_row(logs, state.global_step, reward_names)
            else:
                return
            with open(path, "a") as f:
                f.write(json.dumps(row) + "\n")

    return MetricsFile()


def keep_rows_up_to(path: str, step: int) -> None:
    """Keep only the GRPO rows of `path` logged at or before `step` (none when step is 0), and the
    format-priming rows of this run: a resumed run continues its metrics with no duplicate steps,
    even if the first run logged past its checkpoint or was killed halfway through writing a row."""
    rows = []
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    row = json.loads(line)
                except ValueError:  # blank, or the last line of a process killed mid-write
                    continue
                if row.get("phase") == "sft" or (step > 0 and row.get("step", 0) <= step):
                    rows.append(line if line.endswith("\n") else line + "\n")
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(rows)


def make_sft_metrics_callback(path: str):
    """A TrainerCallback that starts `path` afresh and writes the format-priming SFT's losses to it,
    one row per step, marked "phase": "sft" (the GRPO rows that follow have no phase key)."""
    from transformers import TrainerCallback

    class SftMetrics(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
                open(path, "w").close()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs and state.is_world_process_zero:
                row = {"phase": "sft", "sft_step": state.global_step, "loss": logs["loss"],
                       "learning_rate": logs.get("learning_rate")}
                with open(path, "a") as f:
                    f.write(json.dumps(row) + "\n")

    return SftMetrics()


def make_signal_stop_callback(save: bool = True):
    """A TrainerCallback that turns SIGINT (Ctrl-C) and SIGTERM (a preempted cloud box) into a clean
    stop: the current step finishes and training ends; with `save`, a checkpoint is saved first (GRPO; the
    caller then saves the adapter and curves). A second signal exits at once (status 130).

    Call `.install()` before training and `.uninstall()` after it (the handlers before are put back);
    `.signal_name` is set once a signal has arrived.
    """
    import signal

    from transformers import TrainerCallback

    class SignalStop(TrainerCallback):
        def __init__(self):
            self.signal_name = None
            self.before = {}

        def install(self):
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.before[sig] = signal.signal(sig, self._handle)

        def uninstall(self):
            for sig, handler in self.before.items():
                signal.signal(sig, handler)
            self.before = {}

        def _handle(self, signum, frame):
            if self.signal_name is not None:  # the second one: stop now
                os._exit(130)
            self.signal_name = signal.Signals(signum).name
            then = "saving a checkpoint and the adapter" if save else "stopping"
            print(f"\n{self.signal_name} received: finishing this step, then {then} (press Ctrl-C again to quit "
                  f"at once, without saving)", flush=True)

        def on_step_end(self, args, state, control, **kwargs):
            if _on_any_rank(self.signal_name is not None):  # every rank stops after the same step
                self.signal_name = self.signal_name or "a signal to another process"
                control.should_save = save
                control.should_training_stop = True
            return control

    return SignalStop()


def step_line(phase: str, step: int, max_steps: int, logs: dict) -> str | None:
    """The one line a logged step prints (metrics.jsonl keeps every figure); None for rows not worth a
    line (the trainer's end-of-run summary).

    >>> step_line("grpo", 3, 10, {"reward": -6.22, "rewards/check_answer/mean": -2.4, "kl": 0.0024,
    ...           "completions/clipped_ratio": 0.5, "step_time": 2.19})
    'step 3/10: reward -6.22 (check_answer -2.40), kl 0.0024, 50% cut, 2.2 s'
    >>> step_line("priming", 12, 64, {"loss": 0.6232, "grad_norm": 4.9})
    'priming 12/64: loss 0.623'
    """
    if "train_runtime" in logs:
        return None
    if "reward" in logs:
        parts = ", ".join(f"{key.split('/')[1]} {value:.2f}" for key, value in logs.items()
                          if key.startswith("rewards/") and key.endswith("/mean"))
        line = f"step {step}/{max_steps}: reward {logs['reward']:.2f}" + (f" ({parts})" if parts else "")
        shown = (("kl", "kl {:.2g}"), ("completions/clipped_ratio", "{:.0%} cut"), ("step_time", "{:.1f} s"))
        for key, label in shown:
            if logs.get(key) is not None:
                line += ", " + label.format(logs[key])
        return line
    if "eval_reward" in logs:
        return f"eval at step {step}: reward {logs['eval_reward']:.2f}"
    if "loss" in logs:
        return f"{phase} {step}/{max_steps}: loss {logs['loss']:.3g}"
    return None


def compact_progress(trainer, phase: str) -> None:
    """Replace the trainer's progress bar callback with one that keeps the bar and prints one short line
    per logged step (step_line) instead of transformers' dict of some thirty figures."""
    from transformers.trainer_callback import ProgressCallback

    class CompactProgress(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and self.training_bar is not None and logs:
                line = step_line(phase, state.global_step, state.max_steps, logs)
                if line:
                    self.training_bar.write(line)

    handlers = trainer.callback_handler.callbacks
    if any(type(c) is ProgressCallback for c in handlers):  # transformers adds it last; here it goes first, after
        handlers[:] = [c for c in handlers if type(c) is not ProgressCallback]  # the flow callback, so that a step's
        handlers.insert(1, CompactProgress())  # line comes before what the project's callbacks say at that step


def sigterm_as_ctrl_c() -> None:
    """SIGTERM raises KeyboardInterrupt, as Ctrl-C does, wherever no clean-stop handler is installed
    (loading, the difficulty filter, evaluation): the entry point then ends in one line, not silently."""
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, interrupt)


def _on_any_rank(flag: bool) -> bool:
    """`flag` or'ed over the processes of a distributed run (the flag itself on one process), so that a
    signal reaching one rank before another still stops them all after the same step."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    import torch

    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def make_collapse_callback(patience: int, stop: bool, health_callback=None):
    """A TrainerCallback that warns on a collapse (health.CollapseWatch) and, with `stop`, ends training
    after the step; its warning also goes to health_callback's verdict.

    The callback's `watch.collapsed_at` tells the caller whether (and when) it fired.
    """
    from transformers import TrainerCallback

    class CollapseAlarm(TrainerCallback):
        def __init__(self):
            self.watch = CollapseWatch(patience)
            self.stopped = False

        def on_log(self, args, state, control, logs=None, **kwargs):
            warning = self.watch.update(logs or {}, state.global_step)
            if warning is None:
                return
            if health_callback is not None:
                health_callback.add(warning)
            if state.is_world_process_zero:
                suffix = (" STOP_ON_COLLAPSE is set: saving and stopping now." if stop
                          else " (--stop_on_collapse=true saves and stops instead of going on.)")
                print("\n" + warning + suffix, flush=True)  # on its own line, past the progress bar
            if stop:
                self.stopped = True
                control.should_training_stop = True
            return control

    return CollapseAlarm()


def make_health_callback(max_completion_length: int, learning_rate: float, checksum):
    """A TrainerCallback for the first steps: after health.EARLY_STEPS steps, a `WARNING:` line if most
    completions were cut at the length limit or the adapter has not changed (checksum(model): the adapter's
    checksum, taken as training begins, after any checkpoint has loaded); after health.VERDICT_STEPS steps
    (or at the end of a shorter run), the one-line verdict. Other warnings printed meanwhile (the collapse
    alarm's, `.add(warning)`) count in the verdict. `.warnings` and `.verdict` hold what it said."""
    from transformers import TrainerCallback

    class Health(TrainerCallback):
        def __init__(self):
            self.rows, self.warnings, self.verdict, self.checked = [], [], None, False
            self.start_step, self.before = 0, None

        def add(self, warning: str) -> None:
            if warning not in self.warnings:
                self.warnings.append(warning)

        def _say(self, state, line):
            if state.is_world_process_zero:
                print("\n" + line + "\n", flush=True)  # on a line of its own, apart from the progress bar

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            self.start_step = state.global_step  # a resumed run judges its own first steps
            self.before = checksum(model) if model is not None else None

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "reward" not in logs or self.verdict is not None:
                return
            self.rows.append({**logs, "memory/peak_gib": health.peak_memory_gib()})
            done = state.global_step - self.start_step
            if done == min(health.EARLY_STEPS, state.max_steps - self.start_step):
                self._early_checks(state, kwargs.get("model"))
            if done >= min(health.VERDICT_STEPS, state.max_steps - self.start_step):
                self.verdict = health.verdict(self.rows, self.warnings, partial=done < health.VERDICT_STEPS)
                self._say(state, self.verdict)

        def _early_checks(self, state, model):
            self.checked = True
            early = [health.truncation_warning(self.rows, max_completion_length)]
            if self.before is not None and model is not None:
                early.append(health.still_adapter_warning(self.before, checksum(model), len(self.rows), learning_rate))
            for warning in filter(None, early):
                self.add(warning)
                self._say(state, warning)

        def on_train_end(self, args, state, control, model=None, **kwargs):
            if self.verdict is None and self.rows:  # stopped before the verdict's step (a signal, an alarm)
                if not self.checked:
                    self._early_checks(state, model)
                self.verdict = health.verdict(self.rows, self.warnings, partial=True)
                self._say(state, self.verdict)

    return Health()


def make_nonfinite_guard_callback():
    """A TrainerCallback that stops training at the first NaN or infinity in the logged loss or gradient
    norm, or in the adapter weights after an optimizer step, and cancels any checkpoint or evaluation
    asked for at that step, so that no non-finite adapter is ever saved. Put it last among the callbacks:
    it overrides a save that an earlier one requested.

    `.tripped` is None, or (what, step); `.trip(what, step)` records one found outside the callback
    (a sampling error); `.message(last_good)` is the paragraph to stop with."""
    from transformers import TrainerCallback

    class NonFiniteGuard(TrainerCallback):
        def __init__(self):
            self.tripped = None

        def trip(self, what: str, step: int) -> None:
            self.tripped = self.tripped or (what, step)

        def _stop(self, control):
            control.should_training_stop = True
            control.should_save = False
            control.should_evaluate = False
            return control

        def on_step_end(self, args, state, control, model=None, **kwargs):
            bad = health.first_nonfinite_weight(model) if model is not None else None
            if _on_any_rank(bad is not None):  # every rank stops after the same step
                self.trip(f"adapter weight {bad}" if bad else "an adapter weight on another rank", state.global_step)
            return self._stop(control) if self.tripped else control

        def on_log(self, args, state, control, logs=None, **kwargs):
            bad = health.first_nonfinite(logs or {})
            if bad:
                self.trip(bad, state.global_step)
            return self._stop(control) if self.tripped else control

        def message(self, last_good: str) -> str:
            what, step = self.tripped
            return (
                f"\ntrain_grpo.py: error: training stopped at GRPO step {step}: a non-finite value ({what}). "
                f"The adapter diverged, so it was not saved; the last good one is {last_good}. "
                f"{health.NONFINITE_ADVICE}."
            )

    return NonFiniteGuard()
