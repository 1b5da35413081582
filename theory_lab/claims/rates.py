"""Claims about rates: the rate in T, smoothness against the horizon, local vs minibatch SGD
(published bounds against runs: bound_claims.py)."""

from __future__ import annotations

import numpy as np
import torch

from analysis import bound_validity, judge_bound, judge_exponent, loglog_slope
from analysis.verdict import Verdict
from theory_lab import bounds
from theory_lab.algorithms import make_algorithm
from theory_lab.claims.base import Claim, Context, Control, Outcome, Small, claim, plot_fit, within_seed
from theory_lab.claims.base import PROBLEM
from theory_lab.claims.federated import base
from theory_lab.communicator import InProcessCommunicator
from theory_lab.config import build_config
from theory_lab.runner import make_oracle


def binned(table, metric: str, bins: int = 12):
    """Per seed, means of `metric` over geometric bins of rounds (smooths SGD noise without
    biasing a power law): returns round centres, values, seeds."""
    t = table[table["round"] > 0]
    edges = np.unique(np.geomspace(t["round"].min(), t["round"].max() + 1, bins + 1).astype(int))
    xs, ys, ss = [], [], []
    for seed, g in t.groupby("seed"):
        for lo, hi in zip(edges[:-1], edges[1:]):
            w = g[(g["round"] >= lo) & (g["round"] < hi)]
            if len(w):
                xs.append(np.sqrt(lo * max(hi - 1, lo)))
                ys.append(w[metric].mean())
                ss.append(seed)
    return np.array(xs, float), np.array(ys, float), np.array(ss)


RATE = {"quick": {"rounds": 2000}, "full": {"rounds": 8000}, "replicas": 32, "lr": 2.0, "slow": 0.25}


