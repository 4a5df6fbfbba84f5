"""The smoke preset through Unsloth's generated trainers, the code a GPU user trains through
(UNSLOTH_ALLOW_CPU=1; grpo/unsloth_cpu.py): priming through UnslothSFTTrainer, GRPO through
UnslothGRPOTrainer with Unsloth's own GRPO loss, the project's hooks on it, a checkpoint and a resume.

The flag must be set before `import unsloth` and the patching is process-wide, so every run here is a
process of its own, apart from the pytest process (which imports Unsloth's CPU fallback). Each test asserts
which trainer class ran. The rest of the suite trains through stock TRL.
"""

import hashlib
import json
import math
import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT, run_script

from grpo import plot_rewards

# TORCHINDUCTOR_ERROR_ON_CUSTOM_OP_ALIASING: torch 2.13 turns its custom-op aliasing check from a warning into an
# error wherever CI is set (torch/_functorch/config.py), and Unsloth's compiled trainers trip it
# (inductor::_alloc_from_pool). A user's run has the warning; so does this tier, in CI or not (docs/gpu_path.md).
ALLOW_CPU = {"UNSLOTH_ALLOW_CPU": "1", "TORCHINDUCTOR_ERROR_ON_CUSTOM_OP_ALIASING": "0"}
GATED = ["--smoke", "--save_steps=2", "--outcome_gate=true", "--reinforce_right_only=true",
         "--gradient_accumulation_steps=2", "--per_device_train_batch_size=8", "--output_dir=outputs/g"]


def grpo_rows(path):
    return plot_rewards.grpo_rows(plot_rewards.read_metrics(str(path)))


def found(run):
    return json.load(open(run / "run_config.json"))["FOUND"]


@pytest.fixture(scope="module")
def gated(tmp_path_factory):
    """The smoke preset with the outcome gate and right-only, accumulation 2, a checkpoint every 2 steps,
    then --resume=auto to step 6: each a process of its own, as a user runs them."""
    workdir = tmp_path_factory.mktemp("generated")
    first = run_script(workdir, "train_grpo.py", *GATED, "--max_steps=4", env=ALLOW_CPU)
    run = workdir / "outputs" / "g"
    first_found = found(run)
    second = run_script(workdir, "train_grpo.py", *GATED, "--max_steps=6", "--resume=auto", env=ALLOW_CPU)
    return workdir, run, first.stdout + first.stderr, second.stdout + second.stderr, first_found


def test_priming_and_grpo_ran_through_unsloths_generated_trainers(gated):
    workdir, run, first, second, first_found = gated
    assert first_found["PRIMING_TRAINER"] == "UnslothSFTTrainer"
    assert first_found["GRPO_TRAINER"] == "UnslothGRPOTrainer" == found(run)["GRPO_TRAINER"]
    generated = workdir / "unsloth_compiled_cache" / "UnslothGRPOTrainer.py"
    assert first_found["GRPO_TRAINER_FILE"] == str(generated)
    assert first_found["GRPO_TRAINER_SHA256"] == hashlib.sha256(generated.read_bytes()).hexdigest()
    assert "trainer UnslothGRPOTrainer" in first and "trainer UnslothGRPOTrainer" in second
    # Unsloth's own loss ran (its generated module holds it), not TRL's
    assert "def grpo_accumulated_loss" in generated.read_text()


def test_the_kl_reference_is_the_primed_adapter_through_the_generated_trainer(gated):
    """Unsloth's rewrite deletes TRL's frozen copy of the adapter; without the project's own copy the KL
    at step 1 is measured to the unprimed base (about 1.3 on this preset) rather than about 0."""
    _, run, first, second, first_found = gated
    assert first_found["GRPO_TRAINER"] == found(run)["GRPO_TRAINER"] == "UnslothGRPOTrainer"
    assert "KL reference: the primed model" in first and "KL reference: the primed model" in second
    kl = {r["step"]: r["kl"] for r in grpo_rows(run / "metrics.jsonl")}
    assert kl[1] < 0.01, kl
    assert all(value < 0.25 for value in kl.values()), kl  # steps 5 and 6 ran after the resume
    assert not list(run.glob("checkpoint-*/ref"))


