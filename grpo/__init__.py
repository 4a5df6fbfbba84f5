"""The trainer's machinery. train_grpo.py (the knobs and the recipe's steps) calls into these modules;
evaluate.py, export.py and chat.py share some of them. Nothing here imports an entry point, and
importing any module here loads nothing heavy (torch, transformers, TRL and Unsloth load inside the
functions that need them).

    overrides.py     the knob block's --name=value parsing and --help
    presets.py       --smoke and --preset=NAME: whole sets of knob values
    checks.py        checks that fail in seconds, before anything loads (knobs, the machine); BadInput
    data.py          step 1: the problems, the held-out slice, the conversations; reading and checking every data
                     file (problems by their columns and answer rule, worked examples)
    model.py         steps 2-3: the model through Unsloth, with LoRA; whether vLLM generates; the memory estimate
    unsloth_cpu.py   UNSLOTH_ALLOW_CPU=1: Unsloth's generated trainers on a CPU (the code a GPU user trains through)
    priming.py       step 4: format priming (SFT on worked solutions), cached for reuse
    difficulty.py    optional, after step 4: keep the prompts the primed model sometimes solves
    trainer.py       steps 5-6: GRPOConfig, the GRPOTrainer and its Controls (callbacks), training
    record.py        run_config.json: the knobs, and apart from them what the run found (FOUND); step timers;
                     the base weights' and the adapter's checksums
    run_dir.py       the run's folder: resume or refuse, an earlier smoke run set aside, step 7 (the save at
                     the end), a full disk in one line
    device.py        processes (torchrun), rank 0, gathering across ranks, the training precision; the NVIDIA
                     driver against the CUDA torch was built for (why torch sees no GPU)
    cache.py         cache entries named by the hash of what decides them; whether a file reads (within its
                     format's limits), and setting an unreadable entry aside
    callbacks.py     the TRL plumbing: metrics.jsonl, the health checks, the collapse alarm, the guard, a clean stop
    health.py        judgments on a run's health: truncation, a still adapter, collapse, non-finite, memory, verdict
    answers.py       the answer judge shared by the rewards and evaluate.py
    sampling.py      several completions per prompt, each prompt read once (evaluate.py, the filter)
    attention.py     grouped-query attention on a CPU without copying heads, while sampling
    plot_rewards.py  the reward curves (also: python grpo/plot_rewards.py RUN_DIR)
    stats.py         the statistics of an evaluation (problems as the unit) and GRPO's gain over its control
    llama_cpp.py     GGUF: llama.cpp where Unsloth looks, export.py's checks, running a GGUF (chat.py, the tests)
"""
