"""Topology (Distributed DPO paper: path, ring, star, complete; and torus, exponential, one-peer
exponential, Erdős–Rényi): the graphs with their spectral gaps p = 1−ρ², DecDPO loss curves on each,
and the stationary consensus error against p with three fits: the free log-log slope (bootstrap CI
over seeds), and the two one-constant laws the theory offers, c/p (noise term, Jiang'26 Thm 6.1)
and c/p² (heterogeneity term, Koloskova et al.'20), each with its rms log residual.
The complete graph (exact averaging: zero consensus error) and the time-varying one-peer
exponential graph (p of a single round; its period multiplies to exact averaging) are drawn but
left out of the fits. Config: configs/synthetic/topology.toml."""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd

from analysis import loglog_slope
from paper_figures import common, style
from paper_figures.common import fixed_slope_fit, fmt_ci, seed_floors
from paper_figures.experiments import Lab, paper_config
from theory_lab.topology import TopologyConfig, make_topology

NAME = "topology"
ORDER = ["complete", "exponential", "torus", "erdos_renyi", "star", "ring", "path", "one_peer_exponential"]
SHORT = {"erdos_renyi": "Erdős–Rényi", "one_peer_exponential": "one-peer exp.", "exponential": "exponential"}
EXCLUDE = ("complete", "one_peer_exponential")
TAIL = 0.5
OFFSETS = {"one_peer_exponential": (-6, -11), "path": (-4, 5), "exponential": (-12, -10)}  # label placement in (d)


def prepare(lab: Lab) -> pd.DataFrame:
    data = lab.sized(paper_config("topology"))
    data["run"]["log_every"] = lab.pick(2, 1, 1)
    if lab.size == "tiny":
        data["sweep"]["grid"]["topology.name"] = ["ring", "torus", "exponential", "complete"]
    table, _ = lab.sweep(data)
    return table


def _order(table) -> list[str]:
    present = list(dict.fromkeys(table["topology"]))
    return [t for t in ORDER if t in present] + [t for t in present if t not in ORDER]