def test_the_gate_and_right_only_log_every_step_of_the_generated_trainer(gated):
    _, run, _, _, _ = gated
    assert found(run)["GRPO_TRAINER"] == "UnslothGRPOTrainer"
    rows = grpo_rows(run / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 7))  # each step once across the resume
    for row in rows:
        assert 0 <= row["gate/all_right"] + row["gate/all_wrong"] <= 1
        assert 0 <= row["right_only/zeroed"] <= 1
        assert math.isfinite(row["loss"])


def test_checkpoint_and_resume_through_the_generated_trainer(gated):
    _, run, _, second, _ = gated
    assert found(run)["GRPO_TRAINER"] == "UnslothGRPOTrainer" and "trainer UnslothGRPOTrainer" in second
    assert "resuming from outputs/g/checkpoint-4 (step 4)" in second
    assert json.load(open(run / "checkpoint-6" / "trainer_state.json"))["global_step"] == 6
    assert found(run)["RESUMED_FROM"].endswith("checkpoint-4") and found(run)["STEPS_DONE"] == 6
    assert found(run)["TRAINER_ARGS"]["gradient_accumulation_steps"] == 2


def test_the_hooks_the_project_relies_on_are_in_the_generated_source(gated):
    """The same hooks tests/test_gpu_path.py checks in TRL's source, checked in what Unsloth generated."""
    workdir, run, _, _, _ = gated
    assert found(run)["GRPO_TRAINER_FILE"] == str(workdir / "unsloth_compiled_cache" / "UnslothGRPOTrainer.py")
    source = (workdir / "unsloth_compiled_cache" / "UnslothGRPOTrainer.py").read_text()
    start = source.index("    def _generate_and_score_completions(")
    body = source[start : source.index("\n    def ", start + 10)]
    rewards_at = body.find("rewards_per_func = self._calculate_rewards(inputs, prompts, completions, completion_ids")
    advantages_at = body.find("advantages = rewards - mean_grouped_rewards")
    assert 0 <= rewards_at < advantages_at, "the gate must act between the rewards and the advantages"
    assert '"advantages": advantages' in body  # right-only rewrites output["advantages"]
    # the KL reference: the adapter named "ref" where the model has one (grpo/trainer.py, kl_reference)
    assert 'use_adapter(model, adapter_name="ref" if "ref" in model.peft_config else None)' in body
    # the algorithm knobs reach Unsloth's own loss and advantages (docs/algorithm.md)
    assert 'importance_sampling_level = kwargs.get("importance_sampling_level"' in source
    assert '_entropy_quantile = getattr(trainer.args, "top_entropy_quantile"' in source
    assert 'getattr(trainer, "multi_objective_aggregation", None) == "normalize_then_sum"' in source
    # the knob's default is what Unsloth's generated config has (TRL's own default is True)
    import train_grpo

    config = source[source.index("class UnslothGRPOConfig") :]
    default = re.search(r"vllm_importance_sampling_correction = (True|False),", config).group(1)
    assert train_grpo.VLLM_IMPORTANCE_SAMPLING_CORRECTION is (default == "True")


