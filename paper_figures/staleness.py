"""Staleness (Distributed DPO paper, q_max in {0, 2, 5}): FedDPO with client delays ~ U{0..q_max}
under both server rules, averaging the returned models (the Jiang'26 code) and applying the
averaged deltas (asynchronous SGD); curves, and the stationary gap f(θ̄)−f* against q_max with a
linear fit per rule (analysis.linear_fit, bootstrap CI over seeds; the paper predicts roughly
linear growth). Config: configs/synthetic/staleness.toml (more values of q_max)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis import linear_fit
from paper_figures import common, style
from paper_figures.common import fmt_ci, seed_floors
from paper_figures.experiments import Lab, paper_config

NAME = "staleness"
PAPER_Q = (0, 2, 5)
RULES = {"model_average": "average returned models", "delta": "apply averaged deltas"}
TAIL = 0.5


def prepare(lab: Lab) -> pd.DataFrame:
    data = lab.sized(paper_config("staleness"))
    data["sweep"]["grid"]["algorithm.q_max"] = lab.pick([0, 1, 2, 3, 5, 8], [0, 2, 5], [0, 2, 5])
    data["run"]["log_every"] = 1
    table, _ = lab.sweep(data)
    return table


def panel_gap(ax, table: pd.DataFrame, legend: bool = True) -> None:
    f = seed_floors(table, "subopt", ["stale_rule", "q_max"], tail=TAIL)
    handles = []
    for i, (rule, g) in enumerate(sorted(f.groupby("stale_rule"), key=lambda kv: kv[0] != "model_average")):
        st = style.seed_stats(g, "q_max", "floor")
        off = (i - 0.5) * 0.12  # side by side
        handles.append(style.errorbars(ax, st.assign(q_max=st["q_max"] + off), "q_max", i=i * 2,
                                       label=RULES.get(rule, rule)))
        fit = linear_fit(g["q_max"], g["floor"], seeds=g["seed"].to_numpy(), n_boot=common.N_BOOT)
        grid = np.linspace(0, g["q_max"].max(), 20)
        handles += ax.plot(grid, fit.intercept + fit.slope * grid, color=style.GREYS[i * 2], ls=style.LINES[i],
                           lw=1, label=f"linear fit: slope {fmt_ci(fit.slope, fit.ci_low, fit.ci_high)}")
    ax.set_xticks(sorted(f["q_max"].unique()))
    ax.set_xlabel(r"maximum delay $q_{\max}$ (rounds)")
    ax.set_ylabel(r"stationary gap $f(\bar\theta)-f^\star$")
    style.auto_log(ax, f["floor"], ratio=30)
    if legend:
        style.legend_below(ax, 1, handles=handles)


def draw(table: pd.DataFrame, out_dir) -> list[Path]:
    rules = [r for r in RULES if r in set(table["stale_rule"])] or sorted(table["stale_rule"].unique())
    fig, axes = style.figure("double", 2.6, 1, len(rules) + 1)
    curves = table[table["q_max"].isin(PAPER_Q)]
    if curves.empty:
        curves = table
    for k, rule in enumerate(rules):
        ax = axes[k]
        c = curves[curves["stale_rule"] == rule]
        labels = {q: f"$q_{{\\max}}$ = {q}" for q in c["q_max"].unique()}
        style.mean_band(ax, c, y="subopt", by="q_max", logx=True, labels=labels)
        ax.set_xlabel("round")
        ax.set_ylabel(r"$f(\bar\theta) - f^\star$")
        style.legend_below(ax, 1)
        style.panel_label(ax, f"({'abc'[k]})", RULES.get(rule, rule))
    if len(rules) > 1:
        axes[0].sharey(axes[1])
    panel_gap(axes[-1], table)
    style.panel_label(axes[-1], f"({'abc'[len(rules)]})",
                      f"FedDPO, η = {table['lr'].iloc[0]:g}, batch {int(table['batch_size'].iloc[0])}")
    paths = style.save(fig, out_dir, NAME)
    return paths + style.single(out_dir, NAME, lambda ax: panel_gap(ax, table), height=2.8)
