"""The LLM oracle at scale, kept exact: the chunked LM head (log-probs at response positions only)
equals the full-logits path, and client-batched LoRA (llm.batched: all clients' rows in one
forward/backward with stacked adapters) equals the sequential oracle, float64, to 1e-10."""

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("peft")

import llm.dpo  # noqa: E402
from llm.config import LLMConfig  # noqa: E402
from llm.dpo import sequence_logps, shared_prompt_logps  # noqa: E402
from llm.fedpdpo import FedPDPOOracle  # noqa: E402
from llm.model import add_lora, tiny_llama  # noqa: E402
from llm.oracle import LLMOracle  # noqa: E402
from llm.personal import PersonalConfig  # noqa: E402
from tests.test_distributed import ROOT, torchrun, why  # noqa: E402
from tests.test_llm_oracle import VOCAB, full_float64, make_pairs  # noqa: E402
from theory_lab.algorithms import make_algorithm  # noqa: E402
from theory_lab.cli import main  # noqa: E402
from theory_lab.communicator import InProcessCommunicator  # noqa: E402
from theory_lab.config import AlgorithmConfig  # noqa: E402
from theory_lab.errors import ConfigError  # noqa: E402
from theory_lab.topology import TopologyConfig, make_topology  # noqa: E402

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


# ----------------------------------------------------------------------------- client-batched LoRA

def oracle(mode, sizes=(6, 4, 5), max_rows=256, personal=None, dtype=torch.float64, **kw):
    gen = torch.Generator().manual_seed(11)
    base = tiny_llama(VOCAB, dtype, seed=3)
    if dtype == torch.float64:
        full_float64(base)
    model = add_lora(base, r=4, alpha=8.0, dropout=0.0, target_modules=["q_proj", "v_proj"], seed=0)
    train = [make_pairs(gen, n, T=12 + i) for i, n in enumerate(sizes)]   # different widths: padded when stacked
    held = [make_pairs(gen, 4) for _ in sizes]
    if personal is not None:
        return FedPDPOOracle(model, train, held, 0.5, personal, "sigmoid", 4, "cpu", seed=0,
                             client_batching=mode, max_rows_per_forward=max_rows, **kw)
    return LLMOracle(model, train, held, 0.5, "sigmoid", 4, "cpu", client_batching=mode, max_rows_per_forward=max_rows,
                     **kw)


def rows(o, clients=None, seed=2):
    K = o.n_clients if clients is None else clients.shape[1]
    X = o.init_params().unsqueeze(1).repeat(1, K, 1)
    return X + 0.05 * torch.randn(X.shape, generator=torch.Generator().manual_seed(seed), dtype=X.dtype)


def _spy_forwards(o):
    calls = []
    handle = o.model.get_input_embeddings().register_forward_hook(lambda m, i, out: calls.append(tuple(i[0].shape)))
    return calls, handle


@pytest.mark.parametrize("max_rows", [256, 6, 2], ids=["one-forward", "two-clients-a-forward", "one-pair-a-forward"])
@pytest.mark.parametrize("clients", [None, [[2, 0]], [[1]]], ids=["all", "partial", "one"])
def test_batched_gradients_equal_the_sequential_oracle(clients, max_rows):
    seq, bat = oracle("off"), oracle("on", max_rows=max_rows)
    clients = None if clients is None else torch.tensor(clients)
    X = rows(seq, clients)
    batch = seq.sample_batch(torch.Generator().manual_seed(4), 3)
    calls, handle = _spy_forwards(bat)
    g_bat = bat.grad(X, clients, batch)
    handle.remove()
    g_seq = seq.grad(X, clients, batch)
    torch.testing.assert_close(g_bat, g_seq, **TOL)
    assert (g_seq.abs().sum(-1) > 0).all()
    K = X.shape[1]
    if max_rows == 256:   # every client in one prefix-shared forward pair (prompts, then responses)
        assert [c[0] for c in calls] == [K * 3, 2 * K * 3]
    assert all(c[0] <= max_rows for c in calls)
    torch.testing.assert_close(bat.loss(X, clients, batch), seq.loss(X, clients, batch), **TOL)


