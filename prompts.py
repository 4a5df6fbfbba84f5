"""Format markers, the reasoning system prompt, the base-model chat template, and the dataset.

Pure at import: nothing here loads a model, a tokenizer or a dataset until a function is called.

The completion format the rewards pay for (the generation prompt already opened the reasoning
block, so a completion starts inside it):

    ...working...<end_working_out><SOLUTION>42</SOLUTION>
"""

from __future__ import annotations

import json
import math
import os

REASONING_START = "<start_working_out>"
REASONING_END = "<end_working_out>"
SOLUTION_START = "<SOLUTION>"
SOLUTION_END = "</SOLUTION>"
MARKERS = (REASONING_START, REASONING_END, SOLUTION_START, SOLUTION_END)

SYSTEM_PROMPT = (
    "You are given a problem.\n"
    "Think about the problem and provide your working out.\n"
    f"Place it between {REASONING_START} and {REASONING_END}.\n"
    f"Then, provide your solution between {SOLUTION_START}{SOLUTION_END}"
)

# A base model has no chat template. This one follows the public recipe: the system text and the
# assistant text end with EOS, the user text stands bare, and the generation prompt opens the
# reasoning block so every completion starts inside it.
CHAT_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}"
    "{{ messages[0]['content'] + eos_token }}"
    "{% set loop_messages = messages[1:] %}"
    "{% else %}"
    "{{ '" + SYSTEM_PROMPT.replace("\n", "\\n") + "' + eos_token }}"
    "{% set loop_messages = messages %}"
    "{% endif %}"
    "{% for message in loop_messages %}"
    "{% if message['role'] == 'user' %}{{ message['content'] }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '" + REASONING_START + "' }}{% endif %}"
)

# The project's bundled problems (data/make_problems.py): the smoke run's data and an offline eval set.
BUNDLED_PROBLEMS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "problems.jsonl")

# Columns of open-r1/DAPO-Math-17k-Processed that this project reads; local files use the same.
PROBLEM_COLUMN = "prompt"
ANSWER_COLUMN = "solution"
REQUIRED_COLUMNS = (PROBLEM_COLUMN, ANSWER_COLUMN)


class DatasetFormatError(ValueError):
    """A dataset that cannot be trained on: a missing column, or nothing left after filtering."""


def make_conversation(row: dict) -> dict:
    """Turn one dataset row into GRPO's input: a [system, user] conversation and the gold answer.

    >>> make_conversation({"prompt": "What is 2+3?", "solution": "5"})["answer"]
    '5'
    """
    return {
        "prompt": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": str(row[PROBLEM_COLUMN])},
        ],
        "answer": str(row[ANSWER_COLUMN]).strip(),
    }


def format_completion(working: str, answer: str) -> str:
    """The exact completion text the format rewards pay for (used to prime the tiny smoke model)."""
    return f"{working}{REASONING_END}{SOLUTION_START}{answer}{SOLUTION_END}"


