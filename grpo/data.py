"""Step 1, the data: the problems (a Hub dataset or a local file, with its columns and answer rule
from the knobs), the seeded held-out slice that training never sees (evaluate.py scores it), the
[system, user] conversations with the longest prompts dropped, and the held-out prompts for evaluation
during training (EVAL_STEPS). Also reading and checking every data file the project takes (problems,
worked examples for priming), so that a bad one fails in seconds with a line that names it; evaluate.py
and chat.py read the run's data through the same functions.
"""

from __future__ import annotations

import json
import math
import os

import prompts
from grpo.checks import BadInput


def read_problems_of(run: dict):
    """read_problems with a run's knobs (train_grpo.py's, or run_config.json's: evaluate.py, chat.py); a run
    recorded before the column and answer knobs existed read "prompt" and "solution" as is."""
    columns = (run.get("DATASET_PROMPT_COLUMN", PROBLEM_COLUMN), run.get("DATASET_ANSWER_COLUMN", ANSWER_COLUMN))
    return read_problems(run["DATASET_NAME"], run.get("DATASET_CONFIG"), run.get("DATASET_SPLIT", "train"), columns,
                         run.get("ANSWER_FORMAT", "plain"))


def load_problems(k: dict):
    """Load the problems and hold out the evaluation slice: (train, heldout). Runs before the model
    loads, so a missing column or an unreachable dataset fails in seconds, not after minutes."""
    try:
        raw = read_problems_of(k)
    except (DatasetFormatError, FileNotFoundError) as e:
        raise BadInput(str(e)) from e
    try:
        train, heldout = split_holdout(raw, k["HOLDOUT_SIZE"], k["SEED"])
    except DatasetFormatError as e:
        raise BadInput(f"HOLDOUT_SIZE={k['HOLDOUT_SIZE']} with {k['DATASET_NAME']}: {e}; "
                       f"lower it (--holdout_size=N, 0 = no held-out slice)") from e
    print(f"data: {len(raw)} rows from {k['DATASET_NAME']}, {len(heldout)} held out for evaluate.py")
    return train, heldout


def build_dataset(k: dict, train, tokenizer):
    """Build [system, user] conversations and drop the longest prompts. Returns (dataset, the longest kept
    prompt's length in tokens)."""
    dataset = to_conversations(train)
    try:
        dataset, max_prompt_length = filter_by_length(dataset, tokenizer, k["PROMPT_LENGTH_PERCENTILE"])
    except ValueError as e:  # DatasetFormatError is one
        raise BadInput(str(e)) from e
    print(f"data: {len(dataset)} of {len(train)} training prompts kept, at or below the "
          f"{k['PROMPT_LENGTH_PERCENTILE']:g}th percentile ({max_prompt_length} tokens)")
    return dataset, max_prompt_length


def build_eval_dataset(k: dict, heldout, tokenizer, max_prompt_length: int):
    """The first EVAL_SIZE held-out rows as conversations, those that fit the prompt budget; None when off."""
    if not k["EVAL_STEPS"]:
        return None
    subset = to_conversations(heldout.select(range(k["EVAL_SIZE"])))
    lengths = prompt_lengths(subset, tokenizer)
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


# --- reading and checking the data files ---------------------------------------------------------------
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the project root
# The project's bundled problems (data/make_problems.py): the smoke run's data and an offline eval set.
BUNDLED_PROBLEMS = os.path.join(ROOT, "data", "problems.jsonl")

# Inside the project a problem row is {"prompt": problem, "solution": gold answer}: read_problems maps a
# dataset's own columns (DATASET_PROMPT_COLUMN, DATASET_ANSWER_COLUMN) and answer text (ANSWER_FORMAT) to it.
PROBLEM_COLUMN = "prompt"
ANSWER_COLUMN = "solution"
REQUIRED_COLUMNS = (PROBLEM_COLUMN, ANSWER_COLUMN)
ANSWER_FORMATS = ("plain", "gsm8k", "boxed")  # how the gold answer is read from the answer column


