"""evaluate.py's pure parts: answer parsing, scoring, the table, problem sets, knob errors.
The end-to-end evaluation on the tiny model runs in test_learning.py."""

import json
import os
import subprocess
import sys

import pytest
from grpo import data as grpo_data
from conftest import run_script

import evaluate
from grpo import stats

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the scripts run from the repo root


def test_gsm8k_answer_follows_the_marker():
    assert grpo_data.gold_answer("Work: 2 * 600 = 1,200.\n#### 1,200", "gsm8k") == "1200"
    assert grpo_data.gold_answer("#### -3", "gsm8k") == "-3"
    assert grpo_data.gold_answer("Work, and no marker", "gsm8k") is None  # refused by read_problems, naming the row


def sample(problem, text, n_tokens=5, truncated=False):
    return {"problem": problem, "text": text, "n_tokens": n_tokens, "truncated": truncated}


def test_scoring_uses_the_training_judge_on_the_last_block():
    golds = ["42", "0.5"]
    samples = evaluate.score_samples([
        sample(0, "w<end_working_out><SOLUTION>42</SOLUTION>"),
        sample(0, "w<end_working_out><SOLUTION>7</SOLUTION> <SOLUTION>42</SOLUTION>"),  # last block, bad format
        sample(1, "w<end_working_out><SOLUTION>\\frac{1}{2}</SOLUTION>"),
        sample(1, "the answer is 0.5", n_tokens=48, truncated=True),  # no block: not judged
    ], golds)
    assert [s["correct"] for s in samples] == [True, True, True, False]
    assert [s["lenient_correct"] for s in samples] == [True, True, True, True]  # "the answer is 0.5" counts leniently
    assert [s["exact_format"] for s in samples] == [True, False, True, False]
    summary = evaluate.summarize(samples)
    assert summary == {"accuracy": 0.75, "accuracy_lenient": 1.0, "format_rate": 0.5, "mean_completion_tokens": 15.75,
                       "truncation_rate": 0.25, "n_samples": 4}


def test_table_shows_the_change_against_base_with_intervals():
    base = {"accuracy": 0.25, "accuracy_lenient": 0.5, "format_rate": 0.5, "mean_completion_tokens": 100.0,
            "truncation_rate": 0.1, "accuracy_ci95": [0.1, 0.4], "pass_at_k": {"1": 0.25, "2": 0.4}}
    trained = {"accuracy": 0.5, "accuracy_lenient": 0.5, "format_rate": 0.75, "mean_completion_tokens": 80.0,
               "truncation_rate": 0.0, "accuracy_ci95": [0.3, 0.7], "pass_at_k": {"1": 0.5, "2": 0.6}}
    change = {"accuracy_ci95": [0.05, 0.45]}
    text = evaluate.table({"base": base, "trained": trained, "change": change})
    assert "| accuracy | 0.250 [0.100, 0.400] | 0.500 [0.300, 0.700] | +0.250 [+0.050, +0.450] |" in text
    assert "| accuracy_lenient | 0.500 | 0.500 | +0.000 |" in text
    assert "| mean_completion_tokens | 100.0 | 80.0 | -20.000 |" in text
    assert "| pass@2 | 0.400 | 0.600 | +0.200 |" in text


def test_compare_counts_the_samples_that_flipped_each_way():
    def sample(problem, correct, text):
        return {"problem": problem, "correct": correct, "lenient_correct": correct, "exact_format": True,
                "n_tokens": 10, "truncated": False, "text": text}

    before = [sample(0, True, "a"), sample(0, True, "b"), sample(1, False, "c"), sample(1, False, "d")]
    after = [sample(0, True, "a"), sample(0, False, "b2"), sample(1, True, "c2"), sample(1, True, "d2")]
    change = evaluate.compare(before, after, resamples=50, seed=0)
    assert change["flips"] == {"right_to_wrong": 1, "wrong_to_right": 2, "same_text": 1, "paired": 4}
    assert change["accuracy"] == (2 - 1) / 4  # the change is the flips' balance over the samples
    line = evaluate.flips_line({"change_from_primed": change})
    assert line == ("primed -> trained, sample for sample (same sampling seed): 2 wrong turned right, "
                    "1 right turned wrong, 1 of 4 the same text.")
    assert evaluate.compare(before, before, 50, 0)["flips"] == {
        "right_to_wrong": 0,
        "wrong_to_right": 0,
        "same_text": 4,
        "paired": 4,
    }


