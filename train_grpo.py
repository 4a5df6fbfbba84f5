"""Turn a base LLM into a step-by-step math reasoner with GRPO (Unsloth LoRA + TRL GRPOTrainer).

    python train_grpo.py                      # the full run, on a CUDA GPU
    python train_grpo.py --max_steps=300      # any knob below, as --lowercase_name=value
    python train_grpo.py --smoke              # the same code path on CPU, tiny model, bundled problems
    python train_grpo.py --preset=smollm2     # the recipe on a small real model, on CPU

The loop: for each problem, sample NUM_GENERATIONS completions; score each with the four rewards
(rewards.py); the advantage of a completion is its total reward minus its group's mean, over the
group's std; the policy gradient raises the likelihood of above-average completions.

This file is the knobs and the recipe's steps (main); each step lives in grpo/, in a module named
for it. The presets (--smoke, --preset=NAME) are in grpo/presets.py.
"""

import sys
import time

import rewards  # the reward functions REWARD_FUNCS names (pure: loads nothing at import)
from grpo import callbacks, checks, data, difficulty, model, presets, priming, record, run_dir, trainer

# -----------------------------------------------------------------------------------------------
# model
MODEL_NAME = "unsloth/Qwen3-4B-Base"  # Hub id or local folder of the base model
MAX_SEQ_LENGTH = 2048  # prompt + completion tokens
LOAD_IN_4BIT = False  # True: QLoRA (4-bit base weights); the recipe trains 16-bit LoRA
FAST_INFERENCE = True  # generate with vLLM when it is installed and a GPU is present
GPU_MEMORY_UTILIZATION = 0.7  # share of GPU memory vLLM may take (fast inference only)
VLLM_MODE = "colocate"  # colocate: Unsloth's vLLM in each training process; server: `trl vllm-serve` elsewhere
VLLM_SERVER_URL = "http://localhost:8000"  # where `trl vllm-serve` listens (VLLM_MODE=server only)
# LoRA
LORA_RANK = 32  # adapter rank; ~66M trainable parameters on Qwen3-4B
LORA_ALPHA = 64  # adapter scale numerator (alpha / rank = 2)
LORA_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")  # layers adapted
USE_MODEL_CHAT_TEMPLATE = False  # False: the recipe's base-model template (prompts.py); True: the model's own
# data
DATASET_NAME = "open-r1/DAPO-Math-17k-Processed"  # Hub id, or a local .jsonl/.parquet file
DATASET_CONFIG = "en"  # Hub config name (ignored for local files)
DATASET_SPLIT = "train"  # Hub split (ignored for local files)
DATASET_PROMPT_COLUMN = "prompt"  # the column that holds the problem (GSM8K: question; MATH: problem)
DATASET_ANSWER_COLUMN = "solution"  # the column that holds the gold answer (GSM8K: answer; MATH: solution)
ANSWER_FORMAT = "plain"  # the gold answer in that column: plain (as is) | gsm8k (after ####) | boxed (last \boxed{})
HOLDOUT_SIZE = 500  # rows held out by a seeded split for evaluate.py; never trained on
PROMPT_LENGTH_PERCENTILE = 90.0  # drop prompts longer than this percentile of tokenized length
# format priming: a short SFT on worked solutions rewritten into the format, before GRPO (the recipe's step)
FORMAT_SFT = True  # prime the format first; without it a base model's rewards can sit at zero for ~100 steps
FORMAT_SFT_DATASET = "unsloth/OpenMathReasoning-mini"  # Hub id (split cot) or a local file of worked solutions
FORMAT_SFT_EPOCHS = 2  # passes over the priming examples
FORMAT_SFT_LEARNING_RATE = 2e-4  # learning rate of the priming SFT (batch 1, 5 warm-up steps)
FORMAT_SFT_MAX_EXAMPLES = 0  # use at most this many examples (0 = every numeric-answer row that fits)
FORMAT_SFT_MAX_TOKENS = 0  # longest example kept, prompt included, in tokens (0 = MAX_SEQ_LENGTH / 2, the recipe's)
REUSE_PRIMING = True  # load the primed adapter of an earlier run with the same model, examples and priming knobs
PRIMING_CACHE = "outputs/primed"  # where primed adapters are kept for reuse, one folder per key
# GRPO
LEARNING_RATE = 5e-6  # AdamW learning rate
WEIGHT_DECAY = 0.001  # AdamW weight decay
WARMUP_RATIO = 0.1  # share of steps with linear warm-up, in [0, 1)
LR_SCHEDULER_TYPE = "linear"  # learning-rate schedule after warm-up
OPTIM = "adamw_8bit"  # optimizer (bitsandbytes 8-bit AdamW on GPU)
NUM_GENERATIONS = 4  # completions sampled per prompt (the group)
PER_DEVICE_TRAIN_BATCH_SIZE = 4  # completions per device step; a multiple of NUM_GENERATIONS
GRADIENT_ACCUMULATION_STEPS = 1  # device steps per optimizer step
MAX_COMPLETION_LENGTH = 0  # completion token budget; 0 = MAX_SEQ_LENGTH minus the longest kept prompt
TEMPERATURE = 1.0  # sampling temperature
MIN_P = 0.1  # drop tokens below this fraction of the top token's probability
TOP_P = 1.0  # nucleus sampling (1.0 = off)
MAX_STEPS = 100  # optimizer steps
SAVE_STEPS = 25  # checkpoint (adapter, optimizer, scheduler, RNG) every this many steps
SAVE_TOTAL_LIMIT = 2  # keep this many newest checkpoints
RESUME = ""  # "" = a new run; "auto" = the latest checkpoint-N in OUTPUT_DIR; or a checkpoint path
SEED = 3407  # seeds LoRA init, sampling, the data order and the held-out split
# GRPO algorithm: set explicitly, since the library defaults have changed between versions
LOSS_TYPE = "dapo"  # how token losses are averaged: dapo | grpo | bnpo | dr_grpo | cispo | sapo | vespo
BETA = 0.0  # KL penalty to the model as GRPO starts (primed, with FORMAT_SFT); 0 = none, no reference pass
EPSILON = 0.2  # lower clip range of the policy ratio, 1 - EPSILON
EPSILON_HIGH = 0.2  # upper clip range, 1 + EPSILON_HIGH; DAPO's clip-higher uses 0.28
SCALE_REWARDS = "group"  # divide advantages by the std of: group | batch | none (Dr. GRPO's choice)
MASK_TRUNCATED_COMPLETIONS = False  # leave completions that hit the length limit out of the loss
IMPORTANCE_SAMPLING_LEVEL = "token"  # policy ratio per token, or "sequence" (GSPO: one length-normalised ratio)
MULTI_OBJECTIVE_AGGREGATION = "sum_then_normalize"  # or "normalize_then_sum" (GDPO: each reward normalised first)
TOP_ENTROPY_QUANTILE = 1.0  # train on this top share of tokens by entropy (the 80/20 paper: 0.2); 1.0 = all
VLLM_IMPORTANCE_SAMPLING_CORRECTION = False  # reweight for vLLM's sampling probabilities (Unsloth's default off)
VLLM_IMPORTANCE_SAMPLING_MODE = "sequence_mask"  # token_truncate | token_mask | sequence_truncate | sequence_mask
OUTCOME_GATE = False  # zero the advantages of groups whose answers are all right or all wrong (answer_is_right)
REINFORCE_RIGHT_ONLY = False  # keep only right answers' positive advantages: raise right answers, push nothing down
# difficulty filter: after priming, keep only the prompts the model sometimes solves
DIFFICULTY_FILTER = False  # sample each training prompt DIFFICULTY_SAMPLES times; keep those passing within the band
DIFFICULTY_SAMPLES = 8  # completions per prompt for its pass rate (GRPO's sampling settings)
DIFFICULTY_BAND = (0.1, 0.9)  # keep prompts whose pass rate is in [low, high]
DIFFICULTY_PROMPTS = 0  # sample only this many training prompts (a seeded draw; the rest are not trained on); 0 = all
DIFFICULTY_CACHE = "outputs/difficulty"  # pass rates kept per model, adapter, prompts and sampling settings
# held-out evaluation during training
EVAL_STEPS = 0  # every this many steps, score EVAL_SIZE held-out prompts with the rewards (0 = off)
EVAL_SIZE = 16  # held-out prompts per evaluation (x NUM_GENERATIONS completions), the same ones each time
# run health
COLLAPSE_PATIENCE = 10  # warn after this many consecutive steps without a learning signal (0 = off)
STOP_ON_COLLAPSE = False  # on that warning, save the adapter and metrics and stop with exit 0
# rewards
REWARD_FUNCS = tuple(rewards.REWARDS)  # the rewards paid, by name: rewards.REWARDS lists them (add one there)
REWARD_WEIGHTS = tuple(rewards.REWARDS.values())  # weight of each in the total, same order (rewards.REWARDS')
# output
OUTPUT_DIR = "outputs"  # checkpoints, metrics.jsonl, reward_curves.png, lora/ (adapter + tokenizer)
REPORT_TO = "none"  # "none", "wandb", "tensorboard", ...
LOG_COMPLETIONS = True  # write sampled completions, rewards and extracted answers to OUTPUT_DIR/completions/
# -----------------------------------------------------------------------------------------------


