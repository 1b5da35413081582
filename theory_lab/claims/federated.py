"""Claims about server-based algorithms: FedDPO's floors (drift, participation, noise; staleness
is in staleness.py), its equivalence with minibatch SGD, SCAFFOLD, and local vs minibatch SGD.

Floors are measured from the optimum (problem.init = "optimum"): the run then shows only the
stationary level, with no transient to wait out. l2 > 0 keeps the problem well conditioned so a
few hundred rounds reach stationarity.
"""

from __future__ import annotations

import copy

import numpy as np

from analysis import judge_exponent, judge_identical, judge_ratio, loglog_slope, ratio_fit
from analysis.verdict import Verdict
from theory_lab import bounds
from theory_lab.config import build_config
from theory_lab.runner import make_oracle
from theory_lab.claims.base import (PROBLEM, Claim, Context, Control, Outcome, Small, claim, combine,
                                    constant_per_seed, floors, plot_fit, within_seed)



def base(rounds: int, **algorithm) -> dict:
    return {"run": {"rounds": rounds, "log_every": max(rounds // 100, 1)}, "problem": dict(PROBLEM),
            "algorithm": {"name": "feddpo", "batch_size": 0, "lr": 0.25, **algorithm}}


def slope_claim(ctx: Context, claim_id: str, x_name: str, x, result, metric: str, predicted: float,
                tol: float, tail: float = 0.25):
    """Fit log(floor) against log(x) (x per run_id, or per (run_id, seed) as a DataFrame column)."""
    f = floors(result.table, metric, tail)
    xs = x(f) if callable(x) else np.asarray([x[r] for r in f["run_id"]], dtype=float)
    xs, ys = within_seed(xs, f["floor"].to_numpy(), f["seed"].to_numpy())
    fit = loglog_slope(xs, ys, seeds=f["seed"].to_numpy())
    verdict = judge_exponent(fit, predicted, tol)
    return fit, verdict, (xs, ys, x_name, f"{metric} (per-seed scale removed)")


@claim("full-participation", statement="FedDPO with E=1, S=N equals centralized minibatch SGD",
       source="Jiang'26", metric="max |dist_to_opt difference| over rounds and seeds",
       regime="E=1, all clients, same seeds and minibatches", predicted="identical (to rounding)",
       tolerance=1e-10,
       controls=[Control("half participation", "setting", "FedDPO with S = N/2 averages other gradients than "
                         "centralized SGD: the same identity check must refute it")])
def full_participation(ctx: Context, c: Claim) -> Outcome:
    cfg = base(40 if ctx.quick else 100, batch_size=4, lr=1.0, local_steps=1)
    cfg["problem"]["init"] = "reference"
    half = PROBLEM["n_clients"] // 2
    res = ctx.sweep(cfg, [{"algorithm.name": "feddpo"}, {"algorithm.name": "centralized"},
                          {"algorithm.name": "feddpo", "algorithm.participation": half}])
    t = res.table
    a, b, h = (t[t["run_id"] == i]["dist_to_opt"].to_numpy() for i in (0, 1, 2))
    diff, diff_half = float(np.max(np.abs(a - b))), float(np.max(np.abs(h - b)))
    out = Outcome(diff, (diff, diff), judge_identical(diff, c.tolerance), 0.0,
                  details={"start_dist": float(a[0]), "end_dist": float(a[-1])})
    return out.control("half participation", f"max difference {diff_half:.3g}", judge_identical(diff_half, c.tolerance))


INVARIANCE = {"lr": 0.5, "beta": 1.0, "beta2": 0.6, "E": 2, "b": 4, "rounds": 60, "atol": 1e-10,
              "metrics": ("train_loss", "eval_pref_acc", "reward_margin")}


def max_gap(table, metrics, a: int, b: int) -> float:
    """max |metric(run a) − metric(run b)| over rounds, seeds and `metrics`."""
    ta, tb = table[table["run_id"] == a], table[table["run_id"] == b]
    return float(max(np.nanmax(np.abs(ta[m].to_numpy() - tb[m].to_numpy())) for m in metrics))


@claim("dpo-eta-beta2-invariance",
       statement="At horizon 1 with ℓ2 = 0 and θ0 = θ_ref, FedDPO's trajectories depend on (η, β) only through ηβ²",
       source="ours: with u = β(θ − θ_ref) the DPO loss is −log σ(uᵀz) and SGD on θ moves u by −ηβ²∇_u",
       metric="max |difference| of train_loss, eval_pref_acc, reward_margin over rounds and seeds",
       regime="horizon 1, ℓ2 = 0, init θ_ref, FedDPO E={E}, batch {b}, {rounds} rounds; (η, β) = ({lr}, {beta}) "
              "against (η·({beta}/{beta2})², {beta2})", params=INVARIANCE,
       predicted="identical to rounding (≤ {atol:g})".format(**INVARIANCE), tolerance=INVARIANCE["atol"],
       controls=[Control("η alone", "rival law", "the same η change with β fixed changes ηβ²: the same "
                         "identity check must refute it"),
                 Control("horizon 2", "setting", "with H = 2 the log-partition terms A_θ(s) are not functions of u: "
                         "the same (η, β) pair must differ")])
def eta_beta2_invariance(ctx: Context, c: Claim) -> Outcome:
    eta, beta, beta2, atol = c.params["lr"], c.params["beta"], c.params["beta2"], c.tolerance
    eta2 = eta * (beta / beta2) ** 2
    cfg = base(c.params["rounds"], local_steps=c.params["E"], batch_size=c.params["b"], lr=eta)
    cfg["problem"].update(init="reference", l2=0.0, beta=beta)
    pairs = [{"algorithm.lr": eta, "problem.beta": beta}, {"algorithm.lr": eta2, "problem.beta": beta2},
             {"algorithm.lr": eta2, "problem.beta": beta}]
    t = ctx.sweep(cfg, pairs).table
    traj = copy.deepcopy(cfg)
    traj["problem"].update(horizon=2, n_contexts=6, n_actions=3)
    t2 = ctx.sweep(traj, pairs[:2]).table
    metrics = c.params["metrics"]
    same, eta_only, horizon2 = max_gap(t, metrics, 0, 1), max_gap(t, metrics, 0, 2), max_gap(t2, metrics, 0, 1)
    out = Outcome(same, (same, same), judge_identical(same, atol), 0.0,
                  details={"η, β": f"({eta:g}, {beta:g}) vs ({eta2:.6g}, {beta2:g})", "max gap, η alone": eta_only,
                           "max gap, horizon 2": horizon2})
    out.control("η alone", f"max gap {eta_only:.3g}", judge_identical(eta_only, atol))
    return out.control("horizon 2", f"max gap {horizon2:.3g}", judge_identical(horizon2, atol))


def run_constant(result, name: str) -> float:
    """The largest value over every run and seed of a sweep of the exact constant `name` (a
    per-client list such as L_clients is flattened)."""
    return float(max(np.max(r["constants"][name]) for r in result.manifest["runs"]))


def point_config(cfg: dict, point: dict, seeds: int) -> dict:
    """`cfg` with one sweep point ({dotted.key: value}) applied and `seeds` replicas."""
    out = copy.deepcopy(cfg)
    out["run"]["seeds"] = list(range(seeds))
    for key, value in point.items():
        *path, last = key.split(".")
        node = out
        for k in path:
            node = node.setdefault(k, {})
        node[last] = value
    return out


def exact_drift(cfg: dict, result, f) -> np.ndarray:
    """Per row of the floors table `f`: the exact leading-order drift floor η²(E−1)²/8 vᵀH̄⁻¹v
    (bounds.drift_floor_exact) from that run's client Hessians and gradients at θ*."""
    n_seeds = int(f["seed"].max()) + 1
    pred = {}
    for run in result.manifest["runs"]:
        c = point_config(cfg, run["point"], n_seeds)
        oracle = make_oracle(build_config(c))
        theta = oracle.constants.theta_star.unsqueeze(1).expand(-1, oracle.n_clients, -1)
        H, G, w = oracle.hessian(theta).numpy(), oracle.grad(theta, None, None).numpy(), oracle.weights.numpy()
        eta, E = c["algorithm"]["lr"], c["algorithm"]["local_steps"]
        for s in range(n_seeds):
            pred[run["run_id"], s] = bounds.drift_floor_exact(eta, E, H[s], G[s], w[s])
    return np.asarray([pred[r, s] for r, s in zip(f["run_id"], f["seed"])], float)


def small_eta_E_L(result, cfg: dict) -> float:
    """max over the sweep's runs of η·E·L_max (L_max: the largest client smoothness)."""
    out = 0.0
    for run in result.manifest["runs"]:
        a = {**cfg["algorithm"], **{k.split(".", 1)[1]: v for k, v in run["point"].items() if k.startswith("algorithm.")}}
        out = max(out, a["lr"] * a.get("local_steps", 1) * float(np.max(run["constants"]["L_clients"])))
    return out


DRIFT = {"quick": {"rounds": 150, "Es": (2, 3, 5), "etas": (0.125, 0.25, 0.5), "hets": (1.0, 2.0, 4.0)},
         "full": {"rounds": 500, "Es": (2, 3, 4, 6), "etas": (0.0625, 0.125, 0.25, 0.5), "hets": (0.5, 1.0, 2.0, 4.0)},
         "lr": 0.25, "E": 3, "replicas": 8}


@claim("drift-floor", statement="FedDPO with exact gradients and constant η stalls at a floor ∝ η²(E−1)²ζ²",
       source="Jiang'26; Koloskova et al.'20; Woodworth et al.'20", metric="subopt floor",
       regime="exact gradients, full participation; sweeps E ∈ {quick[Es]} at η={lr}, η ∈ {quick[etas]} "
              "and heterogeneity ∈ {quick[hets]} at E={E} (quick; full: E ∈ {full[Es]}, η ∈ {full[etas]}, "
              "heterogeneity ∈ {full[hets]}), ≥{replicas} replicas; leading order in ηEL (ηEL_max ≤ 0.6: its O(ηEL) "
              "corrections stay inside the coefficient band)",
       params=DRIFT, predicted="slope 2 in (E−1); 2 in η; 1 in ζ²; floor = η²(E−1)²/8 vᵀH̄⁻¹v (exact)",
       tolerance=0.3, band=(0.8, 1.25), small=Small("ηEL_max", 0.6))
def drift_floor(ctx: Context, c: Claim) -> Outcome:
    P, tol = c.params["quick" if ctx.quick else "full"], c.tolerance
    Es, etas, hets, rounds = P["Es"], P["etas"], P["hets"], P["rounds"]
    cfg = base(rounds, local_steps=c.params["E"], lr=c.params["lr"])
    k = c.params["replicas"]  # exact gradients: each replica is another random problem
    res_e = ctx.sweep(cfg, [{"algorithm.local_steps": E} for E in Es], min_seeds=k)
    res_eta = ctx.sweep(cfg, [{"algorithm.lr": eta} for eta in etas], min_seeds=k)
    res_het = ctx.sweep(cfg, [{"problem.heterogeneity": h} for h in hets], min_seeds=k)
    fit_e, v_e, plot = slope_claim(ctx, "drift-floor", "E − 1", {i: E - 1 for i, E in enumerate(Es)},
                                   res_e, "subopt", 2.0, tol)
    fit_eta, v_eta, _ = slope_claim(ctx, "drift-floor", "η", dict(enumerate(etas)), res_eta, "subopt", 2.0, tol)
    zeta2 = constant_per_seed(res_het, "zeta2")
    fit_z, v_z, _ = slope_claim(ctx, "drift-floor", "ζ²", lambda f: zeta2(f), res_het, "subopt", 1.0, tol)
    obs, pred, seeds = [], [], []
    for res in (res_e, res_eta, res_het):
        f = floors(res.table, "subopt")
        obs.append(f["floor"].to_numpy()), pred.append(exact_drift(cfg, res, f)), seeds.append(f["seed"].to_numpy())
    small = max(small_eta_E_L(r, cfg) for r in (res_e, res_eta, res_het))
    out = Outcome.from_fit(fit_e, combine([v_e, v_eta, v_z], ["E−1", "η", "ζ²"]), 2.0, small=small,
                           details={"slope_in_E-1": fit_e, "slope_in_eta": fit_eta, "slope_in_zeta2": fit_z},
                           figure=plot_fit(ctx, "drift-floor", fit_e, *plot))
    return out.coefficient_check(c, np.concatenate(obs), np.concatenate(pred), np.concatenate(seeds))


PARTICIPATION = {"N": 16, "lr": 1.0, "quick": {"Ss": (1, 4, 12, 15), "rounds": 400},
                 "full": {"Ss": (1, 2, 4, 8, 12, 15), "rounds": 1500}, "replicas": 16}


@claim("participation-floor", statement="E=1 with S of N clients sampled leaves a floor ∝ η ζ² (N−S)/(S(N−1))",
       source="Jiang'26; Li et al.'20", metric="subopt floor (stationary mean)",
       regime="exact local gradients, E=1, η={lr}, N={N}, S ∈ {quick[Ss]} (full: {full[Ss]}), sampling without "
              "replacement, ≥{replicas} replicas", params=PARTICIPATION,
       predicted="slope 1 in (N−S)/(S(N−1)); floor = ηζ²(N−S)/(4S(N−1)) (exact)", tolerance=0.25,
       band=(0.8, 1.25), small=Small("ηL_max", 0.5),
       controls=[Control("rival ζ²/S", "rival law", "no finite-population correction: x = 1/S; the same slope-1 "
                         "check on the same floors must refute it (S near N separates the laws)")])
def participation_floor(ctx: Context, c: Claim) -> Outcome:
    N, eta, P = c.params["N"], c.params["lr"], c.params["quick" if ctx.quick else "full"]
    Ss = P["Ss"]
    cfg = base(P["rounds"], lr=eta)
    cfg["problem"]["n_clients"] = N
    res = ctx.sweep(cfg, [{"algorithm.participation": S} for S in Ss], min_seeds=c.params["replicas"])
    x = {i: (N - S) / (S * (N - 1)) for i, S in enumerate(Ss)}
    fit, verdict, plot = slope_claim(ctx, c.id, "(N−S)/(S(N−1))", x, res, "subopt", 1.0, c.tolerance, tail=0.6)
    rival, rival_v, _ = slope_claim(ctx, c.id, "1/S", {i: 1.0 / S for i, S in enumerate(Ss)}, res, "subopt",
                                    1.0, c.tolerance, tail=0.6)
    f = floors(res.table, "subopt", 0.6)
    S = np.asarray([Ss[r] for r in f["run_id"]], float)
    pred = bounds.participation_floor(eta, S, N, constant_per_seed(res, "zeta2")(f))
    out = Outcome.from_fit(fit, verdict, 1.0, small=eta * run_constant(res, "L_clients"),
                           figure=plot_fit(ctx, c.id, fit, *plot))
    out.coefficient_check(c, f["floor"].to_numpy(), pred, f["seed"].to_numpy())
    return out.control("rival ζ²/S", rival, rival_v)


NOISE = {"lr": 0.5, "b": 1, "quick": {"ns": (2, 8, 32), "rounds": 300}, "full": {"ns": (2, 4, 8, 16, 32), "rounds": 800},
         "replicas": 16}


@claim("noise-floor", statement="With ζ=0 and constant η the floor is ∝ η σ²/(n b): linear speed-up in n",
       source="Stich'19; Koloskova et al.'20", metric="subopt floor (stationary mean)",
       regime="ζ=0, E=1, full participation (minibatch SGD over n ∈ {quick[ns]} clients; full: {full[ns]}), "
              "batch {b}, η={lr}, ≥{replicas} replicas", params=NOISE,
       predicted="slope −1 in n; floor = ησ²/(4nb) (exact)", tolerance=0.25, band=(0.8, 1.25),
       small=Small("ηL_max", 0.5))
def noise_floor(ctx: Context, c: Claim) -> Outcome:
    eta, b, P = c.params["lr"], c.params["b"], c.params["quick" if ctx.quick else "full"]
    ns = P["ns"]
    cfg = base(P["rounds"], batch_size=b, lr=eta)
    cfg["problem"].update(heterogeneity=0.0, dirichlet_alpha=0.0)
    res = ctx.sweep(cfg, [{"problem.n_clients": n} for n in ns], min_seeds=c.params["replicas"])
    fit, verdict, plot = slope_claim(ctx, c.id, "n clients", dict(enumerate(ns)), res, "subopt",
                                     -1.0, c.tolerance, tail=0.6)
    f = floors(res.table, "subopt", 0.6)
    n = np.asarray([ns[r] for r in f["run_id"]], float)
    pred = bounds.noise_floor(eta, constant_per_seed(res, "sigma2")(f), b, n)
    out = Outcome.from_fit(fit, verdict, -1.0, small=eta * run_constant(res, "L_clients"),
                           figure=plot_fit(ctx, c.id, fit, *plot))
    return out.coefficient_check(c, f["floor"].to_numpy(), pred, f["seed"].to_numpy())


MOMENTUM = {"lr": 0.5, "b": 1, "n": 8, "quick": {"betas": (0.0, 0.5, 0.75), "rounds": 600},
            "full": {"betas": (0.0, 0.25, 0.5, 0.625, 0.75), "rounds": 1600}, "replicas": 16}


@claim("server-momentum-floor", statement="FedAvgM (server momentum β) with E = 1 and ζ = 0 is heavy-ball "
       "SGD: its floor is the noise floor at the effective step η/(1−β), ησ²/(4nb(1−β)) to leading order",
       source="Hsu et al.'19, Reddi et al.'21 (server optimizers); ours (docs/theory.md §3.2)",
       metric="subopt floor (stationary mean)",
       regime="ζ=0, E=1, n={n} clients, batch {b}, η={lr}, server_opt = avgm with β ∈ {quick[betas]} "
              "(full: {full[betas]}), {quick[rounds]} rounds quick, {full[rounds]} full, ≥{replicas} replicas",
       params=MOMENTUM, predicted="slope 1 in 1/(1−β); floor = ησ²/(4nb(1−β)) (leading order)", tolerance=0.25,
       band=(0.8, 1.25), small=Small("ηL_max/(1−β)", 0.75),
       controls=[Control("no effect", "rival law", "momentum leaves the floor at its β = 0 value ησ²/(4nb): the "
                         "same coefficient check must refute it")])
def server_momentum_floor(ctx: Context, c: Claim) -> Outcome:
    """The plug-in server optimizers change what the theory says they change: heavy ball on a
    quadratic has stationary variance ηs(1+β)/((1−β)h(2(1+β) − ηh)) per direction (an AR(2)
    process), ηs/(2h(1−β)) to leading order, so the floor is the β = 0 floor over 1 − β."""
    P, eta, b, n = c.params["quick" if ctx.quick else "full"], c.params["lr"], c.params["b"], c.params["n"]
    betas = P["betas"]
    cfg = base(P["rounds"], batch_size=b, lr=eta, server_opt="avgm")
    cfg["problem"].update(heterogeneity=0.0, dirichlet_alpha=0.0, n_clients=n)
    res = ctx.sweep(cfg, [{"algorithm.server_momentum": beta} for beta in betas], min_seeds=c.params["replicas"])
    gain = {i: 1.0 / (1.0 - beta) for i, beta in enumerate(betas)}
    fit, verdict, plot = slope_claim(ctx, c.id, "1/(1−β)", gain, res, "subopt", 1.0, c.tolerance, tail=0.6)
    f = floors(res.table, "subopt", 0.6)
    base_floor = bounds.noise_floor(eta, constant_per_seed(res, "sigma2")(f), b, n)
    g = np.asarray([gain[r] for r in f["run_id"]])
    out = Outcome.from_fit(fit, verdict, 1.0, small=eta * run_constant(res, "L_clients") * max(gain.values()),
                           figure=plot_fit(ctx, c.id, fit, *plot))
    out.coefficient_check(c, f["floor"].to_numpy(), base_floor * g, f["seed"].to_numpy())
    moved = f["run_id"].to_numpy() > 0     # the β > 0 points, where the two laws differ
    rival = ratio_fit(f["floor"].to_numpy()[moved], base_floor[moved], f["seed"].to_numpy()[moved])
    return out.control("no effect", rival, judge_ratio(rival, c.band))


FIXED_POINT = {"E": 4, "lr": 0.25, "heterogeneity": 2.0, "betas": (0.5, 0.75), "quick": {"rounds": 400},
               "full": {"rounds": 800}}


@claim("server-momentum-drift", statement="Server momentum leaves FedDPO's drift floor where it is: with exact "
       "gradients the server stops where the averaged pseudo-gradient vanishes, whatever its update rule, so "
       "FedAvgM's floor equals FedAvg's (while its noise floor grows by 1/(1−β): server-momentum-floor)",
       source="ours (a fixed point of x ← x + η_g·rule(Δ(x)) has Δ(x) = 0 for sgd and avgm)",
       metric="final subopt with exact gradients, relative to FedAvg's",
       regime="exact gradients, E={E}, η={lr}, heterogeneity {heterogeneity}, server_opt = avgm with β ∈ {betas} "
              "against sgd, {quick[rounds]} rounds quick, {full[rounds]} full (converged: the last two logged "
              "values agree)", params=FIXED_POINT, predicted="floor(β)/floor(0) = 1 (to 1e-6)", tolerance=1e-6,
       controls=[Control("noise-floor law", "rival law", "the floor grows by 1/(1−β) as the noise floor does: the same "
                         "check must refute it")])
def server_momentum_drift(ctx: Context, c: Claim) -> Outcome:
    p = c.params
    cfg = base(p["quick" if ctx.quick else "full"]["rounds"], local_steps=p["E"], batch_size=0, lr=p["lr"])
    cfg["problem"].update(heterogeneity=p["heterogeneity"])
    betas = p["betas"]
    points = [{}] + [{"algorithm.server_opt": "avgm", "algorithm.server_momentum": b} for b in betas]
    t = ctx.sweep(cfg, points).table
    last = t[t["round"] == t["round"].max()].sort_values(["run_id", "seed"])
    prev = t[t["round"] == sorted(t["round"].unique())[-2]].sort_values(["run_id", "seed"])
    moved = float(np.max(np.abs(last["subopt"].to_numpy() / prev["subopt"].to_numpy() - 1)))
    floor = {i: last[last["run_id"] == i]["subopt"].to_numpy() for i in range(len(points))}
    ratio = np.stack([floor[i + 1] / floor[0] for i in range(len(betas))])          # [β, seed]
    gain = 1 / (1 - np.asarray(betas))[:, None]

    def judge(expected) -> Verdict:
        miss = float(np.max(np.abs(ratio / expected - 1)))
        if moved > c.tolerance:
            return Verdict("inconclusive", f"not converged: the floors still move by {moved:.2g} between the last "
                                           "two logged rounds")
        return judge_identical(miss, c.tolerance)

    out = Outcome(float(np.max(np.abs(ratio - 1))), (float(ratio.min() - 1), float(ratio.max() - 1)), judge(1.0),
                  0.0, details={"floors_sgd": floor[0].tolist(), "ratios": ratio.tolist(),
                                "moved_in_last_log_interval": moved})
    return out.control("noise-floor law", f"ratio {ratio.mean():.6g} against 1/(1−β) = {gain.ravel().tolist()}",
                       judge(gain))


SCAFFOLD = {"E": 16, "b": 128, "lr": 0.5, "quick": {"hets": (1.0, 2.0, 4.0), "rounds": 200},
            "full": {"hets": (1.0, 1.5, 2.0, 3.0, 4.0), "rounds": 500}, "replicas": 8}


@claim("scaffold-no-drift", statement="SCAFFOLD's floor does not depend on the heterogeneity ζ²",
       source="Karimireddy et al.'20", metric="subopt floor (stationary mean)",
       regime="E={E}, batch {b}, η={lr}, full participation, heterogeneity ∈ {quick[hets]} (full: {full[hets]}), "
              "≥{replicas} replicas: FedDPO's drift floor dominates its noise floor there",
       params=SCAFFOLD, predicted="slope 0 in ζ²", tolerance=0.25,
       controls=[Control("FedDPO", "algorithm", "FedDPO has client drift ∝ ζ²: the same slope-0 check on FedDPO, "
                         "same problems and budget, must refute it")])
def scaffold_no_drift(ctx: Context, c: Claim) -> Outcome:
    P = c.params["quick" if ctx.quick else "full"]
    out = {}
    for name in ("scaffold", "feddpo"):
        cfg = base(P["rounds"], name=name, local_steps=c.params["E"], batch_size=c.params["b"], lr=c.params["lr"])
        res = ctx.sweep(cfg, [{"problem.heterogeneity": h} for h in P["hets"]], min_seeds=c.params["replicas"])
        zeta2 = constant_per_seed(res, "zeta2")
        out[name] = slope_claim(ctx, c.id, "ζ²", lambda f, z=zeta2: z(f), res, "subopt", 0.0, c.tolerance, 0.6)
    fit, verdict, plot = out["scaffold"]
    fed, fed_v, _ = out["feddpo"]
    return Outcome.from_fit(fit, verdict, 0.0, details={"feddpo_slope_in_zeta2": fed},
                            figure=plot_fit(ctx, c.id, fit, *plot)).control("FedDPO", fed, fed_v)
