"""Claims about gossip algorithms: DecDPO's consensus error (heterogeneity and noise terms, and
how much of it the spectral gap alone explains), gradient tracking, and the ordering of topologies.

Consensus floors are measured from the optimum (problem.init = "optimum"): every client starts at
θ*, the spread then grows to its stationary level. The lazy complete family W = (1−a)I + aJ/n has
every non-consensus eigenvalue equal to 1−a, so ρ = 1−a and p = 1−(1−a)² exactly; runs are made
~8/a rounds long (the slowest mode relaxes like (1−a)^t) and η is kept well below a/L so the
Hessian coupling, a relative O(ηL/a) correction, stays small.
"""

from __future__ import annotations

import math

import numpy as np

from analysis import judge_exponent, judge_ordering, loglog_slope
from analysis.verdict import Verdict
from theory_lab.bounds import consensus_heterogeneity, consensus_noise, spectral_consensus
from theory_lab.claims.base import (Context, Outcome, ci_text, claim, combine, constant_per_seed, floors,
                                    within_seed)
from theory_lab.claims.federated import slope_claim
from theory_lab.topology import TopologyConfig, make_topology

PROBLEM = {"n_clients": 8, "pairs_per_client": 60, "heldout_pairs": 20, "dim": 5, "n_contexts": 10,
           "heterogeneity": 2.0, "dirichlet_alpha": 0.3, "l2": 0.05, "init": "optimum"}
ORDER = ["complete", "exponential", "torus", "ring", "path"]


