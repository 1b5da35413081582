"""Claims about published bounds: every run stays under its instantiated upper bound
(`bound-validity`), and on a hard instance above a lower bound (`local-sgd-lower-bound`).

The bound is Koloskova et al. 2020, Thm 2, with the constants the theorem assumes (per-sample
smoothness L_sample, the strong convexity every client loss has everywhere, here the l2 weight;
`bounds.koloskova_bound`) and only at steps inside its condition η ≤ p/(c τ L_sample): each
variant runs at that largest admitted step. The former instantiation (global L, μ(θ*), the step
1/(4 L E) outside the condition) is run as the control: the same check must find it violated.

The lower bound is ours, derived on the two-type instance of `synthetic.hard_instances` (theory.md
5.1, "Lower bounds"); the claim runs FedDPO and the centralized minibatch SGD on that instance.
"""

from __future__ import annotations

import numpy as np

from analysis import bound_validity, judge_bound
from theory_lab import bounds
from theory_lab.claims.base import Claim, Context, Control, Outcome, claim, combine
from theory_lab.claims.federated import base
from theory_lab.config import build_config
from theory_lab.runner import make_oracle

BOUND = {"quick": {"rounds": 100}, "full": {"rounds": 400}, "batch": 4,
         "variants": (("feddpo", 1, 0, None), ("feddpo", 4, 0, None), ("feddpo", 1, 4, None),
                      ("decdpo", 1, 0, "ring"), ("decdpo", 1, 0, "complete"))}


def variant_config(rounds: int, batch: int, name: str, E: int, S: int, topo) -> dict:
    cfg = base(rounds, name=name, local_steps=E, participation=S, batch_size=batch)
    cfg["problem"]["init"] = "reference"
    cfg["run"]["log_every"] = 1
    if topo:
        cfg["topology"] = {"name": topo}
    return cfg


def weighted_running_mean(subopt: np.ndarray, steps: np.ndarray, mu: float, eta: float) -> np.ndarray:
    """The quantity Thm 2 bounds: the running average of E f(θ̄_t) − f* with weights (1 − μη/2)^(−t)."""
    w = (1.0 - mu * eta / 2.0) ** (-steps)
    return np.cumsum(w * subopt) / np.cumsum(w)


def _check(ctx: Context, cfg: dict, E: int, S: int, name: str, eta: float, faithful: bool):
    """(empirical, bound) arrays of one variant at step `eta`, over all seeds. `faithful`: the
    theorem's constants and step condition; otherwise the former instantiation (global L, μ(θ*),
    no step condition)."""
    cfg["algorithm"]["lr"] = eta
    res = ctx.sweep(cfg, [{}])
    p = float(res.table["spectral_gap"].iloc[0]) if name == "decdpo" else 1.0
    consts = res.manifest["runs"][0]["constants"]
    emp, bnd = [], []
    for seed, g in res.table.groupby("seed"):
        c = bounds.Constants.from_exact(consts, int(seed), D2=float(g["dist_to_opt"].iloc[0]))
        if not faithful:
            c = bounds.Constants(L=c.L, mu=c.mu, sigma2=c.sigma2, zeta2=c.zeta2, F0=c.F0, n=c.n, D2=c.D2)
        R = g["round"].to_numpy()[1:]
        emp.append(weighted_running_mean(g["subopt"].to_numpy()[1:], R * E, c.mu_g, eta))
        kw = {"b": cfg["algorithm"]["batch_size"], "eta": eta, "c_step": bounds.KOLOSKOVA_C_STEP if faithful else 0.0}
        if name == "feddpo":
            bnd.append(bounds.feddpo_bound(R, c, E=E, S=S or c.n, **kw))
        else:
            bnd.append(bounds.decdpo_bound(R, c, p=p, tau=E, **kw))
    return np.concatenate(emp), np.concatenate(bnd)


@claim("bound-validity", statement="Every run stays under its instantiated upper bound (Koloskova et al.'20 "
       "Thm 2, constant step, with the constants it assumes and inside its step-size condition; hidden "
       "constants set to 1); the tightness ratio is reported",
       source="Koloskova et al.'20", metric="running weighted average of subopt against the bound",
       regime="FedDPO E∈{{1,4}}, S∈{{N, N/2}}; DecDPO ring and complete; batch {batch}, from θ_ref, "
              "η = p/(c τ L_sample) (c = 96√3, the largest step the theorem admits), {quick[rounds]} rounds "
              "quick, {full[rounds]} full",
       params=BOUND, predicted="empirical ≤ bound at every logged point", tolerance=1.0,
       controls=[Control("former instantiation", "coefficient", "global L and μ(θ*) at the former step "
                         "η = 1/(4 L E), outside the theorem's condition: the same check must find it violated")])
