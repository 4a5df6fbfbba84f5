"""The file to edit for the format: the markers, the reasoning system prompt, the base-model chat template,
and how a problem and a worked solution become a conversation and a completion. Reading and checking the
data files is grpo/data.py's.

Pure at import: nothing here loads a model, a tokenizer or a dataset.

The completion format the rewards pay for (the generation prompt already opened the reasoning
block, so a completion starts inside it):

    ...working...<end_working_out><SOLUTION>42</SOLUTION>
"""

from __future__ import annotations

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


def make_conversation(row: dict) -> dict:
    """Turn one problem (grpo/data.py has read it into "prompt" and "solution") into GRPO's input: a
    [system, user] conversation and the gold answer.

    >>> make_conversation({"prompt": "What is 2+3?", "solution": "5"})["answer"]
    '5'
    """
    return {
        "prompt": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": str(row["prompt"])},
        ],
        "answer": str(row["solution"]).strip(),
    }


def format_completion(working: str, answer: str) -> str:
    """The exact completion text the format rewards pay for (used to prime the tiny smoke model)."""
    return f"{working}{REASONING_END}{SOLUTION_START}{answer}{SOLUTION_END}"


def worked_completion(solution: str, answer: str) -> str:
    """A worked solution in the trained format: working, end marker, the answer in a solution block.
    The reasoning block is opened by the generation prompt, so the completion starts inside it;
    `<think>` tags (OpenMathReasoning's) are dropped.

    >>> worked_completion("<think>2 + 2 = 4</think>", "4")
    '2 + 2 = 4<end_working_out><SOLUTION>4</SOLUTION>'
    """
    working = str(solution).replace("<think>", "").replace("</think>", "").strip()
    return format_completion(working, str(answer).strip())
