"""Ask the base model and the trained one the same question; print both answers side by side.

    python chat.py --question="What is the sum of the first 10 odd numbers?"
    echo "If 3x + 5 = 20, what is x?" | python chat.py          # one question per line on stdin
    python chat.py --smoke --question="Ava has 27 stickers and buys 18 more. How many now?"

Both models get the same system prompt and chat template (prompts.py, as in training), and the
same sampling settings; greedy by default, so a difference comes from the adapter alone. The base
is the same loaded model with the adapter switched off. With --gguf=FILE (an export.py GGUF, or its
folder) the exported model answers too, through llama.cpp, from the same prompt tokens: what you will
serve, beside what you trained (needs llama-cpp-python: bash scripts/install_llama_cpp.sh).
"""

import json
import os
import sys

# -----------------------------------------------------------------------------------------------
RUN_DIR = "outputs"  # a train_grpo.py output folder: run_config.json and lora/
QUESTION = ""  # the question; "" = read questions from stdin, one per line
MAX_NEW_TOKENS = 0  # completion token limit; 0 = as long as the run trained to (its completion budget)
TEMPERATURE = 0.0  # 0 = greedy (the same answer every time); above 0 samples, seeded
TOP_P = 0.95  # nucleus sampling, when TEMPERATURE > 0
SEED = 3407  # sampling seed, the same for both models
GGUF = ""  # an exported .gguf, or the export folder holding one: it answers too, through llama.cpp
# -----------------------------------------------------------------------------------------------

_SMOKE_PRESET = dict(RUN_DIR=os.path.join("outputs", "smoke"), MAX_NEW_TOKENS=48)


def check_knobs(k: dict) -> None:
    if k["MAX_NEW_TOKENS"] < 0 or k["TEMPERATURE"] < 0 or not 0 < k["TOP_P"] <= 1:
        raise ValueError("MAX_NEW_TOKENS must be >= 0 (0 = the run's), TEMPERATURE >= 0 and TOP_P in (0, 1]")


def new_token_limit(asked: int, room: int | None, prompt_tokens: int) -> int:
    """MAX_NEW_TOKENS, at most what the model's context (`room` tokens) leaves after the prompt.

    >>> new_token_limit(1024, 256, 100), new_token_limit(48, 256, 100), new_token_limit(64, None, 10)
    (156, 48, 64)
    """
    return asked if room is None else max(1, min(asked, room - prompt_tokens))


def questions(k: dict) -> list[str]:
    if k["QUESTION"]:
        return [k["QUESTION"]]
    if sys.stdin is None or sys.stdin.isatty():
        sys.exit('chat.py: give --question="..." or pipe questions in, one per line')
    return [line.strip() for line in sys.stdin if line.strip()]


