"""Claims about aggregating factorised (LoRA) parameters (theory_lab.factorised, docs/theory.md
§3.6), on the synthetic factorised policy θ = θ_ref + vec(B A), where every constant is exact."""

from __future__ import annotations

import numpy as np
import torch

from analysis import judge_exponent, loglog_slope
from analysis.verdict import Verdict
from theory_lab.algorithms import make_algorithm
from theory_lab.claims.base import Claim, Context, Control, Outcome, Small, claim, plot_fit
from theory_lab.claims.federated import base
from theory_lab.communicator import InProcessCommunicator
from theory_lab.config import build_config
from theory_lab.factorised import leading_error
from theory_lab.runner import make_oracle

LORA = {"dim": 12, "rows": 4, "rank": 2, "heterogeneity": 2.0, "b_scale": 0.3, "etas": (0.00125, 0.0025, 0.005, 0.01),
        "Es": (2, 4, 8), "slope_E": 4, "replicas": 8}
_REGIME = ("synthetic factorised policy: θ ({dim}) read as {rows}×{k}, rank {rank}, heterogeneity {heterogeneity}; "
           "FedDPO, all clients, exact gradients, one round of E ∈ {Es} steps, η ∈ {etas}; slope in η at E = {slope_E}; "
           "≥{replicas} replicas").format(k=LORA["dim"] // LORA["rows"], **LORA)


def one_round(c: Claim, seeds: list[int], eta: float, E: int, generic: bool, rule: str = "factors"):
    """(observed error [S], leading-order prediction [S], L_max) of one FedDPO round from the
    peft start (B = 0) or, `generic`, from B ~ b_scale·N(0, 1)."""
    p = c.params
    cfg = base(1, local_steps=E, batch_size=0, lr=eta, lora_aggregation=rule)
    cfg["problem"].update(dim=p["dim"], lora_rank=p["rank"], lora_rows=p["rows"], init="reference",
                          heterogeneity=p["heterogeneity"])
    cfg["run"]["seeds"] = seeds
    config = build_config(cfg)
    oracle = make_oracle(config)
    alg = make_algorithm(config.algorithm, oracle, InProcessCommunicator(), torch.Generator().manual_seed(0), 1)
    x0, f = oracle.init_params(), oracle.factor_layout[0]
    if generic:   # a common start with B ≠ 0, set through the algorithm's declared state
        g = torch.Generator().manual_seed(1)
        x0[:, f.b] = p["b_scale"] * torch.randn(x0[:, f.b].shape, generator=g, dtype=x0.dtype)
        alg.load_state_dict({**alg.state_dict(), "server": x0, "history": x0[None]})
    rows = x0[:, None].expand(-1, oracle.n_clients, -1)
    G = oracle.inner.grad(oracle.theta(rows), None, None).unflatten(-1, (f.b_shape[0], f.a_shape[1]))
    pred = leading_error(G, oracle.weights, x0[:, f.a].unflatten(-1, f.a_shape), x0[:, f.b].unflatten(-1, f.b_shape),
                         f.scale, eta, E)
    return alg.round(0).lora_agg_error.numpy(), pred.numpy(), float(oracle.theta_constants.L.max())


def _law(ctx: Context, c: Claim, generic: bool, order: float, rival: float) -> Outcome:
    p = c.params
    seeds = list(range(max(ctx.seeds, p["replicas"])))
    obs, pred, small, slope_x, slope_y = [], [], 0.0, [], []
    for E in p["Es"]:
        for eta in p["etas"]:
            o, q, L = one_round(c, seeds, eta, E, generic)
            obs.append(o), pred.append(q)
            small = max(small, eta * E * L)
            ctx.runs += 1
            if E == p["slope_E"]:
                slope_x.append(np.full(len(seeds), eta)), slope_y.append(o)
    x, y = np.concatenate(slope_x), np.concatenate(slope_y)
    rep = np.tile(seeds, len(slope_x))
    fit = loglog_slope(x, y, seeds=rep)
    out = Outcome.from_fit(fit, judge_exponent(fit, order, c.tolerance), order, small=small,
                           figure=plot_fit(ctx, c.id, fit, x, y, "step size η", "aggregation error after one round"))
    obs, pred = np.concatenate(obs), np.concatenate(pred)
    out.coefficient_check(c, obs, pred, np.tile(seeds, len(p["Es"]) * len(p["etas"])))
    out.details.update({"observed/predicted range": f"{(obs / pred).min():.4g} – {(obs / pred).max():.4g}"})
    return out.control("rival order", fit, judge_exponent(fit, rival, c.tolerance))


def _order_law(id: str, statement: str, *, generic: bool, order: float, rival: float, regime: str) -> None:
    """Register one of the two order laws: one check (_law), the other start's order as its rival."""
    claim(id, statement=statement, source="ours (docs/theory.md §3.6); FLoRA, FedEx-LoRA",
          metric="‖Σ w_i s B_iA_i − s B̄Ā‖_F after one round", regime=regime, params=LORA,
          predicted=f"slope {order:g} in η; observed/predicted = 1", tolerance=0.25, band=(0.9, 1.1),
          small=Small("ηEL_max", 0.03),
          controls=[Control("rival order", "rival law", f"the order-{rival:g} law of the {'B = 0' if generic else 'generic'}"
                            f" start (slope {rival:g}): the same slope check must refute it")],
          )(lambda ctx, c: _law(ctx, c, generic=generic, order=order, rival=rival))


_order_law("lora-agg-init", "From LoRA's initialisation (B = 0) the error of averaging A and B separately after E "
           "exact steps is third order: η³ s⁴ E²(E−1)/2 ‖Σ w_i (G_i − Ḡ) A0ᵀA0 (G_iᵀG_i − Σ w_j G_jᵀG_j)‖ "
           "(A moves only once B has)", generic=False, order=3.0, rival=2.0, regime=_REGIME)
_order_law("lora-agg-generic", "From a common start with B ≠ 0 the error is second order: "
           "η² E² s³ ‖Σ w_i (G_i − Ḡ) A0ᵀ B0ᵀ (G_i − Ḡ)‖, driven by the heterogeneity of the client gradients",
           generic=True, order=2.0, rival=3.0, regime=_REGIME + ", B0 ~ {b_scale}·N(0, 1)")


@claim("lora-agg-exact-rules", statement="Under ffa (A frozen) and exact (FedEx-LoRA residual) the server model is "
       "the average of the client models: the aggregation error is 0 to rounding",
       source="FFA-LoRA, FedEx-LoRA; theory_lab.factorised", metric="max relative aggregation error over rounds",
       regime="the lora-agg regime, 10 rounds of E = 4 steps of batch 4, η = 0.05, from the peft start",
       params={**LORA, "rounds": 10, "tol": 1e-12}, predicted="relative error ≤ 1e-12", tolerance=1e-12,
       controls=[Control("factors", "algorithm", "averaging A and B separately has the error: the same check must "
                         "refute it")])
def lora_agg_exact_rules(ctx: Context, c: Claim) -> Outcome:
    p = c.params
    seeds = list(range(max(ctx.seeds, 2)))

    def worst(rule: str) -> float:
        """Largest ‖θ(server) − Σ w_i θ(client i)‖ / ‖Σ w_i θ(client i) − θ(start)‖ over the rounds,
        in the policy's own θ (oracle.theta, with the frozen delta the oracle really holds), not
        through the algorithm's own error metric."""
        cfg = base(p["rounds"], local_steps=4, batch_size=4, lr=0.05, lora_aggregation=rule)
        cfg["problem"].update(dim=p["dim"], lora_rank=p["rank"], lora_rows=p["rows"], init="reference",
                              heterogeneity=p["heterogeneity"])
        cfg["run"]["seeds"] = seeds
        config = build_config(cfg)
        oracle = make_oracle(config)
        alg = make_algorithm(config.algorithm, oracle, InProcessCommunicator(), torch.Generator().manual_seed(0),
                             p["rounds"])
        local, seen, top = alg.local, [], 0.0

        def recorded(start, clients):   # the clients' rows, kept as θ
            X = local(start, clients)
            seen.append(oracle.theta(X))
            return X
        alg.local = recorded
        for r in range(p["rounds"]):
            before = oracle.theta(alg.model())
            alg.round(r)
            mean = torch.einsum("sk,skd->sd", oracle.weights, seen[-1])
            top = max(top, float(((oracle.theta(alg.model()) - mean).norm(dim=-1) / (mean - before).norm(dim=-1)).max()))
        ctx.runs += 1
        return top

    def judge(value: float) -> Verdict:
        ok = value <= c.tolerance
        return Verdict("confirmed" if ok else "refuted", f"largest relative error {value:.3g} "
                       f"{'≤' if ok else '>'} {c.tolerance:g}")

    errors = {rule: worst(rule) for rule in ("ffa", "exact")}
    top = max(errors.values())
    out = Outcome(top, (top, top), judge(top), 0.0, details={f"{k} max relative error": v for k, v in errors.items()})
    factors = worst("factors")
    return out.control("factors", factors, judge(factors))
