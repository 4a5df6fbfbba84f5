"""Guards for the GPU path, which no CPU run executes (docs/gpu_path.md is the ledger): each Unsloth or TRL
hook the project relies on on a GPU, checked against the installed library's source, so a version bump
that removes one fails here and not on a user's GPU; and the vLLM fallback, with a broken vLLM on the path.
"""

import inspect
import os
import re
import subprocess
import sys

import unsloth  # noqa: F401  (before trl, transformers and peft, as in training)
import pytest
from conftest import ROOT, source

import train_grpo
from grpo import model, presets


# --- the outcome gate and right-only: TRL's private hooks, in the order grpo/trainer.py relies on ------------
def test_trl_scores_rewards_in_calculate_rewards_before_it_computes_the_advantages():
    from trl import GRPOTrainer

    body = inspect.getsource(GRPOTrainer._generate_and_score_completions)
    rewards_at = body.find(
        "rewards_per_func = self._calculate_rewards(inputs, prompts, completions, completion_ids_list)"
    )
    advantages_at = body.find("advantages = rewards - mean_grouped_rewards")
    assert 0 <= rewards_at < advantages_at, "TRL no longer computes advantages from _calculate_rewards' result"
    assert re.search(r'"advantages": advantages', body), "right-only rewrites output['advantages']"
    assert "gather(" in inspect.getsource(GRPOTrainer._calculate_rewards)  # the gate sees every process's rewards


def test_unsloths_compiled_grpo_trainer_still_calls_calculate_rewards():
    """Unsloth compiles its own GRPOTrainer from TRL's source with text replacements (rl_replacements.py):
    the line it rewrites must be TRL's, and its rewrite must still call the hook the gate overrides."""
    from trl import GRPOTrainer

    replacements = source("unsloth", "models", "rl_replacements.py")
    anchor = re.search(
        r'string_to_find = "(        rewards_per_func = self\._calculate_rewards\([^"]*)"', replacements
    )
    assert anchor, "Unsloth no longer rewrites the _calculate_rewards line: re-read unsloth/models/rl_replacements.py"
    assert anchor.group(1).strip() in inspect.getsource(GRPOTrainer._generate_and_score_completions)
    after = replacements[anchor.end() : anchor.end() + 1500]
    assert "self._calculate_rewards(" in after.split("function.replace(string_to_find")[0]


def test_unsloths_lora_kernels_follow_the_active_adapter():
    """On a GPU, Unsloth's fast LoRA kernels read the adapter weights themselves, at each call: the KL
    reference (grpo/trainer.py PrimedReference) swaps the primed values into the active adapter's tensors,
    which is what they read."""
    body = source("unsloth", "kernels", "utils.py")
    body = body[body.index("def get_lora_parameters(proj)") :]
    body = body[: body.index("\ndef ")]
    assert 'getattr(proj, "active_adapters", None)' in body
    assert "proj.lora_A[adapter]" in body and "proj.lora_B[adapter]" in body and "proj.scaling[adapter]" in body
    assert 'getattr(proj, "disable_adapters", True)' in body  # the base model when adapters are off


def test_trl_and_unsloth_take_the_kl_reference_from_disable_adapter_without_a_ref_adapter():
    from trl import GRPOTrainer

    line = 'use_adapter(model, adapter_name="ref" if "ref" in model.peft_config else None)'
    assert line in inspect.getsource(GRPOTrainer._generate_and_score_completions)
    # Unsloth's rewrite deletes TRL's copy into "ref"; grpo/trainer.py kl_reference deletes stock TRL's and puts
    # PrimedReference in disable_adapter's place: one adapter in front of vLLM (docs/gpu_path.md)
    assert "PEFT initialization logic removed" in source("unsloth", "models", "rl.py")


# --- fast inference (vLLM inside Unsloth) ------------------------------------------------------------------
def test_unsloth_from_pretrained_takes_the_vllm_arguments_the_project_passes():
    loader = source("unsloth", "models", "loader.py")
    signature = loader[loader.index("    def from_pretrained(") :]
    signature = signature[: signature.index("):")]
    for argument in model.from_pretrained_kwargs({**production(), "FAST_INFERENCE": True}, True):
        assert f"{argument} =" in signature or f"{argument}=" in signature, argument
    llama = source("unsloth", "models", "llama.py")
    assert "model.vllm_engine = llm" in llama  # model.load tells Unsloth's own fallback by this attribute
    assert "model.fast_generate = model.vllm_engine.generate" in llama  # the difficulty filter samples through it
    assert re.search(r"def load_lora\(model, save_directory, load_tensors", source("unsloth_zoo", "vllm_utils.py"))


def test_unsloth_marks_a_broken_vllm_where_model_load_reads_it():
    fixes = source("unsloth", "import_fixes.py")
    assert re.search(r"^VLLM_BROKEN = False", fixes, re.M) and re.search(r"^VLLM_DISABLED_REASON = None", fixes, re.M)


