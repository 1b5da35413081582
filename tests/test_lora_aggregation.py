"""Factorised (LoRA) aggregation: the error metric against its formula, `exact` giving the
weighted average of the client models' effective weights (and `factors`, the control, not),
`ffa` training and sending only B, `fedsa` keeping personal B factors across a resume, on the
synthetic factorised policy and the tiny LLM."""

import pandas as pd
import pytest
import torch

from theory_lab.algorithms import make_algorithm
from theory_lab.claims.federated import base
from theory_lab.communicator import InProcessCommunicator
from theory_lab.config import build_config
from theory_lab.errors import ConfigError
from theory_lab.factorised import Factor, aggregation_error, part_mask, products
from theory_lab.runner import make_oracle, run


def factorised_cfg(rule, rounds=4, **algorithm):
    cfg = base(rounds, local_steps=3, batch_size=0, lr=0.5)
    cfg["problem"].update(dim=12, lora_rank=2, lora_rows=4, init="reference", heterogeneity=2.0)
    cfg["algorithm"].update(lora_aggregation=rule, **algorithm)
    cfg["run"]["seeds"] = [0, 1]
    return cfg


def recording(alg):
    """Wrap alg.local to keep each round's client rows."""
    seen = []
    local = alg.local

    def wrapped(start, clients):
        X = local(start, clients)
        seen.append((X.clone(), clients))
        return X
    alg.local = wrapped
    return seen


# ----------------------------------------------------------------------------- the metric

def test_error_matches_its_formula_and_vanishes_with_one_client():
    g = torch.Generator().manual_seed(0)
    layout = [Factor(slice(0, 6), (2, 3), slice(6, 14), (4, 2), 0.5), Factor(slice(14, 16), (1, 2), slice(16, 19), (3, 1), 2.0)]
    X = torch.randn(1, 3, 19, generator=g, dtype=torch.float64)
    w = torch.tensor([[0.2, 0.3, 0.5]], dtype=torch.float64)
    start = torch.randn(1, 19, generator=g, dtype=torch.float64)
    err, rel = aggregation_error(X, w, layout, start)
    sq, upd = 0.0, 0.0
    for f in layout:
        A = [X[0, i, f.a].view(f.a_shape) for i in range(3)]
        B = [X[0, i, f.b].view(f.b_shape) for i in range(3)]
        mean_ba = sum(w[0, i] * f.scale * B[i] @ A[i] for i in range(3))
        bar = f.scale * sum(w[0, i] * B[i] for i in range(3)) @ sum(w[0, i] * A[i] for i in range(3))
        sq += (mean_ba - bar).pow(2).sum()
        upd += (mean_ba - f.scale * start[0, f.b].view(f.b_shape) @ start[0, f.a].view(f.a_shape)).pow(2).sum()
    assert err.item() == pytest.approx(sq.sqrt().item(), rel=1e-12)
    assert rel.item() == pytest.approx((sq / upd).sqrt().item(), rel=1e-12)
    assert err.item() > 0.1
    one, _ = aggregation_error(X[:, :1], w[:, :1], layout, start)
    assert one.item() == 0.0


# ----------------------------------------------------------------------------- the rules, synthetic

@pytest.mark.parametrize("rule, algorithm", [
    ("exact", {}), ("factors", {}),                                              # factors: the control
    ("exact", {"participation": 4, "q_max": 2}),                                 # stale starts, each on its own base
    ("exact", {"participation": 4, "q_max": 2, "stale_rule": "delta", "server_lr": 0.5}),
    ("exact", {"name": "fedprox", "prox_mu": 0.1}), ("exact", {"name": "scaffold", "participation": 5})])
