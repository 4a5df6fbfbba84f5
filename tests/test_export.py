"""Shipping a run: export.py merges the adapter into a model plain transformers loads, with the
same logits as base + adapter; GGUF without llama.cpp is refused up front; chat.py answers with
both models side by side. On a smoke run, as a user would:
    python train_grpo.py --smoke --max_steps=3
    python export.py --smoke --format=merged_16bit
    python chat.py --smoke --question="..."
"""

import os
import subprocess
import sys
import time

import pytest
from conftest import run_script

from cpu_models import tiny_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
script = run_script


def llama_cpp_missing():
    from grpo import llama_cpp

    return llama_cpp.missing(llama_cpp.folder())


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("export")
    script(workdir, "train_grpo.py", "--smoke", "--max_steps=3")
    return workdir


def test_merged_16bit_loads_with_plain_transformers_and_matches_base_plus_adapter(smoke):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    script(smoke, "export.py", "--smoke", "--format=merged_16bit")
    run = smoke / "outputs" / "smoke"
    merged_dir = run / "merged_16bit"
    merged = AutoModelForCausalLM.from_pretrained(str(merged_dir), dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(merged_dir))
    assert tokenizer.chat_template and "<start_working_out>" in tokenizer.chat_template
    base = AutoModelForCausalLM.from_pretrained(tiny_model.SHIPPED, dtype=torch.float32)
    tuned = PeftModel.from_pretrained(base, str(run / "lora")).eval()
    ids = tokenizer("What is 12 + 30? Show your working.", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        expected, got = tuned(ids).logits, merged(ids).logits
        with tuned.disable_adapter():
            untuned = tuned(ids).logits
    assert (expected - untuned).abs().max() > 1e-3  # the adapter changes the logits ...
    # ... and the merged model reproduces that change, up to 16-bit rounding of the merged weights
    assert (got - expected).abs().max() < 0.05 * expected.abs().max()
    assert (got.argmax(-1) == expected.argmax(-1)).float().mean() > 0.95


def test_gguf_without_llama_cpp_is_refused_before_any_work(smoke, tmp_path):
    start = time.time()
    result = script(smoke, "export.py", "--smoke", "--format=gguf_q4_k_m", check=False,
                    env={"UNSLOTH_LLAMA_CPP_PATH": str(tmp_path / "no-llama.cpp")})
    assert result.returncode != 0 and "GGUF export needs llama.cpp in " in result.stderr
    assert "bash scripts/install_llama_cpp.sh" in result.stderr and "--allow_llama_cpp_download=true" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert time.time() - start < 20 and not result.stdout.strip()  # refused before anything loads
    assert not (smoke / "outputs" / "smoke" / "gguf_q4_k_m").exists()


@pytest.mark.skipif(bool(llama_cpp_missing()), reason="no llama.cpp: bash scripts/install_llama_cpp.sh")
def test_gguf_of_the_tiny_model_is_refused_for_its_tokenizer_before_any_work(smoke):
    """The smoke model's tokenizer is the project's own; llama.cpp's converter has no hash for its pre-tokenizer."""
    result = script(smoke, "export.py", "--smoke", "--format=gguf_q8_0", check=False)
    assert result.returncode != 0 and "does not know this model's tokenizer" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "--format=merged_16bit" in result.stderr and not result.stdout.strip()  # before Unsloth's import
    assert not (smoke / "outputs" / "smoke" / "gguf_q8_0").exists()


@pytest.mark.parametrize("args,message", [(["--format=onnx"], "FORMAT 'onnx' is not one of"),
                                          (["--run_dir=nowhere"], "no nowhere/run_config.json")])
def test_export_refuses_bad_input(tmp_path, args, message):
    result = script(tmp_path, "export.py", *args, check=False, timeout=60)
    assert result.returncode != 0 and message in result.stderr


def test_chat_prints_base_and_trained_side_by_side(smoke):
    result = script(
        smoke, "chat.py", "--smoke", stdin="What is 2 + 3?\nAva has 27 stickers and buys 18 more. How many?\n"
    )
    out = result.stdout
    assert out.count("== ") == 2 and out.count("-- base (answer in the solution block:") == 2
    assert out.count("-- trained (answer in the solution block:") == 2
    once = script(smoke, "chat.py", "--smoke", "--question=What is 2 + 3?").stdout
    twice = script(smoke, "chat.py", "--smoke", "--question=What is 2 + 3?").stdout
    assert once == twice and "\n== What is 2 + 3?" in once  # greedy: the same answers every time
    note, answers = once.split("\n", 1)
    assert note.startswith("note: the smoke run's model is a tiny Qwen3") and "noise" in note
    assert answers.strip() in out  # and the same as when the question came on stdin


def test_every_entry_point_has_help(tmp_path):
    for name in ("export.py", "chat.py"):
        result = subprocess.run([sys.executable, os.path.join(ROOT, name), "--help"], capture_output=True, text=True,
                                timeout=60, cwd=tmp_path)
        assert result.returncode == 0 and "usage: python " + name in result.stdout and "--run_dir" in result.stdout


@pytest.mark.parametrize("fmt,method", [("merged_4bit", "merged_4bit_forced"), ("merged_16bit", "merged_16bit")])
def test_merged_exports_hand_unsloth_a_save_method_it_accepts(tmp_path, monkeypatch, fmt, method):
    """Unsloth raises on save_method="merged_4bit" (it wants "merged_4bit_forced"); a 4-bit export runs only
    on a GPU, so the GPU is faked here and Unsloth's model stands in as a recorder of what it was handed."""
    import json

    import torch
    import unsloth

    import export

    run = tmp_path / "run"
    (run / "lora").mkdir(parents=True)
    (run / "lora" / "adapter_config.json").write_text("{}")
    (run / "run_config.json").write_text(json.dumps({"MODEL_NAME": "m", "MAX_SEQ_LENGTH": 64, "LOAD_IN_4BIT": True}))
    calls = []

    class Recorder:
        def save_pretrained_merged(self, out, tokenizer, save_method):
            calls.append(("save", save_method))
            os.makedirs(out, exist_ok=True)

        def push_to_hub_merged(self, repo, tokenizer, save_method):
            calls.append(("push", save_method))

    class FakeFastLanguageModel:
        @staticmethod
        def from_pretrained(**kwargs):
            return Recorder(), object()

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(unsloth, "FastLanguageModel", FakeFastLanguageModel)
    export.main([f"--run_dir={run}", f"--format={fmt}", "--push_to_hub=someone/model"])
    assert calls == [("save", method), ("push", method)]