@pytest.mark.parametrize(
    "text,expected,why",
    [
        ("w<end_working_out><SOLUTION>12</SOLUTION>", "12", "the solution block comes first"),
        ("w<end_working_out><SOLUTION>12</SOLUTION> so \\boxed{7}", "12", "a block beats a later boxed"),
        (
            "so \\boxed{\\frac{1}{2}}. Check: 1 + 1 = 2",
            "\\frac{1}{2}",
            "last boxed, nested braces, before later numbers",
        ),
        ("\\boxed{3} first, then \\boxed{4}", "4", "the last boxed"),
        ("The answer is 45. Indeed 40 + 5 = 45 and 9", "45", "'answer is' beats the last number"),
        ("so the answer is: $x = 5$", "x = 5", "'answer is' strips the dollar signs"),
        ("27 + 18 = 45", "45", "the last number"),
        ("about 1,200, not 1,100,", "1,100", "a trailing comma is not part of the number"),
        ("w<SOLUTION>12", "12", "an unclosed block is not a block; its number is the last number"),
        ("no idea", None, "nothing to find"),
        ("", None, "empty"),
    ],
)
def test_lenient_extraction_order(text, expected, why):
    assert evaluate.lenient_answer(text) == expected, why


@pytest.mark.parametrize(
    "n,c,k,expected",
    [
        (4, 0, 1, 0.0),
        (4, 1, 1, 0.25),
        (4, 2, 1, 0.5),
        (4, 1, 2, 0.5),
        (4, 2, 2, 1 - 1 / 6),
        (4, 1, 4, 1.0),
        (5, 2, 3, 1 - 1 / 10),
        (1, 1, 1, 1.0),
    ],
)
def test_pass_at_k_against_hand_computed_cases(n, c, k, expected):
    # e.g. n=4, c=2, k=2: C(2,2)/C(4,2) = 1/6 of the pairs miss both correct samples
    assert stats.pass_at_k(n, c, k) == pytest.approx(expected)


def test_pass_at_ks_averages_over_problems():
    groups = [[True, False, False, False], [False, False, False, False]]
    assert stats.pass_at_ks(groups) == pytest.approx({"1": 0.125, "2": 0.25, "3": 0.375, "4": 0.5})


def test_bootstrap_interval_narrows_as_problems_grow():
    import random

    rng = random.Random(0)
    widths = []
    for n in (25, 100, 400):
        scores = [float(rng.random() < 0.3) for _ in range(n)]
        lo, hi = stats.bootstrap_ci(scores, 1000, seed=1)
        assert lo <= sum(scores) / n <= hi
        widths.append(hi - lo)
    assert widths[0] > widths[1] > widths[2]
    assert widths[2] < 0.1  # ~ 2 x 1.96 x sqrt(0.3 x 0.7 / 400) = 0.09


def test_paired_interval_of_identical_models_is_zero_and_of_a_shift_excludes_zero():
    import random

    rng = random.Random(0)
    base = [rng.choice([0.0, 0.25, 0.5, 1.0]) for _ in range(200)]
    assert stats.paired_bootstrap_ci(base, base, 500, seed=3) == [0.0, 0.0]
    noisy = [b + rng.choice([-0.25, 0.0, 0.25]) for b in base]  # a change centred on 0
    lo, hi = stats.paired_bootstrap_ci(base, noisy, 1000, seed=3)
    assert lo < 0 < hi
    better = [min(1.0, b + 0.25) for b in base]  # every problem improves or stays at 1
    lo, hi = stats.paired_bootstrap_ci(base, better, 1000, seed=3)
    assert lo > 0