DRIVER = """
import json, sys
sys.path.insert(0, {root!r})
import unsloth  # noqa: F401  (under UNSLOTH_ALLOW_CPU=1: Unsloth's GPU import path)
import rewards
import train_grpo
from grpo import checks


def judge(completions, answer, **kwargs):  # of each two groups of 8: the first all wrong, the second half right
    return [i % 16 >= 8 and i % 2 == 0 for i in range(len(completions))]


def match_format_exactly(completions, **kwargs):  # a reward that differs within every group
    return [float(i % 3) for i in range(len(completions))]


JUDGED = dict(answer_is_right=judge, match_format_exactly=match_format_exactly)
cases = [("judged", ["--outcome_gate=true", "--reinforce_right_only=true", "--max_steps=2"])]
cases += [("judged-gdpo", ["--outcome_gate=true", "--reinforce_right_only=true", "--max_steps=2",
                           "--importance_sampling_level=sequence", "--multi_objective_aggregation=normalize_then_sum",
                           "--top_entropy_quantile=0.2"])]
cases += [("loss-" + t, ["--loss_type=" + t]) for t in checks.LOSS_TYPES]
cases += [("sequence-" + t, ["--loss_type=" + t, "--importance_sampling_level=sequence"]) for t in checks.LOSS_TYPES]
cases += [("scale-" + s, ["--scale_rewards=" + s]) for s in checks.SCALE_REWARDS if s != "group"]
cases += [("diverge", ["--learning_rate=1e30", "--max_steps=3", "--gradient_accumulation_steps=2",
                       "--per_device_train_batch_size=8"]),
          ("collapse", ["--max_completion_length=4", "--max_steps=4", "--collapse_patience=2",
                        "--stop_on_collapse=true"]),
          ("still", ["--learning_rate=0", "--max_steps=3"])]
real = {{name: getattr(rewards, name) for name in JUDGED}}
for name, args in cases:
    for fn, value in (JUDGED if name.startswith("judged") else real).items():
        setattr(rewards, fn, value)  # main() looks both up in rewards.py as it runs
    out = "outputs/" + name
    said = train_grpo.main(["--smoke", "--max_steps=1", "--format_sft=false", "--output_dir=" + out, *args])
    print("CASE " + json.dumps({{"case": name, "said": said, "out": out,
                                "found": json.load(open(out + "/run_config.json"))["FOUND"]}}), flush=True)
"""


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    """The gate and right-only under a judge that makes one group of each two mixed, every LOSS_TYPE and
    SCALE_REWARDS, a diverging run and a collapsing one, one after another in one process under the
    generated trainer (each its own main(), as train_grpo.py runs it)."""
    workdir = tmp_path_factory.mktemp("cases")
    result = subprocess.run([sys.executable, "-c", DRIVER.format(root=ROOT)], cwd=workdir, capture_output=True,
                            text=True, timeout=600, env={**os.environ, **ALLOW_CPU})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = {}
    for line in result.stdout.splitlines():
        if line.startswith("CASE "):
            case = json.loads(line[5:])
            case["out"] = os.path.join(workdir, case["out"])
            out[case["case"]] = case
    return out, result.stdout


def test_the_gate_and_right_only_act_inside_the_generated_trainer(cases):
    """Of each step's two groups the judge makes the first all wrong (gated) and the second mixed, and a
    reward that differs within every group gives every completion an advantage: the gate flattens half the
    groups, and right-only zeroes the advantages of the mixed group's wrong completions."""
    out, _ = cases
    case = out["judged"]
    assert case["found"]["GRPO_TRAINER"] == "UnslothGRPOTrainer"
    rows = grpo_rows(os.path.join(case["out"], "metrics.jsonl"))
    assert [r["step"] for r in rows] == [1, 2]
    for row in rows:
        assert row["gate/all_wrong"] == 0.5 and row["gate/all_right"] == 0.0
        assert 0 < row["right_only/zeroed"] <= 1


def test_gspo_runs_with_every_loss_type_in_the_generated_trainer_and_says_what_trl_advises(cases):
    """TRL refuses no LOSS_TYPE with IMPORTANCE_SAMPLING_LEVEL=sequence; it warns about five, and the run
    says so in one note: line (grpo/trainer.py algorithm_notes). The one combination refused (vespo with a
    sequence-level vLLM correction) needs vLLM: tests/test_bad_input.py."""
    from grpo import checks

    out, log = cases
    for loss in checks.LOSS_TYPES:
        found = out[f"sequence-{loss}"]["found"]
        assert found["GRPO_TRAINER"] == "UnslothGRPOTrainer"
        assert (found["ALGORITHM_USED"]["IMPORTANCE_SAMPLING_LEVEL"], found["ALGORITHM_USED"]["LOSS_TYPE"]) == (
            "sequence", loss)
        assert math.isfinite(found["FINAL_METRICS"]["loss"]), loss
    for loss in ("bnpo", "dr_grpo", "cispo"):
        assert f"note: IMPORTANCE_SAMPLING_LEVEL=sequence with LOSS_TYPE={loss} sums per-token terms" in log
    assert "note: LOSS_TYPE=vespo computes its own sequence weights" in log
    assert "with LOSS_TYPE=grpo sums" not in log and "with LOSS_TYPE=sapo sums" not in log