def test_gradient_checkpointing_unsloth_is_accepted():
    assert '"unsloth"' in source("unsloth", "models", "_utils.py") or "'unsloth'" in source(
        "unsloth", "models", "_utils.py"
    )
    assert model.peft_kwargs(production())["use_gradient_checkpointing"] == "unsloth"


# --- export --------------------------------------------------------------------------------------------------
def test_unsloth_refuses_merged_4bit_and_takes_merged_4bit_forced():
    import export

    save = source("unsloth", "save.py")
    assert 'if save_method == "merged_4bit":\n        raise RuntimeError(' in save
    assert 'save_method == "merged_4bit_forced"' in save
    assert export.unsloth_save_method("merged_4bit") == "merged_4bit_forced"


# --- the vLLM decision ----------------------------------------------------------------------------------------
def production() -> dict:
    from grpo.overrides import knobs_of

    return {**knobs_of(vars(train_grpo)), "SMOKE": False, "PRESET": ""}


@pytest.mark.parametrize(
    "error,why",
    [
        # an ABI break Unsloth recognises at import: it disables vLLM (import_fixes.VLLM_BROKEN), and load reads that
        (
            'ImportError("libcudart.so.13: cannot open shared object file: No such file or directory")',
            "Unsloth disabled vLLM (Unsloth: Detected broken vLLM binary extension",
        ),
        # a failure Unsloth does not recognise: load's own import attempt catches it
        (
            'RuntimeError("vllm: unsupported platform")',
            "vLLM does not import (RuntimeError: vllm: unsupported platform)",
        ),
    ],
)
def test_a_broken_vllm_is_refused_before_the_model_loads_not_after(tmp_path, error, why):
    """With CUDA present (faked here) and a vLLM that does not import, vllm_unusable says why, rather than
    letting from_pretrained(fast_inference=True) raise once the weights are loading."""
    (tmp_path / "vllm").mkdir()
    (tmp_path / "vllm" / "__init__.py").write_text(f"raise {error}\n")
    code = (
        "import unsloth, torch\n"
        "torch.cuda.is_available = lambda: True\n"
        "torch.cuda.get_device_capability = lambda *a: (9, 0)\n"
        "from grpo.model import vllm_unusable\n"
        "print('WHY:', vllm_unusable())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,  # import unsloth writes unsloth_compiled_cache/ where it runs
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), ROOT])},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    said = next(line for line in result.stdout.splitlines() if line.startswith("WHY:"))
    assert said.startswith(f"WHY: {why}"), said


def smoke_knobs(tmp_path, **changes) -> dict:
    from grpo.overrides import knobs_of

    return {
        **knobs_of(vars(train_grpo)),
        **presets.SMOKE,
        "SMOKE": True,
        "PRESET": "smoke",
        "OUTPUT_DIR": str(tmp_path / "out"),
        **changes,
    }


def test_model_load_falls_back_with_one_line_and_leaves_the_knobs_alone(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(model, "vllm_unusable", lambda: "vLLM does not import (ImportError: libcudart.so.13)")
    k = smoke_knobs(tmp_path, FAST_INFERENCE=True)
    before = dict(k)
    found = model.load(k).found
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("generation:")]
    assert lines == [
        "generation: vLLM does not import (ImportError: libcudart.so.13); using Hugging Face generation (slower)"
    ]
    assert found["FAST_INFERENCE_USED"] is False and k == before


def test_where_unsloth_loads_without_vllm_trl_is_not_asked_for_a_second_engine(tmp_path, monkeypatch, capsys):
    """Unsloth turns fast inference off by itself on some GPUs (below compute capability 7, DGX Spark): the
    model then has no vllm_engine, and use_vllm must follow it."""
    from unsloth import FastLanguageModel

    real = FastLanguageModel.from_pretrained
    monkeypatch.setattr(model, "vllm_unusable", lambda: None)
    monkeypatch.setattr(
        FastLanguageModel,
        "from_pretrained",
        lambda **kw: real(
            **{**{n: v for n, v in kw.items() if n != "gpu_memory_utilization"}, "fast_inference": False}
        ),
    )
    found = model.load(smoke_knobs(tmp_path, FAST_INFERENCE=True)).found
    assert "generation: Unsloth loaded the model without vLLM" in capsys.readouterr().out
    assert found["FAST_INFERENCE_USED"] is False
    from grpo import trainer

    assert (
        trainer.grpo_config_kwargs(smoke_knobs(tmp_path), 100, False, found["FAST_INFERENCE_USED"])["use_vllm"]
        is False
    )


@pytest.mark.parametrize("fast", [True, False])
def test_use_vllm_follows_what_load_decided_not_the_knob(tmp_path, fast):
    from grpo import trainer

    k = smoke_knobs(tmp_path, FAST_INFERENCE=True)
    assert trainer.grpo_config_kwargs(k, 100, False, fast)["use_vllm"] is fast