@pytest.mark.parametrize("mode", ["off", "on"])
def test_full_rows_without_prefix_sharing_give_the_same_gradients(mode):
    """llm.prefix_sharing = off (what "auto" picks on a GPU): full rows, one forward, same values."""
    shared, full = oracle("off"), oracle(mode, prefix_sharing="off")
    assert shared.prefix_sharing and not full.prefix_sharing
    X = rows(shared)
    batch = shared.sample_batch(torch.Generator().manual_seed(4), 3)
    calls, handle = _spy_forwards(full)
    g_full = full.grad(X, None, batch)
    handle.remove()
    torch.testing.assert_close(g_full, shared.grad(X, None, batch), **TOL)
    assert [c[0] for c in calls] == ([2 * 3 * 3] if mode == "on" else [6, 6, 6])


def test_batches_only_what_it_can():
    """"on" batches equal minibatches; full data (6, 4, 5 pairs) runs one client at a time;
    "auto" on the CPU runs one client at a time (slower batched there: docs/benchmarks.md)."""
    for mode, forwards in (("on", 2), ("auto", 6)):
        o = oracle(mode)
        X = rows(o)
        calls, handle = _spy_forwards(o)
        o.grad(X, None, o.sample_batch(torch.Generator().manual_seed(4), 2))
        assert len(calls) == forwards, mode        # three clients: one prefix-shared forward pair, or one each
        calls.clear()
        o.grad(X, None, None)
        assert len(calls) == 10, mode              # 6, 4, 5 pairs in eval-size chunks of 4: 5 forward pairs
        handle.remove()


ALGORITHMS = {
    "feddpo-full": dict(name="feddpo", local_steps=2, optimizer="adamw"),
    "feddpo-partial-stale": dict(name="feddpo", local_steps=2, participation=2, q_max=2, optimizer="adamw"),
    "decdpo": dict(name="decdpo", local_steps=2),
    "scaffold": dict(name="scaffold", local_steps=2, participation=2),
    "gradient-tracking": dict(name="gradient_tracking"),
    "feddpo-lora-ffa": dict(name="feddpo", local_steps=2, participation=2, lora_aggregation="ffa"),
}


def _run(o, spec, rounds=3):
    cfg = AlgorithmConfig(**{"batch_size": 2, "lr": 0.05, **spec})
    cfg.validate()
    topology = make_topology(TopologyConfig(name="ring"), o.n_clients) if cfg.decentralized else None
    alg = make_algorithm(cfg, o, InProcessCommunicator(), torch.Generator().manual_seed(0), rounds, topology)
    infos = [alg.round(r) for r in range(rounds)]
    return alg, infos


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_algorithms_run_the_same_batched(name):
    """Whole runs: every state tensor of the algorithm (models, optimizer and control variates,
    stale starts) equal to 1e-10 after three rounds, batched against sequential."""
    (a_seq, i_seq), (a_bat, i_bat) = (_run(oracle(mode, sizes=(5, 5, 5, 5)), ALGORITHMS[name]) for mode in ("off", "on"))
    s_seq, s_bat = a_seq.state_dict(), a_bat.state_dict()
    assert s_seq.keys() == s_bat.keys()
    for k in s_seq:
        if torch.is_tensor(s_seq[k]) and s_seq[k].is_floating_point():
            torch.testing.assert_close(s_bat[k], s_seq[k], **TOL, msg=k)
    moved = [k for k in s_seq if torch.is_tensor(s_seq[k]) and s_seq[k].is_floating_point() and s_seq[k].abs().sum() > 0]
    assert moved
    m_seq, m_bat = (a.oracle.evaluate(a.model()) for a in (a_seq, a_bat))
    for k in m_seq:
        torch.testing.assert_close(m_bat[k], m_seq[k], **TOL, equal_nan=True, msg=k)


def test_client_batching_config_is_read_and_checked():
    with pytest.raises(ConfigError, match="llm.client_batching"):
        oracle("sometimes")
    with pytest.raises(ConfigError, match="llm.max_rows_per_forward"):
        oracle("on", max_rows=1)
    cfg = LLMConfig(client_batching="never")
    with pytest.raises(ConfigError, match="llm.client_batching"):
        cfg.validate()
    with pytest.raises(ConfigError, match="llm.prefix_sharing"):
        oracle("on", prefix_sharing="maybe")
    with pytest.raises(ConfigError, match="llm.prefix_sharing"):
        LLMConfig(prefix_sharing="maybe").validate()


