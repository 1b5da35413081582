"""DPO on sequences: the three loss types against independent formulas, TRL metric names, and
response-token log-probabilities (shifted, masked, padding-invariant)."""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("transformers")
pytest.importorskip("peft")

from llm.dpo import dpo_loss, dpo_metrics, sequence_logps  # noqa: E402
from llm.model import tiny_llama  # noqa: E402
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