def _rate_run(ctx: Context, c: Claim, mu_t0: float):
    """FedDPO E=1, batch 1 with η_t = η0 t0/(t0+t), η0 t0 = mu_t0/μ: binned subopt against t, slope fit."""
    rounds = c.params["quick" if ctx.quick else "full"]["rounds"]
    cfg = base(rounds, batch_size=1, lr=c.params["lr"], schedule="inverse")
    cfg["problem"]["init"] = "reference"
    mu = float(make_oracle(build_config(cfg)).constants.mu.mean())
    cfg["algorithm"]["decay_steps"] = mu_t0 / (mu * cfg["algorithm"]["lr"])
    res = ctx.sweep(cfg, [{}], min_seeds=c.params["replicas"])
    x, y, seeds = binned(res.table[res.table["round"] >= rounds // 10], "subopt", bins=8)
    x, y = within_seed(x, y, seeds)
    return loglog_slope(x, y, seeds=seeds), x, y, mu


@claim("rate-in-T", statement="Decaying steps η_t = η0 t0/(t0+t) with η0 t0 μ = 2 on a strongly convex problem "
       "give suboptimality ∝ 1/T",
       source="Koloskova et al.'20", metric="subopt (binned over rounds, per-seed scale removed)",
       regime="H=1: FedDPO E=1 (minibatch SGD), batch 1, η0={lr}, η0 t0 = 2/μ, ≥{replicas} replicas, "
              "{quick[rounds]} rounds (full: {full[rounds]})",
       params=RATE, predicted="slope −1 in t", tolerance=0.2,
       controls=[Control("slow decay", "setting", "η0 t0 μ = {slow:g}: the decay outpaces the curvature, the error "
                         "along the flattest direction falls as t^(−2η0t0μ) = t^(−{half:g}) (rate t^−min(1, 2η0t0λ) per "
                         "eigenvalue λ); the same slope check must refute −1".format(half=2 * RATE["slow"], **RATE))])
def rate_in_T(ctx: Context, c: Claim) -> Outcome:
    """The strongly convex rate only. The non-convex sub-check (trajectory model, η = 4/√T, mean
    ‖∇f‖² ∝ T^(−1/2)) is dropped: with η ∝ 1/√T both terms of the bound, 2Δ/(ηT) and ηLσ², scale as
    T^(−1/2), so the slope follows from the schedule, not from the problem; at a fixed η with exact
    gradients the mean ‖∇f‖² falls as Σ‖∇f‖²/T whenever the iterates converge, just as uninformative."""
    fit, x, y, mu = _rate_run(ctx, c, 2.0)
    slow, _, _, _ = _rate_run(ctx, c, c.params["slow"])
    dropped = ("dropped: with η ∝ 1/√T both terms of the bound scale as T^(−1/2), so the slope follows from the "
               "schedule, not the problem; at fixed η with exact gradients the mean ‖∇f‖² falls as Σ‖∇f‖²/T whenever "
               "the iterates converge, just as uninformative")
    out = Outcome.from_fit(fit, judge_exponent(fit, -1.0, c.tolerance), -1.0,
                           details={"mu": mu, "slow_decay_slope": slow, "non-convex sub-check (η ∝ 1/√T)": dropped},
                           figure=plot_fit(ctx, c.id, fit, x, y, "round t", "subopt (binned, per-seed scale removed)"))
    return out.control("slow decay", slow, judge_exponent(slow, -1.0, c.tolerance))


def max_eig_along_run(cfg: dict, rounds: int) -> tuple[np.ndarray, np.ndarray]:
    """Per seed: the largest global-Hessian eigenvalue met at the averaged model along a FedDPO
    run, and the round where it was met (0: the start)."""
    config = build_config(cfg)
    oracle = make_oracle(config)
    alg = make_algorithm(config.algorithm, oracle, InProcessCommunicator(), torch.Generator().manual_seed(0), rounds)
    top = oracle.hessian_max_eig_at(alg.model())
    where = torch.zeros_like(top)
    for r in range(rounds):
        alg.round(r)
        now = oracle.hessian_max_eig_at(alg.model())
        where = torch.where(now > top, torch.full_like(where, r + 1), where)
        top = torch.maximum(top, now)
    return top.numpy(), where.numpy()


SMOOTH = {"beta": 2.0, "B": 1.0, "lr": 0.5, "E": 2, "b": 4, "quick": {"Hs": (8, 16, 32), "rounds": 30},
          "full": {"Hs": (8, 12, 16, 24, 32), "rounds": 100}, "replicas": 8}


@claim("smoothness-horizon", statement="The largest Hessian eigenvalue met along FedDPO runs from θ_ref grows "
       "linearly in the horizon H for long horizons: under π_ref the centred per-step scores φ − μ_ref are "
       "martingale differences, so E[∇h∇hᵀ] grows as H, not as the H² of the worst-case bound "
       "L(H) = 4β²H²B² + 2βHB² (docs/theory.md 2.2), which is reported, not judged",
       source="Jiang'26 (constants from the trajectory structure); docs/theory.md", metric="max λmax(∇²f) along FedDPO runs, per seed",
       regime="tabular MDP, pairs drawn from π_ref (uniform), β={beta}, B={B}, FedDPO E={E}, batch {b}, η={lr} "
              "from θ_ref, horizons {quick[Hs]} (full: {full[Hs]}), ≥{replicas} replicas; leading order in 1/H",
       params=SMOOTH, predicted="slope 1 in H", tolerance=0.15, small=Small("1/H_min", 0.15),
       controls=[Control("bound order", "rival law", "the order H² of the worst-case bound: the same slope check must "
                         "refute it"),
                 Control("no growth", "rival law", "a smoothness independent of the horizon (exponent 0): the same "
                         "slope check must refute it")])
def smoothness_horizon(ctx: Context, c: Claim) -> Outcome:
    P, beta, B = c.params["quick" if ctx.quick else "full"], c.params["beta"], c.params["B"]
    Hs, rounds = P["Hs"], P["rounds"]
    seeds = list(range(max(ctx.seeds, c.params["replicas"])))
    measured, at_start = [], 0
    for H in Hs:
        cfg = base(rounds, local_steps=c.params["E"], batch_size=c.params["b"], lr=c.params["lr"])
        cfg["run"]["seeds"] = seeds
        cfg["problem"].update(horizon=H, n_contexts=6, n_actions=3, beta=beta, feature_bound=B,
                              init="reference", l2=0.0)
        top, where = max_eig_along_run(cfg, rounds)
        measured.append(top)
        at_start += int((where == 0).sum())
        ctx.runs += 1
    measured = np.asarray(measured)                     # [H, seeds]
    derived = np.array([bounds.trajectory_smoothness_bound(beta, B, H) for H in Hs], float)
    x = np.repeat(np.asarray(Hs, float), len(seeds))
    fit = loglog_slope(x, measured.ravel(), seeds=np.tile(seeds, len(Hs)))
    validity = judge_bound(bound_validity(measured.max(axis=1), derived))
    details = {f"H={H}": f"measured max {m.max():.3g}, derived {d:.3g}" for H, m, d in zip(Hs, measured, derived)}
    details.update(met_at_the_start=f"{at_start} of {measured.size} runs meet their largest curvature at θ_ref "
                                    "(h = 0, where σ(h)σ(−h) = 1/4 is largest)",
                   bound=f"{validity.status}: {validity.reason} (not evidence: the slack is too large for any "
                         "measured growth up to H² to violate it)")
    out = Outcome.from_fit(fit, judge_exponent(fit, 1.0, c.tolerance), 1.0, small=1.0 / min(Hs),
                           tightness=float(np.median(derived / measured.max(axis=1))), details=details,
                           figure=plot_fit(ctx, c.id, fit, x, measured.ravel(), "horizon H",
                                           "max Hessian eigenvalue along runs"))
    out.control("bound order", fit, judge_exponent(fit, 2.0, c.tolerance))
    return out.control("no growth", fit, judge_exponent(fit, 0.0, c.tolerance))


@claim("local-vs-minibatch", statement="Local SGD beats minibatch SGD (same samples per round) only when ζ² is "
       "small relative to the smoothness/rounds scale", source="Woodworth et al.'20",
       metric="final subopt of FedDPO (E local steps) / centralized minibatch SGD (batch E·b)",
       regime="E={E}, batch 1, {R} rounds from θ_ref, heterogeneity ∈ {quick[hets]} (full: {full[hets]}), "
              "each method at its best η in {lrs}",
       params={"E": 8, "R": 60, "lrs": (0.0625, 0.25, 1.0, 4.0), "quick": {"hets": (0.0, 2.0, 8.0, 16.0)},
               "full": {"hets": (0.0, 1.0, 2.0, 4.0, 8.0, 16.0)}},
       predicted="crossover ζ² within 10× of Woodworth's bound comparison", tolerance=1.0,
       should_hold=False)  # a comparison of two upper bounds whose constants are unknown
def local_vs_minibatch(ctx: Context, c: Claim) -> Outcome:
    hets = c.params["quick" if ctx.quick else "full"]["hets"]
    lrs, R, E = c.params["lrs"], c.params["R"], c.params["E"]
    out, best = {}, {}
    for name in ("feddpo", "centralized"):
        cfg = base(R, name=name, local_steps=E, batch_size=1)
        cfg["problem"]["init"] = "reference"
        # each method gets its best step size per heterogeneity level, as in Woodworth et al.
        out[name] = ctx.sweep(cfg, [{"problem.heterogeneity": h, "algorithm.lr": lr} for h in hets for lr in lrs])
        final = out[name].table[out[name].table["round"] >= 0.8 * R].groupby("run_id")["subopt"].mean().to_numpy()
        best[name] = final.reshape(len(hets), len(lrs)).min(axis=1)
    ratio = best["feddpo"] / best["centralized"]
    runs = out["feddpo"].manifest["runs"][:: len(lrs)]
    zeta2 = np.array([np.mean(r["constants"]["zeta2"]) for r in runs])
    c0 = runs[0]["constants"]
    d2 = float(out["feddpo"].table.query("round == 0 and run_id == 0")["dist_to_opt"].mean())
    pred = bounds.local_vs_minibatch_crossover(zeta2, np.mean(c0["sigma2"]), np.mean(c0["L"]), R, E,
                                               PROBLEM["n_clients"], mu=np.mean(c0["mu"]), D2=d2)
    observed = _crossover(zeta2, ratio)
    zc = pred["zeta2_crossover"]
    details = {f"zeta2={z:.3g}": f"local/minibatch = {q:.3g}" for z, q in zip(zeta2, ratio)}
    details.update(predicted_crossover=zc, observed_crossover=observed)
    if observed is None:
        side = "local" if ratio.max() < 1 else "minibatch" if ratio.min() > 1 else "mixed"
        trend = "rises" if ratio[-1] > ratio[0] else "falls"
        verdict = Verdict("inconclusive" if side == "mixed" else "refuted",
                          f"no single crossover in the swept range ({side} wins throughout; the ratio "
                          f"local/minibatch {trend} from {ratio[0]:.2g} to {ratio[-1]:.2g} as ζ² grows), while "
                          f"the bounds (constants set to 1) put the crossover at ζ² = {zc:.3g}")
        fitted = np.nan
    else:
        miss = abs(np.log10(max(zc, 1e-300) / observed))
        fitted, tol = miss, c.tolerance
        status = "confirmed" if miss <= tol else "refuted" if miss > 2 * tol else "inconclusive"
        verdict = Verdict(status, f"observed crossover ζ² ≈ {observed:.3g}, predicted {zc:.3g} "
                                  f"({miss:.2g} decades apart; tolerance {tol:g} decade)")
    return Outcome(fitted, (fitted, fitted), verdict, 0.0, details=details)


def _crossover(x, ratio):
    """Where ratio crosses 1 going up in x (log-interpolated), or None."""
    above = ratio > 1
    if above.all() or not above.any() or above[0]:
        return None
    i = int(np.argmax(above))
    if above[i:].all() and not above[:i].any():
        lo, hi = max(x[i - 1], 1e-12), x[i]
        t = np.log(ratio[i - 1]) / (np.log(ratio[i - 1]) - np.log(ratio[i]))
        return float(np.exp(np.log(lo) + t * (np.log(hi) - np.log(lo))))
    return None
