"""DPO on sequences: the three loss types against independent formulas, TRL metric names, and
response-token log-probabilities (shifted, masked, padding-invariant)."""

import inspect
import logging
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("transformers")
pytest.importorskip("peft")

from llm.dpo import dpo_loss, dpo_metrics, sequence_logps, shared_prompt_logps  # noqa: E402
from llm.model import add_lora, set_trainable_vector, tiny_llama, trainable_vector  # noqa: E402
from theory_lab.errors import ConfigError  # noqa: E402

VOCAB = 32


@pytest.fixture(scope="module")
def model():
    return tiny_llama(VOCAB, torch.float64, seed=1)


def _logps(n=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [-(torch.rand(n, generator=g, dtype=torch.float64) * 20) for _ in range(4)]


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo", "hinge"])
def test_dpo_loss_matches_independent_formulas(loss_type):
    pc, pr, rc, rr = _logps()
    beta = 0.3
    losses, chosen, rejected = dpo_loss(pc, pr, rc, rr, beta, loss_type)
    # written from the rewards, not from the log-ratio difference
    r_c, r_r = beta * pc - beta * rc, beta * pr - beta * rr
    h = r_c - r_r
    expected = {
        "sigmoid": -F.logsigmoid(h),
        "ipo": (h / beta - 1.0 / (2.0 * beta)).pow(2),
        "hinge": torch.clamp(1.0 - h, min=0.0),
    }[loss_type]
    torch.testing.assert_close(losses, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(chosen, r_c, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(rejected, r_r, rtol=1e-12, atol=1e-12)


def test_dpo_loss_values_at_zero_margin_and_rewards_detached():
    pc = torch.tensor([-3.0, -1.0], requires_grad=True)
    pr = torch.tensor([-3.0, -1.0], requires_grad=True)
    rc, rr = torch.tensor([-3.0, -1.0]), torch.tensor([-3.0, -1.0])
    beta = 0.2
    assert torch.allclose(dpo_loss(pc, pr, rc, rr, beta, "sigmoid")[0], torch.full((2,), 0.6931471805599453))
    assert torch.allclose(dpo_loss(pc, pr, rc, rr, beta, "ipo")[0], torch.full((2,), (1 / (2 * beta)) ** 2))
    assert torch.allclose(dpo_loss(pc, pr, rc, rr, beta, "hinge")[0], torch.ones(2))
    losses, chosen, rejected = dpo_loss(pc, pr, rc, rr, beta)
    assert losses.requires_grad and not chosen.requires_grad and not rejected.requires_grad


def test_unknown_loss_type_is_a_config_error():
    pc, pr, rc, rr = _logps()
    with pytest.raises(ConfigError, match="llm.loss_type"):
        dpo_loss(pc, pr, rc, rr, 0.1, "kto")


def test_dpo_metrics_trl_names():
    pc, pr, rc, rr = _logps(n=9, seed=3)
    beta = 0.1
    m = dpo_metrics(pc, pr, rc, rr, beta)
    assert set(m) == {"rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
                      "logps/chosen", "logps/rejected", "loss"}
    r_c, r_r = beta * (pc - rc), beta * (pr - rr)
    assert m["rewards/chosen"] == pytest.approx(float(r_c.mean()))
    assert m["rewards/rejected"] == pytest.approx(float(r_r.mean()))
    assert m["rewards/margins"] == pytest.approx(float((r_c - r_r).mean()))
    assert m["rewards/accuracies"] == pytest.approx(float((r_c > r_r).double().mean()))
    assert m["logps/chosen"] == pytest.approx(float(pc.mean()))
    assert m["logps/rejected"] == pytest.approx(float(pr.mean()))
    assert m["loss"] == pytest.approx(float(-F.logsigmoid(r_c - r_r).mean()))


# ----------------------------------------------------------------------------- sequence log-probs

def _batch():
    """Rows of different lengths: right padding (rows 0-2) and one left-padded row (3).
    Prompt = first `p` real tokens, response = the rest."""
    g = torch.Generator().manual_seed(5)
    T = 10
    specs = [(3, 4, "right"), (2, 7, "right"), (5, 2, "right"), (2, 3, "left")]  # (prompt, response, side)
    ids = torch.full((len(specs), T), 2, dtype=torch.long)
    att = torch.zeros(len(specs), T, dtype=torch.long)
    resp = torch.zeros(len(specs), T, dtype=torch.bool)
    for i, (p, r, side) in enumerate(specs):
        start = 0 if side == "right" else T - p - r
        ids[i, start:start + p + r] = torch.randint(3, VOCAB, (p + r,), generator=g)
        att[i, start:start + p + r] = 1
        resp[i, start + p:start + p + r] = True
    return ids, att, resp


def _manual(model, ids, att, resp):
    """Each row alone, unpadded: Σ_{t in response} log_softmax(logits[t-1])[token t]."""
    out = []
    for i in range(ids.shape[0]):
        keep = att[i].bool()
        x, m = ids[i, keep], resp[i, keep]
        with torch.no_grad():
            logp = model(input_ids=x[None]).logits[0].log_softmax(-1)
        out.append(sum(logp[t - 1, x[t]] for t in range(1, len(x)) if m[t]))
    return torch.stack(out)


def test_sequence_logps_equals_manual_sum(model):
    ids, att, resp = _batch()
    with torch.no_grad():
        got = sequence_logps(model, ids, att, resp)
    torch.testing.assert_close(got, _manual(model, ids, att, resp), rtol=1e-10, atol=1e-10)


def test_sequence_logps_ignores_padding_tokens_but_not_responses(model):
    ids, att, resp = _batch()
    with torch.no_grad():
        base = sequence_logps(model, ids, att, resp)
        padded = ids.clone()
        padded[att == 0] = 7                               # change every padding token
        assert torch.equal(sequence_logps(model, padded, att, resp), base)
        changed = ids.clone()
        t = int(resp[1].nonzero()[-1])                      # last response token of row 1
        changed[1, t] = 3 if ids[1, t] != 3 else 4
        out = sequence_logps(model, changed, att, resp)
    assert not torch.isclose(out[1], base[1])
    torch.testing.assert_close(out[[0, 2, 3]], base[[0, 2, 3]], rtol=0, atol=1e-12)


class PositionLogits(torch.nn.Module):
    """A stand-in LM whose logits depend on the position only: changing a token changes nothing
    but that token's own target log-prob, so masking can be tested in isolation."""

    def __init__(self, T, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.table = torch.randn(T, VOCAB, generator=g, dtype=torch.float64)

    def forward(self, input_ids, **kwargs):
        return SimpleNamespace(logits=self.table[: input_ids.shape[1]].expand(input_ids.shape[0], -1, -1))


def test_prompt_and_padding_targets_do_not_count():
    ids, att, resp = _batch()
    stub = PositionLogits(ids.shape[1])
    base = sequence_logps(stub, ids, att, resp)
    logp = stub.table.log_softmax(-1)
    for i in range(ids.shape[0]):   # the masked, shifted sum by hand
        expected = sum(logp[t - 1, ids[i, t]] for t in range(1, ids.shape[1]) if resp[i, t])
        assert base[i] == pytest.approx(float(expected), abs=1e-12)
    prompt_changed = ids.clone()
    prompt_changed[(att == 1) & ~resp] = 11              # every prompt token (its target)
    pad_changed = ids.clone()
    pad_changed[att == 0] = 11
    assert torch.equal(sequence_logps(stub, prompt_changed, att, resp), base)
    assert torch.equal(sequence_logps(stub, pad_changed, att, resp), base)
    resp_changed = ids.clone()
    t = int(resp[0].nonzero()[0])
    resp_changed[0, t] = (ids[0, t] + 1) % VOCAB
    out = sequence_logps(stub, resp_changed, att, resp)
    assert out[0] != base[0] and torch.equal(out[1:], base[1:])


def test_sequence_logps_gradients_flow(model):
    ids, att, resp = _batch()
    model.zero_grad()
    sequence_logps(model, ids, att, resp).sum().backward()
    assert model.lm_head.weight.grad is not None and model.lm_head.weight.grad.abs().sum() > 0
    model.zero_grad()


# ----------------------------------------------------------------------------- prefix sharing

def _rms_norm_in_input_dtype(self, x):
    return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))


def _lora_model(dtype):
    """A tiny Llama with LoRA on q_proj and v_proj, B made non-zero (at the init B = 0 and the
    adapters change nothing). In float64 the RMSNorm also runs in float64 (HF's runs in float32
    whatever the dtype, which would put float32 noise into float64 comparisons)."""
    import types

    base = tiny_llama(VOCAB, dtype, seed=2)
    if dtype == torch.float64:
        for mod in base.modules():
            if type(mod).__name__ == "LlamaRMSNorm":
                mod.forward = types.MethodType(_rms_norm_in_input_dtype, mod)
    model = add_lora(base, r=4, alpha=8.0, dropout=0.0, target_modules=["q_proj", "v_proj"], seed=0)
    g = torch.Generator().manual_seed(4)
    theta = trainable_vector(model)
    set_trainable_vector(model, theta + 0.5 * torch.randn(theta.shape, generator=g, dtype=theta.dtype))
    return model


def _shared_pairs(specs, seed=6):
    """Rows as llm.data.tokenize_pairs lays them out: b chosen rows then b rejected rows, each
    [prompt, response, right padding], the two rows of a pair sharing the prompt's token ids.
    specs: (prompt length, chosen length, rejected length) per pair."""
    g = torch.Generator().manual_seed(seed)
    b, T = len(specs), max(p + max(c, r) for p, c, r in specs) + 1   # + 1: a column of padding everywhere
    ids = torch.full((2 * b, T), 2, dtype=torch.long)
    att = torch.zeros(2 * b, T, dtype=torch.long)
    resp = torch.zeros(2 * b, T, dtype=torch.bool)
    for i, (p, c, r) in enumerate(specs):
        prompt = torch.randint(3, VOCAB, (p,), generator=g)
        for row, n in ((i, c), (b + i, r)):
            ids[row, :p + n] = torch.cat([prompt, torch.randint(3, VOCAB, (n,), generator=g)])
            att[row, :p + n] = 1
            resp[row, p:p + n] = True
    return ids, att, resp


# prompts of 1-5 tokens, responses of 1-6 tokens, in one batch
SPECS = [(3, 4, 2), (1, 5, 3), (5, 1, 6), (2, 3, 1), (1, 1, 1)]


def _embedded_shapes(model, fn):
    """fn() and the shapes of the token batches the model embedded while running it."""
    shapes = []
    handle = model.get_input_embeddings().register_forward_hook(lambda m, i, o: shapes.append(tuple(i[0].shape)))
    try:
        return fn(), shapes
    finally:
        handle.remove()


def _params(model):
    return [p for p in model.parameters() if p.requires_grad]


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_shared_prompt_logps_equal_full_rows_values_and_lora_gradients(dtype, tol):
    """The prefix-shared log-probs and their LoRA gradients equal sequence_logps on the full rows:
    float64 to 1e-12 and float32 to 1e-5 (relative and absolute), with the prompt run once."""
    model = _lora_model(dtype)
    ids, att, resp = _shared_pairs(SPECS)
    b = len(SPECS)
    w = torch.linspace(0.5, 1.5, 2 * b, dtype=dtype)      # distinct weights: every row's gradient counts
    (c, r), shapes = _embedded_shapes(model, lambda: shared_prompt_logps(model, ids, att, resp))
    assert shapes == [(b, 5), (2 * b, 5)]                   # prompts once (P = 5), responses without their last column (R = 6)
    assert c.dtype == r.dtype == dtype and c.shape == r.shape == (b,)
    g_shared = torch.autograd.grad((w * torch.cat([c, r])).sum(), _params(model))
    full = sequence_logps(model, ids, att, resp)
    g_full = torch.autograd.grad((w * full).sum(), _params(model))
    torch.testing.assert_close(torch.cat([c, r]), full, rtol=tol, atol=tol)
    for gs, gf in zip(g_shared, g_full):
        torch.testing.assert_close(gs, gf, rtol=tol, atol=tol)
    assert all(g.abs().sum() > 0 for g in g_shared)         # every LoRA matrix, the prompt's included
    # the reference: adapters disabled (and not just zero)
    with torch.no_grad():
        with model.disable_adapter():
            c0, r0 = shared_prompt_logps(model, ids, att, resp)
            full0 = sequence_logps(model, ids, att, resp)
    torch.testing.assert_close(torch.cat([c0, r0]), full0, rtol=tol, atol=tol)
    assert not torch.allclose(full0, full)


def test_shared_prompt_logps_one_token_responses_skip_the_second_forward():
    model = _lora_model(torch.float64)
    ids, att, resp = _shared_pairs([(2, 1, 1), (4, 1, 1), (1, 1, 1)], seed=7)
    with torch.no_grad():
        (c, r), shapes = _embedded_shapes(model, lambda: shared_prompt_logps(model, ids, att, resp))
        full = sequence_logps(model, ids, att, resp)
    assert shapes == [(3, 4)]
    torch.testing.assert_close(torch.cat([c, r]), full, rtol=1e-12, atol=1e-12)


def test_shared_prompt_logps_falls_back_when_the_prompt_is_not_shared(model):
    """Different prompts within a pair, left padding, a model without a KV cache: the full rows."""
    ids, att, resp = _shared_pairs(SPECS)
    other = ids.clone()
    other[len(SPECS), 0] = (ids[len(SPECS), 0] + 1) % VOCAB   # pair 0's rejected prompt differs
    left = _batch()                                            # one row is left-padded
    with torch.no_grad():
        for rows in ((other, att, resp), left):
            (c, r), shapes = _embedded_shapes(model, lambda: shared_prompt_logps(model, *rows))
            assert len(shapes) == 1 and shapes[0][0] == len(rows[0])   # one forward of the full rows
            assert torch.equal(torch.cat([c, r]), sequence_logps(model, *rows))
        stub = PositionLogits(ids.shape[1])                        # its forward takes no past_key_values
        assert torch.equal(torch.cat(shared_prompt_logps(stub, ids, att, resp)), sequence_logps(stub, ids, att, resp))


class OldCacheName(torch.nn.Module):
    """The model's forward under the pre-5.24 spelling: takes and returns `past_key_values`."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, input_ids, attention_mask=None, position_ids=None, past_key_values=None,
                use_cache=None, logits_to_keep=0):
        name = "cache" if "cache" in inspect.signature(self.inner.forward).parameters else "past_key_values"
        out = self.inner(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         use_cache=use_cache, logits_to_keep=logits_to_keep, **{name: past_key_values})
        return SimpleNamespace(logits=out.logits, past_key_values=getattr(out, name))


def test_shared_prompt_logps_takes_both_spellings_of_the_cache_argument(model):
    """`cache` (transformers >= 5.24) and `past_key_values` (before): both share the prompt."""
    ids, att, resp = _shared_pairs(SPECS)
    full = sequence_logps(model, ids, att, resp)
    with torch.no_grad():
        for m in (model, OldCacheName(model)):
            (c, r), shapes = _embedded_shapes(model, lambda: shared_prompt_logps(m, ids, att, resp))
            assert len(shapes) == 2, type(m).__name__          # prompt forward, then the responses
            torch.testing.assert_close(torch.cat([c, r]), full, rtol=1e-12, atol=1e-12)


def test_missing_fast_path_is_logged_once(caplog, monkeypatch):
    import llm.dpo
    monkeypatch.setattr(llm.dpo, "_SAID", set())            # earlier tests may have said it already
    ids, att, resp = _shared_pairs(SPECS)
    stub = PositionLogits(ids.shape[1])
    with caplog.at_level(logging.WARNING, logger="llm.dpo"):
        for _ in range(3):
            shared_prompt_logps(stub, ids, att, resp)
    said = [r.getMessage() for r in caplog.records if "prefix sharing unavailable" in r.getMessage()]
    assert len(said) == 1 and "PositionLogits" in said[0]