def bound_validity_claim(ctx: Context, c: Claim) -> Outcome:
    rounds = c.params["quick" if ctx.quick else "full"]["rounds"]
    emp, bnd, ctl_emp, ctl_bnd, steps, by_setting = [], [], [], [], {}, {}
    for name, E, S, topo in c.params["variants"]:
        cfg = variant_config(rounds, c.params["batch"], name, E, S, topo)
        probe = make_oracle(build_config({**cfg, "run": {**cfg["run"], "seeds": list(range(ctx.seeds))}}))
        p = spectral_gap(cfg) if topo else 1.0
        consts = [bounds.Constants.from_exact(probe.constants, s) for s in range(probe.n_seeds)]
        eta = min(float(bounds.koloskova_step_limit(k, tau=E, p=p)) for k in consts)
        e, b = _check(ctx, cfg, E, S, name, eta, faithful=True)
        emp.append(e), bnd.append(b)
        label = f"{name} E={E} S={S or 'N'} {topo or ''}".strip()
        by_setting[label] = bound_validity(e, b)["tightness"]
        former = 1.0 / (4.0 * max(k.L for k in consts) * E)
        e, b = _check(ctx, cfg, E, S, name, former, faithful=False)
        ctl_emp.append(e), ctl_bnd.append(b)
        inside = all(former <= float(bounds.koloskova_step_limit(k, tau=E, p=p)) for k in consts)
        steps[label] = {
            "eta": eta, "former_eta": former, "former": "inside the theorem" if inside else "outside the theorem"}
    validity = bound_validity(np.concatenate(emp), np.concatenate(bnd))
    tight = validity["tightness"]
    out = Outcome(tight.get("median", np.nan), (tight.get("min", np.nan), tight.get("max", np.nan)),
                  judge_bound(validity), 1.0, tightness=tight.get("median"),
                  details={"points": validity["n_points"], "violations": validity["violations"], "steps": steps,
                           "bound/empirical by setting": {k: {q: round(v, 3) for q, v in t.items()}
                                                          for k, t in by_setting.items()}})
    former = bound_validity(np.concatenate(ctl_emp), np.concatenate(ctl_bnd))
    out.control("former instantiation", f"{former['violations']} of {former['n_points']} points above the bound, "
                f"bound/empirical min {former['tightness'].get('min', np.nan):.3g}", judge_bound(former))
    return out


def spectral_gap(cfg: dict) -> float:
    """p = 1 − ρ² of the config's topology (without running it)."""
    from theory_lab.topology import make_topology

    full = build_config(cfg)
    return float(make_topology(full.topology, full.problem.n_clients).spectrum().p)


# ---------------------------------------------------------------------------------------------
# lower ≤ observed ≤ upper on a hard instance (theory.md 5.1, "Lower bounds")
# ---------------------------------------------------------------------------------------------

LOWER = {"H": 1.0, "zeta": 1.0, "D": 1.0, "clients": 4, "sigma2": 1e-3, "batch": 1, "replicas": 8,
         "etas": tuple(float(e) for e in np.geomspace(1e-3, 1.0, 13)),   # η H ≤ 1: the bound's class
         "quick": {"K": (2, 8), "R": (10, 40)}, "full": {"K": (2, 4, 8), "R": (10, 40, 160)}}


def subopt_at(oracle, name: str, K: int, eta: float, rounds, batch: int, seed: int = 0) -> np.ndarray:
    """Mean over replicas of F(θ_R) − F* after each R in `rounds`, for algorithm `name` (the
    project's own class) run on `oracle` with K local steps (centralized: K·b samples a round)."""
    import torch

    from theory_lab.algorithms import make_algorithm
    from theory_lab.communicator import InProcessCommunicator
    from theory_lab.config import AlgorithmConfig

    cfg = AlgorithmConfig(name=name, local_steps=K, lr=eta, batch_size=batch)
    cfg.validate()
    alg = make_algorithm(cfg, oracle, InProcessCommunicator(), torch.Generator().manual_seed(seed), max(rounds))
    out = []
    for r in range(1, max(rounds) + 1):
        alg.round(r - 1)
        if r in rounds:
            out.append(float(oracle.evaluate(alg.model())["subopt"].mean()))
    return np.asarray(out)