def test_aime_sets_default_to_more_samples_unless_overridden():
    assert evaluate.resolve_knobs(["--problem_set=aime2024"])["N_SAMPLES"] == 16
    assert evaluate.resolve_knobs(["--problem_set=aime2025", "--n_samples=2"])["N_SAMPLES"] == 2
    assert evaluate.resolve_knobs([])["N_SAMPLES"] == evaluate.N_SAMPLES


def test_local_problem_set(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(json.dumps({"prompt": f"q{i}", "solution": str(i)}) for i in range(5)))
    knobs = evaluate.resolve_knobs([f"--problem_set={path}", "--n_problems=3"])
    rows, source = evaluate.load_problem_set(knobs, run={})
    assert [r["solution"] for r in rows] == ["0", "1", "2"] and "3 problems" in source


def test_heldout_set_is_the_slice_training_never_sees(tmp_path):
    import train_grpo

    run = train_grpo.resolve_knobs(["--smoke"])
    rows, _ = evaluate.load_problem_set(evaluate.resolve_knobs(["--smoke"]), run)
    raw = grpo_data.read_problems(run["DATASET_NAME"])
    train, _ = grpo_data.split_holdout(raw, run["HOLDOUT_SIZE"], run["SEED"])
    assert len(rows) == run["HOLDOUT_SIZE"]
    assert not {r["prompt"] for r in rows} & set(train["prompt"])


@pytest.mark.parametrize(
    "arg,message",
    [
        ("--n_samples=many", "expected an integer"),
        ("--bogus=1", "unknown knob"),
        ("--n_samples=0", "N_SAMPLES must be positive"),
    ],
)
def test_bad_overrides_fail_fast(arg, message, tmp_path):
    result = subprocess.run([sys.executable, os.path.join(ROOT, "evaluate.py"), arg], capture_output=True, text=True,
                            timeout=60, cwd=tmp_path)
    assert result.returncode != 0 and message in result.stderr


def test_primed_adapter_is_compared_for_the_runs_own_adapters_only(tmp_path):
    run_dir, elsewhere = tmp_path / "run", tmp_path / "other"
    for folder in ("lora", "lora_primed", "checkpoint-8", "other_run/lora"):
        (run_dir / folder).mkdir(parents=True)
    elsewhere.mkdir()
    run = {"FOUND": {"PRIMED_ADAPTER": str(run_dir / "lora_primed")}}

    def primed_for(adapter, config=run):
        return evaluate.primed_adapter({"RUN_DIR": str(run_dir), "ADAPTER": str(adapter)}, config)

    assert primed_for(run_dir / "lora") == run["FOUND"]["PRIMED_ADAPTER"]
    assert primed_for(run_dir / "checkpoint-8") == run["FOUND"]["PRIMED_ADAPTER"]  # a checkpoint grew from it too
    assert primed_for(run_dir / "lora_primed") is None  # not against itself
    assert primed_for(elsewhere) is None  # another run's adapter: not this priming's child
    assert primed_for(run_dir / "other_run" / "lora") is None  # a run in a subfolder is another run
    assert primed_for(run_dir / "lora", {"FOUND": {"PRIMED_ADAPTER": str(tmp_path / "gone")}}) is None
    assert primed_for(run_dir / "lora", {}) is None  # a run without priming


def test_missing_run_is_a_clear_error(tmp_path):
    result = run_script(tmp_path, "evaluate.py", f"--run_dir={tmp_path}", check=False, timeout=120)
    assert result.returncode != 0 and "run_config.json" in result.stderr