def load_tokenizer(folder: str):
    """A saved tokenizer with the training chat template, padding with EOS when it has no pad token:
    what evaluate.py and chat.py prompt both models with."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = CHAT_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def check_columns(column_names, source: str, required=REQUIRED_COLUMNS, meaning: str = "") -> None:
    """Raise a clear error naming the missing column(s) and listing the columns found."""
    missing = [c for c in required if c not in column_names]
    if missing:
        meaning = meaning or f"'{PROBLEM_COLUMN}' (the problem text) and '{ANSWER_COLUMN}' (the final answer)"
        raise DatasetFormatError(
            f"{source}: missing column(s) {missing}; found columns {list(column_names)}. Each row needs {meaning}."
        )


# --- format priming: worked solutions rewritten into the format (the recipe's SFT step) -----------
# the worked examples' columns, as in OpenMathReasoning
WORKED_PROBLEM, WORKED_SOLUTION, WORKED_ANSWER = "problem", "generated_solution", "expected_answer"
WORKED_COLUMNS = (WORKED_PROBLEM, WORKED_SOLUTION, WORKED_ANSWER)
BUNDLED_WORKED_EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "worked_examples.jsonl")


def is_numeric_answer(text) -> bool:
    """The recipe keeps only rows whose expected answer is a number.

    >>> [is_numeric_answer(a) for a in ("1,024", "-3.5", "\\frac{1}{2}", "nan")]
    [True, True, False, False]
    """
    try:
        return math.isfinite(float(str(text).replace(",", "").strip()))
    except ValueError:
        return False


def worked_completion(solution: str, answer: str) -> str:
    """A worked solution in the trained format: working, end marker, the answer in a solution block.
    The reasoning block is opened by the generation prompt, so the completion starts inside it;
    `<think>` tags (OpenMathReasoning's) are dropped.

    >>> worked_completion("<think>2 + 2 = 4</think>", "4")
    '2 + 2 = 4<end_working_out><SOLUTION>4</SOLUTION>'
    """
    working = str(solution).replace("<think>", "").replace("</think>", "").strip()
    return format_completion(working, str(answer).strip())


def to_sft_example(row: dict) -> dict:
    """One priming example in TRL's conversational prompt-completion form: the GRPO prompt, and the
    assistant's reply in the format. The chat template renders the reply after the opening marker,
    exactly where a GRPO completion starts, and the loss falls on the reply only."""
    conversation = make_conversation({PROBLEM_COLUMN: row[WORKED_PROBLEM], ANSWER_COLUMN: row[WORKED_ANSWER]})[
        "prompt"
    ]
    reply = REASONING_START + worked_completion(row[WORKED_SOLUTION], row[WORKED_ANSWER])
    return {"prompt": conversation, "completion": [{"role": "assistant", "content": reply}]}


def load_worked_examples(name: str, split: str = "cot"):
    """Worked solutions for priming, filtered as the recipe does (numeric answers only), as a
    `datasets.Dataset` of prompt-completion examples. A Hub id (split `split`) or a local file."""
    from datasets import load_dataset

    if is_local_path(name):
        data = load_local_file(name, f"each line should be a JSON object with {', '.join(map(repr, WORKED_COLUMNS))}")
    else:
        data = load_dataset(name, split=split)
    check_columns(
        data.column_names,
        name,
        WORKED_COLUMNS,
        "'problem', 'generated_solution' (the worked solution) and 'expected_answer'",
    )
    data = data.filter(lambda row: is_numeric_answer(row[WORKED_ANSWER]))
    if len(data) == 0:
        raise DatasetFormatError(f"{name}: no row has a numeric expected_answer")
    return data.map(to_sft_example, remove_columns=data.column_names)


def filter_sft_by_length(examples, tokenizer, max_tokens: int, max_examples: int = 0):
    """Keep examples whose prompt + reply fit in max_tokens (the recipe: MAX_SEQ_LENGTH / 2), then the
    first max_examples of them (0 = all)."""

    def length(example):
        ids = tokenizer.apply_chat_template(
            example["prompt"] + example["completion"], tokenize=True, return_dict=False
        )
        return len(ids)

    keep = [i for i, example in enumerate(examples) if length(example) <= max_tokens]
    if max_examples:
        keep = keep[:max_examples]
    if not keep:
        raise DatasetFormatError(f"no worked example fits in {max_tokens} tokens")
    return examples.select(keep)


def is_local_path(name: str) -> bool:
    return name.endswith((".jsonl", ".json", ".parquet")) or os.path.exists(name)


def load_problems(name: str, config: str | None = None, split: str = "train"):
    """Load problems as a `datasets.Dataset` with 'prompt' and 'solution' columns.

    `name` is a Hub dataset id (e.g. open-r1/DAPO-Math-17k-Processed) or a local JSONL/Parquet file.
    """
    from datasets import load_dataset

    if is_local_path(name):
        dataset = load_local_file(
            name, f"each line should be a JSON object with '{PROBLEM_COLUMN}' and '{ANSWER_COLUMN}'"
        )
    else:
        dataset = load_dataset(name, config, split=split)
    check_columns(dataset.column_names, name)
    if len(dataset) == 0:
        raise DatasetFormatError(f"{name}: no rows")
    check_filled(dataset, name)
    return dataset


def check_filled(dataset, name: str) -> None:
    """Refuse a dataset with a row whose problem or answer is null or blank, naming the first such row
    (its line, for a JSONL file): training on it would teach nothing, silently."""
    jsonl_lines = None
    if name.endswith(".jsonl") and os.path.isfile(name):
        with open(name, encoding="utf-8", errors="replace") as f:
            jsonl_lines = [number for number, line in enumerate(f, start=1) if line.strip()]
    for column in REQUIRED_COLUMNS:
        for i, value in enumerate(dataset[column]):
            if value is None or not str(value).strip():
                where = f"line {jsonl_lines[i]}" if jsonl_lines else f"row {i}"
                raise DatasetFormatError(
                    f"{name}, {where}: '{column}' is {'null' if value is None else 'empty'}; "
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
                    f"{path}, line {number}: not valid JSON ({e.msg} at column {e.colno})"
                ) from None
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
        raise DatasetFormatError(
            f"holdout of {holdout_size} rows leaves nothing to train on ({len(dataset)} rows in all)"
        )
    parts = dataset.train_test_split(test_size=holdout_size, seed=seed, shuffle=True)
    return parts["train"], parts["test"]


def to_conversations(dataset):
    """Map raw rows to {"prompt": [system, user], "answer": ...}, dropping the other columns."""
    return dataset.map(make_conversation, remove_columns=dataset.column_names)


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
