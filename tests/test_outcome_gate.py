"""The outcome gate (OUTCOME_GATE): groups whose answers are all right or all wrong carry no advantage,
whatever the shaped rewards say; the other groups are untouched. Checked on a constructed batch, with
the advantages computed as TRL computes them, for each SCALE_REWARDS. A smoke run with the gate on is
in test_pipeline.py (the variant run)."""

import pytest
import torch

from grpo.trainer import gate_groups
from rewards import answer_is_right

G = 4  # completions per group


def batch():
    """Three groups of 4 completions x 2 rewards (a format reward and check_answer): group 0 mixed,
    group 1 all right, group 2 all wrong but with format rewards that differ (shaping noise)."""
    rewards = torch.tensor([[3.0, 5.0], [0.0, -2.5], [3.0, -2.5], [0.0, 5.0],
                            [3.0, 5.0], [0.0, 3.5], [3.0, 5.0], [3.0, 5.0],
                            [3.0, -2.5], [0.0, 2.0], [3.0, -2.5], [0.0, -4.5]])
    right = torch.tensor([True, False, False, True, True, True, True, True, False, False, False, False])
    return rewards, right


def advantages(rewards_per_func, scale_rewards):
    """As TRL's GRPOTrainer: weighted sum, minus the group mean, over the group's (or batch's) std."""
    total = rewards_per_func.sum(dim=1)
    mean = total.view(-1, G).mean(dim=1).repeat_interleave(G)
    if scale_rewards == "group":
        std = total.view(-1, G).std(dim=1).repeat_interleave(G)
    else:
        std = total.std().expand_as(total)
    adv = total - mean
    return adv if scale_rewards == "none" else adv / (std + 1e-4)


@pytest.mark.parametrize("scale_rewards", ["group", "batch", "none"])
def test_gated_groups_get_zero_advantage_and_the_others_keep_theirs(scale_rewards):
    rewards, right = batch()
    gated, all_right, all_wrong = gate_groups(rewards, right, G)
    assert (all_right, all_wrong) == (pytest.approx(1 / 3), pytest.approx(1 / 3))
    before, after = advantages(rewards, scale_rewards), advantages(gated, scale_rewards)
    assert before[4:].abs().max() > 0.1  # without the gate, shaping noise moves the all-right and all-wrong groups
    assert after[4:].abs().max() < 1e-3
    assert torch.equal(gated[:4], rewards[:4])  # the mixed group is untouched
    if scale_rewards != "batch":  # (the batch std itself changes when groups flatten)
        assert torch.allclose(after[:4], before[:4])


def test_the_gate_keeps_every_reward_mean_so_the_logged_means_do_not_change():
    rewards, right = batch()
    gated, _, _ = gate_groups(rewards, right, G)
    assert torch.allclose(gated.mean(dim=0), rewards.mean(dim=0))
    assert torch.allclose(gated.view(-1, G, 2).mean(dim=1), rewards.view(-1, G, 2).mean(dim=1))


def test_no_group_gated_when_every_group_is_mixed():
    rewards, _ = batch()
    right = torch.tensor([True, False] * 6)
    gated, all_right, all_wrong = gate_groups(rewards, right, G)
    assert torch.equal(gated, rewards) and all_right == all_wrong == 0


@pytest.mark.parametrize("completion, gold, expected, why", [
    ("w<end_working_out><SOLUTION>42</SOLUTION>", "42", True, "identical"),
    ("w<end_working_out><SOLUTION>1,000</SOLUTION>", "1000", True, "equal as numbers"),
    ("w<end_working_out><SOLUTION>\\frac{1}{2}</SOLUTION>", "0.5", True, "equal as fractions"),
    ("w<end_working_out><SOLUTION>95</SOLUTION>", "100", False, "partial credit in check_answer, wrong here"),
    ("w<SOLUTION>4</SOLUTION> then <SOLUTION>5</SOLUTION>", "4", False, "the last block is judged"),
    ("no block at all", "4", False, "nothing to judge"),
    ("w<end_working_out><SOLUTION></SOLUTION>", "", False, "an empty answer is never right"),
])
def test_answer_is_right_table(completion, gold, expected, why):
    assert answer_is_right([completion], answer=[gold]) == [expected], why


def test_answer_is_right_never_raises_and_returns_one_bool_per_completion():
    junk = [None, 3, [{"role": "assistant", "content": "<SOLUTION>7</SOLUTION>"}], "x" * 100_000, "<SOLUTION>" * 500]
    out = answer_is_right(junk, answer=["7"] * len(junk))
    assert len(out) == len(junk) and all(isinstance(v, bool) for v in out)
    assert out[2] is True  # a conversational completion is read like TRL hands it over
    assert answer_is_right(["<SOLUTION>1</SOLUTION>"], answer=None) == [False]