def layout(topology) -> tuple[dict, list]:
    """Node positions (grid for the torus, circle for the symmetric graphs) and the wrap-around
    edges to draw as arcs, as theory_lab.topology.draw does."""
    g, name = topology.graph, topology.name
    if name == "torus" and "shape" in g.graph:
        c = g.graph["shape"][1]
        pos = {i: (i % c, -(i // c)) for i in g.nodes}
        curved = [(u, v) for u, v in g.edges if abs(pos[u][0] - pos[v][0]) + abs(pos[u][1] - pos[v][1]) > 1]
        return pos, curved
    if name in ("erdos_renyi", "geometric"):
        return nx.spring_layout(g, seed=0), []
    if name == "star":
        pos = nx.circular_layout(nx.cycle_graph(range(1, g.number_of_nodes())))
        pos[0] = np.zeros(2)
        return pos, []
    return nx.circular_layout(g), []


def draw_graph(ax, name: str, n: int, p: float | None = None) -> None:
    topo = make_topology(TopologyConfig(name=name), n)
    pos, curved = layout(topo)
    straight = [e for e in topo.graph.edges if e not in set(curved)]
    nx.draw_networkx_edges(topo.graph, pos, ax=ax, edgelist=straight, width=0.4, edge_color="0.45", node_size=8)
    if curved:
        nx.draw_networkx_edges(topo.graph, pos, ax=ax, edgelist=curved, width=0.4, edge_color="0.45", arrows=True,
                               arrowstyle="-", connectionstyle="arc3,rad=0.3", node_size=8)
    nx.draw_networkx_nodes(topo.graph, pos, ax=ax, node_size=8, node_color="black")
    p = topo.spectrum().p if p is None else p
    ax.set_title(f"{SHORT.get(name, name)}\np = {p:.3g}" + ("*" if topo.time_varying else ""), fontsize=6.5)
    ax.set_axis_off()
    ax.margins(0.12)


def panel_consensus(ax, table: pd.DataFrame, legend: bool = True) -> None:
    f = seed_floors(table, "consensus_error", ["topology", "spectral_gap"], tail=TAIL)
    fit_rows = f[~f["topology"].isin(EXCLUDE) & (f["floor"] > 0)]
    handles = []
    for k, name in enumerate(_order(f)):
        g = f[f["topology"] == name]
        if name == "complete" or not (g["floor"] > 0).any():
            continue
        m, lo, hi = style.t_interval(np.log(g["floor"][g["floor"] > 0]))
        x = g["spectral_gap"].iloc[0]
        h = ax.errorbar([x], [np.exp(m)], yerr=[[np.exp(m) - np.exp(lo)], [np.exp(hi) - np.exp(m)]], marker="o",
                        color="0.15", mfc="white" if name in EXCLUDE else "0.15", ls="none", capsize=2, ms=3.5)
        if not handles:
            h.set_label("mean, 95% CI (open: not fitted)")
            handles.append(h)
        ax.annotate(SHORT.get(name, name), (x, np.exp(m)), xytext=OFFSETS.get(name, (4, 3)), textcoords="offset points",
                    fontsize=6, zorder=6,   # on a white box: readable where it crosses a fitted line
                    bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none", alpha=0.85))
    if fit_rows["topology"].nunique() >= 2:
        x, y, s = fit_rows["spectral_gap"].to_numpy(), fit_rows["floor"].to_numpy(), fit_rows["seed"].to_numpy()
        grid = np.geomspace(x.min(), x.max(), 50)
        free = loglog_slope(x, y, seeds=s, n_boot=common.N_BOOT)
        handles += ax.plot(grid, np.exp(free.intercept) * grid**free.slope, "-", color="0.1", lw=1,
                           label=f"free fit: slope {fmt_ci(free.slope, free.ci_low, free.ci_high)}")
        for slope, ls, text in ((-1.0, "--", "c/p"), (-2.0, ":", "c/p²")):
            c, rms = fixed_slope_fit(x, y, slope)
            handles += ax.plot(grid, c * grid**slope, ls, color="0.45", lw=1.1,
                               label=f"fit {text} (rms log resid. {rms:.2f})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    style.log_ticks(ax, [v for v in (0.01, 0.03, 0.1, 0.3, 1.0) if f["spectral_gap"].min() / 1.5 <= v <= 1.0])
    ax.set_xlabel(r"spectral gap $p = 1-\rho^2$")
    ax.set_ylabel("consensus error floor")
    if legend:
        style.legend_below(ax, 1, handles=handles)


def draw(table: pd.DataFrame, out_dir) -> list[Path]:
    order = _order(table)
    n = int(table["n_clients"].iloc[0])
    fig = style.plt.figure(figsize=(style.DOUBLE, 4.4), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.0, 2.9])
    gaxes = top.subplots(1, len(order))
    for ax, name in zip(np.atleast_1d(gaxes), order):
        draw_graph(ax, name, n)
    a1, a2, a3 = bottom.subplots(1, 3)
    labels = {t: SHORT.get(t, t) for t in order}
    style.mean_band(a1, table, y="subopt", by="topology", order=order, logx=True, labels=labels)
    a1.set_xlabel("round")
    a1.set_ylabel(r"$f(\bar\theta) - f^\star$")
    style.panel_label(a1, "(b)", f"DecDPO, η = {table['lr'].iloc[0]:g}, batch {int(table['batch_size'].iloc[0])}")
    cons = table[table.groupby("topology")["consensus_error"].transform("max") > 1e-20]
    style.mean_band(a2, cons, y="consensus_error", by="topology", order=order, logx=True, labels=labels,
                    styles={t: i for i, t in enumerate(order)})
    a2.set_xlabel("round")
    a2.set_ylabel("consensus error after gossip")
    style.panel_label(a2, "(c)", "complete: exactly 0")
    fig.legend(*a1.get_legend_handles_labels(), loc="outside lower center", ncols=4, fontsize=6.5)
    panel_consensus(a3, table)
    style.panel_label(a3, "(d)", "stationary level")
    top.suptitle("(a) graphs (Metropolis weights) and spectral gaps; * time-varying: p of one round",
                 fontsize=7, x=0.01, ha="left")
    paths = style.save(fig, out_dir, NAME)
    return paths + style.single(out_dir, NAME, lambda ax: panel_consensus(ax, table), height=3.0)