def test_sampling_reads_each_prompt_once_and_matches_plain_generate():
    """generate_hf computes each prompt's KV cache once and copies it to its samples, and attends with
    grpo/attention.py's shared-heads attention. Greedy, it must give what plain `generate` (transformers'
    `sdpa`) gives on the same left-padded prompts repeated per sample."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from cpu_models import tiny_model

    tokenizer = AutoTokenizer.from_pretrained(tiny_model.SHIPPED)
    model = AutoModelForCausalLM.from_pretrained(tiny_model.SHIPPED).eval()
    rows = grpo_data.read_jsonl(grpo_data.BUNDLED_PROBLEMS)[:5]  # prompts of different lengths: left padding
    texts = evaluate.chat_prompts(rows, tokenizer)
    k = dict(SEED=1, TEMPERATURE=0, TOP_P=1.0, N_SAMPLES=2, MAX_NEW_TOKENS=24, BATCH_SIZE=5)
    shared = evaluate.generate_hf(model, tokenizer, texts, k, "test")
    tokenizer.padding_side = "left"  # generate_hf pads left and puts the tokenizer's side back after
    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    assert enc["attention_mask"].min() == 0  # some rows really are padded
    with torch.no_grad():
        out = model.generate(
            input_ids=enc["input_ids"].repeat_interleave(2, 0),
            do_sample=False,
            max_new_tokens=24,
            attention_mask=enc["attention_mask"].repeat_interleave(2, 0),
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    plain = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    assert [s["problem"] for s in shared] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert [s["text"].strip() for s in shared] == [p.strip() for p in plain]


def test_sample_texts_counts_tokens_to_the_stop_and_puts_the_model_back():
    """The sampler evaluate.py and the difficulty filter share: each sample's token count is its length
    up to the first eos or pad, the truncation flag is set only at max_new_tokens, and the model's
    training mode, its attention and the tokenizer's padding side are restored."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from cpu_models import tiny_model
    from grpo.sampling import sample_texts

    tokenizer = AutoTokenizer.from_pretrained(tiny_model.SHIPPED)
    tokenizer.padding_side = "right"
    model = AutoModelForCausalLM.from_pretrained(tiny_model.SHIPPED).train()
    texts = evaluate.chat_prompts(grpo_data.read_jsonl(grpo_data.BUNDLED_PROBLEMS)[:3], tokenizer)
    def draw():
        return sample_texts(model, tokenizer, texts, 3, 2, "test", 0, do_sample=True, temperature=1.0,
                            max_new_tokens=12, eos_token_id=tokenizer.eos_token_id)

    samples = draw()
    assert [s["problem"] for s in samples] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    for s in samples:
        assert 0 <= s["n_tokens"] <= 12 and s["truncated"] == (s["n_tokens"] == 12)
        assert s["n_tokens"] > 0 or s["text"] == ""  # no text without tokens
    assert model.training and tokenizer.padding_side == "right"
    assert model.config._attn_implementation == "sdpa"  # sampled with grpo/attention.py's, then put back
    again = draw()
    assert again == samples  # seeded


def _warped(scores, temperature, top_p, min_p):
    """What transformers' own warpers leave of `scores`, in generate's order (temperature, top-p, min-p)."""
    from transformers import MinPLogitsWarper, TemperatureLogitsWarper, TopPLogitsWarper

    scores = TemperatureLogitsWarper(temperature)(None, scores)
    if top_p < 1.0:
        scores = TopPLogitsWarper(top_p)(None, scores)
    if min_p:
        scores = MinPLogitsWarper(min_p)(None, scores)
    return scores