# ----------------------------------------------------------------------------- FedPDPO's personal modules

PERSONAL = {
    "all-modules": dict(),
    "last-token-reward": dict(reward_pool="last", reward_weight=0.5),
    "local-only": dict(share_lora=False),
    "no-personal-head": dict(personal_head=False, bottleneck=False),
}


@pytest.mark.parametrize("variant", list(PERSONAL))
def test_fedpdpo_batched_equals_sequential(variant):
    """FedPDPO's stacked personal modules: gradients, the personal AdamW steps they drive, and two
    rounds of partial-participation FedDPO, against one client at a time."""
    personal = lambda: PersonalConfig(enabled=True, lr=0.05, **PERSONAL[variant])   # noqa: E731
    seq, bat = oracle("off", sizes=(5, 5, 5), personal=personal()), oracle("on", sizes=(5, 5, 5), personal=personal())
    X = rows(seq) if seq.dim else seq.init_params().unsqueeze(1).repeat(1, 3, 1)
    batch = seq.sample_batch(torch.Generator().manual_seed(4), 3)
    torch.testing.assert_close(bat.grad(X, None, batch), seq.grad(X, None, batch), **TOL)
    torch.testing.assert_close(bat.local_step(X, None, batch), seq.local_step(X, None, batch), **TOL)
    torch.testing.assert_close(bat.personal, seq.personal, **TOL)
    assert not torch.equal(bat.personal[0], bat.personal[1])        # the personal steps ran
    torch.testing.assert_close(bat.loss(X, None, batch), seq.loss(X, None, batch), **TOL)
    (a_seq, _), (a_bat, _) = (_run(o, dict(name="feddpo", local_steps=2, participation=2, optimizer="adamw"), 2)
                              for o in (seq, bat))
    for k, v in a_seq.state_dict().items():
        if torch.is_tensor(v) and v.is_floating_point():
            torch.testing.assert_close(a_bat.state_dict()[k], v, **TOL, msg=k)
    for k, v in seq.state_dict().items():
        torch.testing.assert_close(bat.state_dict()[k], v, **TOL, msg=k)


# ----------------------------------------------------------------------------- whole runs

RUN = """track = "llm"
[run]
rounds = 3
[llm]
model = "tiny"
data_dir = "{data}"
dataset = "imdb-cad"
n_clients = 4
pairs_per_client = 6
heldout_per_client = 4
max_length = 40
max_prompt_length = 12
eval_batch_size = 4
client_batching = "{mode}"
[algorithm]
name = "{name}"
local_steps = 2
batch_size = 2
participation = {participation}
lr = 0.05
[topology]
name = "ring"
"""
DATA = ROOT.parent / "shared" / "data"
TABLE = ["train_loss", "grad_norm_sq", "eval_pref_acc", "reward_margin", "comm_bytes"]


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data is not beside the checkout")
@pytest.mark.parametrize("name,participation", [("feddpo", 3), ("decdpo", 0)])
def test_short_run_table_is_the_same_batched(tmp_path, name, participation):
    """The CLI's results table, client batching on and off (float32 tiny model: equal to float32
    rounding). DecDPO also runs on two gloo ranks, each batching its own clients."""
    tables = {}
    for mode in ("off", "on"):
        cfg = tmp_path / f"{mode}.toml"
        cfg.write_text(RUN.format(data=DATA, mode=mode, name=name, participation=participation))
        assert main(["llm", "--config", str(cfg), "--out", str(tmp_path / mode), "--quiet"]) == 0
        tables[mode] = pd.read_csv(tmp_path / mode / "results.csv")
    if name == "decdpo":
        done = torchrun(2, ["llm", "--config", str(tmp_path / "on.toml"), "--out", str(tmp_path / "ranks")])
        assert done.returncode == 0, why(done)
        tables["ranks"] = pd.read_csv(tmp_path / "ranks" / "results.csv")
    for mode, table in tables.items():
        for m in TABLE:
            np.testing.assert_allclose(table[m], tables["off"][m], rtol=2e-5, atol=1e-6, err_msg=f"{mode} {m}")
