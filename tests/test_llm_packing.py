"""Packed rows (llm/packing.py, llm.packing): the body runs on fewer rows with no padding, and
everything it computes is what the padded batch gives, float64, to 1e-10."""

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("peft")

import llm.dpo  # noqa: E402
from llm.dpo import sequence_logps  # noqa: E402
from llm.packing import pack_rows, row_bucket, unpack  # noqa: E402
from llm.personal import PersonalConfig  # noqa: E402
from tests.test_llm_batched import TOL, _params, _spy_forwards, lora_model, oracle, rows  # noqa: E402
from tests.test_llm_oracle import VOCAB, make_pairs  # noqa: E402
from theory_lab.config import build_config  # noqa: E402
from theory_lab.errors import ConfigError  # noqa: E402


def ragged(gen, n_rows, T, vocab=VOCAB, left=False):
    """Rows of random lengths 1..T, padded on the right (or the left)."""
    lengths = torch.randint(1, T + 1, (n_rows,), generator=gen)
    col = torch.arange(T)
    mask = (col >= T - lengths[:, None]) if left else (col < lengths[:, None])
    ids = torch.where(mask, torch.randint(3, vocab, (n_rows, T), generator=gen), torch.zeros((), dtype=torch.long))
    return ids, mask.long()


@pytest.mark.parametrize("left", [False, True], ids=["right-padded", "left-padded"])
def test_packed_body_gives_the_padded_hidden_states(left):
    model = lora_model()
    body = model.get_base_model().model
    ids, mask = ragged(torch.Generator().manual_seed(1), 9, 16, left=left)
    p = pack_rows(ids, mask)
    assert p.input_ids.shape[0] < 9 and p.input_ids.shape[1] == 16
    assert int(mask.sum()) == len(p.source) and torch.equal(p.input_ids.view(-1)[p.target], ids[mask.bool()])
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    padded = body(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False).last_hidden_state
    packed = unpack(body(input_ids=p.input_ids, position_ids=p.position_ids, use_cache=False).last_hidden_state, p)
    keep = mask.bool()
    torch.testing.assert_close(packed[keep], padded[keep], **TOL)
    assert (packed[~keep] == 0).all()


def test_a_fixed_width_packs_into_bucketed_rows_with_the_same_hidden_states():
    model = lora_model()
    body = model.get_base_model().model
    ids, mask = ragged(torch.Generator().manual_seed(0), 9, 12)
    assert pack_rows(ids, mask).input_ids.shape == (5, 12)
    padded = body(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                  use_cache=False).last_hidden_state
    for width, shape in ((12, (6, 12)), (16, (4, 16))):     # 5 rows bucketed to 6; 50 tokens in 4 rows of 16
        p = pack_rows(ids, mask, width=width)
        assert p.input_ids.shape == shape
        packed = unpack(body(input_ids=p.input_ids, position_ids=p.position_ids, use_cache=False).last_hidden_state, p)
        torch.testing.assert_close(packed[mask.bool()], padded[mask.bool()], **TOL)
    with pytest.raises(ValueError, match="narrower"):
        pack_rows(ids, mask, width=11)


def test_packed_log_probs_and_gradients_equal_the_padded_ones():
    model = lora_model(vocab=300)
    tp = make_pairs(torch.Generator().manual_seed(5), 6, T=14)
    args = (tp.input_ids, tp.attention_mask, tp.response_mask)
    w = torch.linspace(0.5, 1.5, 12, dtype=torch.float64)
    got, ref = sequence_logps(model, *args, packed=True), sequence_logps(model, *args)
    torch.testing.assert_close(got, ref, **TOL)
    for a, b in zip(torch.autograd.grad((w * got).sum(), _params(model)),
                    torch.autograd.grad((w * ref).sum(), _params(model))):
        torch.testing.assert_close(a, b, **TOL)


def spy_packing(monkeypatch) -> list:
    """The `groups` of every pack_rows call the oracles make (None: one group); every plan is made
    in llm.dpo (body_states, pack_window)."""
    calls = []
    monkeypatch.setattr(llm.dpo, "pack_rows", lambda *a, **k: calls.append(k.get("groups")) or pack_rows(*a, **k))
    return calls


