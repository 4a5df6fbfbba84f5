# Lets tests import the project's flat modules (train_grpo, rewards, prompts, ...) from the repo root.
