"""A first run that says within minutes whether it is healthy (grpo/health.py, grpo/callbacks.py): the early
warnings and the verdict on plain values and on smoke runs made to fail, the memory in the record, the
estimate printed before a GPU load, and --resume=auto over checkpoints cut off mid-save."""

import json
import os
import zipfile

import pytest
from conftest import ROOT, run_script

from grpo import health
from grpo.callbacks import keep_rows_up_to

CLIPPED = [{"reward": -7.5, "completions/clipped_ratio": r} for r in (1.0, 1.0, 0.75)]
HEALTHY = [{"reward": -4.5, "completions/clipped_ratio": r} for r in (0.375, 0.5, 0.5)]


@pytest.mark.parametrize(
    "rows,fires",
    [
        (CLIPPED, True),  # most completions cut in the first steps
        (HEALTHY, False),  # the smoke preset's worst first steps: a half cut at most
        ([{"completions/clipped_ratio": 0.8}] * 3, True),  # at the limit
        ([{"completions/clipped_ratio": 0.79}] * 3, False),  # just under it
        ([{"reward": 1.0}], False),  # the metric missing: no warning
    ],
)
def test_truncation_warning_table(rows, fires):
    warning = health.truncation_warning(rows, 64)
    assert (warning is not None) == fires
    if fires:
        assert warning.startswith("WARNING: ") and "MAX_COMPLETION_LENGTH".lower() in warning


def test_still_adapter_warning_names_the_adapter_and_the_learning_rate():
    warning = health.still_adapter_warning("0f3a", "0f3a", 3, 0.0)
    assert warning.startswith("WARNING: the LoRA adapter has not changed") and "--learning_rate" in warning
    assert health.still_adapter_warning("0f3a", "9b1c", 3, 0.0) is None


def test_a_collapse_of_truncated_completions_names_the_length_as_its_cause():
    watch = health.CollapseWatch(patience=2)
    logs = {"reward": -7.5, "frac_reward_zero_std": 1.0, "completions/clipped_ratio": 1.0}
    assert watch.update(logs, 1) is None
    warning = watch.update(logs, 2)
    assert "frac_reward_zero_std" in warning and "cut at the length limit" in warning
    assert "--max_completion_length" in warning
    other = health.CollapseWatch(patience=1).update({**logs, "completions/clipped_ratio": 0.2}, 1)
    assert "cut at the length limit" not in other  # all alike for another reason: no length advice first


def test_the_verdict_lists_the_warnings_or_says_healthy():
    rows = [{"reward": -4.0, "completions/mean_length": 40, "completions/clipped_ratio": 0.1,
             "frac_reward_zero_std": 0.5, "memory/peak_gib": 2.0}] * 4
    assert health.verdict(rows, []).startswith("first 4 steps: healthy: reward -4.00 -> -4.00")
    said = health.verdict(rows, [health.truncation_warning(CLIPPED, 4), "WARNING: training collapse at step 4: x"])
    assert said.startswith("first 4 steps: NOT healthy (2 warnings: ") and "training collapse at step 4" in said
    assert "peak 2.00 GiB" in said


def test_the_memory_estimate_for_qwen3_4b_from_its_shape(monkeypatch):
    """Qwen3-4B's shape on the meta device (no weights): 4.02B parameters, 66M in the rank-32 adapter."""
    import transformers
    from transformers import Qwen3Config

    from grpo.checks import check_target_modules

    config = Qwen3Config(hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32,
                         num_key_value_heads=8, head_dim=128, vocab_size=151936, tie_word_embeddings=True)
    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", lambda name: config)
    k = {"MODEL_NAME": "qwen3-4b-shape", "LORA_RANK": 32,
         "LORA_TARGET_MODULES": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")}
    sizes = check_target_modules(k)
    assert sizes["linear"] + sizes["other"] == pytest.approx(4.02e9, rel=0.01)
    assert sizes["lora"] == pytest.approx(66.06e6, rel=0.001)
    bf16 = health.memory_estimate(sizes, False, 0.0, 80.0)
    assert bf16["weights"] == pytest.approx(7.49, abs=0.01) and bf16["total"] == pytest.approx(8.11, abs=0.01)
    qlora = health.memory_estimate(sizes, True, 0.0, 80.0)
    assert 2.5 < qlora["weights"] < 3.0  # 4-bit projections, 16-bit embeddings
    assert health.memory_estimate(sizes, False, 0.7, 80.0)["total"] == pytest.approx(56.0 + 0.62, abs=0.01)


def test_the_memory_line_before_a_gpu_load(monkeypatch, capsys):
    """On a GPU (faked here), one line with the card's free memory and the estimate, labelled as one."""
    import torch

    from grpo import model

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (70 * 2**30, 80 * 2**30))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA H100 80GB HBM3")
    k = {"GPU_MEMORY_UTILIZATION": 0.7, "VLLM_MODE": "colocate", "LOAD_IN_4BIT": False}
    sizes = {"linear": 3_633_000_000, "other": 389_000_000, "lora": 66_000_000}
    model.expected_memory(k, sizes, True)
    model.expected_memory(k, sizes, False)
    with_vllm, without = capsys.readouterr().out.strip().splitlines()
    assert with_vllm.startswith("memory: NVIDIA H100 80GB HBM3 has 70.0 of 80.0 GiB free; this configuration needs "
                                "about 56.6 GiB before activations (an estimate: weights 7.5, inside vLLM's 56.0")
    assert "needs about 8.1 GiB" in without and "vLLM" not in without


