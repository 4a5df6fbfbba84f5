"""The smoke preset's model: a tiny Qwen3 with a tokenizer trained in-process, and the script that built it.

The smoke preset (`train_grpo.py --smoke`, `evaluate.py --smoke`, the tests) loads the build shipped in
SHIPPED, so the real Unsloth + TRL path runs on a CPU with no downloads and the same weights on every
machine. `build_tiny_model(out_dir, problems, seed)` writes an ordinary Hugging Face model folder that
`FastLanguageModel.from_pretrained` loads like any Hub checkpoint; bench/bench_learning.py builds
other seeds with it.

The format markers are ordinary added tokens, never special ones: GRPO decodes completions with
special tokens skipped, which would erase them (seen with TRL's GRPOTrainer: a format reward
that can never fire).

Pretraining: a real base model arrives knowing how to answer in plain text and knowing nothing of
the project's format. The builder gives the tiny model the same starting point: a few seconds of
training on the bundled worked examples answered in plain text, with no format markers (they are
other problems than the ones GRPO trains and is evaluated on). The format is then
taught the recipe's way, by train_grpo.py's format-priming SFT on the LoRA (FORMAT_SFT), the same
code path as for Qwen3-4B.
"""

from __future__ import annotations

import json
import os
import random
import sys

if __package__ in (None, ""):  # run as a script (python cpu_models/tiny_model.py): the project root on the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import prompts
from grpo.data import BUNDLED_PROBLEMS, BUNDLED_WORKED_EXAMPLES, read_jsonl

EOS = "<|endoftext|>"
PAD = "<|pad|>"
VOCAB_SIZE = 400  # BPE vocabulary trained on the bundled problems and the system prompt
HIDDEN = 64  # hidden size
LAYERS = 2  # decoder layers
HEADS = 4  # attention heads (2 key/value heads)
PRETRAIN_STEPS = 400  # steps of plain-text answering (batch 16), the stand-in for a base model's pretraining
PRETRAIN_LR = 3e-3  # learning rate of that pretraining
SEED = 3407  # seeds the weights and the pretraining batches (the build seed)
MARKER = "tiny_model.json"  # written last into a finished build: its recipe
# The build the smoke preset loads, committed with the code, so every machine starts from the same
# weights: CPU float kernels differ between vendors, and 400 steps of pretraining turn those last-bit
# differences into a different model on each. Made with `python cpu_models/tiny_model.py cpu_models/tiny-qwen3`
# (BENCHMARKS.md says on which machine); SHIPPED_SHA256 is its model.safetensors, checked by the tests.
SHIPPED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tiny-qwen3")
SHIPPED_SHA256 = "2f2dd7f1ce6412bb3b4c7e1f3c30c13f1668b2717b503e3604007fb9bbafc891"


def _plain_answers() -> list[dict]:
    """The pretraining corpus: the bundled worked examples (other problems than the ones GRPO trains
    and is evaluated on), each answered in plain text with no format markers."""
    return [{"prompt": row["problem"], "solution": row["expected_answer"], "working": row["generated_solution"]}
            for row in read_jsonl(BUNDLED_WORKED_EXAMPLES)]


def _corpus(problems: list[dict]) -> list[str]:
    texts = [prompts.SYSTEM_PROMPT] + [row["prompt"] for row in problems]
    for row in _plain_answers():
        texts += [row["prompt"], row["working"]]
    return texts


def build_tokenizer(problems: list[dict]):
    """Train a small byte-level BPE tokenizer; markers are added as ordinary (non-special) tokens."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=[EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(problems), trainer=trainer)
    tok.add_tokens([AddedToken(m, special=False, normalized=False) for m in prompts.MARKERS])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=PAD)
    fast.chat_template = prompts.CHAT_TEMPLATE
    fast.padding_side = "left"
    return fast


def _recipe(problems_path: str, seed: int = SEED) -> dict:
    return {
        "seed": seed,
        "vocab": VOCAB_SIZE,
        "hidden": HIDDEN,
        "layers": LAYERS,
        "heads": HEADS,
        "pretrain_steps": PRETRAIN_STEPS,
        "pretrain_lr": PRETRAIN_LR,
        "markers": False,
        "problems": os.path.getsize(problems_path),
        "plain_answers": os.path.getsize(BUNDLED_WORKED_EXAMPLES),
    }


def is_built(out_dir: str, problems_path: str, seed: int = SEED) -> bool:
    """Whether out_dir holds a finished build of the current recipe (its marker is written last)."""
    return built_with(out_dir, MARKER, _recipe(problems_path, seed))


def built_with(out_dir: str, marker: str, recipe: dict) -> bool:
    """Whether out_dir's marker file holds this recipe: a finished build of it."""
    try:
        with open(os.path.join(out_dir, marker)) as f:
            return json.load(f) == recipe
    except (OSError, ValueError):
        return False


