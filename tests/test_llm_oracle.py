"""The LLM oracle on tiny random Llamas: cached reference log-probs, the policy starting at the
reference, gradients against finite differences, the algorithms running unchanged (FedDPO with
E=1, S=N equals centralized; DecDPO on the complete graph averages exactly), and learning a toy
preference."""

import math
import types

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("peft")

from llm.dpo import sequence_logps  # noqa: E402
from llm.model import (add_lora, load_model, set_trainable_vector, tiny_llama,  # noqa: E402
                       trainable_vector)
from llm.oracle import LLMOracle  # noqa: E402
from theory_lab.algorithms import make_algorithm  # noqa: E402
from theory_lab.communicator import InProcessCommunicator  # noqa: E402
from theory_lab.config import AlgorithmConfig  # noqa: E402
from theory_lab.errors import ConfigError  # noqa: E402
from theory_lab.topology import TopologyConfig, make_topology  # noqa: E402

from llm.data import TokenizedPairs  # noqa: E402

VOCAB = 32
A, B, MARKER = 5, 6, 4  # toy preference: chosen responses end with A, rejected with B


def make_pairs(gen, n, T=12, toy=False):
    """n random pairs, right-padded: a prompt (2-4 tokens) then a response. Random: chosen and
    rejected responses are independent (2-6 tokens). `toy`: both share a random body ending with
    a marker token, then the chosen response ends with A and the rejected one with B."""
    ids = torch.full((2 * n, T), 2, dtype=torch.long)
    att = torch.zeros(2 * n, T, dtype=torch.long)
    resp = torch.zeros(2 * n, T, dtype=torch.bool)

    def rand(k):
        return torch.randint(7, VOCAB, (k,), generator=gen)

    def length():
        return int(torch.randint(2, 7, (1,), generator=gen))

    for j in range(n):
        prompt = rand(int(torch.randint(2, 5, (1,), generator=gen)))
        body = torch.cat([rand(length() - 1), torch.tensor([MARKER])])
        for row, last in ((j, A), (n + j, B)):
            response = torch.cat([body, torch.tensor([last])]) if toy else rand(length())
            seq = torch.cat([prompt, response])
            ids[row, : len(seq)], att[row, : len(seq)] = seq, 1
            resp[row, len(prompt): len(seq)] = True
    return TokenizedPairs(ids, att, resp, n)


def _rms_norm_in_input_dtype(self, x):
    return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))


def full_float64(model):
    """HF's LlamaRMSNorm computes in float32 whatever the input dtype, which puts float32 noise
    (~1e-8 relative) into a float64 model and spoils finite differences: normalise in float64."""
    for mod in model.modules():
        if type(mod).__name__ == "LlamaRMSNorm":
            mod.forward = types.MethodType(_rms_norm_in_input_dtype, mod)
    return model


def make_oracle(dtype=torch.float64, sizes=(6, 4, 5), heldout=4, toy=False, beta=0.5, eval_bs=4,
                loss_type="sigmoid"):
    gen = torch.Generator().manual_seed(11)
    base = tiny_llama(VOCAB, dtype, seed=3)
    if dtype == torch.float64:
        full_float64(base)
    model = add_lora(base, r=4, alpha=8.0, dropout=0.0, target_modules=["q_proj", "v_proj"], seed=0)
    train = [make_pairs(gen, n, toy=toy) for n in sizes]
    held = [make_pairs(gen, heldout, toy=toy) for _ in sizes]
    return LLMOracle(model, train, held, beta, loss_type, eval_bs, "cpu")


@pytest.fixture(scope="module")
def oracle():
    return make_oracle()


def perturbed(oracle, scale=0.3, seed=0):
    """A parameter row with B != 0 (at the init B = 0 and the A-gradients vanish)."""
    g = torch.Generator().manual_seed(seed)
    theta = oracle.init_params()
    return theta + scale * torch.randn(theta.shape, generator=g, dtype=theta.dtype)


# ----------------------------------------------------------------------------- model helpers

def test_tiny_model_and_lora_are_deterministic_and_leave_global_rng_alone():
    state = torch.random.get_rng_state()
    m1, tok = load_model("tiny", "float32", "cpu")
    p1 = add_lora(m1, 4, 8.0, 0.0, ["q_proj", "v_proj"], seed=0)
    p2 = add_lora(tiny_llama(len(tok), torch.float32), 4, 8.0, 0.0, ["q_proj", "v_proj"], seed=0)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(trainable_vector(p1), trainable_vector(p2))
    assert all(torch.equal(a, b) for a, b in zip(p1.state_dict().values(), p2.state_dict().values()))
    assert tok.decode(tok("a b").input_ids) == "a b" and tok.pad_token is not None
    v = trainable_vector(p1)
    set_trainable_vector(p1, 2 * v)
    assert torch.equal(trainable_vector(p1), 2 * v)
    with pytest.raises(ValueError):
        set_trainable_vector(p1, v[:-1])