def test_peak_memory_is_the_process_resident_peak_on_a_cpu():
    assert 0.05 < health.peak_memory_gib() < 64


# --- resuming over a checkpoint cut off mid-save ---------------------------------------------------------------
def fake_checkpoint(folder, step, whole=True):
    """A checkpoint folder as Trainer writes it, in miniature: a safetensors adapter, a torch zip, the state
    last (whole=False: cut off before it)."""
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    (path / "adapter_model.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 8)
    with zipfile.ZipFile(path / "optimizer.pt", "w") as z:
        z.writestr("archive/data.pkl", b"x" * 100)
    if whole:
        (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return path


def knobs(out, resume="auto"):
    return {"OUTPUT_DIR": str(out), "RESUME": resume, "SMOKE": True}


def test_resume_auto_skips_an_unfinished_newest_checkpoint_and_leaves_it(tmp_path, capsys):
    from grpo.run_dir import resume_checkpoint

    fake_checkpoint(tmp_path, 2)
    fake_checkpoint(tmp_path, 4, whole=False)
    assert resume_checkpoint(knobs(tmp_path)) == str(tmp_path / "checkpoint-2")
    said = capsys.readouterr().out.strip().splitlines()
    assert len(said) == 1 and said[0].startswith("resume: skipping checkpoint-4 (unfinished")
    assert (tmp_path / "checkpoint-4" / "optimizer.pt").exists()  # nothing deleted


def test_a_whole_checkpoint_that_cannot_load_is_one_line(tmp_path):
    from grpo.checks import BadInput
    from grpo.run_dir import resume_checkpoint

    fake_checkpoint(tmp_path, 2)
    assert resume_checkpoint(knobs(tmp_path)) == str(tmp_path / "checkpoint-2")  # the miniature is whole
    bad = fake_checkpoint(tmp_path, 4)
    (bad / "optimizer.pt").write_bytes(b"PK\x03\x04 cut off")
    # --resume=auto falls back to the newest that reads (tests/test_disk_faults.py); a path to it is refused
    assert resume_checkpoint(knobs(tmp_path)) == str(tmp_path / "checkpoint-2")
    with pytest.raises(BadInput, match=r"checkpoint-4/optimizer.pt cannot be loaded .*--resume=PATH"):
        resume_checkpoint(knobs(tmp_path, resume=str(bad)))
    data = (bad / "adapter_model.safetensors").read_bytes()
    (bad / "optimizer.pt").unlink()
    (bad / "adapter_model.safetensors").write_bytes(data[:-4])  # shorter than its header promises
    with pytest.raises(BadInput, match="adapter_model.safetensors cannot be loaded"):
        resume_checkpoint(knobs(tmp_path, resume=str(bad)))
    only_unfinished = tmp_path / "u"
    fake_checkpoint(only_unfinished, 6, whole=False)
    with pytest.raises(BadInput, match="no whole checkpoint-N folder"):
        resume_checkpoint(knobs(only_unfinished))


def test_the_metrics_file_survives_a_row_cut_off_mid_write(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rows = [{"phase": "sft", "sft_step": 1, "loss": 1.0}] + [{"step": s, "reward": 0.0} for s in (1, 2, 3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 4, "rew')  # SIGKILL mid-row
    keep_rows_up_to(str(path), 2)
    assert [json.loads(line) for line in path.read_text().splitlines()] == rows[:3]


# --- the warnings on smoke runs made to fail ---------------------------------------------------------------------
def warnings_in(log):
    return [line for line in log.splitlines() if line.startswith("WARNING:")]


@pytest.mark.slow
def test_a_truncated_smoke_run_warns_within_its_first_steps(tmp_path):
    """The still-adapter warning on a smoke run is checked on the learning benchmark's lr-0 controls
    (tests/test_learning.py), and both through Unsloth's generated trainer (tests/test_unsloth_trainers.py)."""
    result = run_script(tmp_path, "train_grpo.py", "--smoke", "--max_completion_length=4", "--max_steps=3",
                        "--output_dir=outputs/w")
    said = warnings_in(result.stdout)
    assert len(said) == 1 and "were cut at the length limit (4 tokens)" in said[0], said
    assert "--max_completion_length" in said[0]
    verdict = next(line for line in result.stdout.splitlines() if line.startswith("first 3 steps:"))
    assert verdict.startswith("first 3 steps: NOT healthy (1 warning: ")
    found = json.load(open(tmp_path / "outputs" / "w" / "run_config.json"))["FOUND"]
    assert found["HEALTH"]["warnings"] == said and found["HEALTH"]["verdict"] == verdict


def test_docs_name_every_warning():
    text = open(os.path.join(ROOT, "docs", "long_runs.md")).read()
    for phrase in ("were cut at the length limit", "has not changed", "training collapse", "non-finite",
                   "first 10 steps"):
        assert phrase in text, phrase
