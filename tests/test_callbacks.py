"""The metrics file and the collapse alarm, on plain log dicts (no trainer needed)."""

import pytest
from conftest import run_script

from grpo import callbacks
from grpo.callbacks import metrics_row
from grpo.health import CollapseWatch, collapse_signal

HEALTHY = {"reward": 0.5, "frac_reward_zero_std": 0.25, "completions/clipped_ratio": 0.1}
NO_SIGNAL = {"reward": -7.5, "frac_reward_zero_std": 1.0, "completions/clipped_ratio": 0.3}
ALL_CLIPPED = {"reward": -6.0, "frac_reward_zero_std": 0.5, "completions/clipped_ratio": 1.0}


@pytest.mark.parametrize(
    "logs,expected",
    [
        (HEALTHY, None),  # some groups disagree, few completions truncated
        (NO_SIGNAL, "frac_reward_zero_std"),  # every group scored alike: zero advantages
        (ALL_CLIPPED, "completions/clipped_ratio"),  # everything runs to the length limit
        ({"reward": 1.0, "completions/clipped_ratio": 0.94}, None),  # just under the clipped limit
        ({"reward": 1.0, "completions/clipped_ratio": 0.95}, "completions/clipped_ratio"),  # at the limit
        ({"reward": 1.0}, None),  # metrics missing: no alarm
    ],
)
def test_collapse_signal_table(logs, expected):
    assert collapse_signal(logs) == expected


def test_warns_after_patience_consecutive_steps_and_names_metric_step_and_remedies():
    watch = CollapseWatch(patience=3)
    assert watch.update(NO_SIGNAL, 1) is None
    assert watch.update(NO_SIGNAL, 2) is None
    warning = watch.update(NO_SIGNAL, 3)
    assert warning is not None and watch.collapsed_at == 3
    for text in ("collapse", "step 3", "frac_reward_zero_std", "LEARNING_RATE", "--beta",
                 "--mask_truncated_completions", "MAX_COMPLETION_LENGTH", "priming"):
        assert text in warning, text
    assert watch.update(NO_SIGNAL, 4) is None  # once per episode, not every step


def test_a_healthy_step_resets_the_count():
    watch = CollapseWatch(patience=3)
    for step, logs in enumerate([NO_SIGNAL, ALL_CLIPPED, HEALTHY, NO_SIGNAL, NO_SIGNAL], start=1):
        assert watch.update(logs, step) is None, step
    assert watch.update(ALL_CLIPPED, 6) is not None  # steps 4, 5, 6: three in a row again


def test_a_second_episode_warns_again_and_keeps_the_first_step():
    watch = CollapseWatch(patience=2)
    warnings = [watch.update(logs, step) for step, logs in
                enumerate([NO_SIGNAL, NO_SIGNAL, HEALTHY, NO_SIGNAL, NO_SIGNAL], start=1)]
    assert [w is not None for w in warnings] == [False, True, False, False, True]
    assert watch.collapsed_at == 2


def test_patience_zero_is_off_and_non_training_logs_are_ignored():
    off = CollapseWatch(patience=0)
    assert all(off.update(NO_SIGNAL, s) is None for s in range(1, 50))
    watch = CollapseWatch(patience=1)
    assert watch.update({"train_runtime": 3.0, "frac_reward_zero_std": 1.0}, 9) is None  # the end-of-run summary


def test_metrics_row_keeps_rewards_and_health_metrics_only():
    logs = {"reward": 1.0, "rewards/a/mean": 1.0, "completions/clipped_ratio": 0.5, "kl": 0.01,
            "epoch": 0.3, "step_time": 0.4, "grad_norm": 0.7}
    row = metrics_row(logs, 7, ["a", "b"])
    assert row == {"step": 7, "rewards/a/mean": 1.0, "rewards/b/mean": None, "reward": 1.0,
                   "completions/clipped_ratio": 0.5, "grad_norm": 0.7, "kl": 0.01}


def test_module_docstrings_run():
    import doctest

    assert doctest.testmod(callbacks).failed == 0


def test_plot_rewards_draws_every_run_under_a_folder_with_eval_rows(tmp_path):
    import json

    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        rows = [{"step": s, "rewards/x/mean": s / 10, "reward": s / 10, "completions/clipped_ratio": 0.0,
                 "frac_reward_zero_std": 0.5} for s in range(1, 11)]
        rows.insert(5, {"step": 5, "eval_rewards/x/mean": 0.2, "eval_reward": 0.2})  # a held-out evaluation row
        (tmp_path / run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    run_script(tmp_path, "grpo/plot_rewards.py", str(tmp_path), timeout=120)  # asserts exit 0
    for run in ("a", "b"):
        assert (tmp_path / run / "reward_curves.png").stat().st_size > 10_000
    missing = run_script(tmp_path, "grpo/plot_rewards.py", str(tmp_path / "a" / "nope"), check=False, timeout=60)
    assert missing.returncode != 0 and "no metrics.jsonl" in missing.stderr


def test_nonfinite_guard_stops_and_cancels_the_save_on_a_nan_weight_or_loss():
    import torch
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from grpo.callbacks import make_nonfinite_guard_callback

    model = torch.nn.Linear(2, 2)
    args = TrainingArguments(output_dir="unused", report_to="none")
    state = TrainerState()
    state.global_step = 3
    guard = make_nonfinite_guard_callback()
    control = guard.on_step_end(args, state, TrainerControl(should_save=True), model=model)
    assert guard.tripped is None and control.should_save and not control.should_training_stop
    with torch.no_grad():
        model.bias[1] = float("nan")
    control = guard.on_step_end(args, state, TrainerControl(should_save=True), model=model)
    assert guard.tripped == ("adapter weight bias", 3)
    assert control.should_training_stop and not control.should_save and not control.should_evaluate
    assert "GRPO step 3" in guard.message("outputs/x/lora_primed") and "outputs/x/lora_primed" in guard.message(
        "outputs/x/lora_primed"
    )

    other = make_nonfinite_guard_callback()
    control = other.on_log(
        args, state, TrainerControl(should_save=True), logs={"loss": float("nan"), "grad_norm": 1.0}
    )
    assert other.tripped == ("loss = nan", 3) and control.should_training_stop and not control.should_save
    control = make_nonfinite_guard_callback().on_log(
        args, state, TrainerControl(), logs={"loss": 0.1, "grad_norm": 2.0}
    )
    assert not control.should_training_stop
