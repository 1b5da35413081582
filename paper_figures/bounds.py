"""Bound versus empirical: each run's running weighted average of f(θ̄)−f* against its
instantiated upper bound (Koloskova et al.'20 Thm 2 with constant step, hidden constants set to 1:
theory_lab.bounds.feddpo_bound / decdpo_bound, with each replica's exact constants), and the
tightness ratio bound / empirical (≥ 1 means the bound holds). Same runs and weighting as the
claim bound-validity (theory_lab/claims/bound_claims.py): FedDPO E ∈ {1, 4}, S ∈ {N, N/2}, DecDPO on a
ring and on the complete graph, batch 4, from θ_ref, each at the largest step the theorem admits
(η = p/(c τ L_sample), bounds.koloskova_step_limit), with the constants it assumes
(bounds.Constants.from_exact: per-sample smoothness, the l2 weight as global strong convexity)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from paper_figures import style
from paper_figures.experiments import Lab
from theory_lab import bounds as B
from theory_lab.claims.bound_claims import BOUND, spectral_gap, variant_config, weighted_running_mean
from theory_lab.config import build_config
from theory_lab.runner import make_oracle

NAME = "bounds"


def _label(name, E, S, topo, n) -> str:
    if name == "feddpo":
        return f"FedDPO E={E}, S={S or n}"
    return f"DecDPO ({topo})"


def prepare(lab: Lab) -> pd.DataFrame:
    rounds = lab.pick(400, 100, 15)
    frames = []
    for name, E, S, topo in BOUND["variants"]:
        cfg = variant_config(rounds, BOUND["batch"], name, E, S, topo)
        cfg["run"]["seeds"] = [0, 1, 2]
        p = spectral_gap(cfg) if topo else 1.0

        def theorem_step(cfg=cfg, E=E, p=p):   # the largest step inside the theorem's condition
            c = make_oracle(build_config(cfg)).constants
            return min(float(B.koloskova_step_limit(B.Constants.from_exact(c, s), tau=E, p=p))
                       for s in range(len(cfg["run"]["seeds"])))
        eta = lab.value({"koloskova_step_of": cfg, "E": E, "p": p}, theorem_step)
        cfg["algorithm"]["lr"] = eta
        table, manifest = lab.sweep(cfg)
        consts = manifest["runs"][0]["constants"]
        for i, (seed, g) in enumerate(table.groupby("seed", sort=True)):
            c = B.Constants.from_exact(consts, i, D2=float(g["dist_to_opt"].iloc[0]))
            r = g["round"].to_numpy()[1:]
            sub = g["subopt"].to_numpy()[1:]
            emp = weighted_running_mean(sub, r * E, c.mu_g, eta)
            if name == "feddpo":
                bnd = B.feddpo_bound(r, c, E=E, S=S or c.n, b=BOUND["batch"], eta=eta)
            else:
                bnd = B.decdpo_bound(r, c, p=p, tau=E, b=BOUND["batch"], eta=eta)
            frames.append(pd.DataFrame({"variant": _label(name, E, S, topo, c.n), "seed": seed, "round": r,
                                        "subopt": sub, "empirical": emp, "bound": np.asarray(bnd, float)}))
    return pd.concat(frames, ignore_index=True)


def draw(table: pd.DataFrame, out_dir) -> list[Path]:
    variants = list(dict.fromkeys(table["variant"]))
    table = table.assign(ratio=table["bound"] / table["empirical"])
    fig = style.plt.figure(figsize=(style.DOUBLE, 3.9), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.15, 1.0])
    axes = np.atleast_1d(top.subplots(1, len(variants), sharey=True))
    for k, (ax, v) in enumerate(zip(axes, variants)):
        g = table[table["variant"] == v]
        h1 = style.mean_band(ax, g, y="empirical", logx=True, labels={None: "empirical (weighted avg.)"})
        h2 = style.mean_band(ax, g.assign(bound_=g["bound"]), y="bound_", logx=True, labels={None: "upper bound"},
                             styles={None: 1})
        ax.set_title(v, fontsize=6.5)
        ax.set_xlabel("round")
        if k == 0:
            ax.set_ylabel(r"$f(\bar\theta)-f^\star$")
            handles = h1 + h2
        ax.tick_params(axis="y", labelleft=k == 0)
    top.legend(handles, [h.get_label() for h in handles], loc="outside upper right", ncols=2, fontsize=6)
    top.suptitle("(a) running weighted average vs its bound (Thm 2, hidden constants = 1), at the largest step it admits", x=0.01, ha="left",
                 fontsize=7)
    panel_tightness(bottom.subplots(), table, variants)
    paths = style.save(fig, out_dir, NAME)

    def key(ax):
        panel_tightness(ax, table, variants, legend=False)
        style.legend_below(ax, 2, columnspacing=1.0)
    return paths + style.single(out_dir, NAME, key, height=2.9)


def panel_tightness(ax, table: pd.DataFrame, variants: list[str], legend: bool = True) -> None:
    """bound / empirical against the round, per variant (≥ 1: the bound holds)."""
    style.mean_band(ax, table, y="ratio", by="variant", order=variants, logx=True)
    ax.axhline(1.0, color="0.3", lw=0.8, ls="-")
    ax.annotate("bound violated below 1", (1, 1), xycoords=("axes fraction", "data"), xytext=(-2, -9),
                textcoords="offset points", ha="right", fontsize=6, color="0.3")
    lo = float(np.nanmin(table["ratio"][table["ratio"] > 0])) if (table["ratio"] > 0).any() else 0.5
    ax.set_ylim(bottom=min(0.5, lo / 1.5))
    ax.set_xlabel("round")
    ax.set_ylabel("tightness: bound / empirical")
    if legend:
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5))
        style.panel_label(ax, "(b)")
