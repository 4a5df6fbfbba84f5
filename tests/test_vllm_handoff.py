"""What a GPU run hands to vLLM, checked on the CPU with vLLM's own code (vLLM 0.27.1, as requirements.txt
installs it; its engine needs a GPU, its LoRA loader and SamplingParams do not).

Each generation, Unsloth gives its vLLM engine the live adapter: every `.lora_A.` / `.lora_B.` tensor of
`model.state_dict()`, `.default` stripped (unsloth_zoo/vllm_utils.py, _build_lora_request), which vLLM's
worker loads with `LoRAModel.from_lora_tensors` (unsloth_zoo/vllm_lora_worker_manager.py). Its merged-weight
rollouts fold the adapter into the weights only when `_merged_rollout_targets` accepts the model.

The model is built as a run builds it, through Unsloth's generated trainers (UNSLOTH_ALLOW_CPU=1), for
priming on and off x BETA 0 and 0.04, and handed over twice: when the trainer is built and after one GRPO
step. `import unsloth` blocks `import vllm` in its process on a machine without libcuda, so vLLM's side
runs in a process of its own that never imports Unsloth.
"""

import json
import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT, source
from test_unsloth_trainers import ALLOW_CPU

CASES = {"primed-kl": ["--beta=0.04"], "primed": ["--beta=0"],
         "base-kl": ["--format_sft=false", "--beta=0.04"], "base": ["--format_sft=false", "--beta=0"]}

# Runs each case's main() under the generated trainer; around the training it writes what Unsloth would
# hand vLLM, and asks Unsloth whether merged-weight rollouts would fold the model. "two-adapters" is the
# control: the design this replaced (a frozen "ref" adapter beside "default"), which vLLM must refuse.
DRIVER = """
import json, sys
sys.path.insert(0, {root!r})
import unsloth  # noqa: F401  (under UNSLOTH_ALLOW_CPU=1: Unsloth's GPU import path)
from safetensors.torch import save_file
from unsloth_zoo.vllm_utils import _merged_rollout_targets

import train_grpo
from grpo import trainer as steps

cases = {cases!r}


def hand_over(model, out, moment):
    # Unsloth's filter: _build_lora_request(load_tensors=True), source-guarded in this file
    items = model.state_dict().items()
    state_dict = {{k.replace(".default", ""): v for k, v in items if ".lora_A." in k or ".lora_B." in k}}
    tensors = {{k: v.detach().contiguous() for k, v in state_dict.items()}}
    save_file(tensors, out + "/handoff-" + moment + ".safetensors")
    model.peft_config["default"].save_pretrained(out + "/handoff-config")
    _, reason = _merged_rollout_targets(model)
    return {{"adapters": list(model.peft_config), "merged_rollout_refused": reason, "tensors": len(state_dict)}}


real_train = steps.train


def train(trainer, controls, resume_from):
    model = trainer.accelerator.unwrap_model(trainer.model)
    out = trainer.args.output_dir
    seen = {{"built": hand_over(model, out, "built"), "reference": type(model.disable_adapter).__name__}}
    real_train(trainer, controls, resume_from)
    seen["trained"] = hand_over(model, out, "trained")
    if out.endswith("primed-kl"):  # the control: a frozen copy beside "default", as TRL makes it
        model.add_adapter("ref", model.peft_config["default"])
        seen["two-adapters"] = hand_over(model, out, "two-adapters")
        model.delete_adapter("ref")
    print("HANDOFF " + json.dumps({{"out": out, **seen}}), flush=True)


steps.train = train
for name, args in cases.items():
    train_grpo.main(["--smoke", "--max_steps=1", "--output_dir=outputs/" + name, *args])
"""

