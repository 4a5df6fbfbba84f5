"""Step 4, format priming: the recipe's short SFT on worked solutions written in the project's format,
through TRL's SFTTrainer on the same LoRA that GRPO then trains. A base model that has never seen the
format would otherwise earn nothing from the format rewards for a long time.

The primed adapter is kept apart (OUTPUT_DIR/lora_primed) so evaluate.py can tell priming from GRPO,
and, with REUSE_PRIMING, in PRIMING_CACHE under a key of everything that decides it: the model (for a
local folder, with its weights' checksum; a Hub id by name), the examples file, the priming and LoRA
knobs, the seed, the precision, the library versions and the SFTTrainer class (TRL's, or Unsloth's
generated one). A later run with the same key loads that adapter instead of priming again, and says so;
GRPO then starts from the same weights, and the trainer reseeds itself, so the run is the same as one
that primed. run_config.json records which cached adapter was reused (FOUND.PRIMING_REUSED_FROM) and
which trainer primed it (FOUND.PRIMING_TRAINER).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil

from grpo import callbacks
from grpo.cache import cache_file, first_unreadable, same_key, set_aside
from grpo.checks import BadInput, Stopped
from grpo.data import DatasetFormatError, filter_sft_by_length, is_local_path, load_worked_examples
from grpo.device import is_main_process, trains_bf16
from grpo.record import installed_versions, timed, write_model_card

# the knobs that decide what priming produces (with the model's checksum, the examples and versions)
KEY_KNOBS = ("MODEL_NAME", "LOAD_IN_4BIT", "MAX_SEQ_LENGTH", "LORA_RANK", "LORA_ALPHA", "LORA_TARGET_MODULES",
             "FORMAT_SFT_DATASET", "FORMAT_SFT_EPOCHS", "FORMAT_SFT_LEARNING_RATE", "FORMAT_SFT_MAX_EXAMPLES",
             "FORMAT_SFT_MAX_TOKENS", "WEIGHT_DECAY", "OPTIM", "SEED")
KEY_FILE = "priming_key.json"  # written last into a cache entry: what it was primed from


def load_examples(k: dict, resume_from: str | None):
    """The worked examples to prime on, or None when priming is off or the run resumes (a checkpoint's
    adapter is primed already). Loaded before the model, so a bad file fails in seconds."""
    if not k["FORMAT_SFT"] or resume_from:
        return None
    try:
        return load_worked_examples(k["FORMAT_SFT_DATASET"])
    except (DatasetFormatError, FileNotFoundError) as e:
        raise BadInput(f"FORMAT_SFT_DATASET {k['FORMAT_SFT_DATASET']}: {e}") from e


def priming_key(k: dict, model_sha256: str | None, bf16: bool) -> dict:
    """Everything that decides the primed adapter, as a dict (its hash names the cache entry)."""
    source = k["FORMAT_SFT_DATASET"]
    if is_local_path(source) and os.path.isfile(source):
        with open(source, "rb") as f:
            source = {"file": os.path.abspath(source), "sha256": hashlib.sha256(f.read()).hexdigest()}
    import torch
    from trl import SFTTrainer  # TRL's, or Unsloth's generated one (a GPU, UNSLOTH_ALLOW_CPU): its name tells

    return {**{n: k.get(n) for n in KEY_KNOBS}, "MODEL_SHA256": model_sha256, "FORMAT_SFT_DATASET": source,
            "BF16": bf16, "CUDA": torch.cuda.is_available(), "SFT_TRAINER": SFTTrainer.__name__,
            "VERSIONS": installed_versions(("torch", "transformers", "trl", "peft", "unsloth"))}


def cached(entry: str, key: dict) -> bool:
    """Whether entry is a finished cache entry for this key (its key file is written last) whose files all
    read. An entry that exists and does not (a corrupted file, another key under this name) is moved
    aside, said in one line, and primed again: never reused, never left to block the new entry."""
    if not os.path.isdir(entry):
        return False
    bad = first_unreadable(entry)
    if bad is None:
        try:
            with open(os.path.join(entry, KEY_FILE)) as f:
                if same_key(json.load(f), key):
                    return True
            bad = (entry, "its key is another priming's")
        except OSError as e:
            bad = (entry, f"no {KEY_FILE}: {e}")
    if is_main_process():  # every rank finds it unreadable and primes again; one moves it
        set_aside(entry, f"{os.path.relpath(bad[0], entry)}: {bad[1]}")
    return False


@timed("PRIMING_S")
def prime(k: dict, loaded, examples, resume_from: str | None) -> dict:
    """Prime the format on the loaded policy (or reuse an earlier priming). Returns the findings:
    PRIMED_ADAPTER, the primed adapter's folder (OUTPUT_DIR/lora_primed, or None without priming),
    PRIMING_REUSED_FROM, the cache entry reused or None, and PRIMING_TRAINER, the SFTTrainer class that
    primed it (None on a resume). On a resume the checkpoint's adapter is primed already; with a KL term,
    the reference must be the primed adapter, so it is loaded first."""
    model, tokenizer = loaded.model, loaded.tokenizer
    primed = os.path.join(k["OUTPUT_DIR"], "lora_primed")
    unprimed = {"PRIMED_ADAPTER": None, "PRIMING_REUSED_FROM": None, "PRIMING_TRAINER": None}
    if resume_from:  # a checkpoint's adapter is primed already
        if not (k["FORMAT_SFT"] and os.path.isdir(primed)):
            return unprimed
        if k["BETA"] > 0:  # the KL reference is a copy of the adapter as the trainer is built: the primed one
            model.load_adapter(primed, adapter_name="default", is_trainable=True)
        return {**unprimed, "PRIMED_ADAPTER": primed}
    if not k["FORMAT_SFT"]:
        return unprimed
    bf16 = trains_bf16()
    metrics_path = os.path.join(k["OUTPUT_DIR"], "metrics.jsonl")
    key = priming_key(k, loaded.found["MODEL_SHA256"], bf16)
    entry = cache_file(k["PRIMING_CACHE"], key)
    if k["REUSE_PRIMING"] and cached(entry, key):
        model.load_adapter(entry, adapter_name="default", is_trainable=True)
        if is_main_process():
            shutil.copytree(
                entry, primed, dirs_exist_ok=True, ignore=shutil.ignore_patterns(KEY_FILE, "sft_metrics.jsonl")
            )
            shutil.copyfile(os.path.join(entry, "sft_metrics.jsonl"), metrics_path)
            write_model_card(primed, k, 0, primed_only=True)  # the card names this run's folder
        print(
            f"format priming: reused the primed adapter in {entry} (same model, examples, priming knobs "
            f"and seed; --reuse_priming=false primes again)"
        )
        return {"PRIMED_ADAPTER": primed, "PRIMING_REUSED_FROM": entry, "PRIMING_TRAINER": key["SFT_TRAINER"]}
    format_sft(k, model, tokenizer, examples, metrics_path, bf16, primed)
    if k["REUSE_PRIMING"] and is_main_process():
        store(primed, metrics_path, entry, key)
    return {"PRIMED_ADAPTER": primed, "PRIMING_REUSED_FROM": None, "PRIMING_TRAINER": key["SFT_TRAINER"]}


def store(primed: str, metrics_path: str, entry: str, key: dict) -> None:
    """Copy the primed adapter and its SFT rows into the cache, whole: into a side folder, key file
    last, then renamed into place (a process that finished the same key first keeps its entry)."""
    partial = f"{entry}.partial-{os.getpid()}"
    try:
        shutil.copytree(primed, partial, dirs_exist_ok=True)
        shutil.copyfile(metrics_path, os.path.join(partial, "sft_metrics.jsonl"))
        with open(os.path.join(partial, KEY_FILE), "w") as f:
            json.dump(key, f, indent=1, default=str)
    except OSError:  # a full disk: no part-written entry is left behind
        shutil.rmtree(partial, ignore_errors=True)
        raise
    try:
        os.rename(partial, entry)
    except OSError:  # the entry exists: another run stored the same key first
        shutil.rmtree(partial, ignore_errors=True)


def format_sft(k: dict, model, tokenizer, examples, metrics_path: str, bf16: bool, primed: str) -> None:
    """Prime the format with TRL's SFTTrainer on the LoRA model, as the recipe does before GRPO, and
    keep the primed adapter apart (OUTPUT_DIR/lora_primed) so evaluate.py can tell priming from GRPO.
    Its losses go to metrics.jsonl as rows with "phase": "sft"."""
    from trl import SFTConfig, SFTTrainer

    limit = min(k["FORMAT_SFT_MAX_TOKENS"] or k["MAX_SEQ_LENGTH"] // 2, k["MAX_SEQ_LENGTH"])
    try:
        examples = filter_sft_by_length(examples, tokenizer, limit, k["FORMAT_SFT_MAX_EXAMPLES"])
    except DatasetFormatError as e:
        raise BadInput(
            f"MAX_SEQ_LENGTH={k['MAX_SEQ_LENGTH']}, FORMAT_SFT_MAX_TOKENS={k['FORMAT_SFT_MAX_TOKENS']}: {e} "
            f"of {k['FORMAT_SFT_DATASET']}; raise them, or --format_sft=false"
        ) from e
    print(
        f"format priming: {len(examples)} worked examples x {k['FORMAT_SFT_EPOCHS']} epochs, lr "
        f"{k['FORMAT_SFT_LEARNING_RATE']}"
    )
    config = SFTConfig(
        output_dir=os.path.join(k["OUTPUT_DIR"], "format_sft"),
        per_device_train_batch_size=1,
        gradient_accumulation_steps=1,
        warmup_steps=5,
        num_train_epochs=k["FORMAT_SFT_EPOCHS"],
        learning_rate=k["FORMAT_SFT_LEARNING_RATE"],
        weight_decay=k["WEIGHT_DECAY"],
        lr_scheduler_type="linear",
        optim=k["OPTIM"],
        max_length=k["MAX_SEQ_LENGTH"],
        logging_steps=1,
        save_strategy="no",
        seed=k["SEED"],
        bf16=bf16,
        fp16=False,
        report_to=k["REPORT_TO"],
    )
    stop = callbacks.make_signal_stop_callback(save=False)  # Ctrl-C / SIGTERM: finish the step, then stop
    trainer = SFTTrainer(
        model=model,
        processing_class=tokenizer,
        train_dataset=examples,
        args=config,
        callbacks=[callbacks.make_sft_metrics_callback(metrics_path), stop],
    )
    callbacks.compact_progress(trainer, "priming")
    stop.install()
    try:
        trainer.train()
    finally:
        stop.uninstall()
    if stop.signal_name:
        raise Stopped(
            f"stopped by {stop.signal_name} during format priming, at step {trainer.state.global_step} of "
            f"{trainer.state.max_steps}; a part-primed adapter is not kept (the cache holds whole primings only), "
            "so priming starts again next time"
        )
    if is_main_process():
        model.save_pretrained(primed)
        tokenizer.save_pretrained(primed)
        write_model_card(primed, k, 0, primed_only=True)