def test_exact_is_the_average_of_the_client_models_and_factors_is_not(rule, algorithm):
    """In θ itself: the server holds Σ w_i θ_i (model_average), or θ_server + η_g Σ w_i (θ_i − θ_start_i)
    (delta rule), with each client's θ as the oracle computed it while that client trained."""
    config = build_config(factorised_cfg(rule, **algorithm))
    oracle = make_oracle(config)
    alg = make_algorithm(config.algorithm, oracle, InProcessCommunicator(), torch.Generator().manual_seed(0), 6)
    local, seen = alg.local, []

    def recorded(start, clients):
        X = local(start, clients)
        seen.append((oracle.theta(X), oracle.theta(start), clients))   # with the deltas the clients trained on
        return X
    alg.local = recorded
    a = config.algorithm
    for r in range(6):
        before = oracle.theta(alg.model())
        alg.round(r)
        thetas, starts, clients = seen[-1]
        w = oracle.weights if clients is None else oracle.weights.gather(1, clients)
        w = (w / w.sum(1, keepdim=True))[..., None]
        if a.stale_rule == "delta":
            expected = before + a.server_lr * (w * (thetas - starts)).sum(1)
        else:
            expected = before + a.server_lr * ((w * thetas).sum(1) - before)
        gap = (oracle.theta(alg.model()) - expected).abs().max().item()
        assert (gap < 1e-12) if rule == "exact" else (gap > 1e-4), (r, gap)


def test_ffa_trains_and_sends_only_b():
    res = run(build_config(factorised_cfg("ffa")), progress=False)
    oracle, x = res.oracle, res.algorithm.model()
    a = part_mask(oracle.factor_layout, oracle.dim, "A")
    assert torch.equal(x[:, a], oracle.init_params()[:, a])
    assert (x[:, ~a] != 0).any()
    assert res.table["lora_agg_error"].dropna().abs().max() < 1e-12   # a shared A makes averaging B exact
    factors = run(build_config(factorised_cfg("factors")), progress=False)
    sent = res.table["comm_bytes"].iloc[-1] / factors.table["comm_bytes"].iloc[-1]
    assert sent == pytest.approx(int((~a).sum()) / oracle.dim)
    assert factors.table["lora_agg_error"].dropna().max() > 1e-4       # the control has the error


def test_fedsa_keeps_personal_b_and_resumes_bit_identically(tmp_path):
    cfg = factorised_cfg("fedsa", rounds=6, participation=3)
    cfg["run"].update(checkpoint_every=2, log_every=1)
    full = run(build_config(cfg), progress=False)
    b = full.algorithm.b_clients
    assert (b[:, 0] - b[:, 1]).abs().max() > 1e-3          # each client its own B
    personal = full.table["personal_pref_acc"]               # each client evaluated at its own B
    assert not any(c.startswith("personal_pref_acc_client") for c in full.table)   # per client: LLM track only
    assert personal.notna().all() and personal.between(0, 1).all()
    assert run(build_config(factorised_cfg("factors")), progress=False).table["personal_pref_acc"].isna().all()
    run(build_config({**cfg, "run": {**cfg["run"], "rounds": 6}}), progress=False, checkpoint_dir=tmp_path)
    resumed = run(build_config(cfg), progress=False, checkpoint_dir=tmp_path, resume=True)
    cols = ["round", "subopt", "lora_agg_error", "comm_bytes"]
    pd.testing.assert_frame_equal(resumed.table[cols], full.table[cols])
    assert torch.equal(resumed.algorithm.b_clients, b)


def test_decdpo_takes_ffa_and_refuses_what_it_cannot_gossip():
    cfg = factorised_cfg("ffa", name="decdpo")
    cfg["topology"] = {"name": "ring"}
    res = run(build_config(cfg), progress=False)
    a = part_mask(res.oracle.factor_layout, res.oracle.dim, "A")
    assert torch.equal(res.algorithm.client_params()[..., a],
                       res.oracle.init_params()[:, None, a].expand(-1, res.oracle.n_clients, -1))
    for rule in ("fedsa", "exact"):
        with pytest.raises(ConfigError, match="algorithm.lora_aggregation"):
            build_config(factorised_cfg(rule, name="decdpo") | {"topology": {"name": "ring"}})