def test_model_errors_name_the_field():
    with pytest.raises(ConfigError, match=r"llm\.target_modules.*q_proj"):
        add_lora(tiny_llama(VOCAB), 4, 8.0, 0.0, ["qkv"])
    with pytest.raises(ConfigError, match=r"llm\.model"):
        load_model("no-such-org/no-such-model-anywhere", "float32", "cpu")
    with pytest.raises(ConfigError, match=r"llm\.model"):
        load_model("/nonexistent/model.gguf", "float32", "cpu")


# ----------------------------------------------------------------------------- the oracle

def test_shapes_weights_and_batches(oracle):
    assert (oracle.n_seeds, oracle.n_clients) == (1, 3) and oracle.smoothness is None
    assert oracle.dtype == torch.float64 and oracle.init_params().shape == (1, oracle.dim)
    torch.testing.assert_close(oracle.weights, torch.tensor([[6, 4, 5]], dtype=torch.float64) / 15)
    assert oracle.sample_batch(torch.Generator().manual_seed(0), 0) is None
    b = oracle.sample_batch(torch.Generator().manual_seed(0), 50)
    assert b.shape == (1, 3, 50) and b.min() == 0
    assert [int(b[0, i].max()) for i in range(3)] == [5, 3, 4]


def test_cached_reference_equals_fresh(oracle):
    set_trainable_vector(oracle.model, perturbed(oracle)[0])  # adapters active and non-zero
    model = oracle.model
    for tps, cache in ((oracle.train, oracle.ref_train), (oracle.heldout, oracle.ref_heldout)):
        for tp, ref in zip(tps, cache):
            with torch.no_grad():
                with model.disable_adapter():
                    fresh = sequence_logps(model, tp.input_ids, tp.attention_mask, tp.response_mask)
                policy = sequence_logps(model, tp.input_ids, tp.attention_mask, tp.response_mask)
            n = tp.n_pairs
            torch.testing.assert_close(ref[:, 0], fresh[:n], rtol=1e-10, atol=1e-10)
            torch.testing.assert_close(ref[:, 1], fresh[n:], rtol=1e-10, atol=1e-10)
            assert not torch.allclose(policy, fresh)  # the adapters do change the policy


def test_policy_starts_at_the_reference(oracle):
    theta0 = oracle.init_params()
    metrics = oracle.evaluate(theta0)
    per_client = {f"eval_pref_acc_client{i}" for i in range(oracle.n_clients)}
    assert set(metrics) == {"train_loss", "grad_norm_sq", "eval_pref_acc", "reward_margin", *per_client}
    assert all(v.shape == (1,) for v in metrics.values())
    set_trainable_vector(oracle.model, theta0[0])
    for tp, ref in zip(oracle.heldout + oracle.train, oracle.ref_heldout + oracle.ref_train):
        assert oracle._margins(tp, ref).abs().max() < 1e-12
    assert abs(float(metrics["reward_margin"])) < 1e-12
    assert float(metrics["train_loss"]) == pytest.approx(0.6931471805599453, abs=1e-12)  # -log σ(0)
    assert math.isnan(float(metrics["eval_pref_acc"]))   # every margin is 0: nothing measured
    assert float(metrics["grad_norm_sq"]) > 0  # B = 0 but dL/dB != 0


@pytest.mark.parametrize("exact", [False, True])
def test_grad_matches_finite_differences(oracle, exact):
    X = torch.cat([perturbed(oracle, seed=s) for s in range(3)]).unsqueeze(0)   # [1, 3, P]
    clients = torch.tensor([[2, 0, 1]])
    batch = None if exact else oracle.sample_batch(torch.Generator().manual_seed(4), 3)
    G = oracle.grad(X, clients, batch)
    assert G.shape == X.shape and G.dtype == X.dtype
    g = torch.Generator().manual_seed(9)
    V = torch.randn(X.shape, generator=g, dtype=X.dtype)
    V = V / V.norm(dim=-1, keepdim=True)
    eps = 1e-5
    fd = (oracle.loss(X + eps * V, clients, batch) - oracle.loss(X - eps * V, clients, batch)) / (2 * eps)
    torch.testing.assert_close((G * V).sum(-1), fd, rtol=1e-6, atol=1e-9)
    # rows are independent of which other clients are asked for
    G_all = oracle.grad(X[:, [1, 2, 0]], None, batch)
    torch.testing.assert_close(G_all[:, [2, 0, 1]], G, rtol=1e-12, atol=1e-14)


def test_exact_gradient_is_the_mean_over_all_pairs(oracle):
    """batch=None (chunks of eval_batch_size, weighted) equals the batch holding every pair once."""
    X = perturbed(oracle).unsqueeze(1).expand(-1, 3, -1)
    every = torch.stack([torch.arange(6), torch.arange(6) % 4, torch.arange(6) % 5]).unsqueeze(0)
    G_exact = oracle.grad(X, None, None)
    G_batch = oracle.grad(X, None, every)
    # client 0: each of its 6 pairs once (exact: chunks of 4 + 2)
    torch.testing.assert_close(G_exact[:, 0], G_batch[:, 0], rtol=1e-10, atol=1e-12)