# vLLM's side, in a process that does not import Unsloth: each hand-over through vLLM's loader as
# Unsloth's worker manager calls it; the saved adapter through vLLM's checkpoint loader with Qwen3's
# modules; the SamplingParams TRL, the difficulty filter and evaluate.py build.
VLLM_SIDE = """
import json, sys
sys.path.insert(0, {root!r})
import torch
from safetensors.torch import load_file
from vllm import SamplingParams
from vllm.lora import lora_model
from vllm.lora.lora_model import LoRAModel
from vllm.lora.peft_helper import PEFTHelper
from vllm.model_executor.models.qwen3 import Qwen3ForCausalLM

work, outs, trl_kwargs, knobs = json.loads(sys.stdin.read())
report = {{}}
for name, out in outs.items():
    for moment in ("built", "trained", "two-adapters"):
        path = out + "/handoff-" + moment + ".safetensors"
        try:
            open(path).close()
        except OSError:
            continue
        config = json.load(open(out + "/handoff-config/adapter_config.json"))
        config["vllm_max_position_embeddings"] = 4096  # Unsloth's worker manager adds it (vllm_lora_worker_manager.py)
        try:
            lora = LoRAModel.from_lora_tensors(lora_model_id=1, tensors=load_file(path),
                                               peft_helper=PEFTHelper.from_dict(config), device=None,
                                               dtype=torch.float32, model_vocab_size=512)
            report[name + "/" + moment] = {{"loaded": sorted(lora.loras)}}
        except Exception as e:
            report[name + "/" + moment] = {{"error": type(e).__name__ + ": " + str(e)}}
lora_model.PIN_MEMORY = False  # the checkpoint loader pins its CPU copy, which needs a driver; nothing else changes
packed = Qwen3ForCausalLM.packed_modules_mapping
expected = {{m for parts in packed.values() for m in parts}} | {{"o_proj", "down_proj"}}
saved = outs["primed-kl"] + "/lora"
lora = LoRAModel.from_local_checkpoint(saved, expected, PEFTHelper.from_local_dir(saved, 4096), lora_model_id=1,
                                       device="cpu", dtype=torch.float32, model_vocab_size=512)
report["saved"] = {{"loaded": sorted(lora.loras), "expected": sorted(expected)}}

trl = SamplingParams(**trl_kwargs)
report["trl"] = {{"temperature": trl.temperature, "top_p": trl.top_p, "min_p": trl.min_p, "top_k": trl.top_k,
                  "max_tokens": trl.max_tokens, "n": trl.n}}
from grpo import difficulty
import evaluate
params = difficulty.sampling_params(knobs, 123)
report["difficulty"] = {{"n": params.n, "min_p": params.min_p, "max_tokens": params.max_tokens, "seed": params.seed}}
params, models = evaluate.vllm_requests({{**knobs, "N_SAMPLES": 4, "MAX_NEW_TOKENS": 256, "ADAPTER": saved}},
                                        outs["primed-kl"] + "/lora_primed")
report["evaluate"] = {{"n": params.n, "max_tokens": params.max_tokens,
                       "requests": [[label, r and r.lora_name, r and r.lora_int_id, r and r.lora_path]
                                    for label, r in models]}}
print("VLLM " + json.dumps(report))
"""


def trl_sampling_kwargs():
    """The SamplingParams keywords TRL's colocated generation builds (trl/generation/vllm_generation.py),
    from the GRPOConfig the full run makes, with Unsloth's top_k fix for fast inference (unsloth/models/rl.py:
    0 or None becomes -1); each step is source-guarded below."""
    from trl import GRPOConfig

    import train_grpo
    from grpo import trainer

    k = train_grpo.resolve_knobs(["--max_completion_length=1500"])
    kwargs = trainer.grpo_config_kwargs(k, trainer.completion_budget(k, 400), False, True)
    config = GRPOConfig(**{**kwargs, "output_dir": "unused",
                           "use_vllm": False})  # use_vllm: the config would look for vLLM's engine otherwise
    top_k = -1 if config.top_k in (0, None) else config.top_k
    kwargs = {"n": 1, "repetition_penalty": config.repetition_penalty, "temperature": config.temperature,
              "top_p": config.top_p, "top_k": top_k, "min_p": 0.0 if config.min_p is None else config.min_p,
              "max_tokens": config.max_completion_length, "logprobs": 0}
    return kwargs, k


