"""llama.cpp for GGUF: what export.py checks before any work, and how chat.py and the tests run a GGUF file.

Unsloth looks for llama.cpp in UNSLOTH_LLAMA_CPP_PATH (read when unsloth is imported), else ~/.unsloth/llama.cpp
(unsloth_zoo/llama_cpp.py: LLAMA_CPP_DEFAULT_DIR). `install_llama_cpp` uses a folder as it is when it has src/, ggml/
and common/, and `check_llama_cpp` finds at its top an llama-quantize that answers --help and convert_hf_to_gguf.py;
otherwise it wipes the folder and downloads or builds one. `missing` checks the same things, plus what the converter
imports beside it, so that an offline export fails before loading anything. scripts/install_llama_cpp.sh makes such
a folder from the package registry.
"""

import json
import os
import signal
import shutil
import subprocess
import sys
import tempfile

INSTALL = "bash scripts/install_llama_cpp.sh"
QUANTIZERS = ("llama-quantize", "quantize")  # unsloth_zoo check_llama_cpp's names, in its order


def folder() -> str:
    """Where Unsloth looks for llama.cpp."""
    return os.environ.get("UNSLOTH_LLAMA_CPP_PATH", os.path.join(os.path.expanduser("~"), ".unsloth", "llama.cpp"))


def converter(where: str) -> str:
    return os.path.join(where, "convert_hf_to_gguf.py")


