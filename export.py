"""Export a trained run for serving: a merged model, or GGUF for llama.cpp and Ollama.

    python export.py --run_dir=outputs --format=merged_16bit      # writes outputs/merged_16bit
    python export.py --run_dir=outputs --format=gguf_q4_k_m       # writes outputs/gguf_q4_k_m/*.gguf
    python export.py --run_dir=outputs/smoke --format=merged_16bit --push_to_hub=you/qwen3-4b-grpo

The adapter (RUN_DIR/lora) is merged into the base model through Unsloth's own save methods.
A merged folder loads with plain transformers (AutoModelForCausalLM.from_pretrained) and keeps the
tokenizer with the training chat template. GGUF needs llama.cpp where Unsloth looks for it: on a machine
without GitHub, `bash scripts/install_llama_cpp.sh` puts it there from the package registry; on a connected
box, --allow_llama_cpp_download=true lets Unsloth fetch its own. If it is missing, or its converter would refuse
the model, the script says so before any work. `python chat.py --gguf=RUN_DIR/gguf_q8_0` talks to the file.
"""

import json
import os
import shutil
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

    knobs = resolve(globals(), argv, "export.py", check_knobs, {"smoke": _SMOKE_PRESET})
    knobs["OUT_DIR"] = knobs["OUT_DIR"] or os.path.join(knobs["RUN_DIR"], knobs["FORMAT"])
    return knobs


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
    if k["FORMAT"] == "merged_4bit":
        import torch

        if not torch.cuda.is_available():
            raise ValueError("merged_4bit needs a CUDA GPU (bitsandbytes 4-bit); on a CPU use --format=merged_16bit")
    with open(path) as f:
        run = json.load(f)
    if k["FORMAT"].startswith("gguf_"):
        check_llama_cpp(k, run, adapter)
    return run


def check_llama_cpp(k: dict, run: dict, adapter: str) -> None:
    """GGUF: llama.cpp is where Unsloth looks, and its converter takes this model, before anything loads.
    Offline unless ALLOW_LLAMA_CPP_DOWNLOAD: Unsloth reads UNSLOTH_LLAMA_CPP_OFFLINE and UNSLOTH_AUTO_INSTALL when it
    would fetch, so a check that passes here is not followed by a download (unsloth_zoo/llama_cpp.py)."""
    from grpo import llama_cpp

    where = llama_cpp.folder()
    if not k["ALLOW_LLAMA_CPP_DOWNLOAD"]:
        absent = llama_cpp.missing(where)
        if absent:
            raise ValueError(llama_cpp.refusal(where, absent))
        os.environ["UNSLOTH_LLAMA_CPP_OFFLINE"] = "1"
        os.environ["UNSLOTH_AUTO_INSTALL"] = "0"
    if os.path.isfile(llama_cpp.converter(where)):  # with a download allowed and none yet, Unsloth's converter says
        why = llama_cpp.unconvertible(run["MODEL_NAME"], adapter, where)
        if why:
            raise ValueError(why)


def read_back(path: str, tokenizer) -> None:
    """llama.cpp reads a chat prompt into the run's tokens and runs it through the file; exits if not."""
    import prompts
    from grpo import llama_cpp

    if not llama_cpp.has_python_binding():
        print(f"note: {path} was not read back: llama-cpp-python is not installed ({llama_cpp.INSTALL})")
        return
    question = "Ava has 27 stickers and buys 18 more. How many stickers does she have now?"
    conversation = prompts.make_conversation({"prompt": question, "solution": ""})["prompt"]
    text = tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    why = llama_cpp.reads_back(path, text, tokenizer(text, add_special_tokens=False)["input_ids"])
    if why:
        sys.exit(f"export.py: error: {why}. The file is kept for a look, but llama.cpp will not serve it as trained")
    print("llama.cpp reads it back: a chat prompt, in transformers' tokens, runs through it")


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
        from grpo.llama_cpp import gguf_files

        try:
            written = model.save_pretrained_gguf(out, tokenizer, quantization_method=k["FORMAT"][len("gguf_"):])
        except RuntimeError as e:  # llama.cpp's converter or quantizer failed: its last words, not a traceback
            last = [line for line in str(e).strip().splitlines() if line.strip()][-1:] or [type(e).__name__]
            sys.exit(f"export.py: error: llama.cpp failed on {out}: {last[0].strip()}")
        files = gguf_files(written, out)
        staged = os.path.join(out, "merged_16bit")
        if isinstance(written, list) and os.path.isdir(staged):  # the CPU save's float32 merge, fed to the converter
            shutil.rmtree(staged)  # the GPU save drops its own the same way
        read_back(files[0], tokenizer)
        modelfile = isinstance(written, dict) and written.get("modelfile_location")
        if modelfile:  # Unsloth's GPU save writes one from its own template for the base model's name
            files.append(modelfile)
    if k["PUSH_TO_HUB"]:
        if k["FORMAT"].startswith("merged_"):
            model.push_to_hub_merged(k["PUSH_TO_HUB"], tokenizer, save_method=unsloth_save_method(k["FORMAT"]))
        else:
            model.push_to_hub_gguf(k["PUSH_TO_HUB"], tokenizer, quantization_method=k["FORMAT"][len("gguf_"):])
        print(f"pushed to https://huggingface.co/{k['PUSH_TO_HUB']}")
    print(f"wrote {out}: {', '.join(os.path.basename(str(f)) for f in files)} ({time.time() - start:.0f} s)")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
