"""Participation (Distributed DPO paper, S in {1, 3, 5} of N = 5 sampled per round without
replacement): FedDPO curves, and the stationary floor against 1/S with the linear fit
floor = a + c/S (analysis.linear_fit, bootstrap CI over seeds). The predicted sampling term is
∝ η ζ² (N−S)/(S(N−1)), linear in 1/S and zero at S = N (claim participation-floor).

(a), (b): configs/synthetic/participation.toml (more values of S for the fit).
(c): the regime of the participation-floor claim (exact local gradients, E = 1, N = 16, started at
θ*), where the floor is the sampling term alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis import linear_fit
from paper_figures import common, style
from paper_figures.common import fmt_ci, seed_floors
from paper_figures.experiments import Lab, paper_config
from theory_lab.claims.federated import base

NAME = "participation"
PAPER_S = (1, 3, 5)
TAIL = 0.5


def prepare(lab: Lab) -> pd.DataFrame:
    data = lab.sized(paper_config("participation"))
    data["sweep"]["grid"]["algorithm.participation"] = lab.pick([1, 2, 3, 4, 5], [1, 2, 3, 5], [1, 3, 5])
    data["run"]["log_every"] = 1
    paper, _ = lab.sweep(data)
    N = 16
    exact = base(lab.pick(1000, 400, 30), lr=1.0)
    exact["problem"]["n_clients"] = N
    exact["run"]["seeds"] = [0, 1, 2]
    exact["sweep"] = {"grid": {"algorithm.participation": lab.pick([1, 2, 4, 8, 16], [1, 2, 4, 8, 16], [1, 4, 16])}}
    exact_table, _ = lab.sweep(exact)
    return pd.concat([paper.assign(regime="paper"), exact_table.assign(regime="exact")], ignore_index=True)


def panel_floor(ax, table: pd.DataFrame, legend: bool = True) -> None:
    f = seed_floors(table, "subopt", ["participation"], tail=TAIL)
    N = int(table["n_clients"].iloc[0])
    f["inv_S"] = 1.0 / f["participation"]
    style.seed_points(ax, f["inv_S"], f["floor"], label="seeds")
    style.errorbars(ax, style.seed_stats(f, "inv_S", "floor"), "inv_S", label="mean, 95% CI")
    fit = linear_fit(f["inv_S"], f["floor"], seeds=f["seed"].to_numpy(), n_boot=common.N_BOOT)
    grid = np.linspace(1.0 / N, 1.0, 50)
    ax.plot(grid, fit.intercept + fit.slope * grid, "-", color="0.3", lw=1,
            label=f"fit $a + c/S$, $c$ = {fmt_ci(fit.slope, fit.ci_low, fit.ci_high)}")
    ticks = sorted(f["inv_S"].unique())
    ax.set_xticks(ticks)
    labels, last = [], np.inf
    for t in reversed(ticks):  # label from 1 downwards, skipping ticks too close to the last label
        keep = last - t >= 0.09
        labels.append((f"1/{int(round(1 / t))}" if t < 1 else "1") if keep else "")
        last = t if keep else last
    ax.set_xticklabels(labels[::-1])
    ax.set_xlabel(f"1/S (S of N = {N} clients per round)")
    ax.set_ylabel(r"floor of $f(\bar\theta)-f^\star$")
    if legend:
        style.legend_below(ax, 1)


def draw(table: pd.DataFrame, out_dir) -> list[Path]:
    fig, axes, table, exact = style.floor_figure(
        table, "exact", "participation", PAPER_S, lambda S, t: f"S = {S} of {int(t['n_clients'].iloc[0])}",
        lambda t: f"FedDPO, E = {int(t['local_steps'].iloc[0])}, batch {int(t['batch_size'].iloc[0])}")
    panel_floor(axes[1], table)
    style.panel_label(axes[1], "(b)", f"batch {int(table['batch_size'].iloc[0])}, η = {table['lr'].iloc[0]:g}")
    if len(exact):
        panel_floor(axes[2], exact)
        style.panel_label(axes[2], "(c)", f"exact gradients, η = {exact['lr'].iloc[0]:g}")
    paths = style.save(fig, out_dir, NAME)
    return paths + style.single(out_dir, NAME, lambda ax: panel_floor(ax, table))
