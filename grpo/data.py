"""Step 1, the data: the problems (a Hub dataset or a local file), the seeded held-out slice that
training never sees (evaluate.py scores it), the [system, user] conversations with the longest
prompts dropped, and the held-out prompts for evaluation during training (EVAL_STEPS).
"""

from __future__ import annotations

import prompts
from grpo.checks import BadInput

def load_problems(k: dict):
    """Load the problems and hold out the evaluation slice: (train, heldout). Runs before the model
    loads, so a missing column or an unreachable dataset fails in seconds, not after minutes."""
    try:
        raw = prompts.load_problems(k["DATASET_NAME"], k["DATASET_CONFIG"], k["DATASET_SPLIT"])
    except (prompts.DatasetFormatError, FileNotFoundError) as e:
        raise BadInput(str(e)) from e
    try:
        train, heldout = prompts.split_holdout(raw, k["HOLDOUT_SIZE"], k["SEED"])
    except prompts.DatasetFormatError as e:
        raise BadInput(f"HOLDOUT_SIZE={k['HOLDOUT_SIZE']} with {k['DATASET_NAME']}: {e}; "
                       f"lower it (--holdout_size=N, 0 = no held-out slice)") from e
    print(f"data: {len(raw)} rows from {k['DATASET_NAME']}, {len(heldout)} held out for evaluate.py")
    return train, heldout


def build_dataset(k: dict, train, tokenizer):
    """Build [system, user] conversations and drop the longest prompts. Returns (dataset, the longest kept
    prompt's length in tokens)."""
    dataset = prompts.to_conversations(train)
    try:
        dataset, max_prompt_length = prompts.filter_by_length(dataset, tokenizer, k["PROMPT_LENGTH_PERCENTILE"])
    except ValueError as e:  # DatasetFormatError is one
        raise BadInput(str(e)) from e
    print(
        f"data: {len(dataset)} of {len(train)} training prompts kept, at or below the "
        f"{k['PROMPT_LENGTH_PERCENTILE']:g}th percentile ({max_prompt_length} tokens)"
    )
    return dataset, max_prompt_length


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
        raise BadInput(f"none of the {k['EVAL_SIZE']} held-out prompts fits in {max_prompt_length} tokens")
    print(f"eval: {len(fits)} held-out prompts x {k['NUM_GENERATIONS']} completions every {k['EVAL_STEPS']} steps")
    return subset.select(fits)


def counts(train, heldout, dataset) -> dict:
    """The data as run_config.json records it (FOUND.DATA): rows in all, held out, trained on (after the
    length filter and the difficulty filter), and the loaded dataset's fingerprint."""
    return {"rows": len(train) + len(heldout), "held_out": len(heldout), "trained_on": len(dataset),
            "fingerprint": getattr(train, "_fingerprint", None)}