def side_by_side(question: str, answers: list[tuple[str, str]]) -> str:
    """The printed comparison of one question, with the answer each model put in its solution block.

    >>> print(side_by_side("1+1?", [("base", "two"), ("trained", "w<end_working_out><SOLUTION>2</SOLUTION>")]))
    == 1+1?
    -- base (answer in the solution block: None)
    two
    <BLANKLINE>
    -- trained (answer in the solution block: '2')
    w<end_working_out><SOLUTION>2</SOLUTION>
    <BLANKLINE>
    """
    from rewards import judged_answer

    lines = [f"== {question}"]
    for label, text in answers:
        lines += [f"-- {label} (answer in the solution block: {judged_answer(text)!r})", text.strip(), ""]
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    from grpo.overrides import resolve

    k = resolve(globals(), argv, "chat.py", check_knobs, {"smoke": _SMOKE_PRESET})
    from grpo.device import gpu_unseen, quiet_cpu_lines

    quiet_cpu_lines()
    unseen = gpu_unseen("chat.py")  # a GPU torch cannot use (an old driver): say so, not a silent CPU chat
    if unseen:
        sys.exit(f"chat.py: error: {unseen}")
    config = os.path.join(k["RUN_DIR"], "run_config.json")
    if not os.path.exists(config):
        sys.exit(f"chat.py: no {config}; train first (python train_grpo.py [--smoke]) or set --run_dir")
    if k["GGUF"]:
        from grpo.llama_cpp import find_gguf

        try:
            k["GGUF"] = find_gguf(k["GGUF"])
        except ValueError as e:
            sys.exit(f"chat.py: error: {e}")
    asked = questions(k)
    with open(config) as f:
        run = json.load(f)
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    import prompts
    from grpo.data import load_tokenizer

    adapter = os.path.join(k["RUN_DIR"], "lora")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = load_tokenizer(adapter, run.get("USE_MODEL_CHAT_TEMPLATE", False))
    base = AutoModelForCausalLM.from_pretrained(
        run["MODEL_NAME"], dtype=torch.bfloat16 if device == "cuda" else torch.float32
    )
    model = PeftModel.from_pretrained(base.to(device), adapter).eval()
    sampling = (
        dict(do_sample=True, temperature=k["TEMPERATURE"], top_p=k["TOP_P"])
        if k["TEMPERATURE"] > 0
        else dict(do_sample=False)
    )

    if not k["MAX_NEW_TOKENS"]:  # as long as the run trained to (1024 when the run does not say)
        k["MAX_NEW_TOKENS"] = (run.get("FOUND", {}).get("TRAINER_ARGS") or {}).get("max_completion_length") or 1024
    if run.get("SMOKE"):
        print("note: the smoke run's model is a tiny Qwen3 (400 KB) trained for seconds: its answers are noise "
              "that shows the pipeline works, not a reasoner (--preset=smollm2, or the GPU run, answers for real)")
    room = getattr(base.config, "max_position_embeddings", None)  # the longest sequence the model takes
    capped = []  # said once
    served = None
    if k["GGUF"]:
        from grpo import llama_cpp

        context = min(room or 1 << 16, k["MAX_NEW_TOKENS"] + 2048)  # the prompt and the answer, not the full window
        try:
            served = llama_cpp.load(k["GGUF"], context, k["SEED"])
        except ValueError as e:
            sys.exit(f"chat.py: error: {e}")
        room = min(room or context, context)
        eos = model.generation_config.eos_token_id  # where transformers' generate stops, so llama.cpp stops there too
        stop_ids = set(eos if isinstance(eos, list) else [eos if eos is not None else tokenizer.eos_token_id])

    def prompt_ids(question: str) -> list[int]:
        conversation = prompts.make_conversation({"prompt": question, "solution": ""})["prompt"]
        text = tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    def limit_for(prompt: list[int]) -> int:
        limit = new_token_limit(k["MAX_NEW_TOKENS"], room, len(prompt))
        if limit < k["MAX_NEW_TOKENS"] and not capped:
            print(f"note: the model's {room}-token context leaves {limit} new tokens after this prompt, not "
                  f"MAX_NEW_TOKENS={k['MAX_NEW_TOKENS']}")
            capped.append(limit)
        return limit

    def answer(question: str) -> str:
        prompt = prompt_ids(question)
        ids = torch.tensor([prompt], device=device)
        torch.manual_seed(k["SEED"])
        with torch.no_grad():
            out = model.generate(  # stops at the end of the answer block, as the rewards read it
                input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=limit_for(prompt),
                pad_token_id=tokenizer.pad_token_id, stop_strings=[prompts.SOLUTION_END], tokenizer=tokenizer,
                **sampling
            )
        return tokenizer.decode(out[0, len(prompt) :], skip_special_tokens=True)

    def served_answer(question: str) -> str:
        prompt = prompt_ids(question)
        out = llama_cpp.generate(
            served, prompt, limit_for(prompt), stop_ids, sampling if k["TEMPERATURE"] > 0 else None,
            stop=lambda ids: prompts.SOLUTION_END in tokenizer.decode(ids[-16:]),
        )
        return tokenizer.decode(out, skip_special_tokens=True)

    for question in asked:
        with model.disable_adapter():
            answers = [("base", answer(question))]
        answers.append(("trained", answer(question)))
        if served is not None:
            answers.append((f"gguf {os.path.basename(k['GGUF'])}", served_answer(question)))
        print(side_by_side(question, answers), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
