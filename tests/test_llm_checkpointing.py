"""Gradient (activation) checkpointing on the LLM track (llm.gradient_checkpointing): exact, and it
really holds less: the same gradients to 1e-10 in float64, sequential, client-batched and FedPDPO,
while the forward saves a fraction of the tensors for the backward and the layers run twice."""

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("peft")

from llm.config import LLMConfig  # noqa: E402
from llm.personal import PersonalConfig  # noqa: E402
from tests.test_llm_batched import TOL, oracle, rows  # noqa: E402
from theory_lab.config import build_config  # noqa: E402
from theory_lab.errors import ConfigError  # noqa: E402


def saved_bytes_and_attention_calls(o, X, batch) -> tuple[int, int, torch.Tensor]:
    """(bytes the autograd graph saved during o.grad, calls of the first layer's attention, gradient):
    a pre-hook, since a recompute stops once it has every tensor the backward needs."""
    saved, calls = [0], [0]

    def pack(t):
        saved[0] += t.numel() * t.element_size()
        return t

    attn = next(m for name, m in o.model.named_modules() if name.endswith("layers.0.self_attn"))
    handle = attn.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        g = o.grad(X, None, batch)
    handle.remove()
    return saved[0], calls[0], g


@pytest.mark.parametrize("mode", ["off", "on"], ids=["sequential", "client-batched"])
def test_checkpointed_gradients_are_exact_and_save_less(mode):
    plain = oracle(mode, prefix_sharing="off")
    ckpt = oracle(mode, gradient_checkpointing=True)
    assert not ckpt.prefix_sharing   # "auto" turns prefix sharing off: its KV cache cannot be recomputed
    X = rows(plain)
    batch = plain.sample_batch(torch.Generator().manual_seed(4), 3)
    bytes_plain, calls_plain, g_plain = saved_bytes_and_attention_calls(plain, X, batch)
    bytes_ckpt, calls_ckpt, g_ckpt = saved_bytes_and_attention_calls(ckpt, X, batch)
    torch.testing.assert_close(g_ckpt, g_plain, **TOL)
    assert (g_plain.abs().sum(-1) > 0).all()
    assert calls_ckpt == 2 * calls_plain            # each layer's forward, then its recompute in the backward
    assert bytes_ckpt < 0.5 * bytes_plain, (bytes_ckpt, bytes_plain)
    torch.testing.assert_close(ckpt.loss(X, None, batch), plain.loss(X, None, batch), **TOL)


def test_checkpointed_fedpdpo_is_exact():
    personal = lambda: PersonalConfig(enabled=True, lr=0.05)   # noqa: E731
    plain = oracle("on", sizes=(5, 5, 5), personal=personal(), prefix_sharing="off")
    ckpt = oracle("on", sizes=(5, 5, 5), personal=personal(), gradient_checkpointing=True)
    X = rows(plain)
    batch = plain.sample_batch(torch.Generator().manual_seed(4), 3)
    torch.testing.assert_close(ckpt.local_step(X, None, batch), plain.local_step(X, None, batch), **TOL)
    torch.testing.assert_close(ckpt.personal, plain.personal, **TOL)


def test_checkpointing_with_prefix_sharing_on_is_refused():
    with pytest.raises(ConfigError, match="llm.gradient_checkpointing"):
        oracle("off", prefix_sharing="on", gradient_checkpointing=True)
    with pytest.raises(ConfigError, match="llm.gradient_checkpointing"):
        LLMConfig(prefix_sharing="on", gradient_checkpointing=True).validate()
    LLMConfig(gradient_checkpointing=True).validate()
    with pytest.raises(ConfigError, match="llm.gradient_checkpointing"):
        build_config({"track": "llm"}, ["llm.gradient_checkpointing=yes"])
    assert build_config({"track": "llm"}, ["llm.gradient_checkpointing=true"]).llm.gradient_checkpointing is True