@pytest.fixture(scope="module")
def handed(tmp_path_factory):
    work = tmp_path_factory.mktemp("handoff")
    result = subprocess.run([sys.executable, "-c", DRIVER.format(root=ROOT, cases=CASES)], cwd=work,
                            capture_output=True, text=True, timeout=900, env={**os.environ, **ALLOW_CPU})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    seen = {}
    for line in result.stdout.splitlines():
        if line.startswith("HANDOFF "):
            case = json.loads(line[8:])
            seen[os.path.basename(case["out"])] = case
    outs = {name: str(work / "outputs" / name) for name in CASES}
    trl_kwargs, k = trl_sampling_kwargs()
    knobs = {key: k[key] for key in ("DIFFICULTY_SAMPLES", "TEMPERATURE", "TOP_P", "MIN_P", "SEED")}
    vllm = subprocess.run([sys.executable, "-c", VLLM_SIDE.format(root=ROOT)], cwd=work, capture_output=True,
                          text=True, timeout=600, input=json.dumps([str(work), outs, trl_kwargs, knobs]))
    assert vllm.returncode == 0, vllm.stdout[-3000:] + vllm.stderr[-3000:]
    report = json.loads(next(x for x in vllm.stdout.splitlines() if x.startswith("VLLM "))[5:])
    return work, seen, report, result.stdout + result.stderr, trl_kwargs


def test_every_knob_combination_hands_vllm_one_adapter_it_loads(handed):
    _, seen, report, _, _ = handed
    assert set(seen) == set(CASES)
    for name in CASES:
        for moment in ("built", "trained"):
            assert seen[name][moment]["adapters"] == ["default"], (name, moment)
            loaded = report[f"{name}/{moment}"]
            assert "error" not in loaded, (name, moment, loaded)
            # q, k, v, o, gate, up, down in each of the tiny model's layers: every tensor pair reached vLLM
            assert len(loaded["loaded"]) == seen[name][moment]["tensors"] // 2 > 0, (name, moment)


def test_the_primed_kl_reference_is_the_swap_and_scores_the_primed_model(handed):
    work, seen, _, log, _ = handed
    assert seen["primed-kl"]["reference"] == "PrimedReference"
    for name in ("primed", "base-kl", "base"):
        assert seen[name]["reference"] == "method", name  # PEFT's own disable_adapter: the base model
    assert "KL reference: the primed model" in log and "KL reference: the base model" in log
    from grpo.plot_rewards import grpo_rows, read_metrics

    rows = grpo_rows(read_metrics(str(work / "outputs" / "primed-kl" / "metrics.jsonl")))
    assert rows[0]["step"] == 1 and rows[0]["kl"] < 0.01, rows  # the base would be about 1.3 on this preset
    assert json.load(open(work / "outputs" / "primed-kl" / "run_config.json"))["FOUND"]["GRPO_TRAINER"] == (
        "UnslothGRPOTrainer")


def test_the_trained_adapter_reaches_vllm_not_the_primed_one(handed):
    """After the step the hand-over holds the policy's values (the swap put them back), which differ from
    the primed values it held when the trainer was built, and equal the adapter the run saved."""
    from safetensors.torch import load_file

    work, _, _, _, _ = handed
    out = work / "outputs" / "primed-kl"
    built, trained = load_file(out / "handoff-built.safetensors"), load_file(out / "handoff-trained.safetensors")
    saved = load_file(out / "lora" / "adapter_model.safetensors")
    assert any(not (built[n] == trained[n]).all() for n in built)
    for name, tensor in trained.items():
        key = next(s for s in saved if s.replace("base_model.model.", "") == name.replace("base_model.model.", ""))
        assert (saved[key] == tensor).all(), name


def test_merged_rollouts_judge_the_primed_kl_model_as_an_unprimed_one(handed):
    """Unsloth folds the adapter into the weights for its rollouts only when the model's one adapter is
    "default". Here its one objection is the CPU's float32 (its exact fold needs CUDA), the same for every
    case; the two-adapter control is refused for its adapters."""
    _, seen, _, _, _ = handed
    verdicts = {(name, moment): seen[name][moment]["merged_rollout_refused"] for name in CASES
                for moment in ("built", "trained")}
    assert len(set(verdicts.values())) == 1, verdicts
    assert "adapters" not in str(next(iter(verdicts.values())))
    assert "the adapters are ['default', 'ref']" in seen["primed-kl"]["two-adapters"]["merged_rollout_refused"]


