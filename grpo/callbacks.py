"""What the trainer reports and guards while it runs: the metrics file (GRPO's and the priming SFT's), the
collapse alarm, a clean stop on a signal, the checkpoint tidy-up and the non-finite guard.

`metrics.jsonl` gets one row per training step and, with EVAL_STEPS, one row per held-out
evaluation whose keys start with `eval_` (`eval_reward`, `eval_rewards/<name>/mean`, ...).

All six are transformers TrainerCallbacks built by small factories (make_*), so importing this module
loads nothing heavy. `grpo/trainer.py` hands five to GRPOTrainer, `grpo/priming.py` the SFT one to SFTTrainer.

A GRPO run can die quietly: once every completion in every group earns the same reward (say, all
run to the length limit without a marker), every advantage is zero and nothing moves the policy
again, while the trainer keeps sampling for hours. `CollapseAlarm` watches two logged metrics:
  - `frac_reward_zero_std`: the share of groups whose completions all scored the same (1.0 = no
    group carries a learning signal);
  - `completions/clipped_ratio`: the share of completions that hit MAX_COMPLETION_LENGTH.
When either stays at its limit for `patience` consecutive logged steps, it prints a warning with
the word "collapse", the metric, the step and what to try; with `stop=True` it also ends training
after that step (the caller then saves the adapter and curves as after a full run).
"""

from __future__ import annotations

import json
import os

ZERO_STD_LIMIT = 1.0  # frac_reward_zero_std at or above this: no group has a learning signal
CLIPPED_LIMIT = 0.95  # completions/clipped_ratio at or above this: nearly every completion truncated

METRIC_KEYS = ("reward", "reward_std", "frac_reward_zero_std", "completions/mean_length",
               "completions/clipped_ratio", "loss", "learning_rate", "kl", "entropy",
               "clip_ratio/region_mean", "gate/all_right", "gate/all_wrong", "right_only/zeroed")

ADVICE = ("try a lower LEARNING_RATE, a KL term to the reference (--beta=0.04), "
          "--mask_truncated_completions=true, a longer MAX_COMPLETION_LENGTH, or format priming "
          "before GRPO so the model starts inside the format")


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
    return {
        "step": step,
        **{
            f"eval_{key}": value
            for key, value in metrics_row(
                {k[5:]: v for k, v in logs.items() if k.startswith("eval_")}, step, reward_names
            ).items()
            if key != "step"
        },
    }


def collapse_signal(logs: dict) -> str | None:
    """The name of the metric that says this step has no learning signal, or None.

    >>> collapse_signal({"frac_reward_zero_std": 1.0, "completions/clipped_ratio": 0.2})
    'frac_reward_zero_std'
    >>> collapse_signal({"frac_reward_zero_std": 0.5, "completions/clipped_ratio": 1.0})
    'completions/clipped_ratio'
    >>> collapse_signal({"frac_reward_zero_std": 0.5, "completions/clipped_ratio": 0.5}) is None
    True
    """
    if logs.get("frac_reward_zero_std", 0.0) >= ZERO_STD_LIMIT:
        return "frac_reward_zero_std"
    if logs.get("completions/clipped_ratio", 0.0) >= CLIPPED_LIMIT:
        return "completions/clipped_ratio"
    return None