def test_gspo_gdpo_and_the_entropy_mask_with_the_gate_and_right_only_in_the_generated_trainer(cases):
    """The algorithm knobs the field added, together, with the gate flattening one group of two: GDPO's
    per-reward normalisation of a gated group gives 0, not NaN (the loss stays finite)."""
    out, log = cases
    case = out["judged-gdpo"]
    assert case["found"]["GRPO_TRAINER"] == "UnslothGRPOTrainer"
    used = case["found"]["ALGORITHM_USED"]
    assert (used["IMPORTANCE_SAMPLING_LEVEL"], used["MULTI_OBJECTIVE_AGGREGATION"], used["TOP_ENTROPY_QUANTILE"]) == (
        "sequence", "normalize_then_sum", 0.2)
    rows = grpo_rows(os.path.join(case["out"], "metrics.jsonl"))
    for row in rows:
        assert row["gate/all_wrong"] == 0.5 and 0 < row["right_only/zeroed"] <= 1
        assert math.isfinite(row["loss"]) and math.isfinite(row["grad_norm"])
    assert "note: IMPORTANCE_SAMPLING_LEVEL=sequence with LOSS_TYPE=dapo sums per-token terms" in log


def test_every_loss_type_and_reward_scaling_reaches_the_generated_trainer(cases):
    from grpo import checks

    out, log = cases
    for loss in checks.LOSS_TYPES:
        case = out[f"loss-{loss}"]
        assert case["found"]["GRPO_TRAINER"] == "UnslothGRPOTrainer"
        assert case["found"]["ALGORITHM_USED"]["LOSS_TYPE"] == loss
        assert math.isfinite(case["found"]["FINAL_METRICS"]["loss"]), loss
    # Unsloth's config turns reward scaling off for dr_grpo, and the run says so
    assert out["loss-dr_grpo"]["found"]["ALGORITHM_USED"]["SCALE_REWARDS"] == "none"
    assert "note: the trainer uses SCALE_REWARDS='none', not the requested 'group'" in log
    for scale in ("batch", "none"):
        assert out[f"scale-{scale}"]["found"]["ALGORITHM_USED"]["SCALE_REWARDS"] == scale
        assert out[f"scale-{scale}"]["found"]["GRPO_TRAINER"] == "UnslothGRPOTrainer"


def test_the_non_finite_guard_stops_a_diverging_run_through_the_generated_trainer(cases):
    out, _ = cases
    case = out["diverge"]
    assert case["found"]["GRPO_TRAINER"] == "UnslothGRPOTrainer"
    assert case["found"]["STOPPED_BY"] == "non-finite"
    assert "training stopped at GRPO step 2" in case["said"] and "LEARNING_RATE" in case["said"]


def test_the_collapse_alarm_stops_a_truncated_run_through_the_generated_trainer(cases):
    out, log = cases
    case = out["collapse"]
    assert case["found"]["GRPO_TRAINER"] == "UnslothGRPOTrainer"
    assert case["found"]["STOPPED_BY"] == "collapse" and case["found"]["STEPS_DONE"] == 2
    assert "WARNING: training collapse at step 2" in log
    collapse, truncation = case["found"]["HEALTH"]["warnings"]  # the run stopped before the early checks' step
    assert "training collapse at step 2" in collapse and "Nearly every completion is cut" in collapse
    assert "cut at the length limit (4 tokens)" in truncation
    assert case["found"]["HEALTH"]["verdict"].startswith("first 2 steps: NOT healthy (2 warnings: ")


def test_the_early_warnings_and_memory_through_the_generated_trainer(cases, gated):
    out, _ = cases
    still = out["still"]["found"]
    assert still["GRPO_TRAINER"] == "UnslothGRPOTrainer"
    assert still["HEALTH"]["warnings"] == [w for w in still["HEALTH"]["warnings"] if "has not changed" in w] != []
    _, run, first, _, _ = gated  # healthy: no warning, a verdict, the memory in every row
    assert not [line for line in first.splitlines() if line.startswith("WARNING:")]
    assert "first 4 steps: no warning from the checks that ran" in first  # 4 < health.VERDICT_STEPS
    assert all(r["memory/peak_gib"] > 0 for r in grpo_rows(run / "metrics.jsonl"))
