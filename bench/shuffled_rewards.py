"""train_grpo.py with every reward shuffled among the completions of its batch: the reward no longer
says anything about the completion it is paid to. A falsification run for bench_learning.py: the
learning measure must not credit it. Takes train_grpo.py's arguments.

    python bench/shuffled_rewards.py --smoke --max_steps=120 --seed=3407 --output_dir=outputs/shuffled

The logged mean reward stays the true mean of the batch (a permutation keeps the mean).
"""

import functools
import os
import random
import sys
import types

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import rewards  # noqa: E402
import train_grpo  # noqa: E402


def shuffled(reward, rng):
    @functools.wraps(reward)  # keeps __name__: TRL logs rewards/<name>/mean under it
    def wrapped(*args, **kwargs):
        scores = list(reward(*args, **kwargs))
        rng.shuffle(scores)
        return scores

    return wrapped


def shuffled_rewards(seed: int = 0) -> types.SimpleNamespace:
    """rewards.py as train_grpo.py sees it, with each reward function shuffling its scores. Everything
    else (answer_is_right, which the outcome gate and the difficulty filter judge by) is rewards.py's own."""
    rng = random.Random(seed)
    funcs = {f.__name__: shuffled(f, rng) for f in rewards.REWARD_FUNCS}
    public = {name: getattr(rewards, name) for name in dir(rewards) if not name.startswith("_")}
    return types.SimpleNamespace(**{**public, **funcs, "REWARD_FUNCS": list(funcs.values())})


if __name__ == "__main__":
    train_grpo.rewards = shuffled_rewards()
    sys.exit(train_grpo.main(sys.argv[1:]))
