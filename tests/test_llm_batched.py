"""The LLM oracle at scale, kept exact: the chunked LM head (log-probs at response positions only)
equals the full-logits path, and client-batched LoRA (llm.batched: all clients' rows in one
forward/backward with stacked adapters) equals the sequential oracle, float64, to 1e-10."""

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("peft")

import llm.dpo  # noqa: E402
from llm.dpo import sequence_logps, shared_prompt_logps  # noqa: E402
from llm.model import add_lora, tiny_llama  # noqa: E402
from tests.test_llm_oracle import VOCAB, full_float64, make_pairs  # noqa: E402

TOL = dict(rtol=1e-10, atol=1e-10)


def lora_model(dtype=torch.float64, vocab=VOCAB):
    base = tiny_llama(vocab, dtype, seed=3)
    if dtype == torch.float64:
        full_float64(base)
    model = add_lora(base, r=4, alpha=8.0, dropout=0.0, target_modules=["q_proj", "v_proj"], seed=0)
    with torch.no_grad():   # B != 0: the adapters change the policy
        for name, p in model.named_parameters():
            if ".lora_B." in name:
                p.copy_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(len(name)), dtype=dtype))
    return model


def _params(model):
    return [p for p in model.parameters() if p.requires_grad]


# ----------------------------------------------------------------------------- the chunked LM head

@pytest.mark.parametrize("fn", [sequence_logps, lambda m, *rows: torch.cat(shared_prompt_logps(m, *rows))],
                         ids=["full-rows", "prefix-shared"])
def test_chunked_head_equals_the_full_logits_path(fn, monkeypatch):
    """Values and LoRA gradients of the response-positions-only head (several chunks) against the
    logits over every position (PLAIN_HEAD emptied: the path every model took before)."""
    model = lora_model(vocab=300)
    tp = make_pairs(torch.Generator().manual_seed(5), 6, T=14)
    rows = (tp.input_ids, tp.attention_mask, tp.response_mask)
    w = torch.linspace(0.5, 1.5, 12, dtype=torch.float64)
    monkeypatch.setattr(llm.dpo, "HEAD_CHUNK_BYTES", 4 * 300 * 7)    # 7 tokens a chunk: several chunks
    assert llm.dpo.body_and_head(model) is not None
    got = fn(model, *rows)
    g_got = torch.autograd.grad((w * got).sum(), _params(model))
    monkeypatch.setattr(llm.dpo, "PLAIN_HEAD", ())
    assert llm.dpo.body_and_head(model) is None
    ref = fn(model, *rows)
    g_ref = torch.autograd.grad((w * ref).sum(), _params(model))
    torch.testing.assert_close(got, ref, **TOL)
    for a, b in zip(g_got, g_ref):
        torch.testing.assert_close(a, b, **TOL)
    assert all(g.abs().sum() > 0 for g in g_got)


def test_chunked_head_in_bfloat16_is_close_to_the_logits_path(monkeypatch):
    model = lora_model(torch.bfloat16, vocab=300)
    tp = make_pairs(torch.Generator().manual_seed(5), 6, T=14)
    rows = (tp.input_ids, tp.attention_mask, tp.response_mask)
    got = sequence_logps(model, *rows)
    g_got = torch.autograd.grad(got.sum(), _params(model))
    monkeypatch.setattr(llm.dpo, "PLAIN_HEAD", ())
    ref = sequence_logps(model, *rows)
    g_ref = torch.autograd.grad(ref.sum(), _params(model))
    assert got.dtype == ref.dtype == torch.float32
    torch.testing.assert_close(got, ref, rtol=1e-2, atol=1e-2)
    for a, b in zip(g_got, g_ref):
        assert torch.nn.functional.cosine_similarity(a.flatten().double(), b.flatten().double(), 0) > 0.99


def test_trainable_head_takes_the_logits_path():
    model = tiny_llama(VOCAB, torch.float64, seed=3)     # no LoRA: every weight trainable, the head too
    assert llm.dpo.body_and_head(model) is None
