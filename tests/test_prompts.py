"""Conversation building, the chat template, the length filter and dataset errors."""

import json

import pytest
from grpo import data as grpo_data

import prompts
from grpo.data import DatasetFormatError


def test_make_conversation():
    row = {"prompt": "What is 2+3?", "solution": " 5 ", "data_source": "x"}
    out = prompts.make_conversation(row)
    assert out == {
        "prompt": [
            {"role": "system", "content": prompts.SYSTEM_PROMPT},
            {"role": "user", "content": "What is 2+3?"},
        ],
        "answer": "5",
    }


def test_system_prompt_names_every_marker():
    for marker in prompts.MARKERS:
        assert marker in prompts.SYSTEM_PROMPT


def render(messages, add_generation_prompt):
    from jinja2 import Template

    return Template(prompts.CHAT_TEMPLATE).render(
        messages=messages, eos_token="<EOS>", add_generation_prompt=add_generation_prompt
    )


def test_chat_template_generation_prompt_opens_reasoning():
    conv = prompts.make_conversation({"prompt": "What is 2+3?", "solution": "5"})["prompt"]
    text = render(conv, add_generation_prompt=True)
    assert text == prompts.SYSTEM_PROMPT + "<EOS>" + "What is 2+3?" + prompts.REASONING_START


def test_chat_template_assistant_turn_ends_with_eos():
    conv = prompts.make_conversation({"prompt": "Q", "solution": "5"})["prompt"]
    conv.append({"role": "assistant", "content": "A"})
    assert render(conv, add_generation_prompt=False).endswith("QA<EOS>")


def test_chat_template_without_system_message_uses_the_system_prompt():
    text = render([{"role": "user", "content": "Q"}], add_generation_prompt=True)
    assert text == prompts.SYSTEM_PROMPT + "<EOS>Q" + prompts.REASONING_START


def test_chat_template_through_a_real_tokenizer():
    from cpu_models import tiny_model

    rows = grpo_data.read_jsonl(grpo_data.BUNDLED_PROBLEMS)[:50]
    tok = tiny_model.build_tokenizer(rows)
    conv = prompts.make_conversation(rows[0])["prompt"]
    text = tok.apply_chat_template(conv, add_generation_prompt=True, tokenize=False)
    assert text.endswith(rows[0]["prompt"] + prompts.REASONING_START)
    # markers are ordinary tokens: they survive decoding with special tokens skipped
    ids = tok(prompts.format_completion("w", "5") + tok.eos_token, add_special_tokens=False)["input_ids"]
    decoded = tok.decode(ids, skip_special_tokens=True)
    assert decoded == "w<end_working_out><SOLUTION>5</SOLUTION>"


def test_bundled_problems_have_the_hub_columns():
    rows = grpo_data.read_jsonl(grpo_data.BUNDLED_PROBLEMS)
    assert len(rows) >= 300
    assert all(r["prompt"].strip() and r["solution"].strip() for r in rows)
    assert {"hand-written", "generated"} <= {r["data_source"] for r in rows}


def test_load_local_jsonl_and_missing_column_error(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text("\n".join(json.dumps({"prompt": f"p{i}", "solution": str(i)}) for i in range(5)))
    assert len(grpo_data.read_problems(str(good))) == 5

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "q", "solution": "1"}) + "\n")
    with pytest.raises(DatasetFormatError) as err:
        grpo_data.read_problems(str(bad))
    assert "'prompt'" in str(err.value) and "question" in str(err.value)


def test_load_local_parquet(tmp_path):
    import datasets

    path = tmp_path / "p.parquet"
    datasets.Dataset.from_dict({"prompt": ["a", "b"], "solution": ["1", "2"]}).to_parquet(str(path))
    assert grpo_data.read_problems(str(path))["solution"] == ["1", "2"]


def test_missing_local_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        grpo_data.read_problems(str(tmp_path / "nope.jsonl"))


@pytest.mark.parametrize(
    "lengths,percentile,expected",
    [
        ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 90, 9),
        ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 100, 10),
        ([5], 50, 5),
        ([10, 1, 7], 50, 7),
    ],
)
def test_length_cutoff(lengths, percentile, expected):
    assert grpo_data.length_cutoff(lengths, percentile) == expected


class FakeTokenizer:
    """Token count = number of words in the user message (enough to test the filter)."""

    def apply_chat_template(self, conversation, **kwargs):
        return conversation[-1]["content"].split()


def small_dataset(n):
    import datasets

    rows = {"prompt": [" ".join(["w"] * (i + 1)) for i in range(n)], "solution": [str(i) for i in range(n)]}
    return grpo_data.to_conversations(datasets.Dataset.from_dict(rows))


def test_filter_by_length_keeps_prompts_at_or_below_the_percentile():
    kept, longest = grpo_data.filter_by_length(small_dataset(10), FakeTokenizer(), 90)
    assert len(kept) == 9 and longest == 9
    assert kept[0]["answer"] == "0"


def test_filter_with_nothing_to_measure_is_a_clear_error():
    with pytest.raises(DatasetFormatError):
        grpo_data.filter_by_length(small_dataset(0), FakeTokenizer(), 90)


def test_split_holdout_is_seeded_and_disjoint():
    import datasets

    ds = datasets.Dataset.from_dict({"prompt": [f"p{i}" for i in range(100)], "solution": ["1"] * 100})
    train_a, held_a = grpo_data.split_holdout(ds, 10, seed=1)
    train_b, held_b = grpo_data.split_holdout(ds, 10, seed=1)
    assert held_a["prompt"] == held_b["prompt"] and len(train_a) == 90
    assert not set(train_a["prompt"]) & set(held_a["prompt"])
    with pytest.raises(DatasetFormatError):
        grpo_data.split_holdout(ds, 100, seed=1)
