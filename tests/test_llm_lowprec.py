"""bf16 and fp16 on the CPU: the LLM oracles (FedDPO, DecDPO, FedPDPO with every personal module)
run a backbone in half precision without dtype mismatches, and their losses and gradients are
finite, of the parameter stack's dtype, and close to the float32 ones. What a CUDA bf16 run does,
caught in CI without a GPU (FedPDPO's bottleneck adapter once failed there: "expected scalar type
BFloat16 but found Float")."""

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("peft")

from llm.fedpdpo import FedPDPOOracle  # noqa: E402
from llm.model import add_lora, tiny_llama  # noqa: E402
from llm.oracle import LLMOracle  # noqa: E402
from llm.personal import PersonalConfig  # noqa: E402
from tests.test_llm_oracle import VOCAB, make_pairs  # noqa: E402
from theory_lab.algorithms import make_algorithm  # noqa: E402
from theory_lab.communicator import InProcessCommunicator  # noqa: E402
from theory_lab.config import AlgorithmConfig  # noqa: E402
from theory_lab.topology import TopologyConfig, make_topology  # noqa: E402

HALF = [torch.bfloat16, torch.float16]


def oracle(dtype, personal: bool, batching: str = "off"):
    gen = torch.Generator().manual_seed(11)
    train = [make_pairs(gen, n) for n in (6, 4, 5)]
    held = [make_pairs(gen, 4) for _ in range(3)]
    model = add_lora(tiny_llama(VOCAB, dtype, seed=3), r=4, alpha=8.0, dropout=0.0,
                     target_modules=["q_proj", "v_proj"], seed=0)
    if personal:
        return FedPDPOOracle(model, train, held, 0.5, PersonalConfig(enabled=True, reward_pool="last"),
                             "sigmoid", 4, "cpu", seed=0, client_batching=batching)
    return LLMOracle(model, train, held, 0.5, "sigmoid", 4, "cpu", client_batching=batching)


def rounds(o, name, n=2):
    cfg = AlgorithmConfig(name=name, local_steps=2, batch_size=2, lr=0.05, optimizer="adamw")
    cfg.validate()
    topology = make_topology(TopologyConfig(name="ring"), o.n_clients) if cfg.decentralized else None
    alg = make_algorithm(cfg, o, InProcessCommunicator(), torch.Generator().manual_seed(0), n, topology)
    for r in range(n):
        alg.round(r)
    return alg


@pytest.mark.parametrize("batching", ["off", "on"], ids=["sequential", "client-batched"])
@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("name,personal", [("feddpo", False), ("decdpo", False), ("feddpo", True)],
                         ids=["feddpo", "decdpo", "fedpdpo"])
def test_half_precision_rounds_are_finite(dtype, name, personal, batching):
    o = oracle(dtype, personal, batching)
    assert o.model.get_base_model().lm_head.weight.dtype == dtype   # the backbone really is half precision
    rounds(o, name)
    X = o.init_params().unsqueeze(1).repeat(1, o.n_clients, 1)
    g = o.grad(X, None, o.sample_batch(torch.Generator().manual_seed(1), 2))
    assert g.dtype == X.dtype == o.dtype and torch.isfinite(g).all() and g.abs().sum() > 0
    loss = o.loss(X)
    assert loss.dtype == X.dtype and torch.isfinite(loss).all()
    metrics = o.evaluate(o.init_params())
    assert all(torch.isfinite(v).all() for k, v in metrics.items() if not k.startswith("eval_pref_acc")), metrics
    if personal:
        assert torch.isfinite(o.personal).all() and o.personal.dtype == torch.float32
        assert not torch.equal(o.personal[0], o.personal[1]) or o.n_clients == 1   # the personal steps ran


@pytest.mark.parametrize("batching", ["off", "on"], ids=["sequential", "client-batched"])
@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("personal", [False, True], ids=["plain", "fedpdpo"])
def test_half_precision_gradient_is_close_to_float32(dtype, personal, batching):
    """Same model, same batch: the half-precision gradient points where the float32 (sequential)
    one does."""
    batch = None
    grads = []
    for dt in (torch.float32, dtype):
        o = oracle(dt, personal, batching if dt != torch.float32 else "off")
        X = o.init_params().unsqueeze(1).repeat(1, o.n_clients, 1)
        X[..., :] += 0.01 * torch.randn(X.shape, generator=torch.Generator().manual_seed(2)).to(X)  # B != 0
        batch = o.sample_batch(torch.Generator().manual_seed(1), 3)
        grads.append(o.grad(X, None, batch).double())
    g32, gh = grads
    cos = torch.nn.functional.cosine_similarity(g32[0], gh[0], dim=-1)
    assert (cos > 0.95).all(), cos