def quantizer_answers(path: str) -> bool:
    """As Unsloth judges a quantizer: it runs `--help` and exits 0 or prints a usage line."""
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        return False
    try:
        result = subprocess.run([path, "--help"], capture_output=True, text=True, errors="replace", timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 or "usage" in (result.stdout + result.stderr).lower()


def missing(where: str) -> list[str]:
    """What GGUF export needs in `where` and does not find there, each as a short phrase ([] = all there)."""
    if not os.path.isdir(where):
        return [f"the folder {where}"]
    lacking = []
    absent = [d for d in ("src", "ggml", "common") if not os.path.isdir(os.path.join(where, d))]
    if absent:  # Unsloth takes such a folder for a broken checkout and re-clones it
        lacking.append(f"its source folders ({', '.join(absent)})")
    script = converter(where)
    if not os.path.isfile(script):
        lacking.append("convert_hf_to_gguf.py")
    else:
        with open(script, encoding="utf-8", errors="replace") as f:
            imports_conversion = "from conversion import" in f.read()
        if imports_conversion and not os.path.isfile(os.path.join(where, "conversion", "__init__.py")):
            lacking.append("the converter's conversion/ package")
        if not os.path.isfile(os.path.join(where, "gguf-py", "gguf", "__init__.py")):
            lacking.append("the converter's gguf-py/")
    if not any(quantizer_answers(os.path.join(where, name)) for name in QUANTIZERS):
        lacking.append("an llama-quantize that runs")
    return lacking


def refusal(where: str, absent: list[str]) -> str:
    return (
        f"GGUF export needs llama.cpp in {where} (UNSLOTH_LLAMA_CPP_PATH), and it lacks {', '.join(absent)}. "
        f"Install it from the package registry: {INSTALL} (a few minutes; no GitHub needed), or let Unsloth "
        "fetch and build one (network, cmake and a C++ compiler): --allow_llama_cpp_download=true"
    )


def unconvertible(model_name: str, tokenizer_dir: str, where: str) -> str | None:
    """Why llama.cpp's converter would refuse this model, found in seconds before any merge; None if it would not.

    The converter itself runs with --vocab-only on the base model's config.json and the run's tokenizer files: that
    reaches its architecture check and its tokenizer check (a BPE tokenizer whose pre-tokenizer it has no hash for is
    refused), and reads no weights. Files are copied, not loaded, so transformers is not imported before Unsloth.
    """
    config = os.path.join(model_name, "config.json")
    if not os.path.isfile(config):  # a Hub model: its config.json alone, from the cache or the Hub
        from huggingface_hub import hf_hub_download

        config = hf_hub_download(model_name, "config.json")
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(config, os.path.join(tmp, "config.json"))
        for name in os.listdir(tokenizer_dir):
            if name.startswith(("tokenizer", "special_tokens_map", "added_tokens", "chat_template", "vocab.",
                                "merges.")):
                shutil.copy(os.path.join(tokenizer_dir, name), tmp)
        result = subprocess.run(
            [sys.executable, converter(where), "--vocab-only", "--outfile", os.path.join(tmp, "vocab.gguf"), tmp],
            capture_output=True, text=True, errors="replace", timeout=600,
        )
    if result.returncode == 0:
        return None
    output = result.stdout + result.stderr
    if "pre-tokenizer was not recognized" in output:
        return (
            f"llama.cpp's converter does not know this model's tokenizer ({model_name}: its BPE pre-tokenizer is not "
            "one it has a hash for), so no GGUF can be made of it; --format=merged_16bit works with any model"
        )
    last = [line for line in output.strip().splitlines() if line.strip()][-1:] or ["no output"]
    return f"llama.cpp's converter refuses {model_name} ({converter(where)} --vocab-only): {last[0].strip()}"


def gguf_files(result, out: str) -> list[str]:
    """The .gguf files an export wrote: Unsloth's CPU save returns their paths, its GPU save a dict of them."""
    if isinstance(result, dict):
        result = result.get("gguf_files") or []
    files = [str(p) for p in result or [] if str(p).endswith(".gguf")]
    return files or sorted(os.path.join(out, n) for n in os.listdir(out) if n.endswith(".gguf"))


def find_gguf(path: str) -> str:
    """A .gguf file, or the one .gguf in an export folder."""
    if os.path.isdir(path):
        names = sorted(n for n in os.listdir(path) if n.endswith(".gguf"))
        if len(names) != 1:
            raise ValueError(f"{path} holds {len(names)} .gguf files ({', '.join(names) or 'none'}): name one")
        return os.path.join(path, names[0])
    if not (os.path.isfile(path) and path.endswith(".gguf")):
        raise ValueError(f"no GGUF file at {path}: export one first (python export.py --format=gguf_q8_0)")
    return path


def load(path: str, context: int, seed: int = 3407, logits_all: bool = False):
    """A GGUF in llama.cpp (llama-cpp-python), on the CPU unless llama.cpp was built for a GPU. With `logits_all`,
    `eval` keeps every position's logits in `.scores` (context x vocabulary floats)."""
    try:
        from llama_cpp import Llama
    except ImportError as e:
        raise ValueError(f"running a GGUF needs llama-cpp-python ({e}): {INSTALL}") from None
    asked = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()  # its threads spin as OpenMP's do: honour it
    threads = int(asked) if asked.isdigit() and int(asked) > 0 else os.cpu_count()
    return Llama(model_path=path, n_ctx=context, seed=seed, n_threads=threads, n_threads_batch=threads,
                 verbose=False, logits_all=logits_all)


def generate(llm, prompt_ids: list[int], max_tokens: int, stop_ids: set[int], sampling: dict | None = None,
             stop=None) -> list[int]:
    """llama.cpp's continuation of the token ids: greedy, or with `sampling` (temperature, top_p; seeded by `load`).
    Returns the ids it picks, up to `max_tokens`, a stop id (not kept), or until `stop(ids)` is true."""
    temp = (sampling or {}).get("temperature", 0.0)
    top_p = (sampling or {}).get("top_p", 1.0)
    out = []
    if max_tokens < 1:
        return out
    for token in llm.generate(prompt_ids, temp=temp, top_p=top_p, top_k=0 if temp else 1, min_p=0.0, reset=True):
        if token in stop_ids:
            break
        out.append(token)
        if len(out) >= max_tokens or (stop is not None and stop(out)):
            break
    return out


def reads_back(path: str, sample: str, ids: list[int]) -> str | None:
    """Whether llama.cpp runs the written GGUF as transformers reads the run: it tokenizes `sample` (a chat prompt)
    into `ids` (the run's tokenizer's), and runs that prompt through the model in one batch, as a server's first
    request does. None when both hold; else why. In a child process: llama.cpp aborts or crashes the process
    rather than raising."""
    code = (
        "import json, sys; from llama_cpp import Llama\n"
        "text, ids = json.load(sys.stdin)\n"
        "llm = Llama(model_path=sys.argv[1], n_ctx=len(ids) + 8, n_batch=len(ids) + 8, verbose=False)\n"
        "if llm.tokenize(text.encode(), add_bos=False, special=True) != ids: sys.exit(3)\n"
        "llm.eval(ids)\n"
    )
    try:
        result = subprocess.run([sys.executable, "-c", code, path], input=json.dumps([sample, ids]),
                                capture_output=True, text=True, errors="replace", timeout=600)
    except subprocess.TimeoutExpired:
        return f"llama.cpp did not run {path} within 10 minutes"
    if result.returncode == 0:
        return None
    if result.returncode == 3:
        return f"llama.cpp reads the chat prompt into other tokens than transformers does ({path})"
    if result.returncode < 0:  # killed by a signal: a crash inside llama.cpp
        return (f"llama.cpp crashed ({signal.Signals(-result.returncode).name}) running a chat prompt through {path}: "
                f"a fault in llama.cpp's build or in the file; `{INSTALL}` builds one that ran here (docs/gguf.md)")
    last = [line for line in (result.stderr or "").strip().splitlines() if line.strip()][-1:] or ["no output"]
    return f"llama.cpp could not run {path} (exit {result.returncode}): {last[0].strip()}"


def has_python_binding() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None