def build_tiny_model(out_dir: str, problems_path: str, seed: int = SEED) -> str:
    """Build (once) and save the tiny pretrained (not format-primed) Qwen3 and its tokenizer in out_dir;
    return out_dir.

    Deterministic for a given seed on one machine; another CPU may build another model (hence SHIPPED).
    Skips the work if out_dir holds a build of the same recipe, and never writes into a folder that
    holds something else (a model the user named, say): that folder is returned untouched.
    """
    if holds_other_files(out_dir, MARKER) or is_built(out_dir, problems_path, seed):
        return out_dir
    recipe = _recipe(problems_path, seed)
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    problems = read_jsonl(problems_path)
    tokenizer = build_tokenizer(problems)
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        intermediate_size=2 * HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=HEADS // 2,
        head_dim=HIDDEN // HEADS,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    model = Qwen3ForCausalLM(config)
    pretrain(model, tokenizer, seed)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return publish(model, tokenizer, out_dir, MARKER, recipe)


def holds_other_files(out_dir: str, marker: str) -> bool:
    """Whether out_dir is a non-empty folder without a build's marker: a model folder of the user's,
    which a build must never write over (it is loaded as it is)."""
    return os.path.isdir(out_dir) and bool(os.listdir(out_dir)) and not os.path.exists(os.path.join(out_dir, marker))


def publish(model, tokenizer, out_dir: str, marker: str, recipe: dict) -> str:
    """Save a built model, its tokenizer and the marker (its recipe, as JSON) whole into a side folder,
    then rename that into out_dir, so no process ever sees half a build. An earlier build of another
    recipe in out_dir is replaced; if another process (a rank of a distributed run) published the
    same recipe first, its build is kept. Returns out_dir."""
    import shutil

    partial = f"{os.path.normpath(out_dir)}.partial-{os.getpid()}"
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    with open(os.path.join(partial, marker), "w") as f:
        json.dump(recipe, f)
    if os.path.isdir(out_dir) and not built_with(out_dir, marker, recipe):
        shutil.rmtree(out_dir)
    try:
        os.rename(partial, out_dir)
    except OSError:  # out_dir reappeared: another process finished first
        if not built_with(out_dir, marker, recipe):
            raise
        shutil.rmtree(partial)
    return out_dir


def pretrain(model, tokenizer, seed: int = SEED) -> None:
    """A few seconds of training on plain-text answers (loss on the answer tokens only, no markers)."""
    import torch

    rng = random.Random(seed)
    examples = []
    for row in _plain_answers():
        conversation = prompts.make_conversation(row)["prompt"]
        prompt_ids = tokenizer.apply_chat_template(
            conversation, add_generation_prompt=True, tokenize=True, return_dict=False
        )
        completion_ids = tokenizer(row["working"] + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
        examples.append((prompt_ids, completion_ids))
    optimizer = torch.optim.AdamW(model.parameters(), lr=PRETRAIN_LR)
    model.train()
    for _ in range(PRETRAIN_STEPS):
        batch = rng.sample(examples, 16)
        width = max(len(p) + len(c) for p, c in batch)
        ids = torch.full((len(batch), width), tokenizer.pad_token_id)
        labels = torch.full((len(batch), width), -100)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, (p, c) in enumerate(batch):
            row = p + c
            ids[i, : len(row)] = torch.tensor(row)
            labels[i, len(p) : len(row)] = torch.tensor(c)
            mask[i, : len(row)] = 1
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


if (
    __name__ == "__main__"
):  # python cpu_models/tiny_model.py [OUT_DIR] [--seed=N]: build a tiny model (the smoke preset ships one)
    args = [a for a in sys.argv[1:] if not a.startswith("--seed=")]
    seeds = [int(a.split("=", 1)[1]) for a in sys.argv[1:] if a.startswith("--seed=")]
    out = build_tiny_model(
        args[0] if args else os.path.join("outputs", "tiny-qwen3"),
        BUNDLED_PROBLEMS,
        seeds[-1] if seeds else SEED,
    )
    import hashlib

    with open(os.path.join(out, "model.safetensors"), "rb") as f:
        print(out, hashlib.sha256(f.read()).hexdigest())  # as run_config.json's FOUND.MODEL_SHA256 records it
