"""The algorithm knobs the field added (docs/algorithm.md): each reaches TRL's GRPOConfig and is read back
into FOUND.ALGORITHM_USED; GDPO's per-reward normalisation meets the outcome gate without a NaN; the
combinations TRL warns about are said in one `note:` line. Through Unsloth's generated trainer the same
knobs run in tests/test_unsloth_trainers.py; bad values are in tests/test_bad_input.py.
"""

import inspect
import json

import unsloth  # noqa: F401  (before trl, as in training)
import pytest
import torch
from conftest import run_script

import train_grpo
from grpo import trainer
from grpo.trainer import gate_groups

G = 4  # completions per group


def normalize_then_sum(rewards_per_func, weights):
    """TRL 1.15's normalize_then_sum advantages (GRPOTrainer._generate_and_score_completions), with its own
    nanstd; test_trl_still_normalises_each_reward_this_way guards the lines copied."""
    from trl.trainer.utils import nanstd

    grouped = rewards_per_func.view(-1, G, rewards_per_func.shape[1])
    mean_k = torch.nanmean(grouped, dim=1, keepdim=True)
    std_k = nanstd(grouped, dim=1, keepdim=True)
    reward_k = ((grouped - mean_k) / (std_k + 1e-4)).view(-1, rewards_per_func.shape[1])
    rewards = (reward_k * weights.unsqueeze(0)).nansum(dim=1)
    std_rewards = nanstd(rewards).expand_as(rewards)
    return reward_k, (rewards - torch.nanmean(rewards)) / (std_rewards + 1e-4)


def test_trl_still_normalises_each_reward_this_way():
    from trl import GRPOTrainer

    body = inspect.getsource(GRPOTrainer._generate_and_score_completions)
    for line in ("mean_k = torch.nanmean(grouped, dim=1, keepdim=True)",
                 "reward_k = (grouped - mean_k) / (std_k + 1e-4)",
                 "advantages = (rewards - torch.nanmean(rewards)) / (std_rewards + 1e-4)"):
        assert line in body, line
    assert body.index("self._calculate_rewards(") < body.index('== "normalize_then_sum"')  # the gate acts first


def test_gdpo_gives_a_gated_group_zero_normalised_rewards_and_zero_advantages_never_nan():
    """Three groups x 4 completions x 2 rewards (a format reward up to 3, check_answer -4.5 to 5): group 0
    mixed, group 1 all right, group 2 all wrong with format rewards that differ (shaping noise)."""
    rewards = torch.tensor([[3.0, 5.0], [0.0, -2.5], [3.0, -2.5], [0.0, 5.0],
                            [3.0, 5.0], [0.0, 3.5], [3.0, 5.0], [3.0, 5.0],
                            [3.0, -2.5], [0.0, 2.0], [3.0, -2.5], [0.0, -4.5]])
    right = torch.tensor([True, False, False, True] + [True] * 4 + [False] * 4)
    gated, _, _ = gate_groups(rewards, right, G)
    reward_k, advantages = normalize_then_sum(gated, torch.ones(2))
    assert not torch.isnan(reward_k).any() and not torch.isnan(advantages).any()
    assert torch.equal(reward_k[4:], torch.zeros_like(reward_k[4:]))  # the gated groups: exactly 0
    assert advantages[4:].abs().max() < 1e-6
    assert advantages[:4].abs().max() > 1  # the mixed group keeps its signal
    _, ungated = normalize_then_sum(rewards, torch.ones(2))
    assert ungated[4:].abs().max() > 0.5  # without the gate, GDPO amplifies the shaping noise of those groups


@pytest.mark.parametrize("changes", [
    {},  # the recipe's defaults: what TRL's GRPOConfig has, but the vLLM correction (Unsloth's default, off)
    {"IMPORTANCE_SAMPLING_LEVEL": "sequence", "MULTI_OBJECTIVE_AGGREGATION": "normalize_then_sum",
     "TOP_ENTROPY_QUANTILE": 0.2, "VLLM_IMPORTANCE_SAMPLING_CORRECTION": True,
     "VLLM_IMPORTANCE_SAMPLING_MODE": "token_truncate"},
])
def test_the_knobs_reach_grpo_config_and_are_read_back(changes):
    from trl import GRPOConfig

    from grpo.overrides import knobs_of

    k = {**knobs_of(vars(train_grpo)), "SMOKE": False, "PRESET": "", "FAST_INFERENCE": False, **changes}
    config = GRPOConfig(**trainer.grpo_config_kwargs(k, 100, False, False))
    used = trainer.algorithm_used(config)
    for knob in trainer.ALGORITHM_FIELDS:
        assert used[knob] == k[knob], knob
    if not changes:
        defaults = GRPOConfig(output_dir="unused")
        for knob in ("IMPORTANCE_SAMPLING_LEVEL", "MULTI_OBJECTIVE_AGGREGATION", "TOP_ENTROPY_QUANTILE",
                     "VLLM_IMPORTANCE_SAMPLING_MODE"):
            assert used[knob] == getattr(defaults, trainer.ALGORITHM_FIELDS[knob]), knob


@pytest.mark.slow
def test_the_issues_run_through_stock_trl(tmp_path):
    """GSPO's ratio, GDPO's aggregation and the entropy mask together, with the gate and right-only, through
    stock TRL; a combination TRL warns about is one note: line."""
    result = run_script(tmp_path, "train_grpo.py", "--smoke", "--max_steps=2", "--importance_sampling_level=sequence",
                        "--multi_objective_aggregation=normalize_then_sum", "--top_entropy_quantile=0.2",
                        "--outcome_gate=true", "--reinforce_right_only=true", "--output_dir=outputs/a")
    found = json.load(open(tmp_path / "outputs" / "a" / "run_config.json"))["FOUND"]
    assert found["GRPO_TRAINER"] == "GRPOTrainer"
    used = found["ALGORITHM_USED"]
    assert (used["IMPORTANCE_SAMPLING_LEVEL"], used["MULTI_OBJECTIVE_AGGREGATION"], used["TOP_ENTROPY_QUANTILE"]) == (
        "sequence", "normalize_then_sum", 0.2)
    rows = [json.loads(line) for line in open(tmp_path / "outputs" / "a" / "metrics.jsonl") if '"reward"' in line]
    assert [r["step"] for r in rows] == [1, 2]
    assert all(r["loss"] == r["loss"] and r["grad_norm"] == r["grad_norm"] for r in rows)  # no NaN
    notes = [line for line in result.stdout.splitlines() if line.startswith("note: ")]
    assert notes == ["note: IMPORTANCE_SAMPLING_LEVEL=sequence with LOSS_TYPE=dapo sums per-token terms, so each "
                     "completion weighs by its length (GSPO's own setup is --loss_type=grpo)"], notes
