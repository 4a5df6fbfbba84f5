"""grpo/llama_cpp.py on its own: what export.py checks in a llama.cpp folder, and the small helpers chat.py and the
tests run a GGUF with. The export and the files themselves are run in tests/test_smollm2.py."""

import pytest

from grpo import llama_cpp


def test_a_llama_cpp_folder_lacking_a_part_is_named(tmp_path):
    """What Unsloth needs of the folder (unsloth_zoo check_llama_cpp, install_llama_cpp), each part missing in turn."""
    where = tmp_path / "llama.cpp"
    for d in ("src", "ggml", "common", "conversion", "gguf-py/gguf"):
        (where / d).mkdir(parents=True)
    (where / "conversion" / "__init__.py").write_text("")
    (where / "gguf-py" / "gguf" / "__init__.py").write_text("")
    (where / "convert_hf_to_gguf.py").write_text("from conversion import ModelBase\n")
    quantizer = where / "llama-quantize"
    quantizer.write_text("#!/bin/sh\necho 'usage: llama-quantize model-f32.gguf [type]'\nexit 1\n")
    quantizer.chmod(0o755)
    assert llama_cpp.missing(str(where)) == []
    quantizer.write_text("#!/bin/sh\nexit 1\n")  # there, but does not answer
    assert llama_cpp.missing(str(where)) == ["an llama-quantize that runs"]
    quantizer.write_text("#!/bin/sh\necho usage\n")
    (where / "conversion" / "__init__.py").unlink()
    assert llama_cpp.missing(str(where)) == ["the converter's conversion/ package"]
    (where / "convert_hf_to_gguf.py").write_text("import gguf\n")  # the older layout needs no conversion/
    assert llama_cpp.missing(str(where)) == []
    (where / "common").rmdir()
    assert llama_cpp.missing(str(where)) == ["its source folders (common)"]
    assert llama_cpp.missing(str(tmp_path / "none")) == [f"the folder {tmp_path / 'none'}"]


def test_the_refusal_is_one_line_naming_the_install_step(tmp_path):
    line = llama_cpp.refusal(str(tmp_path / "x"), llama_cpp.missing(str(tmp_path / "x")))
    assert "\n" not in line and llama_cpp.INSTALL in line and "--allow_llama_cpp_download=true" in line


def test_a_gguf_is_found_as_a_file_or_as_the_one_file_of_a_folder(tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "m.Q8_0.gguf").write_bytes(b"GGUF")
    assert llama_cpp.find_gguf(str(tmp_path / "one")) == str(tmp_path / "one" / "m.Q8_0.gguf")
    assert llama_cpp.find_gguf(str(tmp_path / "one" / "m.Q8_0.gguf")).endswith("m.Q8_0.gguf")
    (tmp_path / "one" / "m.F16.gguf").write_bytes(b"GGUF")
    with pytest.raises(ValueError, match="holds 2 .gguf files"):
        llama_cpp.find_gguf(str(tmp_path / "one"))
    with pytest.raises(ValueError, match="no GGUF file at"):
        llama_cpp.find_gguf(str(tmp_path / "none.gguf"))


def test_the_written_files_are_read_from_either_save(tmp_path):
    """Unsloth's CPU save returns the paths; its GPU save a dict with "gguf_files" (unsloth/save.py)."""
    (tmp_path / "a.Q8_0.gguf").write_bytes(b"GGUF")
    assert llama_cpp.gguf_files([str(tmp_path / "a.Q8_0.gguf")], str(tmp_path)) == [str(tmp_path / "a.Q8_0.gguf")]
    assert llama_cpp.gguf_files({"gguf_files": ["x.gguf"], "modelfile_location": "M"}, str(tmp_path)) == ["x.gguf"]
    assert llama_cpp.gguf_files(None, str(tmp_path)) == [str(tmp_path / "a.Q8_0.gguf")]  # what the folder holds


def test_generation_stops_at_a_stop_id_the_limit_or_the_stop_test():
    class Fake:  # llama-cpp-python's Llama.generate yields token ids without end
        def generate(self, tokens, **kwargs):
            assert kwargs["top_k"] == 1 and kwargs["temp"] == 0.0 and kwargs["min_p"] == 0.0  # greedy, nothing else
            yield from [5, 6, 7, 2, 8]

    assert llama_cpp.generate(Fake(), [1], 10, stop_ids={2}) == [5, 6, 7]  # the stop id is not kept
    assert llama_cpp.generate(Fake(), [1], 2, stop_ids={2}) == [5, 6]
    assert llama_cpp.generate(Fake(), [1], 10, stop_ids=set(), stop=lambda ids: ids[-1] == 6) == [5, 6]
    assert llama_cpp.generate(Fake(), [1], 0, stop_ids=set()) == []


@pytest.mark.parametrize("returncode, said", [
    (0, None),
    (3, "reads the chat prompt into other tokens than transformers does"),
    (-11, "llama.cpp crashed (SIGSEGV) running a chat prompt through f.gguf"),
    (1, "llama.cpp could not run f.gguf (exit 1): ValueError: bad magic"),
])
def test_the_read_back_names_what_llama_cpp_did_with_the_file(monkeypatch, returncode, said):
    """The child process's end, as export.py says it: a crash inside llama.cpp (a signal) is a line, not silence."""
    import subprocess

    def run(*args, **kwargs):
        return subprocess.CompletedProcess(args, returncode, "", "Traceback ...\nValueError: bad magic\n")

    monkeypatch.setattr(llama_cpp.subprocess, "run", run)
    why = llama_cpp.reads_back("f.gguf", "a prompt", [1, 2])
    assert (why is None) if said is None else (said in why and "\n" not in why)