def base(rounds: int, topology: dict | None = None, problem: dict | None = None, logs: int = 100,
         **algorithm) -> dict:
    """A DecDPO config logging ~`logs` times (each log evaluates the averaged model: not free)."""
    return {"run": {"rounds": rounds, "log_every": max(rounds // logs, 1)},
            "problem": {**PROBLEM, **(problem or {})},
            "algorithm": {"name": "decdpo", "batch_size": 0, "lr": 0.001, **algorithm},
            "topology": topology or {"name": "ring"}}


def lazy_variants(lazies, per_a: float, logs: int = 100) -> list[dict]:
    """One variant per laziness a, each run ~per_a/a rounds (the slowest mode relaxes like (1−a)^t)."""
    out = []
    for a in lazies:
        rounds = int(math.ceil(per_a / a))
        out.append({"topology.lazy": a, "run.rounds": rounds, "run.log_every": max(rounds // logs, 1)})
    return out


def gap_per_run(result):
    """x for slope_claim: each run's spectral gap p, read from the results table."""
    gap = result.table.groupby("run_id")["spectral_gap"].first().to_dict()
    return lambda f: np.asarray([gap[r] for r in f["run_id"]], dtype=float)


def in_ci(fit, value: float) -> bool:
    return bool(np.isfinite(fit.ci_low) and fit.ci_low <= value <= fit.ci_high)


def which_form(fit, forms: dict[str, float], tol: float) -> str:
    """The data's answer to '1/p² or 1/p?': which exponents the CI contains, else which one the
    slope lies within `tol` of (the claim's band)."""
    ci = ci_text(fit.slope, (fit.ci_low, fit.ci_high))
    inside = [name for name, slope in forms.items() if in_ci(fit, slope)]
    if len(inside) == 1:
        return f"{inside[0]}: the CI {ci} contains its exponent only"
    if inside:
        return f"cannot separate {' and '.join(inside)}: the CI {ci} contains both exponents"
    near = [name for name, slope in forms.items() if abs(fit.slope - slope) <= tol]
    excl = ", ".join(f"{v:g}" for v in forms.values())
    if len(near) == 1:
        return (f"{near[0]}: the slope {ci} is within ±{tol:g} of its exponent only (the narrow CI "
                f"excludes {excl} exactly: the exact law is not a pure power of p, see note)")
    return f"neither: the slope {ci} is within ±{tol:g} of {' and '.join(near) or 'no exponent'} ({excl})"


def _quiet_minor_ticks(ax, xticks=None) -> None:
    """Log axes spanning about one decade label every minor tick and the labels overlap: label the
    major ticks only, or the given x values."""
    from matplotlib.ticker import FixedLocator, NullFormatter

    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_minor_formatter(NullFormatter())
    if xticks is not None:
        ticks = sorted(set(float(v) for v in xticks))
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_minor_locator(FixedLocator([]))
        ax.set_xticklabels([f"{v:.3g}" for v in ticks], fontsize=7)


def plot_series(ctx: Context, claim_id: str, series: list, x_name: str, y_name: str,
                guides: dict[str, float] | None = None, xticks=None) -> str | None:
    """Log-log figure of one or more (label, x, y, fit) series: per-seed points and each fitted
    power law drawn through its data's centre (log-means), plus dashed reference slopes through
    the first series' centre."""
    made = ctx.figure(claim_id)
    if made is None:
        return None
    fig, ax = made
    centre = None
    for k, (label, x, y, fit) in enumerate(series):
        x, y = np.asarray(x, float), np.asarray(y, float)
        ok = (x > 0) & (y > 0)
        color = "0.2" if k == 0 else f"C{k}"
        ax.loglog(x[ok], y[ok], "os^D"[k % 4], ms=4, mfc="none", color=color, label=f"{label} (per seed)")
        lx, ly = np.log(x[ok]).mean(), np.log(y[ok]).mean()
        centre = centre or (lx, ly, np.geomspace(x[ok].min(), x[ok].max(), 50))
        grid = np.geomspace(x[ok].min(), x[ok].max(), 50)
        if np.isfinite(fit.slope):
            ax.loglog(grid, np.exp(ly + fit.slope * (np.log(grid) - lx)), "-", color="0.45" if k == 0 else color,
                      label=f"{label} fit: slope {ci_text(fit.slope, (fit.ci_low, fit.ci_high))}")
    lx, ly, grid = centre
    for (label, slope), style in zip((guides or {}).items(), ("--", ":", "-.")):
        ax.loglog(grid, np.exp(ly + slope * (np.log(grid) - lx)), style, color="C0", lw=1, label=label)
    _quiet_minor_ticks(ax, xticks)
    ax.set_xlabel(x_name)
    ax.set_ylabel(y_name)
    ax.set_title(claim_id, fontsize=9)
    ax.legend(fontsize=6)
    return ctx.save(claim_id, fig)


# ------------------------------------------------------------------------------------------------
# consensus-heterogeneity


@claim("consensus-heterogeneity",
       statement="DecDPO with exact gradients and constant η: stationary consensus error ∝ η²ζ²/p², p = 1−ρ²",
       source="Koloskova et al.'20", metric="consensus_error floor (after gossip, tail mean)",
       regime="exact gradients, heterogeneous clients (heterogeneity 2, Dirichlet 0.3), started at θ*, "
              "lazy complete W=(1−a)I+aJ/n with small a, ηL/a ≤ 0.02",
       predicted="slope −2 in p (not −1); 2 in η", tolerance=0.3)
def consensus_het(ctx: Context) -> Outcome:
    cid = "consensus-heterogeneity"
    lazies = (0.02, 0.04, 0.08, 0.16) if ctx.quick else (0.01, 0.02, 0.04, 0.08, 0.16)
    etas = (0.0005, 0.001, 0.002) if ctx.quick else (0.00025, 0.0005, 0.001, 0.002, 0.004)
    eta, tol = 0.001, 0.3
    lazy = {"name": "lazy_complete"}
    # exact gradients: the floor is a deterministic fixed point, a few tail logs measure it
    res_p = ctx.sweep(base(10, lazy, lr=eta), lazy_variants(lazies, 8.0, logs=32))
    a_eta = 0.08
    res_eta = ctx.sweep(base(int(8 / a_eta), {**lazy, "lazy": a_eta}, logs=32), [{"algorithm.lr": e} for e in etas])
    fit_p, v_p, plot = slope_claim(ctx, cid, "spectral gap p = 1−ρ²", gap_per_run(res_p), res_p,
                                   "consensus_error", -2.0, tol)
    fit_eta, v_eta, _ = slope_claim(ctx, cid, "η", dict(enumerate(etas)), res_eta, "consensus_error", 2.0, tol)

    # the exact leading-order value for lazy complete W: η²ζ²ρ²/(1−ρ)² (bounds.consensus_heterogeneity)
    f = floors(res_p.table, "consensus_error")
    p = gap_per_run(res_p)(f)
    zeta2 = constant_per_seed(res_p, "zeta2")(f)
    exact = np.asarray(consensus_heterogeneity(eta, zeta2, p))
    ratio = f["floor"].to_numpy() / exact
    xs, ys = within_seed(exact, f["floor"].to_numpy(), f["seed"].to_numpy())
    fit_exact = loglog_slope(xs, ys, seeds=f["seed"].to_numpy())
    rho = np.sqrt(1 - np.asarray(sorted(set(p))))
    local = -(1 + rho) / rho**2  # d log(ρ²/(1−ρ)²) / d log p at a = 1−ρ: −(2−a)/(1−a)²

    details = {
        "slope_in_p": fit_p,
        "ci_contains_-2 (1/p²)": in_ci(fit_p, -2.0),
        "ci_contains_-1 (1/p)": in_ci(fit_p, -1.0),
        "data_support": which_form(fit_p, {"1/p²": -2.0, "1/p": -1.0}, tol),
        "slope_in_eta": fit_eta,
        "slope_vs_exact_factor ρ²/(1−ρ)² (predicted 1)": fit_exact,
        "observed/exact η²ζ²ρ²/(1−ρ)² (min, max)": f"{ratio.min():.3f}, {ratio.max():.3f}",
        "note": ("for lazy complete W the exact stationary consensus error of adapt-then-combine is "
                 "η²ζ²(1−a)²/a² = η²ζ²ρ²/(1−ρ)², whose local slope in p is −(2−a)/(1−a)² "
                 f"({local[-1]:.2f} at a={1 - rho[-1]:.2g} to {local[0]:.2f} at a={1 - rho[0]:.2g}): "
                 "the pure power law p^−2 holds only as ρ → 1, so the fitted slope sits slightly below −2"),
        "lazies": list(lazies), "lr": eta, "eta_check_at_lazy": a_eta,
    }
    figure = plot_series(ctx, cid, [("DecDPO, lazy complete", p, plot[1], fit_p)], "spectral gap p = 1−ρ²",
                         "consensus error (÷ seed mean)",
                         {"slope −2 (1/p²)": -2.0, "slope −1 (1/p)": -1.0}, xticks=p)
    return Outcome.from_fit(fit_p, combine([v_p, v_eta], ["p", "η"]), -2.0, details=details, figure=figure)


# ------------------------------------------------------------------------------------------------
# consensus-noise


@claim("consensus-noise",
       statement="DecDPO with ζ=0 and stochastic gradients: stationary consensus error ∝ η²σ²/p, p = 1−ρ²",
       source="Jiang'26 Thm 6.1", metric="consensus_error floor (after gossip, tail mean over 60%)",
       regime="shared data (every client holds the same pairs: ζ²=0 exactly), batch 1, started at θ*, "
              "lazy complete W with small a, ηL/a ≤ 0.02",
       predicted="slope −1 in p (not −2)", tolerance=0.25)
def consensus_noise_claim(ctx: Context) -> Outcome:
    cid = "consensus-noise"
    lazies = (0.02, 0.04, 0.08, 0.16) if ctx.quick else (0.01, 0.02, 0.04, 0.08, 0.16)
    b, eta, tol = 1, 0.001, 0.25
    cfg = base(10, {"name": "lazy_complete"}, {"heterogeneity": 0.0, "dirichlet_alpha": 0.0, "shared_data": True},
               batch_size=b, lr=eta)
    res = ctx.sweep(cfg, lazy_variants(lazies, 10.0 if ctx.quick else 25.0))
    fit, verdict, plot = slope_claim(ctx, cid, "spectral gap p = 1−ρ²", gap_per_run(res), res,
                                     "consensus_error", -1.0, tol, tail=0.6)

    # exact leading-order value for lazy complete: ((n−1)/n) η² σ² ρ² / (b p) (bounds.consensus_noise)
    f = floors(res.table, "consensus_error", 0.6)
    p = gap_per_run(res)(f)
    exact = np.asarray(consensus_noise(eta, constant_per_seed(res, "sigma2")(f), b, p, n=PROBLEM["n_clients"]))
    ratio = f["floor"].to_numpy() / exact
    xs, ys = within_seed(exact, f["floor"].to_numpy(), f["seed"].to_numpy())
    fit_exact = loglog_slope(xs, ys, seeds=f["seed"].to_numpy())
    zeta2 = max(max(r["constants"]["zeta2"]) for r in res.manifest["runs"])
    details = {
        "slope_in_p": fit,
        "ci_contains_-1 (1/p)": in_ci(fit, -1.0),
        "-2 (1/p²) excluded": bool(np.isfinite(fit.ci_low) and not in_ci(fit, -2.0)),
        "data_support": which_form(fit, {"1/p": -1.0, "1/p²": -2.0}, tol),
        "slope_vs_exact_factor ρ²/p (predicted 1)": fit_exact,
        "observed/exact ((n−1)/n)η²σ²ρ²/(bp) (min, max)": f"{ratio.min():.3f}, {ratio.max():.3f}",
        "max zeta2": zeta2,
        "note": ("for lazy complete W the exact value is ∝ ρ²/p = (1−p)/p, whose local slope in p is "
                 "−1/(1−p): the pure 1/p law holds only as ρ → 1, so the fitted slope sits slightly below −1"),
        "lazies": list(lazies), "lr": eta, "batch_size": b,
    }
    figure = plot_series(ctx, cid, [("DecDPO, ζ=0, batch 1", p, plot[1], fit)], "spectral gap p = 1−ρ²",
                         "consensus error (÷ seed mean)",
                         {"slope −1 (1/p)": -1.0, "slope −2 (1/p²)": -2.0}, xticks=p)
    return Outcome.from_fit(fit, verdict, -1.0, details=details, figure=figure)


# ------------------------------------------------------------------------------------------------
# gt-no-heterogeneity


@claim("gt-no-heterogeneity",
       statement="Gradient tracking's stationary consensus error does not depend on the heterogeneity ζ²",
       source="Koloskova, Lin & Stich'21", metric="consensus_error floor (after gossip, tail mean over 60%)",
       regime="ring of 8 (p≈0.35), batch 16, η=0.05, started at θ*; DecDPO on the same problems for "
              "contrast (its heterogeneity term η²ζ²ρ²/(1−ρ)² dominates its noise term there)",
       predicted="slope 0 in ζ²", tolerance=0.25)
def gt_no_heterogeneity(ctx: Context) -> Outcome:
    cid = "gt-no-heterogeneity"
    hets = (1.0, 2.0, 4.0, 8.0)
    rounds = 300 if ctx.quick else 800
    b, eta = 16, 0.05
    out = {}
    for name in ("gradient_tracking", "decdpo"):
        cfg = base(rounds, {"name": "ring"}, name=name, batch_size=b, lr=eta)
        cfg["run"]["log_every"] = 6 if ctx.quick else 4
        res = ctx.sweep(cfg, [{"problem.heterogeneity": h} for h in hets])
        zeta2 = constant_per_seed(res, "zeta2")
        out[name] = slope_claim(ctx, cid, "ζ²", lambda f, z=zeta2: z(f), res, "consensus_error", 0.0, 0.25, 0.6)
        out[name + "_res"] = res
    fit, verdict, plot = out["gradient_tracking"]
    fit_dec, _, _ = out["decdpo"]
    dec_positive = bool(np.isfinite(fit_dec.ci_low) and fit_dec.ci_low > 0)
    f = floors(out["decdpo_res"].table, "consensus_error", 0.6)
    g = floors(out["gradient_tracking_res"].table, "consensus_error", 0.6)
    # DecDPO's leading-order consensus error split into its heterogeneity and noise terms
    # (bounds.spectral_consensus with the exact client gradients and variances at θ*)
    res = out["decdpo_res"]
    W = make_topology(TopologyConfig(name="ring"), PROBLEM["n_clients"]).W()
    seeds = list(range(ctx.seeds))
    shares = []
    for run in res.manifest["runs"]:
        cfg = base(rounds, {"name": "ring"}, {"heterogeneity": run["point"]["problem.heterogeneity"]})
        G = client_grads(cfg, seeds)
        noise = np.asarray(run["constants"]["sigma2_clients"]) / b
        for s in range(len(seeds)):
            het = spectral_consensus(eta, W, G[s])
            both = spectral_consensus(eta, W, G[s], noise_traces=noise[s])
            shares.append(het / both)
    z = np.asarray([r["constants"]["zeta2"] for r in res.manifest["runs"]])
    details = {
        "decdpo_slope_in_zeta2": fit_dec,
        "decdpo_clearly_positive": dec_positive,
        "zeta2 range": f"{z.min():.3g} .. {z.max():.3g}",
        "DecDPO heterogeneity share of its predicted consensus error (min, max)":
            f"{min(shares):.3f}, {max(shares):.3f}",
        "mean consensus floor GT / DecDPO": float(g["floor"].mean() / f["floor"].mean()),
    }
    if not dec_positive:
        verdict = Verdict(verdict.status, verdict.reason + " Contrast failed: DecDPO's slope on the same "
                          f"problems is not clearly positive ({ci_text(fit_dec.slope, (fit_dec.ci_low, fit_dec.ci_high))}).")
    zg = constant_per_seed(out["gradient_tracking_res"], "zeta2")(g)
    zd = constant_per_seed(res, "zeta2")(f)
    figure = plot_series(ctx, cid, [("gradient tracking", zg, plot[1], fit),
                                    ("DecDPO", zd, out["decdpo"][2][1], fit_dec)],
                         "ζ² (heterogeneity at θ*)", "consensus error (÷ seed mean)")
    return Outcome.from_fit(fit, verdict, 0.0, details=details, figure=figure)


# ------------------------------------------------------------------------------------------------
# topology-order


def time_to(table, metric: str, eps: float):
    """Per (run_id, seed): first round at which `metric` ≤ eps, interpolated log-linearly between
    logged rounds (NaN when never reached)."""
    rows = []
    for (r, s), g in table.groupby(["run_id", "seed"], sort=True):
        g = g.sort_values("round")
        v, t = g[metric].to_numpy(float), g["round"].to_numpy(float)
        hit = np.flatnonzero(v <= eps)
        if hit.size == 0:
            rows.append((r, s, math.nan))
            continue
        i = hit[0]
        if i == 0:
            rows.append((r, s, t[0]))
            continue
        lv0, lv1 = math.log(v[i - 1]), math.log(max(v[i], 1e-300))
        rows.append((r, s, t[i - 1] + (lv0 - math.log(eps)) / (lv0 - lv1) * (t[i] - t[i - 1])))
    return np.asarray(rows, dtype=float)


@claim("topology-order",
       statement="For n=16 the spectral gaps order complete > exponential > torus > ring > path; "
                 "DecDPO's time to ε scales as 1/p when heterogeneity dominates",
       source="Koloskova et al.'20; Ying et al.'21",
       metric="p = 1−ρ² of each Metropolis W (headline: min ratio of neighbouring p); rounds to subopt ≤ ε",
       regime="n=16, Metropolis weights; time to ε: DecDPO, exact gradients, heterogeneity 2, from θ_ref, "
              "one fixed η=0.5 for every graph, ε = 3× the largest stationary floor",
       predicted="ordering of p (min neighbouring ratio > 1); time-to-ε slope −1 in p", tolerance=0.3)
def topology_order(ctx: Context) -> Outcome:
    cid = "topology-order"
    n = 16
    ps = {name: make_topology(TopologyConfig(name=name), n).spectrum().p for name in ORDER}
    order = judge_ordering(ps, ORDER)
    ratios = [ps[a] / ps[b] for a, b in zip(ORDER, ORDER[1:])]
    margin = float(min(ratios))

    rounds = 200 if ctx.quick else 300
    eta = 0.5
    cfg = base(rounds, {"name": "ring"}, {"n_clients": n, "init": "reference"}, lr=eta)
    cfg["run"]["log_every"] = 2  # rounds to ε are interpolated log-linearly between logs
    res = ctx.sweep(cfg, [{"topology.name": name} for name in ORDER])
    f = floors(res.table, "subopt", 0.2)
    floor_max = float(max(f["floor"].max(), 0.0))
    eps = 3.0 * floor_max
    t = time_to(res.table, "subopt", eps)
    p_run = np.asarray([ps[ORDER[int(r)]] for r in t[:, 0]])
    xs, ys = within_seed(p_run, t[:, 2], t[:, 1])
    fit_t = loglog_slope(xs, ys, seeds=t[:, 1])
    v_t = judge_exponent(fit_t, -1.0, 0.3)
    mean_t = {ORDER[int(r)]: float(np.nanmean(t[t[:, 0] == r, 2])) for r in np.unique(t[:, 0])}
    mean_floor = f.groupby("run_id")["floor"].mean()
    consts = res.manifest["runs"][0]["constants"]
    mu_min = float(min(consts["mu"]))
    details = {
        "spectral gaps p": {k: round(v, 5) for k, v in ps.items()},
        "time_to_eps slope in p": fit_t,
        "time_to_eps verdict": f"{v_t.status}: {v_t.reason}",
        "epsilon": eps,
        "epsilon rule": "3 × the largest subopt floor (tail mean) over topologies and seeds",
        # a floor still falling far below ε (complete graph: exact GD, to machine zero) does not move ε
        "floors stationary (or < ε/100)": bool((f["stationary"] | (f["floor"] < eps / 100)).all()),
        "mean rounds to ε": {k: round(v, 1) for k, v in mean_t.items()},
        "mean subopt floor": {ORDER[int(r)]: float(v) for r, v in mean_floor.items()},
        "lr": eta, "1/(η μ_min)": 1.0 / (eta * mu_min),
        "explanation": ("with one η small enough for every graph, the averaged model contracts at the "
                        "centralized rate ~ημ and reaches an ε above every floor before the consensus "
                        "error matters, so time to ε is set by ημ, not by p; the Θ(1/p) time of the theory "
                        "needs η tuned per graph so that the η²ζ²/p² floor just meets ε"
                        if v_t.status != "confirmed" else
                        "time to ε grows as 1/p: the heterogeneity term sets the time on these graphs"),
    }
    made = ctx.figure(cid)
    figure = None
    if made is not None:
        fig, ax = made
        ok = np.isfinite(t[:, 2])
        ax.loglog(p_run[ok], t[ok, 2], "o", ms=4, mfc="none", color="0.2", label="rounds to ε (per seed)")
        for name in ORDER:
            ax.annotate(name, (ps[name], mean_t.get(name, np.nan)), fontsize=6, rotation=45,
                        xytext=(2, 4), textcoords="offset points")
        grid = np.geomspace(min(ps.values()), max(ps.values()), 50)
        g = np.exp(np.nanmean(np.log(t[ok, 2])))
        lg = np.log(p_run[ok]).mean()
        ax.loglog(grid, g * np.exp(-(np.log(grid) - lg)), "--", color="C0", lw=1, label="slope −1 (1/p)")
        _quiet_minor_ticks(ax)
        ax.set_xlabel("spectral gap p = 1−ρ² (n=16)")
        ax.set_ylabel(f"rounds to subopt ≤ {eps:.2g}")
        ax.set_title(f"{cid}: time-to-ε slope {ci_text(fit_t.slope, (fit_t.ci_low, fit_t.ci_high))}", fontsize=8)
        ax.legend(fontsize=6)
        figure = ctx.save(cid, fig)
    verdict = Verdict(order.status, order.reason + f" Sub-check (not part of the verdict) time to ε={eps:.3g} "
                      f"vs p: {v_t.status} ({ci_text(fit_t.slope, (fit_t.ci_low, fit_t.ci_high))}).")
    return Outcome(margin, (margin, margin), verdict, None, details=details, figure=figure)


# ------------------------------------------------------------------------------------------------
# consensus-spectral


def lazy_match(W: np.ndarray, rho: float) -> np.ndarray:
    """(1−c)I + cW with c chosen so that its ρ equals `rho` (W's λ₂ moved to `rho`)."""
    lam = np.sort(np.linalg.eigvalsh(W))[::-1]
    c = (1.0 - rho) / (1.0 - lam[1])
    M = (1.0 - c) * np.eye(len(W)) + c * W
    lm = np.sort(np.linalg.eigvalsh(M))
    if not (abs(lm[-2] - rho) < 1e-9 and abs(lm[0]) <= rho + 1e-9):
        raise ValueError("cannot match rho by laziness alone")
    return M


def client_grads(cfg: dict, seeds: list[int]) -> np.ndarray:
    """[S, N, d]: client gradients at θ*, scaled by N w_i as DecDPO scales them."""
    from theory_lab.config import build_config
    from theory_lab.runner import make_oracle

    data = {**cfg, "run": {**cfg["run"], "seeds": list(seeds)}}
    oracle = make_oracle(build_config(data))
    ts = oracle.constants.theta_star
    G = oracle.grad(ts[:, None].expand(-1, oracle.n_clients, -1).contiguous(), None, None)
    G = G * (oracle.n_clients * oracle.weights).unsqueeze(-1)
    return G.numpy()


@claim("consensus-spectral",
       statement="DecDPO's stationary consensus error (exact gradients) is predicted by the whole spectrum "
                 "of W, (η²/n) Σ_k≥2 λ_k²/(1−λ_k)² ‖v_kᵀG‖², not by the spectral gap alone",
       source="ours (tracker issue 9); leading-order analysis of adapt-then-combine",
       metric="consensus_error floor / spectral prediction (headline: the worst ratio)",
       regime="n=16, exact gradients, heterogeneity 2, started at θ*, η=0.002 (ηL/(1−λ₂) ≤ 0.03), ~8/(1−λ₂) rounds; "
              "pairs with equal p: ring vs lazy complete, torus vs lazified exponential (full: + path vs lazy complete)",
       predicted="ratio 1 (confirmed if all in [0.8, 1.25], refuted if any outside [0.5, 2])", tolerance=0.25)
def consensus_spectral(ctx: Context) -> Outcome:
    cid = "consensus-spectral"
    n, eta = 16, 0.002
    spec = {name: make_topology(TopologyConfig(name=name), n) for name in ("ring", "torus", "exponential", "path")}
    rho = {name: t.spectrum().rho for name, t in spec.items()}
    topologies = {
        "ring": {"name": "ring"},
        "lazy_complete": {"name": "lazy_complete", "lazy": 1.0 - rho["ring"]},
        "torus": {"name": "torus"},
        "lazy_exponential": {"name": "custom", "weights": lazy_match(spec["exponential"].W(), rho["torus"]).tolist()},
    }
    pairs = [("ring", "lazy_complete"), ("torus", "lazy_exponential")]
    if not ctx.quick:  # the slowest pair: 1 − λ₂(path) ≈ 0.013
        topologies.update({"path": {"name": "path"}, "lazy_complete@path": {"name": "lazy_complete", "lazy": 1.0 - rho["path"]}})
        pairs.append(("path", "lazy_complete@path"))
    cfg0 = base(100, None, {"n_clients": n}, logs=40, lr=eta)
    seeds = list(range(ctx.seeds))
    G = client_grads(cfg0, seeds)
    obs, pred, gap = {}, {}, {}
    for name, topo in topologies.items():
        Wt = make_topology(TopologyConfig(**topo), n).W()
        # ~8 relaxation times of the slowest non-consensus mode, 1/(1 − λ₂)
        rounds = int(math.ceil(8.0 / (1.0 - np.sort(np.linalg.eigvalsh(Wt))[-2])))
        cfg = {**cfg0, "topology": topo, "run": {**cfg0["run"], "rounds": rounds, "log_every": max(rounds // 40, 1)}}
        res = ctx.sweep(cfg, [{}])
        f = floors(res.table, "consensus_error")
        obs[name] = f.sort_values("seed")["floor"].to_numpy()
        pred[name] = np.asarray([spectral_consensus(eta, Wt, G[s]) for s in range(len(seeds))])
        gap[name] = float(res.table["spectral_gap"].iloc[0])
    ratios = {k: obs[k] / pred[k] for k in topologies}
    allr = np.concatenate(list(ratios.values()))
    worst = float(allr[np.argmax(np.abs(np.log(allr)))])
    if np.all((allr >= 0.8) & (allr <= 1.25)):
        verdict = Verdict("confirmed", f"observed/spectral prediction in [{allr.min():.3g}, {allr.max():.3g}] "
                                       f"⊂ [0.8, 1.25] on all {len(topologies)} topologies and {len(seeds)} seeds.")
    elif np.any((allr < 0.5) | (allr > 2.0)):
        verdict = Verdict("refuted", f"observed/spectral prediction ranges over [{allr.min():.3g}, {allr.max():.3g}], "
                                     "outside [0.5, 2] somewhere.")
    else:
        verdict = Verdict("inconclusive", f"observed/spectral prediction in [{allr.min():.3g}, {allr.max():.3g}]: "
                                          "within [0.5, 2] but not all within [0.8, 1.25].")
    details = {"spectral gaps p": {k: round(v, 5) for k, v in gap.items()},
               "observed/spectral ratio (per topology, mean over seeds)": {k: round(float(v.mean()), 4)
                                                                          for k, v in ratios.items()}}
    miss = []
    for a, b in pairs:
        # gap-only forms (C η²ζ²/p^k, one C fitted per seed on `a`) predict obs[b] = obs[a] at equal p
        m = obs[b] / obs[a]
        miss.append(m)
        details[f"gap-only miss factor on {b} (constant fitted on {a}; equal p)"] = (
            f"{np.exp(np.log(m).mean()):.3g} (seeds: {', '.join(f'{x:.3g}' for x in m)})")
    zeta2 = np.asarray([np.mean(np.sum((G[s] - G[s].mean(0)) ** 2, 1)) for s in range(len(seeds))])
    for name in topologies:
        bound = np.asarray(consensus_heterogeneity(eta, zeta2, gap[name]))
        details[f"gap-only worst case η²ζ²ρ²/(1−ρ)² / observed on {name}"] = round(float(np.mean(bound / obs[name])), 3)
    details["gap-only miss factor (largest, geometric mean over seeds)"] = float(
        max(np.exp(np.abs(np.log(m)).mean()) for m in miss))

    made = ctx.figure(cid)
    figure = None
    if made is not None:
        fig, ax = made
        marks = dict(zip(topologies, "os^Dvp"))
        for name in topologies:
            ax.loglog(pred[name], obs[name], marks[name], ms=5, mfc="none", label=f"{name} (p={gap[name]:.3g})")
        for k, (a, b) in enumerate(pairs):  # gap-only prediction for b: the constant fitted on a (equal p)
            ax.loglog(pred[b], obs[a], marks[b], ms=4, color="0.6", mfc="0.6",
                      label=None if k else "gap-only prediction (C/p², C fitted on the equal-p partner)")
        lo = min(min(v.min() for v in pred.values()), min(v.min() for v in obs.values())) / 1.5
        hi = max(max(v.max() for v in pred.values()), max(v.max() for v in obs.values())) * 1.5
        ax.loglog([lo, hi], [lo, hi], "-", color="0.45", lw=1, label="observed = spectral prediction")
        ax.set_xlabel("spectral prediction (η²/n)Σλ²/(1−λ)²‖vᵀG‖²")
        ax.set_ylabel("consensus error (observed; grey: gap-only)")
        _quiet_minor_ticks(ax)
        ax.set_title(cid, fontsize=9)
        ax.legend(fontsize=5.5, loc="upper left", framealpha=0.5)
        figure = ctx.save(cid, fig)
    return Outcome(worst, (float(allr.min()), float(allr.max())), verdict, 1.0, details=details, figure=figure)