class CollapseWatch:
    """The alarm's state machine, apart from the trainer so it can be tested on plain dicts.

    `update(logs, step)` returns a warning (once per collapse episode) when the signal has held
    for `patience` consecutive steps, else None. `patience` 0 turns it off.
    """

    def __init__(self, patience: int):
        self.patience = patience
        self.run = 0  # consecutive steps with a signal
        self.warned = False
        self.collapsed_at: int | None = None  # step of the first warning

    def update(self, logs: dict, step: int) -> str | None:
        if self.patience < 1 or "reward" not in logs:
            return None
        signal = collapse_signal(logs)
        if signal is None:
            self.run, self.warned = 0, False
            return None
        self.run += 1
        if self.run < self.patience or self.warned:
            return None
        self.warned = True
        if self.collapsed_at is None:
            self.collapsed_at = step
        return (
            f"WARNING: training collapse at step {step}: {signal} = {logs[signal]:.2f} for {self.run} "
            f"consecutive steps (total reward {logs['reward']:.2f}, completions clipped "
            f"{logs.get('completions/clipped_ratio', float('nan')):.2f}). Every group scores the same, so "
            f"every advantage is zero and the policy cannot move. If the reward is at its maximum the "
            f"problems are too easy; otherwise {ADVICE}."
        )


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
    even if the first run logged past its checkpoint."""
    rows = []
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    row = json.loads(line)
                    if row.get("phase") == "sft" or (step > 0 and row.get("step", 0) <= step):
                        rows.append(line)
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
                row = {
                    "phase": "sft",
                    "sft_step": state.global_step,
                    "loss": logs["loss"],
                    "learning_rate": logs.get("learning_rate"),
                }
                with open(path, "a") as f:
                    f.write(json.dumps(row) + "\n")

    return SftMetrics()


def make_signal_stop_callback():
    """A TrainerCallback that turns SIGINT (Ctrl-C) and SIGTERM (a preempted cloud box) into a clean
    stop: the current step finishes, a checkpoint is saved, and training ends; the caller then saves
    the adapter and curves. A second signal exits at once (status 130).

    Call `.install()` before training; `.signal_name` is set once a signal has arrived.
    """
    import signal

    from transformers import TrainerCallback

    class SignalStop(TrainerCallback):
        def __init__(self):
            self.signal_name = None

        def install(self):
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, self._handle)

        def _handle(self, signum, frame):
            if self.signal_name is not None:  # the second one: stop now
                os._exit(130)
            self.signal_name = signal.Signals(signum).name
            print(
                f"\n{self.signal_name} received: finishing this step, then saving a checkpoint and the adapter "
                f"(press Ctrl-C again to quit at once, without saving)",
                flush=True,
            )

        def on_step_end(self, args, state, control, **kwargs):
            if _on_any_rank(self.signal_name is not None):  # every rank stops after the same step
                self.signal_name = self.signal_name or "a signal to another process"
                control.should_save = True
                control.should_training_stop = True
            return control

    return SignalStop()


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


def make_collapse_callback(patience: int, stop: bool):
    """A TrainerCallback that warns on a collapse and, with `stop`, ends training after the step.

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
            if state.is_world_process_zero:
                suffix = (
                    " STOP_ON_COLLAPSE is set: saving and stopping now."
                    if stop
                    else " (--stop_on_collapse=true saves and stops instead of going on.)"
                )
                print("\n" + warning + suffix, flush=True)  # on its own line, past the progress bar
            if stop:
                self.stopped = True
                control.should_training_stop = True
            return control

    return CollapseAlarm()


def make_checkpoint_tidy_callback(adapter: str = "ref"):
    """A TrainerCallback that removes the frozen `adapter` (the primed KL reference) from each
    checkpoint just saved. The reference is kept once, in OUTPUT_DIR/lora_primed; left in a checkpoint
    as a subfolder, it would make transformers' resume load only that subfolder's adapter and not the
    trained one beside it."""
    import shutil

    from transformers import TrainerCallback

    class CheckpointTidy(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                shutil.rmtree(
                    os.path.join(args.output_dir, f"checkpoint-{state.global_step}", adapter), ignore_errors=True
                )

    return CheckpointTidy()


NONFINITE_ADVICE = (
    "Usual remedies: a lower LEARNING_RATE (try a tenth), gradient clipping kept on "
    "(transformers' max_grad_norm, 1.0 by default), a KL term to the reference (--beta=0.04), "
    "and float32 rather than bf16/fp16 where the values overflow"
)


def first_nonfinite(logs: dict) -> str | None:
    """The first of the logged loss and gradient norm that is NaN or infinite, as "name = value", or None.

    >>> first_nonfinite({"loss": 0.1, "grad_norm": float("inf")})
    'grad_norm = inf'
    >>> first_nonfinite({"loss": 0.1, "grad_norm": 2.0}) is None
    True
    """
    import math

    for key in ("loss", "grad_norm"):
        value = logs.get(key)
        if value is not None and not math.isfinite(float(value)):
            return f"{key} = {value}"
    return None


def first_nonfinite_weight(model) -> str | None:
    """The name of the first trainable (adapter) weight holding a NaN or an infinity, or None."""
    import torch

    trainable = [(name, param.detach()) for name, param in model.named_parameters() if param.requires_grad]
    if not trainable or bool(torch.stack([torch.isfinite(p).all() for _, p in trainable]).all()):
        return None  # one device sync per step, not one per adapter tensor
    return next(name for name, p in trainable if not bool(torch.isfinite(p).all()))


def is_nonfinite_sampling_error(error: BaseException) -> bool:
    """Whether an exception from training is sampling that met NaN or infinite probabilities: weights
    that are finite but so large that the logits overflow fail here, one step after the update."""
    text = str(error)
    return isinstance(error, RuntimeError) and ("probability tensor contains" in text or "device-side assert" in text)


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
            bad = first_nonfinite_weight(model) if model is not None else None
            if _on_any_rank(bad is not None):  # every rank stops after the same step
                self.trip(
                    f"adapter weight {bad}" if bad else "an adapter weight on another process", state.global_step
                )
            return self._stop(control) if self.tripped else control

        def on_log(self, args, state, control, logs=None, **kwargs):
            bad = first_nonfinite(logs or {})
            if bad:
                self.trip(bad, state.global_step)
            return self._stop(control) if self.tripped else control

        def message(self, last_good: str) -> str:
            what, step = self.tripped
            return (
                f"\ntrain_grpo.py: error: training stopped at GRPO step {step}: a non-finite value ({what}). "
                f"The adapter diverged, so it was not saved; the last good one is {last_good}. "
                f"{NONFINITE_ADVICE}."
            )

    return NonFiniteGuard()
