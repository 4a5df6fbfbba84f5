"""The smoke preset's tiny model is shipped: the same weights on every machine, checked by checksum.
cpu_models/tiny_model.py, the script that made it, still builds one (fewer steps here, to stay fast)."""

import json
import os

import prompts
from grpo import data as grpo_data
from cpu_models import tiny_model
from grpo.record import weights_sha256


def test_the_shipped_weights_are_the_recorded_build_of_the_current_recipe():
    assert weights_sha256(tiny_model.SHIPPED) == tiny_model.SHIPPED_SHA256
    # the recipe (seed, sizes, the bundled files it was trained on) is the one the builder has now
    assert tiny_model.is_built(tiny_model.SHIPPED, grpo_data.BUNDLED_PROBLEMS)
    assert os.path.getsize(os.path.join(tiny_model.SHIPPED, "model.safetensors")) < 1_000_000


def test_the_smoke_preset_loads_the_shipped_model():
    import train_grpo

    assert train_grpo.resolve_knobs(["--smoke"])["MODEL_NAME"] == tiny_model.SHIPPED


def test_the_builder_makes_a_loadable_model_that_depends_on_its_seed(tmp_path, monkeypatch):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setattr(tiny_model, "PRETRAIN_STEPS", 3)
    a = tiny_model.build_tiny_model(str(tmp_path / "a"), grpo_data.BUNDLED_PROBLEMS, seed=1)
    b = tiny_model.build_tiny_model(str(tmp_path / "b"), grpo_data.BUNDLED_PROBLEMS, seed=2)
    assert tiny_model.is_built(a, grpo_data.BUNDLED_PROBLEMS, seed=1) and not tiny_model.is_built(
        a, grpo_data.BUNDLED_PROBLEMS, seed=2
    )
    assert json.load(open(os.path.join(a, tiny_model.MARKER)))["seed"] == 1
    assert weights_sha256(a) != weights_sha256(b)
    model = AutoModelForCausalLM.from_pretrained(a, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(a)
    assert all(m in tokenizer.get_vocab() for m in prompts.MARKERS)  # the format markers are single tokens
    with torch.no_grad():
        assert torch.isfinite(model(tokenizer("2+3=", return_tensors="pt")["input_ids"]).logits).all()
