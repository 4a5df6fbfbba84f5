"""grpo/attention.py: grouped-query attention on the CPU without copying the key/value heads, used
while sampling. It must give transformers' `sdpa` numbers on padded batches, really take the
shared-heads path, and put the model's attention back after."""

import pytest
from grpo import data as grpo_data
import torch

from cpu_models import tiny_model
from grpo import attention


@pytest.fixture(scope="module")
def tiny():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model.SHIPPED)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(tiny_model.SHIPPED, dtype=torch.float32)
    assert model.config.num_key_value_heads < model.config.num_attention_heads  # the case this is for
    texts = [row["prompt"] for row in grpo_data.read_jsonl(grpo_data.BUNDLED_PROBLEMS)[:4]]
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    assert batch["attention_mask"].min() == 0  # left padding: a mask reaches the attention
    return model, batch


def forward_and_grads(model, batch):
    model.zero_grad()
    logits = model(**batch).logits
    logits.log_softmax(-1)[..., 0].mul(batch["attention_mask"]).sum().backward()
    return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_same_logits_and_gradients_as_sdpa_on_a_padded_batch(tiny, monkeypatch):
    model, batch = tiny
    assert model.config._attn_implementation == "sdpa"
    logits, grads = forward_and_grads(model, batch)
    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention",
                        lambda *a, **kw: calls.append(kw.get("enable_gqa")) or sdpa(*a, **kw))
    with attention.gqa_on_cpu(model):
        assert model.config._attn_implementation == attention.NAME
        logits_gqa, grads_gqa = forward_and_grads(model, batch)
    assert model.config._attn_implementation == "sdpa"
    assert calls and all(calls)  # every layer read the shared heads in place, none fell back to copying
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(logits_gqa[real], logits[real], rtol=1e-5, atol=1e-5)
    assert grads_gqa.keys() == grads.keys()
    for name in grads:
        # A weight's gradient sums terms up to ~100 in size; summed in another order (the shared heads'
        # gradients added inside sdpa, not through repeat_kv's backward) an element near 0 can differ by
        # a few 1e-5 on some CPUs. So the absolute tolerance scales with the tensor.
        scale = grads[name].abs().max().item()
        torch.testing.assert_close(grads_gqa[name], grads[name], rtol=1e-4, atol=max(1e-5, 2e-6 * scale), msg=name)


def test_attention_is_put_back_after_an_error_and_other_attentions_are_left_alone(tiny):
    model, _ = tiny
    with pytest.raises(RuntimeError), attention.gqa_on_cpu(model):
        raise RuntimeError("inside the block")
    assert model.config._attn_implementation == "sdpa"
    model.set_attn_implementation("eager")
    try:
        with attention.gqa_on_cpu(model):
            assert model.config._attn_implementation == "eager"
    finally:
        model.set_attn_implementation("sdpa")


def test_a_peft_wrapped_model_is_switched_inside(tiny):
    from peft import LoraConfig, get_peft_model

    model, batch = tiny
    wrapped = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    try:
        with torch.no_grad():
            before = wrapped(**batch).logits
            with attention.gqa_on_cpu(wrapped):
                assert wrapped.get_base_model().config._attn_implementation == attention.NAME
                during = wrapped(**batch).logits
        assert wrapped.get_base_model().config._attn_implementation == "sdpa"
        real = batch["attention_mask"].bool()
        torch.testing.assert_close(during[real], before[real], rtol=1e-5, atol=1e-5)
    finally:
        wrapped.unload()
