"""Steps 5 and 6, GRPO: TRL's GRPOConfig from the knobs, the GRPOTrainer with the rewards and the
project's callbacks (metrics.jsonl, the collapse alarm, a clean stop on a signal, the non-finite
guard), and training itself. Unsloth has patched GRPOTrainer by the time this runs (grpo/model.py
imports it first).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

from grpo import callbacks, health
from grpo.checks import BadInput
from grpo.device import trains_bf16, world_size
from grpo.record import adapter_checksum, library_class
from grpo.run_dir import checkpoint_step

# GRPOConfig fields set from the algorithm knobs; run_config.json records what the trainer used
ALGORITHM_FIELDS = {"LOSS_TYPE": "loss_type", "BETA": "beta", "EPSILON": "epsilon", "EPSILON_HIGH": "epsilon_high",
                    "SCALE_REWARDS": "scale_rewards", "MASK_TRUNCATED_COMPLETIONS": "mask_truncated_completions",
                    "IMPORTANCE_SAMPLING_LEVEL": "importance_sampling_level",
                    "MULTI_OBJECTIVE_AGGREGATION": "multi_objective_aggregation",
                    "TOP_ENTROPY_QUANTILE": "top_entropy_quantile",
                    "VLLM_IMPORTANCE_SAMPLING_CORRECTION": "vllm_importance_sampling_correction",
                    "VLLM_IMPORTANCE_SAMPLING_MODE": "vllm_importance_sampling_mode"}


def completion_budget(k: dict, max_prompt_length: int) -> int:
    """Completion tokens per sample: MAX_COMPLETION_LENGTH, at most what the longest prompt leaves."""
    room = k["MAX_SEQ_LENGTH"] - max_prompt_length
    max_completion = min(k["MAX_COMPLETION_LENGTH"], room) if k["MAX_COMPLETION_LENGTH"] else room
    if max_completion < 1:
        raise BadInput(f"prompts of {max_prompt_length} tokens leave no room in MAX_SEQ_LENGTH={k['MAX_SEQ_LENGTH']}: "
                       "raise --max_seq_length, or lower --prompt_length_percentile")
    return max_completion


def grpo_config_kwargs(k: dict, max_completion: int, bf16: bool, fast: bool) -> dict:
    """Keyword arguments for trl.GRPOConfig: max_completion, the completion budget (completion_budget);
    fast, whether vLLM generates, as model.load decided."""
    return dict(
        output_dir=k["OUTPUT_DIR"],
        learning_rate=k["LEARNING_RATE"],
        weight_decay=k["WEIGHT_DECAY"],
        warmup_steps=k["WARMUP_RATIO"],  # transformers 5: a float below 1 is a ratio of max_steps
        lr_scheduler_type=k["LR_SCHEDULER_TYPE"],
        optim=k["OPTIM"],
        num_generations=k["NUM_GENERATIONS"],
        per_device_train_batch_size=k["PER_DEVICE_TRAIN_BATCH_SIZE"],
        gradient_accumulation_steps=k["GRADIENT_ACCUMULATION_STEPS"],
        temperature=k["TEMPERATURE"],
        min_p=k["MIN_P"],
        top_p=k["TOP_P"],
        max_completion_length=max_completion,
        max_steps=k["MAX_STEPS"],
        save_steps=k["SAVE_STEPS"],
        save_total_limit=k["SAVE_TOTAL_LIMIT"],
        seed=k["SEED"],
        data_seed=k["SEED"],
        reward_weights=list(k["REWARD_WEIGHTS"]),
        use_vllm=fast,
        **(dict(vllm_mode="server", vllm_server_base_url=k["VLLM_SERVER_URL"])
           if fast and k["VLLM_MODE"] == "server" else {}),
        bf16=bf16,
        fp16=False,
        logging_steps=1,
        report_to=k["REPORT_TO"],
        log_completions=k["LOG_COMPLETIONS"],
        num_completions_to_print=0,
        eval_strategy="steps" if k["EVAL_STEPS"] else "no",
        eval_steps=k["EVAL_STEPS"] or None,
        per_device_eval_batch_size=k["PER_DEVICE_TRAIN_BATCH_SIZE"],
        **{field: k[knob] for knob, field in ALGORITHM_FIELDS.items()},
    )


def algorithm_notes(used: dict) -> list[str]:
    """The combinations TRL accepts but warns about (GRPOTrainer.__init__), in the knobs' words.

    >>> algorithm_notes({"IMPORTANCE_SAMPLING_LEVEL": "sequence", "LOSS_TYPE": "grpo"})
    []
    >>> algorithm_notes({"IMPORTANCE_SAMPLING_LEVEL": "sequence", "LOSS_TYPE": "vespo"})[0][:48]
    'LOSS_TYPE=vespo computes its own sequence weight'
    """
    level, loss = used.get("IMPORTANCE_SAMPLING_LEVEL"), used.get("LOSS_TYPE")
    if level == "sequence" and loss in ("dapo", "bnpo", "dr_grpo", "cispo"):
        return [f"IMPORTANCE_SAMPLING_LEVEL=sequence with LOSS_TYPE={loss} sums per-token terms, so each completion "
                f"weighs by its length (GSPO's own setup is --loss_type=grpo)"]
    if level == "sequence" and loss == "vespo":
        return ["LOSS_TYPE=vespo computes its own sequence weights: TRL advises IMPORTANCE_SAMPLING_LEVEL=token"]
    return []


def algorithm_used(args) -> dict:
    """The algorithm knobs as the built trainer holds them (Unsloth's config may rewrite some)."""
    return {knob: getattr(args, field) for knob, field in ALGORITHM_FIELDS.items()}


def gate_groups(rewards_per_func, right, num_generations: int):
    """The outcome gate on one step's rewards (every process's, as TRL gathers them): in each group whose
    completions are all right or all wrong (`right`, one bool per completion), every completion gets the
    group's mean of each reward, so the group's advantages are zero under any LOSS_TYPE and SCALE_REWARDS
    and its means (what metrics.jsonl logs) are unchanged. Returns (gated rewards, share of groups all
    right, share all wrong).

    >>> import torch
    >>> rewards, right = torch.tensor([[3.0], [0.0], [1.0], [2.0]]), torch.tensor([False, False, True, False])
    >>> r, all_right, all_wrong = gate_groups(rewards, right, 2)
    >>> r.flatten().tolist(), all_right, all_wrong
    ([1.5, 1.5, 1.0, 2.0], 0.0, 0.5)
    """
    import torch

    groups = right.view(-1, num_generations)
    all_right, all_wrong = groups.all(dim=1), ~groups.any(dim=1)
    gated = all_right | all_wrong
    grouped = rewards_per_func.view(groups.shape[0], num_generations, -1).clone()
    means = torch.nanmean(grouped, dim=1, keepdim=True).expand_as(grouped)
    grouped[gated] = means[gated]
    return grouped.view_as(rewards_per_func), all_right.float().mean().item(), all_wrong.float().mean().item()


def right_only(advantages, right):
    """REINFORCE_RIGHT_ONLY on one process's advantages: a completion judged wrong gets zero advantage and a
    right one keeps its advantage only where it is positive, so the step raises right answers and never
    pushes a completion down (rejection-sampling fine-tuning's direction, with GRPO's weights). Returns
    (advantages, share of completions with a nonzero advantage that it zeroed).

    >>> import torch
    >>> advantages, right = torch.tensor([1.2, -0.4, 0.3, -1.1, 0.0]), torch.tensor([True, True, False, False, False])
    >>> a, zeroed = right_only(advantages, right)
    >>> [round(x, 2) for x in a.tolist()], zeroed
    ([1.2, 0.0, 0.0, 0.0, 0.0], 0.75)
    """
    import torch

    right = right.view(-1, *[1] * (advantages.dim() - 1))  # TRL's advantages are one per completion
    kept = torch.where(right, advantages.clamp(min=0), torch.zeros_like(advantages))
    moving = advantages != 0
    zeroed = (moving & (kept == 0)).sum().item() / max(moving.sum().item(), 1)
    return kept, zeroed


def with_outcome_judge(trainer_class, judge, gate: bool, only_right: bool):
    """trainer_class (TRL's GRPOTrainer as Unsloth patched it) with the judge's binary outcome in the
    advantages: judge(completions, answer=...) says whether each completion's answer is right.
    gate (OUTCOME_GATE): after the rewards are computed and gathered from every process, the outcomes
    are gathered the same way and gate_groups flattens the groups that carry no outcome signal; logs
    gate/all_right and gate/all_wrong, the shares of groups gated, each step.
    only_right (REINFORCE_RIGHT_ONLY): after TRL computes this process's advantages, right_only keeps
    only the right completions' positive ones; logs right_only/zeroed.

    The hook-order contract (TRL's private methods; Unsloth's compiled trainer keeps it): within one call of
    _generate_and_score_completions, TRL calls _calculate_rewards once, before it turns the rewards into
    advantages, and returns those as output["advantages"]. So the gate must act inside _calculate_rewards
    (after the rewards exist, before the advantages), and right-only after _generate_and_score_completions
    returns, reading the verdicts _calculate_rewards left in self._right during the same call.
    tests/test_gpu_path.py fails if TRL or Unsloth stops calling them in that order (docs/gpu_path.md)."""

    if not callable(getattr(trainer_class, "_calculate_rewards", None)):  # the one hook the judge needs
        raise BadInput(
            "OUTCOME_GATE and REINFORCE_RIGHT_ONLY need GRPOTrainer._calculate_rewards, which this TRL/Unsloth "
            "version lacks; use the pinned versions (requirements.txt) or --outcome_gate=false "
            "--reinforce_right_only=false"
        )

    class OutcomeJudgedGRPOTrainer(trainer_class):
        def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
            import torch

            rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
            answers = [row.get("answer") for row in inputs]
            right = torch.tensor(judge(completions, answer=answers), dtype=torch.bool, device=rewards_per_func.device)
            self._right = right  # this process's completions, in the order of its advantages
            if not gate:
                return rewards_per_func
            right = self.accelerator.gather(right)  # in the same order as the rewards: groups may span processes
            mode = "train" if self.model.training else "eval"
            groups = self.num_generations if mode == "train" else self.num_generations_eval
            gated, all_right, all_wrong = gate_groups(rewards_per_func, right, groups)
            self._metrics[mode]["gate/all_right"].append(all_right)
            self._metrics[mode]["gate/all_wrong"].append(all_wrong)
            return gated

        def _generate_and_score_completions(self, inputs):
            output = super()._generate_and_score_completions(inputs)
            if only_right and self.model.training:  # held-out evaluation reports the advantages untouched
                import torch

                output["advantages"], zeroed = right_only(output["advantages"], self._right)
                zeroed = self.accelerator.gather(torch.tensor([zeroed], device=output["advantages"].device))
                self._metrics["train"]["right_only/zeroed"].append(zeroed.mean().item())
            return output

    return OutcomeJudgedGRPOTrainer


@dataclass
class Controls:
    """The run's controls beside TRL's trainer: the collapse alarm, the clean stop on a signal, the
    non-finite guard, the early health checks and verdict, and the algorithm knobs as the built trainer
    holds them."""

    alarm: object
    stop: object
    guard: object
    health: object
    algorithm: dict


def build(k: dict, loaded, rewards, dataset, eval_dataset, budget: int):
    """(The GRPOTrainer on the loaded policy, with the REWARD_FUNCS of `rewards` and OUTCOME_GATE and
    REINFORCE_RIGHT_ONLY by its answer_is_right, ready to train; its Controls). Prints the run's shape and any
    algorithm knob Unsloth's config rewrote."""
    from trl import GRPOConfig, GRPOTrainer

    model, judge = loaded.model, rewards.answer_is_right
    primed, fast_inference = loaded.found["PRIMED_ADAPTER"], loaded.found["FAST_INFERENCE_USED"]

    # fp16 GPUs (T4): Unsloth sets fp16 itself
    config = GRPOConfig(**grpo_config_kwargs(k, budget, trains_bf16(), fast_inference))
    judged = k["OUTCOME_GATE"] or k["REINFORCE_RIGHT_ONLY"]
    trainer_class = (
        with_outcome_judge(GRPOTrainer, judge, k["OUTCOME_GATE"], k["REINFORCE_RIGHT_ONLY"]) if judged else GRPOTrainer
    )
    checkup = callbacks.make_health_callback(config.max_completion_length, k["LEARNING_RATE"], adapter_checksum)
    alarm = callbacks.make_collapse_callback(k["COLLAPSE_PATIENCE"], k["STOP_ON_COLLAPSE"], checkup)
    stop = callbacks.make_signal_stop_callback()
    guard = callbacks.make_nonfinite_guard_callback()
    metrics_path = os.path.join(k["OUTPUT_DIR"], "metrics.jsonl")
    trainer = trainer_class(
        model=model,
        processing_class=loaded.tokenizer,
        reward_funcs=[getattr(rewards, name) for name in k["REWARD_FUNCS"]],
        args=config,
        train_dataset=dataset,
        eval_dataset=eval_dataset,
        # the health checks after the alarm (a collapse warning at the verdict's step counts in it); the guard
        # last (it cancels a save)
        callbacks=[callbacks.make_metrics_callback(metrics_path, k["REWARD_FUNCS"]), alarm, checkup, stop, guard],
    )
    controls = Controls(alarm=alarm, stop=stop, guard=guard, health=checkup, algorithm=algorithm_used(trainer.args))
    callbacks.compact_progress(trainer, "grpo")  # one short line a step; metrics.jsonl keeps every figure
    if k["OUTCOME_GATE"]:
        print("outcome gate: groups whose answers are all right or all wrong get zero advantage")
    if k["REINFORCE_RIGHT_ONLY"]:
        print("right only: completions judged wrong get zero advantage, right ones only a positive one")
    reference = kl_reference(trainer.accelerator.unwrap_model(trainer.model), primed if k["BETA"] > 0 else None)
    if k["BETA"] > 0:
        print(f"KL reference: {reference}")
    used = controls.algorithm
    for note in algorithm_notes(used):
        print(f"note: {note}")
    for knob, value in used.items():
        if value != k[knob]:
            print(f"note: the trainer uses {knob}={value!r}, not the requested {k[knob]!r} (Unsloth's GRPO config "
                  "rewrote it)")
    completions = config.per_device_train_batch_size * config.gradient_accumulation_steps * world_size()  # all ranks
    processes = f" over {world_size()} processes" if world_size() > 1 else ""
    print(
        f"run: {k['MAX_STEPS']} steps, {completions // k['NUM_GENERATIONS']} prompts x {k['NUM_GENERATIONS']} "
        f"completions per step{processes}, up to {completions * config.max_completion_length} completion tokens "
        f"per step, {model.dtype}, optim={getattr(config.optim, 'value', config.optim)}, "
        f"trainer {library_class(trainer).__name__}, generation "
        f"{'vLLM' if fast_inference else 'Hugging Face generate'}\n"
        f"algorithm: " + ", ".join(f"{n.lower()}={v}" for n, v in used.items()
                                   if fast_inference or not n.startswith("VLLM_"))  # those act only with vLLM
        + "\nrewards: " + ", ".join(f"{n} x{w:g}" for n, w in zip(k["REWARD_FUNCS"], k["REWARD_WEIGHTS"]))
    )
    return trainer, controls


def kl_reference(model, primed: str | None) -> str:
    """Make the KL reference the model GRPO starts from, on stock TRL and on Unsloth's generated trainer
    alike, with one adapter on the model throughout, and say what the reference is.

    Both trainers score the reference with `use_adapter(model, "ref" if "ref" in model.peft_config else
    None)`: under an adapter named "ref", else under `model.disable_adapter()`, the base model. A second
    adapter cannot stay on the model: Unsloth hands vLLM every LoRA tensor of the model at each generation
    (unsloth_zoo/vllm_utils.py, _build_lora_request), and vLLM refuses the "ref" ones; its merged-weight
    rollouts fold only a model whose one adapter is "default" (_merged_rollout_targets). So a primed run
    keeps the primed adapter's values aside (PrimedReference) and its `disable_adapter` swaps them into
    "default" for the reference pass only; stock TRL's own "ref" copy is deleted. docs/gpu_path.md has
    the reasons."""
    if "ref" in model.peft_config:  # stock TRL copies a pretrained adapter into "ref" as it is built
        model.delete_adapter("ref")
    if not primed:
        return "the base model (no priming: the adapter starts at zero)"
    model.disable_adapter = PrimedReference(model)
    return "the primed model (its adapter values, swapped into the one adapter for the reference pass)"


class PrimedReference:
    """Stands in for a PEFT model's `disable_adapter()`, the context both trainers score the KL reference
    under: inside it, the adapter "default" holds the values it had when this was made (the primed
    adapter), and the policy's values are back, bit for bit, on leaving. The stash costs one adapter's
    memory, as TRL's frozen "ref" copy did; a swap is three copies of the adapter, no model pass.
    Both trainers enter it in _generate_and_score_completions, before the step's loss forward, so no
    autograd graph holds the values it swaps (tests/test_gpu_path.py and test_unsloth_trainers.py find the
    call there, in TRL's source and in the generated one)."""

    def __init__(self, model):
        self.pairs = [(param, param.detach().clone()) for name, param in model.named_parameters()
                      if ".default." in name]
        if not self.pairs:
            raise RuntimeError("the model has no adapter named 'default' to take the KL reference from")

    def _swap(self) -> None:
        import torch

        with torch.no_grad():
            for param, stash in self.pairs:
                policy = param.detach().clone()
                param.copy_(stash)
                stash.copy_(policy)

    @contextlib.contextmanager
    def __call__(self, *args, **kwargs):
        self._swap()  # the primed values in "default"
        try:
            yield
        finally:
            self._swap()  # the policy's values back


def train(trainer, controls: Controls, resume_from: str | None) -> None:
    """Train to MAX_STEPS (or from a checkpoint). Ctrl-C or SIGTERM finishes the step and saves a
    checkpoint; a NaN or inf trips controls.guard, and the caller saves nothing."""
    import torch

    if resume_from:
        print(f"resuming from {resume_from} (step {checkpoint_step(resume_from)})")
        if world_size() > 1 and not torch.cuda.is_available():  # CPU data parallelism (gloo)
            # transformers loads the optimizer state onto args.device, which is "cpu:0" there, a place
            # torch.load does not know; storage on the CPU needs no moving at all
            torch.serialization.register_package(
                5, lambda storage: None, lambda storage, where: storage if str(where).startswith("cpu") else None
            )
    controls.stop.install()
    try:
        trainer.train(resume_from_checkpoint=resume_from)
    except RuntimeError as e:  # overflowing weights show up one step later, as NaN sampling probabilities
        if not health.is_nonfinite_sampling_error(e):
            raise
        controls.guard.trip("the sampling probabilities: inf or NaN logits", trainer.state.global_step + 1)
