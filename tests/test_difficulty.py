"""The difficulty filter (DIFFICULTY_FILTER): the primed model samples each training prompt, the pass
rates are cached and reused, the histogram is printed and saved, and prompts outside the band are
dropped (all of them, for the tiny model, which never answers right: a clear error).
    python train_grpo.py --smoke --dataset_name=40_problems.jsonl --holdout_size=8 --difficulty_filter=true ...
"""

import json

import pytest
from grpo import data as grpo_data
from conftest import ROOT, run_script

from grpo.difficulty import histogram, select


def test_band_and_histogram_tables():
    rates = [0.0, 0.125, 0.5, 0.875, 1.0]
    assert select(rates, (0.1, 0.9)) == [1, 2, 3]
    assert select(rates, (0.0, 1.0)) == [0, 1, 2, 3, 4]
    assert select(rates, (1.0, 1.0)) == [4]
    assert histogram(rates, 8) == {
        "0/8": 1,
        "1/8": 1,
        "2/8": 0,
        "3/8": 0,
        "4/8": 1,
        "5/8": 0,
        "6/8": 0,
        "7/8": 1,
        "8/8": 1,
    }


@pytest.fixture(scope="module")
def filtered(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("difficulty")
    rows = open(f"{ROOT}/data/problems.jsonl").read().splitlines()[:40]
    (workdir / "p40.jsonl").write_text("\n".join(rows) + "\n")
    common = [
        "--smoke",
        "--dataset_name=p40.jsonl",
        "--holdout_size=8",
        "--difficulty_filter=true",
        "--difficulty_samples=2",
        "--max_steps=1",
    ]
    first = run_script(workdir, "train_grpo.py", *common, "--difficulty_band=0,1", "--output_dir=outputs/all")
    second = run_script(workdir, "train_grpo.py", *common, "--output_dir=outputs/band", check=False)
    drawn = run_script(
        workdir,
        "train_grpo.py",
        *common,
        "--difficulty_band=0,1",
        "--difficulty_prompts=10",
        "--output_dir=outputs/drawn",
    )
    return workdir, first, second, drawn


def test_every_prompt_is_sampled_and_the_histogram_saved(filtered):
    workdir, first, _, _ = filtered
    assert "difficulty: 29 prompts x 2 completions of up to 64 tokens" in first.stdout
    saved = json.load(open(workdir / "outputs" / "all" / "difficulty.json"))
    assert saved["of"] == saved["kept"] == 29 and sum(saved["histogram"].values()) == 29
    assert 1 <= saved["mean_completion_tokens"] <= 64  # real completions were sampled
    assert "kept 29 of 29 prompts in [0, 1]" in first.stdout
    assert json.load(open(workdir / "outputs" / "all" / "run_config.json"))["FOUND"]["DIFFICULTY_KEPT"] == 29


def test_a_second_run_reuses_the_pass_rates_and_a_band_nothing_fits_is_refused(filtered):
    workdir, _, second, _ = filtered
    assert "difficulty: reused the pass rates in outputs/difficulty/" in second.stdout
    assert "difficulty: 29 prompts x 2" not in second.stdout  # no sampling the second time
    assert second.returncode != 0 and "DIFFICULTY_FILTER kept none of the 29 prompts" in second.stderr
    assert "Traceback" not in second.stderr


def test_difficulty_prompts_samples_a_seeded_draw_and_trains_on_that_draw_only(filtered):
    workdir, _, _, drawn = filtered
    assert "difficulty: a seeded draw of 10 of the 29 training prompts" in drawn.stdout
    assert "difficulty: 10 prompts x 2 completions" in drawn.stdout and "kept 10 of 10 prompts" in drawn.stdout
    assert json.load(open(workdir / "outputs" / "drawn" / "run_config.json"))["FOUND"]["DIFFICULTY_KEPT"] == 10


def test_with_unsloths_vllm_engine_the_filter_samples_through_it(monkeypatch):
    """On a GPU with FAST_INFERENCE the model carries Unsloth's vLLM engine: the filter asks it for
    DIFFICULTY_SAMPLES completions per prompt at GRPO's sampling settings, with the live adapter as the
    LoRA request, and judges them like the transformers path does. vLLM is faked here (no GPU)."""
    import sys
    import types

    import rewards
    from grpo import difficulty

    made = {}

    class SamplingParams:
        def __init__(self, **kw):
            made.update(kw)

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(SamplingParams=SamplingParams))
    out = lambda text, n: types.SimpleNamespace(text=text, token_ids=list(range(n)))  # noqa: E731
    answers = {"p0": ["<SOLUTION>4</SOLUTION>", "<SOLUTION>5</SOLUTION>"], "p1": ["<SOLUTION>9</SOLUTION>"] * 2}

    class Model:
        vllm_engine = object()

        def load_lora(self, name, load_tensors=False):
            assert load_tensors
            return f"lora:{name}"

        def fast_generate(self, texts, sampling_params, lora_request, use_tqdm):
            made["lora"] = lora_request
            return [types.SimpleNamespace(outputs=[out(t, 3) for t in answers[text]]) for text in texts]

    class Tokenizer:
        def apply_chat_template(self, prompt, tokenize, add_generation_prompt):
            return prompt

    k = {"DIFFICULTY_SAMPLES": 2, "TEMPERATURE": 1.0, "TOP_P": 1.0, "MIN_P": 0.1, "SEED": 7}
    data = {"prompt": ["p0", "p1"], "answer": ["4", "8"]}
    rates, mean_tokens = difficulty.pass_rates(k, Model(), Tokenizer(), data, rewards.answer_is_right, 64)
    assert rates == [0.5, 0.0] and mean_tokens == 3
    assert made == {
        "n": 2,
        "temperature": 1.0,
        "top_p": 1.0,
        "min_p": 0.1,
        "max_tokens": 64,
        "seed": 7,
        "lora": "lora:difficulty_filter_lora",
    }


def test_the_filter_stops_where_grpo_stops_whether_priming_ran_or_was_reused():
    """TRL's SFTTrainer adds the tokenizer's eos (the token the chat template ends a turn with) to the
    model's generation config; a reused primed adapter leaves the config as it was loaded. The filter
    stops at GRPO's stop tokens either way (the tokenizer's eos first, then the config's), so the same
    seed samples the same completions, and counts the same tokens, after a fresh or a reused priming."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import evaluate
    from cpu_models import tiny_model
    from grpo import difficulty

    tokenizer = AutoTokenizer.from_pretrained(tiny_model.SHIPPED)
    model = AutoModelForCausalLM.from_pretrained(tiny_model.SHIPPED)
    texts = evaluate.chat_prompts(grpo_data.read_jsonl(grpo_data.BUNDLED_PROBLEMS)[:32], tokenizer)
    k = {"DIFFICULTY_SAMPLES": 4, "TEMPERATURE": 1.0, "TOP_P": 1.0, "MIN_P": 0.1, "SEED": 3}
    other = 5  # a second stop token in the config, as SmolLM2's names one its template does not end turns with
    assert tokenizer.eos_token_id != other
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, other]  # as SFTTrainer leaves it
    after_priming = difficulty.sample_hf(k, model, tokenizer, texts, 64)
    model.generation_config.eos_token_id = other  # as loaded, with the primed adapter reused
    after_reuse = difficulty.sample_hf(k, model, tokenizer, texts, 64)
    assert after_priming[1] < len(texts) * 4 * 64  # some completions stopped at the eos: the case can tell
    assert after_reuse == after_priming
