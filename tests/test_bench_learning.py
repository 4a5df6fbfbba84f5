"""bench/bench_learning.py's bookkeeping, on finished runs it reuses (no training here): the builds it
asks tiny_model.py for, the gain of each cell over its control, the verdict against the bar, the
shuffled-rewards rows, and the plot.
    python bench/bench_learning.py --builds=1,2 --seeds=5 --max_steps=50
"""

import json
import os
import subprocess
import sys

import prompts
from grpo import data as grpo_data
from conftest import ROOT
from cpu_models import tiny_model

STEPS = 50


def fake_run(folder, rewards):
    os.makedirs(folder)
    with open(os.path.join(folder, "run_config.json"), "w") as f:
        json.dump({"FOUND": {"STEPS_DONE": STEPS}}, f)
    with open(os.path.join(folder, "metrics.jsonl"), "w") as f:
        f.write(json.dumps({"phase": "sft", "sft_step": 1, "loss": 1.0}) + "\n")
        for step, reward in enumerate(rewards, 1):
            f.write(json.dumps({"step": step, "reward": reward, "completions/clipped_ratio": 0.1}) + "\n")


def test_the_table_gives_each_cell_its_gain_over_its_control_and_the_verdict(tmp_path):
    out = tmp_path / "bench"
    for build in (1, 2):
        model = out / f"build-{build}"
        model.mkdir(parents=True)
        (model / "model.safetensors").write_bytes(b"weights %d" % build)
        (model / tiny_model.MARKER).write_text(json.dumps(tiny_model._recipe(grpo_data.BUNDLED_PROBLEMS, build)))
        fake_run(out / f"b{build}-s5-control", [-4.0] * STEPS)
        fake_run(out / f"b{build}-s5", [-4.0] * 10 + [-4.0 + (1.5 if build == 1 else 0.2)] * (STEPS - 10))
        fake_run(out / f"b{build}-s5-shuffled", [-4.1] * STEPS)
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "bench", "bench_learning.py"),
            "--builds=1,2",
            "--seeds=5",
            f"--max_steps={STEPS}",
            f"--out={out}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    table = result.stdout
    assert "| 1 | 5 | -3.25 | -2.50 | -4.00 | +1.50 | 0.10 | yes |" in table
    assert "| 2 | 5 | -3.90 | -3.80 | -4.00 | +0.20 | 0.10 | **no** |" in table  # below the bar of 0.5
    assert "| 1 | 5 (shuffled rewards) | -4.10 | -4.10 | -4.00 | -0.10 | 0.10 | **no** |" in table
    assert "learning cells: gain +0.20 to +1.50; 1 of 2 clear 0.5" in table
    assert (out / "table.md").exists() and (out / "learning_vs_control.png").stat().st_size > 0


def test_shuffled_rewards_offer_all_that_train_grpo_reads_and_only_permute_the_scores():
    """bench/shuffled_rewards.py stands in for rewards.py inside train_grpo.py: every public name of rewards.py
    must be there (a missing one broke the falsification runs once), the rewards each returning their own
    scores, permuted, and everything else rewards.py's own."""
    import rewards
    from bench import shuffled_rewards

    fake = shuffled_rewards.shuffled_rewards(seed=1)
    public = {name for name in dir(rewards) if not name.startswith("_")}
    assert public <= set(vars(fake)), public - set(vars(fake))
    rewarded = {f.__name__ for f in rewards.REWARD_FUNCS} | {"REWARD_FUNCS"}
    for name in public - rewarded:
        assert getattr(fake, name) is getattr(rewards, name), name
    text = f"2 + {{n}} = {{n}}{prompts.REASONING_END}{prompts.SOLUTION_START}{{n}}{prompts.SOLUTION_END}"
    completions = [[{"content": text.format(n=n)}] for n in range(8)]
    answers = [str(n if n % 2 else n + 100) for n in range(8)]  # half right, half far off
    for reward in rewards.REWARD_FUNCS:
        mine = getattr(fake, reward.__name__)
        assert mine in fake.REWARD_FUNCS and mine is not reward
        true = reward(prompts=[[]] * 8, completions=completions, answer=answers)
        assert sorted(mine(prompts=[[]] * 8, completions=completions, answer=answers)) == sorted(true)
    check = fake.check_answer(prompts=[[]] * 8, completions=completions, answer=answers)
    assert check != rewards.check_answer(prompts=[[]] * 8, completions=completions, answer=answers)  # moved
