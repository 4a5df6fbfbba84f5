"""The outcome gate (OUTCOME_GATE): groups whose answers are all right or all wrong carry no advantage,
whatever the shaped rewards say; the other groups are untouched. And REINFORCE_RIGHT_ONLY: only right
answers keep an advantage, and only a positive one. Checked on a constructed batch, with
the advantages computed as TRL computes them, for each SCALE_REWARDS. A smoke run with the gate on is
in test_pipeline.py (the variant run)."""

import pytest
import torch

from grpo.trainer import gate_groups, right_only, with_outcome_judge
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


# REINFORCE_RIGHT_ONLY: only right completions keep an advantage, and only a positive one.

@pytest.mark.parametrize("scale_rewards", ["group", "batch", "none"])
def test_right_only_keeps_the_right_answers_positive_advantages_and_zeroes_the_rest(scale_rewards):
    rewards, right = batch()
    rewards[8], rewards[9] = torch.tensor([3.0, 5.0]), torch.tensor([3.0, 2.0])  # group 2 now mixed: one right
    right[8] = True  # answer, and a wrong one with the format and partial credit, above the group's mean
    before = advantages(rewards, scale_rewards)
    after, zeroed = right_only(before, right)
    assert (before[~right] > 0.1).any()  # shaping lifts some wrong answers above their group's mean ...
    assert (after[~right] == 0).all()  # ... and none keeps an advantage
    # a right answer below its group's mean is not pushed down
    assert (before[right] < -0.1).any() and (after >= 0).all()
    assert torch.equal(after[right & (before > 0)], before[right & (before > 0)])
    moving = before != 0
    assert zeroed == pytest.approx(((after == 0) & moving).sum().item() / moving.sum().item())


def test_right_only_after_the_gate_leaves_only_the_mixed_groups_right_answers():
    rewards, right = batch()
    gated, _, _ = gate_groups(rewards, right, G)
    after, _ = right_only(advantages(gated, "group"), right)
    assert after[4:].abs().max() < 1e-3  # the all-right group stays gated
    assert (after[:4] > 0).tolist() == right[:4].tolist()


class _FakeTrainer:
    """The two hooks of TRL's GRPOTrainer that with_outcome_judge overrides, on one process: the rewards
    as given, and the advantages computed from what _calculate_rewards returns, with the group std."""

    num_generations = num_generations_eval = G

    def __init__(self, rewards, training=True):
        from collections import defaultdict
        from types import SimpleNamespace

        self.rewards, self._metrics = rewards, defaultdict(lambda: defaultdict(list))
        self.model = SimpleNamespace(training=training)
        self.accelerator = SimpleNamespace(gather=lambda t: t)

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        return self.rewards

    def _generate_and_score_completions(self, inputs):
        rewards = self._calculate_rewards(inputs, None, [row["completion"] for row in inputs], None)
        return {"advantages": advantages(rewards, "group")}


def _judge(completions, answer):
    return [c == a for c, a in zip(completions, answer)]


@pytest.mark.parametrize("gate, only_right", [(True, False), (False, True), (True, True)])
@pytest.mark.parametrize("training", [True, False])
def test_with_outcome_judge_changes_the_advantages_the_trainer_hands_to_the_loss(gate, only_right, training):
    rewards, right = batch()
    rows = [{"completion": "7" if r else "1", "answer": "7"} for r in right.tolist()]
    trainer = with_outcome_judge(_FakeTrainer, _judge, gate, only_right)(rewards, training)
    got = trainer._generate_and_score_completions(rows)["advantages"]
    expected = advantages(gate_groups(rewards, right, G)[0] if gate else rewards, "group")
    if only_right and training:  # evaluation reports the advantages untouched
        expected = right_only(expected, right)[0]
    assert torch.allclose(got, expected)
    logged = trainer._metrics["train" if training else "eval"]
    assert ("gate/all_wrong" in logged) == gate and ("right_only/zeroed" in logged) == (only_right and training)