@pytest.mark.parametrize("change, field", [
    ({"problem": {"lora_rank": 0, "lora_rows": 0}}, "algorithm.lora_aggregation"),   # nothing factorised
    ({"algorithm": {"server_opt": "adam"}}, "algorithm.lora_aggregation"),           # exact with an adaptive server
    ({"problem": {"lora_rows": 5}}, "problem.lora_rows"),                            # 5 does not divide 12
    ({"problem": {"lora_rank": 4}}, "problem.lora_rank"),                            # θ is 4×3: rank ≤ 3
])
def test_bad_settings_name_their_field(change, field):
    cfg = factorised_cfg("exact")
    for section, values in change.items():
        cfg[section].update(values)
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        build_config(cfg)


# ----------------------------------------------------------------------------- the tiny LLM

pytest.importorskip("peft")
from tests.test_reliability import DATA, SAME, tiny_llm, tiny_llm_resumed  # noqa: E402


def effective_weights(oracle, row, bases):
    """Every LoRA module's base weight (from `bases`) + s·B A at the flat row [P], concatenated [D]."""
    return torch.cat([(w.double() + products(row, [f]).view(f.b_shape[0], -1)).flatten()
                      for (_, _, f), w in zip(oracle._lora, bases)])


def test_exact_on_the_tiny_llm_averages_the_client_models():
    from tests.test_llm_oracle import make_oracle as tiny_oracle

    oracle = tiny_oracle(torch.float64)
    cfg = build_config({"track": "llm", "algorithm": {"name": "feddpo", "local_steps": 2, "batch_size": 0,
                                                       "lr": 0.5, "lora_aggregation": "exact"}})
    alg = make_algorithm(cfg.algorithm, oracle, InProcessCommunicator(), torch.Generator().manual_seed(0), 3)
    seen = recording(alg)
    for r in range(3):
        bases = [m.base_layer.weight.detach().clone() for _, m, _ in oracle._lora]   # the model the clients train
        alg.round(r)
        X, _ = seen[-1]
        average = sum(w * effective_weights(oracle, X[0, i], bases) for i, w in enumerate(oracle.weights[0].tolist()))
        folded = [m.base_layer.weight.detach() for _, m, _ in oracle._lora]           # the model the server now holds
        gap = (effective_weights(oracle, alg.model()[0], folded) - average).abs().max().item()
        assert gap < 1e-12, (r, gap)
    assert alg.bytes_per_round() > 2 * 3 * oracle.dim * 8     # the dense residual travels too