class DatasetFormatError(ValueError):
    """A dataset that cannot be trained on: a missing column, or nothing left after filtering."""


def load_tokenizer(folder: str, model_template: bool = False):
    """A saved tokenizer with the training chat template (the recipe's, or with `model_template` the one it
    was saved with: USE_MODEL_CHAT_TEMPLATE), padding with EOS when it has no pad token: what evaluate.py
    and chat.py prompt both models with."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    if not model_template:
        tokenizer.chat_template = prompts.CHAT_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def check_columns(column_names, source: str, required, meaning: str) -> None:
    """Raise a clear error naming the missing column(s), listing the columns found and saying what a row needs."""
    missing = [c for c in required if c not in column_names]
    if missing:
        raise DatasetFormatError(
            f"{source}: missing column(s) {missing}; found columns {list(column_names)}. Each row needs {meaning}."
        )


# --- format priming: worked solutions rewritten into the format (the recipe's SFT step) -----------
# the worked examples' columns, as in OpenMathReasoning
WORKED_PROBLEM, WORKED_SOLUTION, WORKED_ANSWER = "problem", "generated_solution", "expected_answer"
WORKED_COLUMNS = (WORKED_PROBLEM, WORKED_SOLUTION, WORKED_ANSWER)
BUNDLED_WORKED_EXAMPLES = os.path.join(ROOT, "data", "worked_examples.jsonl")


def is_numeric_answer(text) -> bool:
    """The recipe keeps only rows whose expected answer is a number.

    >>> [is_numeric_answer(a) for a in ("1,024", "-3.5", "\\frac{1}{2}", "nan")]
    [True, True, False, False]
    """
    try:
        return math.isfinite(float(str(text).replace(",", "").strip()))
    except ValueError:
        return False


def to_sft_example(row: dict) -> dict:
    """One priming example in TRL's conversational prompt-completion form: the GRPO prompt, and the
    assistant's reply in the format. The chat template renders the reply after the opening marker,
    exactly where a GRPO completion starts, and the loss falls on the reply only."""
    conversation = prompts.make_conversation({PROBLEM_COLUMN: row[WORKED_PROBLEM], ANSWER_COLUMN: row[WORKED_ANSWER]})
    reply = prompts.REASONING_START + prompts.worked_completion(row[WORKED_SOLUTION], row[WORKED_ANSWER])
    return {"prompt": conversation["prompt"], "completion": [{"role": "assistant", "content": reply}]}


def load_worked_examples(name: str, split: str = "cot"):
    """Worked solutions for priming, filtered as the recipe does (numeric answers only), as a
    `datasets.Dataset` of prompt-completion examples. A Hub id (split `split`) or a local file."""
    from datasets import load_dataset

    if is_local_path(name):
        data = load_local_file(name, f"each line should be a JSON object with {', '.join(map(repr, WORKED_COLUMNS))}")
    else:
        data = load_dataset(name, split=split)
    check_columns(data.column_names, name, WORKED_COLUMNS,
                  "'problem', 'generated_solution' (the worked solution) and 'expected_answer'")
    data = data.filter(lambda row: is_numeric_answer(row[WORKED_ANSWER]))
    if len(data) == 0:
        raise DatasetFormatError(f"{name}: no row has a numeric expected_answer")
    return data.map(to_sft_example, remove_columns=data.column_names)


def filter_sft_by_length(examples, tokenizer, max_tokens: int, max_examples: int = 0):
    """Keep examples whose prompt + reply fit in max_tokens (the recipe: MAX_SEQ_LENGTH / 2), then the
    first max_examples of them (0 = all)."""

    def length(example):
        return len(tokenizer.apply_chat_template(example["prompt"] + example["completion"], return_dict=False))

    keep = [i for i, example in enumerate(examples) if length(example) <= max_tokens]
    if max_examples:
        keep = keep[:max_examples]
    if not keep:
        raise DatasetFormatError(f"no worked example fits in {max_tokens} tokens")
    return examples.select(keep)


def is_local_path(name: str) -> bool:
    return name.endswith((".jsonl", ".json", ".parquet")) or os.path.exists(name)


def read_problems(name: str, config: str | None = None, split: str = "train", columns=REQUIRED_COLUMNS,
                  answer_format: str = "plain"):
    """Problems as a `datasets.Dataset` of "prompt" (the problem) and "solution" (the gold answer).

    `name` is a Hub dataset id (e.g. open-r1/DAPO-Math-17k-Processed) or a local JSONL/Parquet file;
    `columns` are its problem and answer columns (DATASET_PROMPT_COLUMN, DATASET_ANSWER_COLUMN), and
    `answer_format` how the gold answer is read from the answer column (gold_answer). A missing column, a
    blank cell or an answer the rule cannot read is refused, naming the row.
    """
    from datasets import Dataset, load_dataset

    problem, answer = columns
    if is_local_path(name):
        dataset = load_local_file(name, f"each line should be a JSON object with '{problem}' and '{answer}'")
    else:
        dataset = load_dataset(name, config, split=split)
    check_columns(dataset.column_names, name, columns,
                  f"'{problem}' (the problem text) and '{answer}' (the answer); DATASET_PROMPT_COLUMN and "
                  "DATASET_ANSWER_COLUMN name them")
    if len(dataset) == 0:
        raise DatasetFormatError(f"{name}: no rows")
    check_filled(dataset, name, columns)
    golds = [gold_answer(text, answer_format) for text in dataset[answer]]
    if None in golds:
        i = golds.index(None)
        raise DatasetFormatError(
            f"{name}, {where(name, i)}: ANSWER_FORMAT={answer_format} finds no answer in '{answer}' "
            f"({str(dataset[answer][i])[-80:]!r}); pick the rule that fits the set (plain | gsm8k | boxed)"
        )
    return Dataset.from_dict({PROBLEM_COLUMN: [str(p) for p in dataset[problem]], ANSWER_COLUMN: golds})


def gold_answer(text, rule: str) -> str | None:
    r"""The gold answer in a dataset's answer text, read by `rule` (ANSWER_FORMAT); None where it finds none.

    | rule  | answer text                          | gold        |
    |-------|--------------------------------------|-------------|
    | plain | the answer itself                    | as is       |
    | gsm8k | a worked solution ending `#### 72`   | `72`        |
    | boxed | a worked solution with `\boxed{..}`  | the last one |

    >>> gold_answer(" 72 ", "plain"), gold_answer("3 * 4 = 12.\n#### 1,200", "gsm8k")
    ('72', '1200')
    >>> gold_answer("So \\boxed{1} or \\boxed{\\frac{1}{2}}.", "boxed"), gold_answer("no box", "boxed")
    ('\\frac{1}{2}', None)
    """
    text = str(text)
    if rule == "gsm8k":
        answer = text.split("####")[-1].strip().replace(",", "") if "####" in text else None
    elif rule == "boxed":
        answer = last_boxed(text)
    else:
        answer = text.strip()
    return answer or None


def last_boxed(text: str) -> str | None:
    """What the last `\\boxed{...}` holds, braces balanced; None without one."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, opened = 0, start + len("\\boxed")
    for i in range(opened, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[opened + 1 : i].strip()
    return None


def where(name: str, i: int) -> str:
    """Row i of a dataset as a user finds it: its line in a JSONL file, else its row number."""
    if name.endswith(".jsonl") and os.path.isfile(name):
        with open(name, encoding="utf-8", errors="replace") as f:
            lines = [number for number, line in enumerate(f, start=1) if line.strip()]
        return f"line {lines[i]}"
    return f"row {i}"


def check_filled(dataset, name: str, columns=REQUIRED_COLUMNS) -> None:
    """Refuse a dataset with a row whose problem or answer is null or blank, naming the first such row
    (its line, for a JSONL file): training on it would teach nothing, silently."""
    for column in columns:
        for i, value in enumerate(dataset[column]):
            if value is None or not str(value).strip():
                raise DatasetFormatError(
                    f"{name}, {where(name, i)}: '{column}' is {'null' if value is None else 'empty'}; "
                    "every row needs a problem and its answer: fix or remove that row"
                )


def load_local_file(name: str, expected: str):
    """A local .jsonl/.json/.parquet file as a `datasets.Dataset`, or a clear error naming the file
    (and, for JSONL, the line) before any library's traceback. `expected` says what a row holds."""
    from datasets import load_dataset

    if not os.path.exists(name):
        raise FileNotFoundError(f"dataset file not found: {name}")
    if os.path.getsize(name) == 0:
        raise DatasetFormatError(f"{name}: the file is empty; {expected}")
    if name.endswith(".jsonl"):
        check_jsonl(name)
    import datasets

    kind = "parquet" if name.endswith(".parquet") else "json"
    shown = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # a local file loads in a blink: its bar would only crowd an error line
    try:
        return load_dataset(kind, data_files=name, split="train")
    except Exception as e:  # a malformed file: name it, without the library's traceback
        raise DatasetFormatError(f"{name}: could not be read as {kind}: {type(e).__name__}: {e}") from None
    finally:
        if shown:
            datasets.enable_progress_bars()


def check_jsonl(path: str) -> None:
    """Raise DatasetFormatError naming the file and line of the first line that is not a JSON object,
    or saying the file has no rows. One pass over the file, before any library reads it."""
    rows = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DatasetFormatError(
                    f"{path}, line {number}: not valid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(row, dict):
                raise DatasetFormatError(f"{path}, line {number}: expected a JSON object, got {type(row).__name__}")
            rows += 1
    if not rows:
        raise DatasetFormatError(f"{path}: no rows (only blank lines)")


def split_holdout(dataset, holdout_size: int, seed: int):
    """Split off a seeded held-out slice: (train, heldout). The same seed gives the same split.

    `train_grpo.py` trains on `train` only; `evaluate.py` scores on `heldout`.
    """
    if holdout_size <= 0:
        return dataset, dataset.select([])
    if holdout_size >= len(dataset):
        raise DatasetFormatError(f"holdout of {holdout_size} rows leaves nothing to train on "
                                 f"({len(dataset)} rows in all)")
    parts = dataset.train_test_split(test_size=holdout_size, seed=seed, shuffle=True)
    return parts["train"], parts["test"]


def to_conversations(dataset):
    """Map problem rows to {"prompt": [system, user], "answer": ...}, dropping the other columns."""
    return dataset.map(prompts.make_conversation, remove_columns=dataset.column_names)


def prompt_lengths(dataset, tokenizer) -> list[int]:
    """Tokenized length of each conversation's prompt, generation prompt included."""
    return [
        len(tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=True, return_dict=False))
        for p in dataset["prompt"]
    ]


def length_cutoff(lengths: list[int], percentile: float) -> int:
    """The length at the given percentile (nearest-rank, 0 < percentile <= 100)."""
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    if not lengths:
        raise DatasetFormatError("no rows to measure")
    ordered = sorted(lengths)
    rank = max(1, math.ceil(percentile / 100 * len(ordered)))
    return ordered[rank - 1]


def filter_by_length(dataset, tokenizer, percentile: float):
    """Keep prompts at or below the percentile of tokenized length. Returns (dataset, max_prompt_len)."""
    if len(dataset) == 0:
        raise DatasetFormatError("no rows to filter: the dataset is empty")
    lengths = prompt_lengths(dataset, tokenizer)
    cutoff = length_cutoff(lengths, percentile)
    keep = [i for i, n in enumerate(lengths) if n <= cutoff]
    if not keep:
        raise DatasetFormatError(f"no rows survive the length filter (percentile {percentile})")
    return dataset.select(keep), max(lengths[i] for i in keep)


def read_jsonl(path: str) -> list[dict]:
    """Small helper for the bundled problem file: one JSON object a line."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
