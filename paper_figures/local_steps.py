"""Local steps (Distributed DPO paper, E in {1, 3, 6}): FedDPO curves, and the stationary floor
against E with the fitted drift line floor ≈ a + c·η²(E−1)² (a: the minibatch-noise floor, c: the
client-drift coefficient, both >= 0, fitted with bootstrap CIs over seeds by analysis.fit_terms).
The drift term vanishes at E = 1, hence (E−1) rather than E (docs/theory.md; claim drift-floor).

(a), (b): configs/synthetic/local_steps.toml (more values of E for the fit). In that regime
(batch 4, η = 2, heterogeneity 1) the minibatch noise hides the drift: the floor barely moves with E.
(c): the drift regime of the drift-floor claim (exact gradients, heterogeneity 2, started at θ*),
where the floor is the drift alone: floor = c·η²(E−1)², slope 2 on log-log axes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis import fit_terms, loglog_slope
from paper_figures import common, style
from paper_figures.common import fmt_ci, seed_floors
from paper_figures.experiments import Lab, paper_config
from theory_lab.claims.federated import base

NAME = "local_steps"
PAPER_E = (1, 3, 6)
TAIL = 0.5


def prepare(lab: Lab) -> pd.DataFrame:
    data = lab.sized(paper_config("local_steps"))
    data["sweep"]["grid"]["algorithm.local_steps"] = lab.pick([1, 2, 3, 4, 6, 8], [1, 2, 3, 4, 6], [1, 2, 3])
    data["run"]["log_every"] = 1
    paper, _ = lab.sweep(data)
    rounds = lab.pick(300, 150, 20)
    drift = base(rounds)
    drift["run"]["seeds"] = [0, 1, 2]
    drift["sweep"] = {"grid": {"algorithm.local_steps": lab.pick([2, 3, 4, 6, 8], [2, 3, 5, 8], [2, 3, 5])}}
    drift_table, _ = lab.sweep(drift)
    return pd.concat([paper.assign(regime="paper"), drift_table.assign(regime="drift")], ignore_index=True)


def drift_fit(table: pd.DataFrame):
    """Per-seed floors and the fit floor = a + c·η²(E−1)²."""
    f = seed_floors(table, "subopt", ["local_steps", "lr"], tail=TAIL)
    x = f["lr"].to_numpy(float) ** 2 * (f["local_steps"].to_numpy(float) - 1) ** 2
    fit = fit_terms({"noise": np.ones_like(x), "drift": x}, f["floor"].to_numpy(), seeds=f["seed"].to_numpy(),
                    n_boot=common.N_BOOT)
    return f, fit


def panel_floor(ax, table: pd.DataFrame, legend: bool = True) -> None:
    f, fit = drift_fit(table)
    eta = float(f["lr"].iloc[0])
    style.seed_points(ax, f["local_steps"], f["floor"], label="seeds")
    style.errorbars(ax, style.seed_stats(f, "local_steps", "floor"), "local_steps", label="mean, 95% CI")
    grid = np.linspace(1, f["local_steps"].max(), 100)
    a, c = fit.coef["noise"], fit.coef["drift"]
    ax.plot(grid, a + c * eta**2 * (grid - 1) ** 2, "-", color="0.3", lw=1,
            label=f"fit $a + c\\,\\eta^2(E-1)^2$\n$c$ = {fmt_ci(c, fit.ci_low['drift'], fit.ci_high['drift'])}")
    ax.axhline(a, color="0.55", ls=":", lw=0.9, label=f"noise floor $a$ = {a:.2g}")
    style.auto_log(ax, f["floor"])
    ax.set_xlabel("local steps E")
    ax.set_ylabel(r"floor of $f(\bar\theta)-f^\star$")
    ax.set_xticks(sorted(f["local_steps"].unique()))
    if legend:
        style.legend_below(ax, 1)


def panel_drift(ax, table: pd.DataFrame, legend: bool = True) -> None:
    f = seed_floors(table, "subopt", ["local_steps", "lr"], tail=TAIL)
    f = f[f["local_steps"] > 1]
    eta = float(f["lr"].iloc[0])
    x = (f["local_steps"] - 1).to_numpy(float)
    style.seed_points(ax, x, f["floor"], label="seeds")
    st = style.seed_stats(f.assign(em1=x), "em1", "floor", log=True)
    style.errorbars(ax, st, "em1", label="mean, 95% CI")
    fit = fit_terms({"drift": eta**2 * x**2}, f["floor"].to_numpy(), seeds=f["seed"].to_numpy(),
                    n_boot=common.N_BOOT)
    free = loglog_slope(x, f["floor"].to_numpy(), seeds=f["seed"].to_numpy(), n_boot=common.N_BOOT)
    grid = np.geomspace(x.min(), x.max(), 50)
    label = (f"fit $c\\,\\eta^2(E-1)^2$, $c$ = {fit.coef['drift']:.2g}\n"
             f"free slope {fmt_ci(free.slope, free.ci_low, free.ci_high)}")
    ax.plot(grid, fit.coef["drift"] * eta**2 * grid**2, "-", color="0.3", lw=1, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(sorted(set(x)))
    ax.set_xticklabels([f"{v:g}" for v in sorted(set(x))])
    ax.minorticks_off()
    ax.set_xlabel("E − 1")
    ax.set_ylabel(r"floor of $f(\bar\theta)-f^\star$")
    if legend:
        style.legend_below(ax, 1)


def draw(table: pd.DataFrame, out_dir) -> list[Path]:
    fig, axes, table, drift = style.floor_figure(table, "drift", "local_steps", PAPER_E, lambda E, _: f"E = {E}",
                                                 lambda _: "FedDPO, batch 4")
    a2 = axes[1]
    panel_floor(a2, table)
    style.panel_label(a2, "(b)", f"batch {int(table['batch_size'].iloc[0])}, η = {table['lr'].iloc[0]:g}")
    if len(drift):
        panel_drift(axes[2], drift)
        style.panel_label(axes[2], "(c)", f"exact gradients, η = {drift['lr'].iloc[0]:g}")
    paths = style.save(fig, out_dir, NAME)
    return paths + style.single(out_dir, NAME, lambda ax: panel_drift(ax, drift) if len(drift) else panel_floor(ax, table))
