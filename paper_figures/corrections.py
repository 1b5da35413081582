"""Drift corrections under growing heterogeneity: SCAFFOLD against FedDPO (stationary
f(θ̄)−f*; regime of the claim scaffold-no-drift: E = 6, batch 16, η = 0.5) and gradient tracking
against DecDPO on a ring of 8 (stationary consensus error and f(θ̄)−f*; regime of the claim
gt-no-heterogeneity: batch 16, η = 0.05), all started at θ*, against the exact ζ² of each
replica, with log-log slopes (bootstrap CI over seeds). The corrected methods should be flat in ζ²
(slope 0); the uncorrected ones grow with it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis import loglog_slope
from paper_figures import common, style
from paper_figures.common import NAMES, fmt_ci, seed_floors
from paper_figures.experiments import Lab, zeta2_column
from theory_lab.claims import decentralized, federated

NAME = "corrections"
TAIL = 0.6
PANELS = [("feddpo", "scaffold", "subopt", r"floor of $f(\bar\theta)-f^\star$"),
          ("decdpo", "gradient_tracking", "consensus_error", "consensus error floor"),
          ("decdpo", "gradient_tracking", "subopt", r"floor of $f(\bar\theta)-f^\star$")]


def prepare(lab: Lab) -> pd.DataFrame:
    hets = lab.pick([0.5, 1.0, 2.0, 4.0, 8.0], [1.0, 2.0, 4.0, 8.0], [1.0, 8.0])
    frames = []
    for name in ("feddpo", "scaffold"):
        cfg = federated.base(lab.pick(600, 200, 20), name=name, local_steps=6, batch_size=16, lr=0.5)
        cfg["run"]["seeds"] = [0, 1, 2]
        cfg["sweep"] = {"grid": {"problem.heterogeneity": hets}}
        frames.append(zeta2_column(*lab.sweep(cfg)))
    for name in ("decdpo", "gradient_tracking"):
        cfg = decentralized.base(lab.pick(800, 300, 20), {"name": "ring"}, name=name, batch_size=16, lr=0.05)
        cfg["run"].update(seeds=[0, 1, 2], log_every=lab.pick(4, 6, 1))
        cfg["sweep"] = {"grid": {"problem.heterogeneity": hets}}
        frames.append(zeta2_column(*lab.sweep(cfg)))
    return pd.concat(frames, ignore_index=True)


def panel(ax, table: pd.DataFrame, base: str, fix: str, metric: str, legend: bool = True) -> None:
    handles = []
    for i, name in enumerate((base, fix)):
        t = table[table["algorithm"] == name]
        if t.empty:
            continue
        f = seed_floors(t, metric, ["heterogeneity", "zeta2"], tail=TAIL)
        st = style.seed_stats(f, "heterogeneity", "floor", log=True).merge(
            f.groupby("heterogeneity", as_index=False)["zeta2"].mean(), on="heterogeneity")
        style.seed_points(ax, f["zeta2"], f["floor"].clip(lower=1e-300), i=i)
        fit = loglog_slope(f["zeta2"], f["floor"], seeds=f["seed"].to_numpy(), n_boot=common.N_BOOT)
        label = f"{NAMES[name]}\nslope {fmt_ci(fit.slope, fit.ci_low, fit.ci_high)}"
        handles.append(style.errorbars(ax, st, "zeta2", i=2 * i, label=label))
        ok = (f["zeta2"] > 0) & (f["floor"] > 0)
        if np.isfinite(fit.slope) and ok.any():
            grid = np.geomspace(f["zeta2"][ok].min(), f["zeta2"][ok].max(), 30)
            ax.plot(grid, np.exp(fit.intercept) * grid**fit.slope, color=style.GREYS[2 * i], ls=style.LINES[i], lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    style.nice_log_ticks(ax, table["zeta2"])
    ax.set_xlabel(r"heterogeneity $\zeta^2$ at $\theta^\star$")
    if legend:
        style.legend_below(ax, 1, handles=handles)


def draw(table: pd.DataFrame, out_dir) -> list[Path]:
    present = [p for p in PANELS if {p[0], p[1]} & set(table["algorithm"])]
    fig, axes = style.figure("double", 2.5, 1, len(present))
    for k, (ax, (base, fix, metric, ylabel)) in enumerate(zip(np.atleast_1d(axes), present)):
        panel(ax, table, base, fix, metric)
        ax.set_ylabel(ylabel)
        t = table[table["algorithm"] == fix]
        where = (f"E = {int(t['local_steps'].iloc[0])}" if base == "feddpo"
                 else f"{t['topology'].iloc[0]} of {int(t['n_clients'].iloc[0])}")
        style.panel_label(ax, f"({'abc'[k]})", f"{'server' if base == 'feddpo' else 'gossip'}, {where}")
    paths = style.save(fig, out_dir, NAME)
    base, fix, metric, ylabel = present[1] if len(present) > 1 else present[0]

    def key(ax):
        panel(ax, table, base, fix, metric)
        ax.set_ylabel(ylabel)
    return paths + style.single(out_dir, NAME, key)
