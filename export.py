"""Export a trained run for serving: a merged model, or GGUF for llama.cpp and Ollama.

    python export.py --run_dir=outputs --format=merged_16bit      # writes outputs/merged_16bit
    python export.py --run_dir=outputs --format=gguf_q4_k_m       # writes outputs/gguf_q4_k_m/*.gguf
    python export.py --run_dir=outputs/smoke --format=merged_16bit --push_to_hub=you/qwen3-4b-grpo

The adapter (RUN_DIR/lora) is merged into the base model through Unsloth's own save methods.
A merged folder loads with plain transformers (AutoModelForCausalLM.from_pretrained) and keeps the
tokenizer with the training chat template. GGUF needs llama.cpp; if it is missing, the script says
so before any work.
"""

import json
import os
import sys
import time

# -----------------------------------------------------------------------------------------------
RUN_DIR = "outputs"  # a train_grpo.py output folder: run_config.json and lora/
FORMAT = "merged_16bit"  # merged_16bit | merged_4bit | gguf_q8_0 | gguf_f16 | gguf_q4_k_m
OUT_DIR = ""  # where the export goes; "" = RUN_DIR/FORMAT
PUSH_TO_HUB = ""  # user/name: also upload the export to the Hugging Face Hub (needs HF_TOKEN)
ALLOW_LLAMA_CPP_DOWNLOAD = False  # gguf_*: let Unsloth fetch and build llama.cpp if none is installed
# -----------------------------------------------------------------------------------------------

_SMOKE_PRESET = dict(RUN_DIR=os.path.join("outputs", "smoke"))
_FORMATS = ("merged_16bit", "merged_4bit", "gguf_q8_0", "gguf_f16", "gguf_q4_k_m")


def unsloth_save_method(fmt: str) -> str:
    """The save_method Unsloth's save_pretrained_merged / push_to_hub_merged take for a merged FORMAT.
    Unsloth refuses "merged_4bit" outright (a RuntimeError asking for "merged_4bit_forced", unsloth/save.py):
    choosing --format=merged_4bit is that confirmation.

    >>> unsloth_save_method("merged_4bit"), unsloth_save_method("merged_16bit")
    ('merged_4bit_forced', 'merged_16bit')
    """
    return "merged_4bit_forced" if fmt == "merged_4bit" else fmt


def check_knobs(k: dict) -> None:
    if k["FORMAT"] not in _FORMATS:
        raise ValueError(f"FORMAT {k['FORMAT']!r} is not one of {', '.join(_FORMATS)}")


def resolve_knobs(argv: list[str]) -> dict:
    from grpo.overrides import resolve

    knobs = resolve(globals(), argv, _SMOKE_PRESET, "export.py", check_knobs)
    knobs["OUT_DIR"] = knobs["OUT_DIR"] or os.path.join(knobs["RUN_DIR"], knobs["FORMAT"])
    return knobs


def llama_cpp_dir() -> str:
    """Where Unsloth looks for llama.cpp (UNSLOTH_LLAMA_CPP_PATH, else ~/.unsloth/llama.cpp)."""
    return os.environ.get("UNSLOTH_LLAMA_CPP_PATH", os.path.join(os.path.expanduser("~"), ".unsloth", "llama.cpp"))


def missing_llama_cpp() -> list[str]:
    """What GGUF export needs from llama.cpp and cannot find: the converter script and llama-quantize."""
    folder = llama_cpp_dir()
    missing = []
    if not any(os.path.isfile(os.path.join(folder, n)) for n in ("convert_hf_to_gguf.py", "convert-hf-to-gguf.py")):
        missing.append(f"{folder}/convert_hf_to_gguf.py")
    if not any(os.access(os.path.join(folder, n), os.X_OK) for n in ("llama-quantize", "quantize")):
        missing.append(f"{folder}/llama-quantize")
    return missing


def preflight(k: dict) -> dict:
    """Every check that needs no model, so a doomed export fails in a second. Returns run_config.json."""
    from grpo.device import gpu_unseen

    unseen = gpu_unseen("export.py")  # a GPU torch cannot use (an old driver): say so, not a silent CPU merge
    if unseen:
        raise ValueError(unseen)
    path = os.path.join(k["RUN_DIR"], "run_config.json")
    if not os.path.exists(path):
        raise ValueError(f"no {path}: train first (python train_grpo.py [--smoke]) or set --run_dir")
    adapter = os.path.join(k["RUN_DIR"], "lora")
    if not os.path.isfile(os.path.join(adapter, "adapter_config.json")):
        raise ValueError(f"no adapter in {adapter} (adapter_config.json): did the run finish?")
    if k["FORMAT"].startswith("gguf_") and not k["ALLOW_LLAMA_CPP_DOWNLOAD"]:
        missing = missing_llama_cpp()
        if missing:
            raise ValueError(
                "GGUF export needs llama.cpp's converter and quantizer, which are not installed here: missing "
                + ", ".join(missing) + ".\n  Either build llama.cpp (git clone https://github.com/ggml-org/llama.cpp; "
                "cmake -B build && cmake --build build --target llama-quantize; copy build/bin/llama-quantize next to "
                "convert_hf_to_gguf.py) and set UNSLOTH_LLAMA_CPP_PATH to that folder,\n  or let Unsloth fetch and "
                "build it (needs network, git, cmake and a C++ compiler): --allow_llama_cpp_download=true"
            )
    if k["FORMAT"] == "merged_4bit":
        import torch

        if not torch.cuda.is_available():
            raise ValueError("merged_4bit needs a CUDA GPU (bitsandbytes 4-bit); on a CPU use --format=merged_16bit")
    with open(path) as f:
        return json.load(f)


def main(argv: list[str]) -> str:
    k = resolve_knobs(argv)
    start = time.time()
    try:
        run = preflight(k)
    except ValueError as e:
        sys.exit(f"export.py: error: {e}")
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("UNSLOTH_CPU_BF16", "0")  # as in training: the same arithmetic on any CPU
    from grpo.device import import_unsloth

    import_unsloth()  # before transformers and peft, as in training
    from unsloth import FastLanguageModel

    # The adapter folder names its base model; Unsloth loads the base, then the adapter.
    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=os.path.join(k["RUN_DIR"], "lora"), max_seq_length=run["MAX_SEQ_LENGTH"],
        load_in_4bit=run["LOAD_IN_4BIT"], fast_inference=False,
    )
    out = k["OUT_DIR"]
    print(f"export: {run['MODEL_NAME']} + {k['RUN_DIR']}/lora -> {out} ({k['FORMAT']})")
    if k["FORMAT"].startswith("merged_"):
        model.save_pretrained_merged(out, tokenizer, save_method=unsloth_save_method(k["FORMAT"]))
        files = sorted(os.listdir(out))
    else:
        files = model.save_pretrained_gguf(out, tokenizer, quantization_method=k["FORMAT"][len("gguf_"):])
    if k["PUSH_TO_HUB"]:
        if k["FORMAT"].startswith("merged_"):
            model.push_to_hub_merged(k["PUSH_TO_HUB"], tokenizer, save_method=unsloth_save_method(k["FORMAT"]))
        else:
            model.push_to_hub_gguf(k["PUSH_TO_HUB"], tokenizer, quantization_method=k["FORMAT"][len("gguf_"):])
        print(f"pushed to https://huggingface.co/{k['PUSH_TO_HUB']}")
    print(f"wrote {out}: {', '.join(map(str, files))} ({time.time() - start:.0f} s)")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