def test_the_control_two_adapters_are_refused_by_vllm(handed):
    """The check can fail: the design this replaced (a frozen "ref" adapter beside "default") is what vLLM's
    loader refuses at the first generation of a primed run with BETA > 0."""
    _, _, report, _, _ = handed
    assert "is unsupported LoRA weight" in report["primed-kl/two-adapters"]["error"]
    assert ".ref." in report["primed-kl/two-adapters"]["error"]


def test_vllm_loads_the_saved_adapter_with_qwen3s_modules(handed):
    """evaluate.py gives vLLM the saved lora/ folder as a LoRARequest; vLLM's checkpoint loader refuses any
    module Qwen3 does not take a LoRA on."""
    import train_grpo

    _, _, report, _, _ = handed
    assert set(train_grpo.LORA_TARGET_MODULES) <= set(report["saved"]["expected"])
    assert len(report["saved"]["loaded"]) > 0


def test_the_sampling_params_trl_the_filter_and_evaluate_build_are_vllms(handed):
    import train_grpo

    work, _, report, _, trl_kwargs = handed
    assert report["trl"] == {"temperature": train_grpo.TEMPERATURE, "top_p": train_grpo.TOP_P,
                             "min_p": train_grpo.MIN_P, "top_k": trl_kwargs["top_k"], "max_tokens": 1500, "n": 1}
    assert report["difficulty"] == {"n": train_grpo.DIFFICULTY_SAMPLES, "min_p": train_grpo.MIN_P, "max_tokens": 123,
                                    "seed": train_grpo.SEED}
    assert report["evaluate"]["n"] == 4 and report["evaluate"]["max_tokens"] == 256
    labels = [r[0] for r in report["evaluate"]["requests"]]
    assert labels == ["base", "primed", "trained"] and report["evaluate"]["requests"][0][1] is None
    assert report["evaluate"]["requests"][2][3] == str(work / "outputs" / "primed-kl" / "lora")


def test_the_library_lines_the_hand_off_relies_on():
    """The filter this file applies is Unsloth's own, vLLM's worker is Unsloth's (its tensors path), and
    TRL's colocated SamplingParams take the keywords trl_sampling_kwargs builds."""
    import inspect

    zoo = source("unsloth_zoo", "vllm_utils.py")
    assert ('state_dict = {k.replace(".default", ""):v for k, v in items if ".lora_A." in k or ".lora_B." in k}'
            in zoo)
    worker = source("unsloth_zoo", "vllm_lora_worker_manager.py")
    assert "load_method = self._lora_model_cls.from_lora_tensors" in worker
    assert "peft_helper = PEFTHelper.from_dict(lora_request.config)" in worker
    assert "if getattr(args, 'top_k', -1) is None or getattr(args, 'top_k', -1) == 0:" in source(
        "unsloth", "models", "rl.py")
    trl = source("trl", "generation", "vllm_generation.py")
    colocate = trl[trl.index('elif self.mode == "colocate":') :]
    colocate = colocate[: colocate.index("SamplingParams(**generation_kwargs)")]
    for key in ("repetition_penalty", "temperature", "top_p", "top_k", "min_p", "max_tokens", "logprobs"):
        assert re.search(rf'"{key}": ', colocate), key
    from trl import GRPOTrainer

    # both trainers score the reference under disable_adapter() when the model has no "ref" adapter
    assert 'use_adapter(model, adapter_name="ref" if "ref" in model.peft_config else None)' in inspect.getsource(
        GRPOTrainer._generate_and_score_completions)
    # the refusal train_grpo.py makes before loading (grpo/checks.py): server mode cannot sync a 4-bit model
    sync = source("unsloth", "models", "rl_replacements.py")
    sync = sync[sync.index("def _unsloth_vllm_sync_kind(trainer):") :]
    assert "if _unsloth_vllm_quantized(model):" in sync[:1500] and "cannot sync a quantized" in sync[:1500]

