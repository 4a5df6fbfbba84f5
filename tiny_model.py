"""The smoke preset's model: a tiny Qwen3 built locally, with a tokenizer trained in-process.

Used by `train_grpo.py --smoke`, `evaluate.py --smoke` and the tests, so the real Unsloth + TRL
path runs on a CPU with no downloads. `build_tiny_model(out_dir)` writes an ordinary Hugging Face
model folder that `FastLanguageModel.from_pretrained` loads like any Hub checkpoint.

The format markers are ordinary added tokens, never special ones: GRPO decodes completions with
special tokens skipped, which would erase them (seen with TRL's GRPOTrainer: a format reward
that can never fire).

Priming: a random tiny model almost never writes the markers, so every completion in a group gets
the same reward and GRPO has no signal. Like the public recipe's format-priming SFT, we train the
tiny model for a few seconds on well-formatted examples, stopping while it still gets the format
wrong often; the GRPO steps then have something to improve.
"""

from __future__ import annotations

import json
import os
import random

import prompts

EOS = "<|endoftext|>"
PAD = "<|pad|>"
VOCAB_SIZE = 400  # BPE vocabulary trained on the bundled problems and the system prompt
HIDDEN = 64  # hidden size
LAYERS = 2  # decoder layers
HEADS = 4  # attention heads (2 key/value heads)
PRIME_STEPS = 45  # SFT steps of format priming (batch 16, lr 3e-3): formats some, not most, samples
PRIME_LR = 3e-3  # learning rate of the priming SFT
SEED = 3407  # seeds the weights, the tokenizer corpus order and the priming batches


def _corpus(problems: list[dict]) -> list[str]:
    texts = [prompts.SYSTEM_PROMPT]
    for row in problems:
        texts.append(row["prompt"])
        texts.append(_working(row))
    return texts


def _working(row: dict) -> str:
    """A short made-up line of working for priming; its content is not what GRPO rewards."""
    return f"The problem asks: {row['prompt'].split('.')[-1].strip()} The answer is {row['solution']}. "


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


def build_tiny_model(out_dir: str, problems_path: str) -> str:
    """Build (once) and save the tiny primed Qwen3 and its tokenizer in out_dir; return out_dir.

    Deterministic for a given SEED. Skips the work if out_dir holds a build of the same recipe.
    """
    marker = os.path.join(out_dir, "tiny_model.json")
    recipe = {"seed": SEED, "vocab": VOCAB_SIZE, "hidden": HIDDEN, "layers": LAYERS, "heads": HEADS,
              "prime_steps": PRIME_STEPS, "prime_lr": PRIME_LR, "problems": os.path.getsize(problems_path)}
    if os.path.exists(marker):
        with open(marker) as f:
            if json.load(f) == recipe:
                return out_dir
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(SEED)
    problems = prompts.read_jsonl(problems_path)
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
    prime_format(model, tokenizer, problems)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    with open(marker, "w") as f:
        json.dump(recipe, f)
    return out_dir


def prime_format(model, tokenizer, problems: list[dict]) -> None:
    """A few seconds of SFT on well-formatted completions (loss on the completion tokens only)."""
    import torch

    rng = random.Random(SEED)
    examples = []
    for row in problems:
        conversation = prompts.make_conversation(row)["prompt"]
        prompt_ids = tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=True, return_dict=False)
        completion = prompts.format_completion(_working(row), row["solution"]) + tokenizer.eos_token
        completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
        examples.append((prompt_ids, completion_ids))
    optimizer = torch.optim.AdamW(model.parameters(), lr=PRIME_LR)
    model.train()
    for _ in range(PRIME_STEPS):
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


if __name__ == "__main__":  # python tiny_model.py [OUT_DIR]: build the smoke model ahead of several runs
    import sys

    print(build_tiny_model(sys.argv[1] if len(sys.argv) > 1 else os.path.join("outputs", "tiny-qwen3"), prompts.BUNDLED_PROBLEMS))