@pytest.mark.parametrize("mode", ["off", "on"], ids=["sequential", "client-batched"])
def test_oracle_with_packing_equals_the_padded_oracle(mode, monkeypatch):
    """Gradients, losses and metrics; client-batched forwards pack each client's rows apart."""
    padded, packed = oracle(mode, prefix_sharing="off", packing=False), oracle(mode, prefix_sharing="off")
    assert packed.packing and not padded.packing
    X = rows(padded)
    batch = padded.sample_batch(torch.Generator().manual_seed(4), 3)
    calls = spy_packing(monkeypatch)
    torch.testing.assert_close(packed.grad(X, None, batch), padded.grad(X, None, batch), **TOL)
    # sequential: one packed forward per client; batched: one, each client's 6 rows a group
    assert calls == ([None] * 3 if mode == "off" else [[0, 0, 0, 1, 1, 1, 2, 2, 2] * 2]), calls
    torch.testing.assert_close(packed.loss(X, None, batch), padded.loss(X, None, batch), **TOL)
    theta = X[:, 0]
    for k, v in padded.evaluate(theta).items():
        torch.testing.assert_close(packed.evaluate(theta)[k], v, **TOL, equal_nan=True, msg=k)


def test_packing_setting_is_checked():
    with pytest.raises(ConfigError, match="llm.packing"):
        build_config({"track": "llm"}, ['llm.packing="auto"'])
    assert build_config({"track": "llm"}, ["llm.packing=false"]).llm.execution()["packing"] is False


@pytest.mark.parametrize("mode", ["off", "on"], ids=["sequential", "client-batched"])
@pytest.mark.parametrize("share_lora", [True, False], ids=["shared-lora", "local-only"])
@pytest.mark.parametrize("static", [False, True], ids=["packed", "static-shapes"])
def test_fedpdpo_with_packing_equals_the_padded_oracle(mode, share_lora, static, monkeypatch):
    """FedPDPO's personal modules sit after the body: packing its rows (at their own width or a
    static one) changes no gradient, personal step, loss or metric."""
    def build(**kw):
        personal = PersonalConfig(enabled=True, lr=0.05, share_lora=share_lora)
        return oracle(mode, sizes=(5, 5, 5), personal=personal, **kw)

    padded, packed = build(packing=False), build(static_shapes=static)
    assert packed.packing and not padded.packing
    X = rows(padded) if padded.dim else padded.init_params().unsqueeze(1).repeat(1, 3, 1)
    batch = padded.sample_batch(torch.Generator().manual_seed(4), 3)
    calls = spy_packing(monkeypatch)
    torch.testing.assert_close(packed.local_step(X, None, batch), padded.local_step(X, None, batch), **TOL)
    assert calls == ([None] * 3 if mode == "off" else [[0, 0, 0, 1, 1, 1, 2, 2, 2] * 2]), calls
    torch.testing.assert_close(packed.personal, padded.personal, **TOL)
    assert not torch.equal(packed.personal[0], packed.personal[1])        # the personal steps ran
    torch.testing.assert_close(packed.loss(X, None, batch), padded.loss(X, None, batch), **TOL)
    for k, v in padded.evaluate(X[:, 0]).items():
        torch.testing.assert_close(packed.evaluate(X[:, 0])[k], v, **TOL, equal_nan=True, msg=k)


@pytest.mark.parametrize("mode", ["off", "on"], ids=["sequential", "client-batched"])
def test_static_shapes_equal_the_padded_oracle_in_a_few_shapes(mode):
    """llm.static_shapes: every forward packs into rows of the widest tokenized row's width, their
    count bucketed; the values stay the padded oracle's, and batches of varying lengths share
    shapes that dynamic packing does not."""
    padded = oracle(mode, prefix_sharing="off", packing=False)
    static, dynamic = (oracle(mode, prefix_sharing="off", static_shapes=s) for s in (True, False))
    assert static.static_width == 14 and dynamic.static_width is None    # train widths 12, 13, 14
    X = rows(padded)
    shapes = {}
    for o in (static, dynamic):
        calls, handle = _spy_forwards(o)
        for seed in range(6):
            batch = padded.sample_batch(torch.Generator().manual_seed(seed), 2)
            torch.testing.assert_close(o.grad(X, None, batch), padded.grad(X, None, batch), **TOL)
        handle.remove()
        shapes[o is static] = set(calls)
    assert {w for _, w in shapes[True]} == {14}
    K = 1 if mode == "off" else 3                # batched: [K clients, p rows each], p bucketed
    assert all(r % K == 0 and row_bucket(r // K) == r // K for r, _ in shapes[True]), shapes
    assert len(shapes[True]) < len(shapes[False]), shapes


def test_static_shapes_need_packed_full_rows():
    with pytest.raises(ConfigError, match="llm.static_shapes"):
        build_config({"track": "llm"}, ["llm.static_shapes=true", "llm.packing=false"])
    with pytest.raises(ConfigError, match="llm.static_shapes"):
        oracle("off", static_shapes=True, prefix_sharing="on")
    assert build_config({"track": "llm"}, ["llm.static_shapes=true"]).llm.execution()["static_shapes"] is True
    assert not oracle("off", static_shapes=True).prefix_sharing      # "auto" turns prefix sharing off on the CPU
