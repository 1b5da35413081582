"""Claims about rates: the rate in T, smoothness against the horizon, local vs minibatch SGD
(published bounds against runs: bound_claims.py)."""

from __future__ import annotations

import numpy as np
import torch

from analysis import bound_validity, judge_bound, judge_exponent, loglog_slope
from analysis.verdict import Verdict
from theory_lab import bounds
from theory_lab.algorithms import make_algorithm
from theory_lab.claims.base import Context, Outcome, claim, combine, plot_fit, within_seed
from theory_lab.claims.federated import PROBLEM, base
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


@claim("rate-in-T", statement="Decaying steps on a strongly convex problem give suboptimality ∝ 1/T; on the "
       "non-convex trajectory model, η ∝ 1/√T gives mean ‖∇f‖² ∝ T^(−1/2)",
       source="Koloskova et al.'20", metric="subopt (binned over rounds); mean grad_norm_sq over a run",
       regime="H=1: FedDPO E=1 (minibatch SGD), batch 1, η_t = η0 t0/(t0+t) with η0 t0 = 2/μ, ≥32 replicas; "
              "H=3: FedDPO E=1, batch 1, η = c/√T for each horizon T",
       predicted="slopes −1 (H=1) and −1/2 (H=3)", tolerance=0.2)
def rate_in_T(ctx: Context) -> Outcome:
    rounds = 2000 if ctx.quick else 8000
    cfg = base(rounds, batch_size=1, lr=2.0, schedule="inverse")
    cfg["problem"]["init"] = "reference"
    mu = float(make_oracle(build_config(cfg)).constants.mu.mean())
    cfg["algorithm"]["decay_steps"] = 2.0 / (mu * cfg["algorithm"]["lr"])
    res = ctx.sweep(cfg, [{}], min_seeds=32)
    x, y, seeds = binned(res.table[res.table["round"] >= rounds // 10], "subopt", bins=8)
    x, y = within_seed(x, y, seeds)
    fit = loglog_slope(x, y, seeds=seeds)
    v_sc = judge_exponent(fit, -1.0, 0.2)

    Ts = (100, 200, 400, 800) if ctx.quick else (100, 200, 400, 800, 1600, 3200)
    traj = base(Ts[0], batch_size=1)
    traj["problem"].update(horizon=3, n_contexts=6, n_actions=3, init="reference", l2=0.0)
    res_nc = ctx.sweep(traj, [{"run.rounds": T, "algorithm.lr": 4.0 / np.sqrt(T), "run.log_every": 1} for T in Ts])
    mean_g = res_nc.table[res_nc.table["round"] > 0].groupby(["run_id", "seed"], as_index=False)["grad_norm_sq"].mean()
    xT, yT = within_seed([Ts[r] for r in mean_g["run_id"]], mean_g["grad_norm_sq"], mean_g["seed"])
    fit_nc = loglog_slope(xT, yT, seeds=mean_g["seed"].to_numpy())
    v_nc = judge_exponent(fit_nc, -0.5, 0.2)
    return Outcome.from_fit(fit, combine([v_sc, v_nc], ["strongly convex 1/T", "non-convex T^-1/2"]), -1.0,
                            details={"mu": mu, "nonconvex_slope": fit_nc, "nonconvex_verdict": v_nc.status},
                            figure=plot_fit(ctx, "rate-in-T", fit, x, y, "round t", "subopt (binned, per-seed scale removed)"))


def max_eig_along_run(cfg: dict, rounds: int) -> float:
    """Largest global-Hessian eigenvalue met at the averaged model along a FedDPO run (all seeds)."""
    config = build_config(cfg)
    oracle = make_oracle(config)
    alg = make_algorithm(config.algorithm, oracle, InProcessCommunicator(), torch.Generator().manual_seed(0), rounds)
    top = oracle.hessian_max_eig_at(alg.model()).max()
    for r in range(rounds):
        alg.round(r)
        top = torch.maximum(top, oracle.hessian_max_eig_at(alg.model()).max())
    return float(top)


@claim("smoothness-horizon", statement="The largest Hessian eigenvalue met along runs stays under the derived "
       "smoothness bound L(H) = 4β²H²B² + 2βHB² of the trajectory model; its growth order in H is measured",
       source="Jiang'26 (constants from the trajectory structure); docs/theory.md", metric="max λmax(∇²f) along FedDPO runs",
       regime="tabular MDP, β=2, B=1, FedDPO E=2, batch 4, η=0.5 from θ_ref, horizons 1..8",
       predicted="bound holds; growth exponent ≤ 2", tolerance=0.3)
def smoothness_horizon(ctx: Context) -> Outcome:
    Hs = (1, 2, 4, 8) if ctx.quick else (1, 2, 3, 4, 6, 8)
    rounds = 30 if ctx.quick else 100
    beta, B = 2.0, 1.0
    measured = []
    for H in Hs:
        cfg = base(rounds, local_steps=2, batch_size=4, lr=0.5)
        cfg["run"]["seeds"] = list(range(ctx.seeds))
        cfg["problem"].update(horizon=H, n_contexts=6, n_actions=3, beta=beta, feature_bound=B,
                              init="reference", l2=0.0)
        measured.append(max_eig_along_run(cfg, rounds))
        ctx.runs += 1
    derived = np.array([bounds.trajectory_smoothness_bound(beta, B, H) for H in Hs], float)
    verdict = judge_bound(bound_validity(np.array(measured), derived))
    fit = loglog_slope(np.array(Hs, float), np.array(measured))
    if verdict.status == "confirmed" and fit.slope > 2.0 + 0.3:
        verdict = Verdict("refuted", f"bound holds at these horizons but grows like H^{fit.slope:.2f}, "
                                     "faster than the derived order H²")
    details = {f"H={H}": f"measured {m:.3g}, derived {d:.3g}" for H, m, d in zip(Hs, measured, derived)}
    details["growth_exponent"] = fit
    return Outcome.from_fit(fit, verdict, 2.0, tightness=float(np.median(derived / np.array(measured))),
                            details=details, figure=plot_fit(ctx, "smoothness-horizon", fit, Hs, measured,
                                                             "horizon H", "max Hessian eigenvalue along runs"))


@claim("local-vs-minibatch", statement="Local SGD beats minibatch SGD (same samples per round) only when ζ² is "
       "small relative to the smoothness/rounds scale", source="Woodworth et al.'20",
       metric="final subopt of FedDPO (E local steps) / centralized minibatch SGD (batch E·b)",
       regime="E=8, batch 1, 60 rounds from θ_ref, heterogeneity swept, each method at its best η in {1/16, 1/4, 1, 4}",
       predicted="crossover ζ² within 10× of Woodworth's bound comparison", tolerance=1.0,
       should_hold=False)  # a comparison of two upper bounds whose constants are unknown
def local_vs_minibatch(ctx: Context) -> Outcome:
    hets = (0.0, 2.0, 8.0, 16.0) if ctx.quick else (0.0, 1.0, 2.0, 4.0, 8.0, 16.0)
    lrs = (0.0625, 0.25, 1.0, 4.0)
    R, E = 60, 8
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
        fitted = miss
        status = "confirmed" if miss <= 1 else "refuted" if miss > 2 else "inconclusive"
        verdict = Verdict(status, f"observed crossover ζ² ≈ {observed:.3g}, predicted {zc:.3g} "
                                  f"({miss:.2g} decades apart; tolerance 1 decade)")
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