def resolve_knobs(argv: list[str]) -> dict:
    """Knob values for this run: defaults, then a preset (--smoke, --preset=NAME), then --name=value.
    Exits with a message naming the knob on any bad value, before anything heavy is imported."""
    from grpo.overrides import resolve

    return resolve(globals(), argv, "train_grpo.py", lambda k: checks.check_knobs(k, rewards), presets.PRESETS)


def main(argv: list[str]) -> str | None:
    """The recipe's steps. `k` stays the knobs as asked; each step returns what it found, gathered in
    `loaded.found` and kept apart from the knobs in run_config.json. Returns None, or a message to exit with."""
    k = resolve_knobs(argv)  # the knobs above, a preset, then --name=value
    callbacks.sigterm_as_ctrl_c()  # until GRPO installs its clean stop, SIGTERM ends the run as Ctrl-C does
    started = time.time()
    resume_from = run_dir.start(k)  # a new run or a checkpoint; refuses to mix runs in one folder (touches nothing)
    checks.preflight(k)  # stops at once on a machine that cannot run this model
    # 1. data: the problems, the held-out slice, the worked examples (fails in seconds, before the model)
    train_rows, heldout_rows = data.load_problems(k)
    worked = priming.load_examples(k, resume_from)
    # 2. model and 3. LoRA, through Unsloth
    loaded = model.load(k)  # the policy, its tokenizer, and .found: whether vLLM generates, the weights' checksum
    dataset, max_prompt_length = data.build_dataset(k, train_rows, loaded.tokenizer)
    eval_dataset = data.build_eval_dataset(k, heldout_rows, loaded.tokenizer, max_prompt_length)
    budget = trainer.completion_budget(k, max_prompt_length)  # completion tokens: what the longest prompt leaves
    loaded.found.update(MAX_PROMPT_LENGTH=max_prompt_length, RESUMED_FROM=resume_from)
    run_dir.set_aside_previous(k, resume_from)  # every check passed: an earlier smoke run moves to OUTPUT_DIR.prev
    # 4. format priming: SFT on worked solutions, on the same LoRA (or the adapter an earlier run primed)
    loaded.found.update(priming.prime(k, loaded, worked, resume_from))
    # (optional) keep the prompts the primed model sometimes solves
    dataset, kept = difficulty.filter_prompts(k, loaded, dataset, rewards.answer_is_right, budget)
    loaded.found.update(kept)
    # 5. the GRPO trainer with the rewards, and the run's record
    grpo_trainer, controls = trainer.build(k, loaded, rewards, dataset, eval_dataset, budget)
    run = record.start(k, loaded.found, grpo_trainer, controls.algorithm,
                       data.counts(train_rows, heldout_rows, dataset))
    # 6. train (Ctrl-C or SIGTERM: finish the step, save a checkpoint; NaN or inf: stop, save nothing)
    trainer.train(grpo_trainer, controls, resume_from)
    # 7. save the adapter and tokenizer, the curves, and what the run did
    return run_dir.finish(k, run, grpo_trainer, controls, started, argv)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except checks.BadInput as e:  # a knob, file or dataset the run cannot use
        sys.exit(f"train_grpo.py: error: {e}")
    except checks.Stopped as e:  # Ctrl-C or SIGTERM during priming: the step finished, nothing part-made is kept
        sys.exit(f"train_grpo.py: {e}. Start again with:  {' '.join(['python train_grpo.py', *sys.argv[1:]])}")
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM before GRPO (loading, the difficulty filter)
        again = " ".join(["python train_grpo.py", *sys.argv[1:]])
        sys.exit(f"\ntrain_grpo.py: stopped by {str(e) or 'SIGINT'} before GRPO started; a finished priming is kept "
                 f"for reuse (PRIMING_CACHE), nothing else. Start again with:  {again}")
    except Exception as e:  # a full disk, wherever the run writes (checkpoints, metrics, caches, the adapter)
        out = resolve_knobs(sys.argv[1:])["OUTPUT_DIR"]
        if not run_dir.disk_full(e, out):
            raise
        sys.exit(f"train_grpo.py: error: {run_dir.disk_full_message(e, out)}")