def test_evaluate_grad_is_the_weighted_global_gradient(oracle):
    theta = perturbed(oracle, seed=5)
    metrics = oracle.evaluate(theta)
    X = theta.unsqueeze(1).expand(-1, 3, -1)
    eval_batch = torch.stack([torch.arange(4), torch.arange(4), torch.arange(4)]).unsqueeze(0)
    G = oracle.grad(X, None, eval_batch)    # the first eval_batch_size = 4 pairs of each client
    L = oracle.loss(X, None, eval_batch)
    g = (oracle.weights.unsqueeze(-1) * G).sum(1)
    assert float(metrics["grad_norm_sq"]) == pytest.approx(float(g.pow(2).sum()), rel=1e-10)
    assert float(metrics["train_loss"]) == pytest.approx(float((oracle.weights * L).sum()), rel=1e-10)
    acc = oracle.client_accuracy(theta)
    assert acc.shape == (3,)
    assert float(metrics["eval_pref_acc"]) == pytest.approx(float((oracle.weights[0] * acc).sum()), rel=1e-12)


def _run(oracle, name, rounds, topology=None, **kw):
    cfg = AlgorithmConfig(name=name, **kw)
    cfg.validate()
    alg = make_algorithm(cfg, oracle, InProcessCommunicator(), torch.Generator().manual_seed(0), rounds, topology)
    for r in range(rounds):
        alg.round(r)
    return alg


def test_feddpo_full_participation_equals_centralized(oracle):
    kw = dict(local_steps=1, batch_size=2, lr=1.0)
    fed = _run(oracle, "feddpo", 3, **kw).model()
    central = _run(oracle, "centralized", 3, **kw).model()
    assert (fed - oracle.init_params()).norm() > 1e-3   # it moved
    torch.testing.assert_close(fed, central, rtol=1e-10, atol=1e-12)


def test_decdpo_complete_graph_averages_adapters_exactly(oracle):
    topo = make_topology(TopologyConfig(name="complete"), oracle.n_clients)
    alg = _run(oracle, "decdpo", 1, topology=topo, local_steps=2, batch_size=2, lr=1.0)
    X = alg.client_params()
    mean = X.mean(1, keepdim=True)
    assert (X[0, 0] - oracle.init_params()[0]).norm() > 1e-3
    torch.testing.assert_close(X, mean.expand_as(X), rtol=1e-12, atol=1e-14)


def test_toy_preference_is_learned():
    """Chosen responses end with token A, rejected with B: held-out accuracy goes from unmeasured
    (NaN: policy = reference, every margin is 0) to >= 0.9 with centralized AdamW on the oracle."""
    o = make_oracle(torch.float32, sizes=(16, 16), heldout=16, toy=True, beta=0.5, eval_bs=16)
    before = o.evaluate(o.init_params())
    alg = _run(o, "centralized", 20, batch_size=4, lr=0.05, optimizer="adamw")
    after = o.evaluate(alg.model())
    assert math.isnan(float(before["eval_pref_acc"]))
    assert float(after["eval_pref_acc"]) >= 0.9, after
    assert float(after["train_loss"]) < float(before["train_loss"])
    assert float(after["reward_margin"]) > 0


def test_build_llm_oracle_from_config(tmp_path):
    """LLMConfig -> data per client (llm.data), the tiny model with LoRA, the oracle."""
    data = pytest.importorskip("llm.data")
    if not hasattr(data, "client_data"):
        pytest.skip("llm.data.client_data not available")
    import json

    from llm.config import LLMConfig
    from llm.oracle import build_llm_oracle

    with open(tmp_path / "pairs.jsonl", "w") as f:
        for i in range(12):
            f.write(json.dumps({"prompt": f"Question {i}: say yes?", "chosen": " yes" * (1 + i % 3),
                                "rejected": f" no {i}", "group": f"g{i % 2}"}) + "\n")
    cfg = LLMConfig(model="tiny", data_dir=str(tmp_path), dataset="jsonl:pairs.jsonl", n_clients=2,
                    pairs_per_client=4, heldout_per_client=2, max_length=24, max_prompt_length=12,
                    lora_r=2, eval_batch_size=3, dtype="float32", device="cpu")
    o = build_llm_oracle(cfg)
    assert (o.n_clients, o.dtype) == (2, torch.float32)
    torch.testing.assert_close(o.weights, torch.full((1, 2), 0.5))
    theta0 = o.init_params()
    m = o.evaluate(theta0)
    assert abs(float(m["reward_margin"])) < 1e-6
    assert float(m["train_loss"]) == pytest.approx(0.6931, abs=1e-3)
    G = o.grad(theta0.unsqueeze(1).expand(-1, 2, -1), None, o.sample_batch(torch.Generator().manual_seed(0), 2))
    assert G.shape == (1, 2, o.dim) and torch.isfinite(G).all() and G.abs().sum() > 0