@claim("local-sgd-lower-bound",
       statement="On the two-type hard instance (curved and linear clients, dissimilarity ζ² at x*), "
                 "local SGD at every constant step η ≤ 1/H stays above the derived lower bound, and at its "
                 "best step under Woodworth et al.'20 Thm 3's convex upper bound (constants 1); the gaps "
                 "upper/lower and observed/lower are reported per setting",
       source="derived (theory.md 5.1); Woodworth, Patel, Srebro '20 Thm 3",
       metric="E F(x_R) − F* (mean over replicas) against local_sgd_lower_bound and local_sgd_woodworth_bound",
       regime="H = {H}, ζ = {zeta}, D = {D}, M = {clients} clients, σ² = {sigma2}, batch {batch}, "
              "{replicas} replicas; η on 13 points of [1e-3, 1/H]; K ∈ {quick[K]}, R ∈ {quick[R]} quick, "
              "K ∈ {full[K]}, R ∈ {full[R]} full",
       params=LOWER, predicted="lower ≤ observed at every η; best-η observed ≤ upper", tolerance=1.0,
       controls=[Control("minibatch SGD", "algorithm", "minibatch SGD with the same samples per round converges "
                         "to x* on this instance: it must go below local SGD's lower bound"),
                 Control("ζ = 0", "setting", "the instance without dissimilarity has no drift: local SGD must "
                         "go below the bound computed with the hard instance's ζ"),
                 Control("step 1/H", "setting", "the upper bound is for a tuned step: at η = 1/H the drift "
                         "ζ²(K−1)²/(4H) must exceed it in some setting")])
def local_sgd_lower_bound_claim(ctx: Context, c: Claim) -> Outcome:
    from synthetic.hard_instances import TwoTypeQuadratic

    p = c.params
    grid = p["quick" if ctx.quick else "full"]
    Ks, Rs, etas, b = grid["K"], list(grid["R"]), p["etas"], p["batch"]

    def instance(zeta):
        return TwoTypeQuadratic(p["H"], zeta, p["D"], p["clients"], p["sigma2"], n_seeds=p["replicas"])

    hard, flat = instance(p["zeta"]), instance(0.0)
    consts = hard.constants()
    lower = np.asarray([[bounds.local_sgd_lower_bound(R, K, p["H"], p["zeta"] ** 2, p["D"] ** 2) for R in Rs]
                        for K in Ks])                                                     # [K, R]
    upper = np.asarray([bounds.local_sgd_woodworth_bound(np.asarray(Rs), consts, E=K, b=b, regime="convex")
                        for K in Ks])
    runs = {(alg, o is flat): np.asarray([[subopt_at(o, alg, K, eta, Rs, b) for eta in etas] for K in Ks])
            for alg, o in (("feddpo", hard), ("centralized", hard), ("feddpo", flat))}   # [K, η, R]
    ctx.runs += sum(v.shape[0] * v.shape[1] for v in runs.values())
    local = runs[("feddpo", False)]
    best, at = local.min(1), np.asarray(etas)[local.argmin(1)]                          # [K, R]
    low = bound_validity(lower[:, None, :], local)            # the lower bound holds at every step
    up = bound_validity(best, upper)                          # the upper bound at the best step
    verdict = combine([judge_bound(low), judge_bound(up)], ["lower ≤ observed", "best observed ≤ upper"])
    settings = {f"K={K} R={R}": {"lower": float(lower[i, j]), "observed (best η)": float(best[i, j]),
                                 "best η": float(at[i, j]), "upper": float(upper[i, j]),
                                 "observed/lower": float(best[i, j] / lower[i, j]),
                                 "upper/lower": float(upper[i, j] / lower[i, j]),
                                 "upper/observed": float(upper[i, j] / best[i, j])}
                for i, K in enumerate(Ks) for j, R in enumerate(Rs)}
    ratio = best / lower
    out = Outcome(float(np.median(ratio)), (float(ratio.min()), float(ratio.max())), verdict, 1.0,
                  tightness=float(np.median(upper / best)),
                  details={"by setting": {k: {q: float(f"{v:.4g}") for q, v in d.items()} for k, d in settings.items()},
                           "lower-side points": low["n_points"], "lower-side violations": low["violations"]})
    mb = bound_validity(lower, runs[("centralized", False)].min(1))
    out.control("minibatch SGD", f"{mb['violations']} of {mb['n_points']} settings below the bound, best "
                f"minibatch/lower {mb['tightness']['min']:.3g} to {mb['tightness']['max']:.3g}", judge_bound(mb))
    fl = bound_validity(lower, runs[("feddpo", True)].min(1))
    out.control("ζ = 0", f"{fl['violations']} of {fl['n_points']} settings below the bound, best local/lower "
                f"{fl['tightness']['min']:.3g} to {fl['tightness']['max']:.3g}", judge_bound(fl))
    big = np.asarray([subopt_at(hard, "feddpo", K, 1.0 / p["H"], Rs, b) for K in Ks])
    st = bound_validity(big, upper)
    out.control("step 1/H", f"{st['violations']} of {st['n_points']} settings above the upper bound, "
                f"upper/observed min {st['tightness']['min']:.3g}", judge_bound(st))
    return out
