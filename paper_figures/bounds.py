"""Bound versus empirical: each run's running weighted average of f(θ̄)−f* against its
instantiated upper bound (Koloskova et al.'20 Thm 2 with constant step, hidden constants set to 1:
theory_lab.bounds.feddpo_bound / decdpo_bound, with each replica's exact constants), and the
tightness ratio bound / empirical (≥ 1 means the bound holds). Same runs and weighting as the
claim bound-validity (theory_lab/claims/bound_claims.py): FedDPO E ∈ {1, 4}, S ∈ {N, N/2}, DecDPO on a
ring and on the complete graph, batch 4, η = 1/(4 L E), from θ_ref."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from paper_figures import style
from paper_figures.experiments import Lab
from theory_lab import bounds as B

NAME = "bounds"
VARIANTS = [("feddpo", 1, 0, None), ("feddpo", 4, 0, None), ("feddpo", 1, 4, None),
            ("decdpo", 1, 0, "ring"), ("decdpo", 1, 0, "complete")]


def _label(name, E, S, topo, n) -> str:
    if name == "feddpo":
        return f"FedDPO E={E}, S={S or n}"
    return f"DecDPO ({topo})"


def constants(consts: dict, seed: int, d2: float) -> B.Constants:
    """bounds.Constants of replica `seed` from a sweep manifest's exact constants."""
    return B.Constants(L=consts["L"][seed], mu=consts["mu"][seed], sigma2=consts["sigma2"][seed],
                       zeta2=consts["zeta2"][seed], F0=max(consts["F0"][seed], 0.0), n=len(consts["L_clients"][seed]),
                       L_max=max(max(consts["L_clients"][seed]), consts["L"][seed]), D2=d2)


def prepare(lab: Lab) -> pd.DataFrame:
    from theory_lab.claims.federated import base
    from theory_lab.config import build_config
    from theory_lab.runner import make_oracle

    rounds = lab.pick(400, 100, 15)
    frames = []
    for name, E, S, topo in VARIANTS:
        cfg = base(rounds, name=name, local_steps=E, participation=S, batch_size=4)
        cfg["problem"]["init"] = "reference"
        cfg["run"]["seeds"] = [0, 1, 2]
        L = lab.value({"L_max_of": cfg}, lambda cfg=cfg: float(make_oracle(build_config(cfg)).constants.L.max()))
        eta = 1.0 / (4 * L * E)
        cfg["algorithm"]["lr"] = eta
        cfg["run"]["log_every"] = 1
        if topo:
            cfg["topology"] = {"name": topo}
        table, manifest = lab.sweep(cfg)
        p = float(table["spectral_gap"].iloc[0]) if topo else 1.0
        consts = manifest["runs"][0]["constants"]
        for i, (seed, g) in enumerate(table.groupby("seed", sort=True)):
            c = constants(consts, i, float(g["dist_to_opt"].iloc[0]))
            r = g["round"].to_numpy()[1:]
            w = (1 - c.mu * eta / 2) ** (-(r * E))
            sub = g["subopt"].to_numpy()[1:]
            emp = np.cumsum(w * sub) / np.cumsum(w)
            if name == "feddpo":
                bnd = B.feddpo_bound(r, c, E=E, S=S or c.n, b=4, eta=eta)
            else:
                bnd = B.decdpo_bound(r, c, p=p, tau=E, b=4, eta=eta)
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
    top.suptitle("(a) running weighted average vs its instantiated bound (hidden constants = 1)", x=0.01, ha="left",
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