def test_stale_clients_train_on_their_own_base_on_the_tiny_llm():
    """set_frozen_delta(server, rows, clients): each client's loss is the one at its own delta."""
    from tests.test_llm_oracle import make_oracle as tiny_oracle

    oracle = tiny_oracle(torch.float64)
    D = sum(f.dense_size for f in oracle.factor_layout)
    g = torch.Generator().manual_seed(0)
    rows = 0.05 * torch.randn(1, 2, D, generator=g, dtype=torch.float64)
    server = torch.zeros(1, D, dtype=torch.float64)
    clients = torch.tensor([[2, 0]])
    X = oracle.init_params().unsqueeze(1).expand(-1, 2, -1).clone()
    X[..., oracle.factor_layout[0].b] = 0.1            # B ≠ 0 so the adapter is live too
    oracle.set_frozen_delta(server, rows, clients)
    together = oracle.loss(X, clients)
    for k in range(2):
        oracle.set_frozen_delta(rows[:, k])
        alone = oracle.loss(X[:, k: k + 1], clients[:, k: k + 1])
        assert torch.allclose(together[:, k], alone[:, 0], rtol=0, atol=1e-12)
    oracle.set_frozen_delta(server)
    assert not torch.allclose(oracle.loss(X, clients), together)     # the rows' deltas mattered


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data is not beside the checkout")
@pytest.mark.parametrize("rule", ["fedsa", "exact"])
def test_factorised_rules_resume_bit_identically_on_the_tiny_llm(tmp_path, rule):
    block = f'name = "feddpo"\nlocal_steps = 2\nlora_aggregation = "{rule}"\n'
    resumed, full = tiny_llm_resumed(tmp_path, block)
    cols = SAME + ["lora_agg_error"]
    pd.testing.assert_frame_equal(resumed[cols], full[cols])
    assert resumed["lora_agg_error"].dropna().size > 0
    if rule == "exact":
        assert (tmp_path / "full" / "adapter" / "frozen_delta.safetensors").exists()


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data is not beside the checkout")
@pytest.mark.parametrize("rule", ["ffa", "fedsa", "exact"])
def test_factorised_rules_aggregate_fedpdpos_shared_adapter(tmp_path, rule):
    """FedPDPO's shared LoRA goes through the same rules; its personal modules stay put."""
    from theory_lab.cli import main

    block = f'name = "feddpo"\nlocal_steps = 2\nlora_aggregation = "{rule}"\n'
    cfg = tiny_llm(tmp_path, rounds=2, log_every=1, n_clients=3, participation=0,
                   personal="[llm.personal]\nenabled = true\n", algorithm=block)
    assert main(["llm", "--config", str(cfg), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    t = pd.read_csv(tmp_path / "out" / "results.csv")
    err = t["lora_agg_error_rel"].dropna()
    assert len(err) == 2
    if rule == "ffa":
        assert err.max() < 1e-6                       # float32 rounding only (~2e-7)
    if rule == "fedsa":                               # a real error (small: η³ from B = 0) and personal accuracy
        assert err.max() > 5e-6 and t["personal_pref_acc"].notna().all()


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data is not beside the checkout")
@pytest.mark.parametrize("personal", ["", "[llm.personal]\nenabled = true\n"])
def test_fedsa_reports_each_clients_own_accuracy_on_the_llm(tmp_path, personal):
    """personal_pref_acc per client (each at its own B; FedPDPO: with its modules too), beside
    eval_pref_acc_client{i} of the averaged model; personal_pref_acc is their weighted mean."""
    from theory_lab.cli import main

    block = 'name = "feddpo"\nlocal_steps = 2\nlora_aggregation = "fedsa"\n'
    cfg = tiny_llm(tmp_path, rounds=2, log_every=1, n_clients=3, participation=0, personal=personal, algorithm=block)
    assert main(["llm", "--config", str(cfg), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    t = pd.read_csv(tmp_path / "out" / "results.csv").dropna(subset=["personal_pref_acc"])   # from round 1
    per = t[[f"personal_pref_acc_client{i}" for i in range(3)]].to_numpy()
    assert len(t) >= 2 and ((per >= 0) & (per <= 1)).all()
    assert (per.min(1) - 1e-6 <= t["personal_pref_acc"]).all() and (t["personal_pref_acc"] <= per.max(1) + 1e-6).all()


def test_predict_and_constants_estimate_the_factorised_problem(tmp_path, capsys):
    """The factorised oracle's parameters are the factors, not θ: it exposes θ's constants only as
    `theta_constants`, so predict and constants estimate its own (no shape error)."""
    from theory_lab.cli import main

    cfg = tmp_path / "f.toml"
    cfg.write_text('[run]\nseeds = [0]\nrounds = 5\n[problem]\ndim = 12\nlora_rank = 2\nlora_rows = 4\n'
                   '[algorithm]\nname = "feddpo"\nlocal_steps = 2\nlr = 0.2\nlora_aggregation = "exact"\n')
    assert main(["predict", "--config", str(cfg)]) == 0
    assert main(["constants", "--config", str(cfg)]) == 0
    assert "zeta2" in capsys.readouterr().out