@pytest.mark.parametrize(
    "temperature, top_p, min_p", [(0.7, 0.95, None), (1.0, 1.0, 0.1), (1.0, 0.5, 0.2), (0.3, 0.9, None)]
)
def test_top_draw_keeps_the_tokens_transformers_warpers_keep(temperature, top_p, min_p):
    """TopDraw's kept set, on each row sorted by probability, is the set transformers' warpers leave
    finite, on random logits of every spread from flat to peaked."""
    import torch

    from grpo.sampling import TopDraw

    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(64, 300, generator=gen) * torch.linspace(0.2, 6.0, 64).unsqueeze(1)
    draw = TopDraw(temperature, top_p, min_p)
    probs, ids = torch.softmax(scores / temperature, -1).sort(-1, descending=True)
    ours = torch.zeros_like(scores, dtype=torch.bool).scatter(1, ids, draw.kept(probs))
    theirs = torch.isfinite(_warped(scores.clone(), temperature, top_p, min_p))
    assert torch.equal(ours, theirs)
    counts = ours.sum(-1)
    assert (
        counts.max() > 1 and counts.min() < 300
    )  # rows where several tokens are kept, and rows where some are dropped


@pytest.mark.parametrize(
    "k", [64, 3]
)  # 64: every token among the likeliest; 3: kept sets reach k, drawn again over all
@pytest.mark.parametrize("temperature, top_p, min_p", [(0.7, 0.95, None), (1.0, 1.0, 0.1)])
def test_top_draw_samples_what_transformers_samples(temperature, top_p, min_p, k):
    """20,000 draws from one row: each drawn token is one the warpers keep, and each token's share is
    within 0.015 of softmax over the warped scores (about 4 standard errors)."""
    import torch

    from grpo.sampling import TopDraw

    scores = torch.tensor([[3.0, 2.6, 2.2, 1.9, 1.0, 0.5, 0.0, -0.5, -1.0, -3.0]])
    want = torch.softmax(_warped(scores.clone(), temperature, top_p, min_p), -1)[0]
    torch.manual_seed(0)
    out = TopDraw(temperature, top_p, min_p, k=k)(None, scores.repeat(20000, 1))
    assert torch.isinf(out).sum(-1).eq(9).all()  # one finite score a row: the drawn token
    drawn = out.argmax(-1)
    assert want[drawn].gt(0).all()
    share = torch.bincount(drawn, minlength=10).float() / 20000
    assert (share - want).abs().max() < 0.015, (share, want)


def test_evaluation_draws_are_seeded_and_float32_adapters_merge_to_the_same_model(tmp_path):
    """evaluate.py samples through TopDraw: the same seed gives the same samples. A float32 adapter is
    merged into the weights for sampling, and the merged model's logits match the adapter kept apart."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from cpu_models import tiny_model

    lora = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model.SHIPPED),
        LoraConfig(r=4, target_modules=["q_proj", "down_proj"], init_lora_weights=False),
    )
    lora.save_pretrained(tmp_path / "lora")
    merged = evaluate.load_for_sampling(tiny_model.SHIPPED, str(tmp_path / "lora"), "cpu", torch.float32)
    apart = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model.SHIPPED), tmp_path / "lora"
    ).eval()
    assert not any("lora" in name for name, _ in merged.named_parameters())
    ids = torch.arange(3, 40).unsqueeze(0)
    with torch.no_grad():
        base = AutoModelForCausalLM.from_pretrained(tiny_model.SHIPPED)(ids).logits
        want, got = apart(ids).logits, merged(ids).logits
    assert not torch.allclose(want, base, atol=1e-3)  # the adapter changes the model
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)

    tokenizer = AutoTokenizer.from_pretrained(tiny_model.SHIPPED)
    texts = evaluate.chat_prompts(grpo_data.read_jsonl(grpo_data.BUNDLED_PROBLEMS)[:3], tokenizer)
    k = dict(SEED=5, TEMPERATURE=0.7, TOP_P=0.95, N_SAMPLES=2, MAX_NEW_TOKENS=16, BATCH_SIZE=3)
    first = evaluate.generate_hf(merged, tokenizer, texts, k, "test")
    assert first == evaluate.generate_hf(merged, tokenizer, texts, k, "test")
    assert sum(s["n_tokens"] for s in first) > 0
