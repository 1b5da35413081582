"""Topology, LLM track: DecDPO on the path, ring, star and complete graphs of 5 clients (Metropolis
weights; drawn with their spectral gaps p = 1−ρ²); held-out preference accuracy of the averaged
model (reference model and chance marked), the consensus error after gossip, its last value against
p, and each client's final held-out accuracy against p. The complete graph averages exactly
(consensus error 0 up to float rounding): left out of the log axes.

Config: configs/llm/topology.toml (SmolLM2-135M + LoRA r = 8, HH-RLHF, 5 IID clients, E = 3 local
steps between gossip rounds, AdamW lr 1e-3, β = 0.2), reduced for a CPU (experiments.LLM_SIZES): 12
train + 6 held-out pairs per client, max length 24 (prompt 12), batch 2, 6 rounds (metrics every 2),
one seed per run (no bands). The ring is the same run as DecDPO (ring) in llm_comparative (cached
once)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from paper_figures import style, topology
from paper_figures.experiments import Lab
from paper_figures.llm_common import curves, family, final_accuracy, last, reference_handles, subtitle, ylim_acc

NAME = "llm_topology"
ZERO = 1e-9  # consensus error below ZERO x the largest one: exact averaging up to float rounding (complete graph)


def exact(table: pd.DataFrame) -> pd.Series:
    """Per row: does its run average exactly (consensus error 0 up to rounding)?"""
    top = table.groupby("topology")["consensus_error"].transform("max")
    return top <= ZERO * table["consensus_error"].max()


def gap_ticks(ax, gaps) -> None:
    ax.set_xscale("log")
    ax.minorticks_off()
    ticks = sorted(set(float(g) for g in gaps))
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{p:.2g}" for p in ticks])


def prepare(lab: Lab) -> pd.DataFrame:
    return family(lab, "topology")


def panel_consensus(ax, table: pd.DataFrame) -> None:
    f = last(table[~exact(table)])
    f = f.groupby("topology", as_index=False)[["spectral_gap", "consensus_error"]].mean()
    ax.plot(f["spectral_gap"], f["consensus_error"], "o", color="0.15", ms=3.5, ls="none")
    for _, r in f.iterrows():
        ax.annotate(topology.SHORT.get(r["topology"], r["topology"]), (r["spectral_gap"], r["consensus_error"]),
                    xytext=(4, 3), textcoords="offset points", fontsize=6)
    ax.set_yscale("log")
    gap_ticks(ax, f["spectral_gap"])
    if len(f):
        style.nice_log_ticks(ax, f["consensus_error"], axis="y")
    ax.margins(x=0.25, y=0.3)
    ax.set_xlabel(r"spectral gap $p = 1-\rho^2$")
    ax.set_ylabel("last consensus error")


def panel_final(ax, table: pd.DataFrame, legend: bool = True) -> None:
    final_accuracy(ax, table, "spectral_gap")
    gap_ticks(ax, table["spectral_gap"])
    ax.set_xlabel(r"spectral gap $p$")
    if legend:
        style.legend_below(ax, 2, handles=reference_handles(table), columnspacing=1.0)


def draw(table: pd.DataFrame, out_dir) -> list[Path]:
    order = topology._order(table)
    n = int(table["n_clients"].iloc[0])
    fig = style.plt.figure(figsize=(style.DOUBLE, 3.6), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.0, 2.6])
    for ax, name in zip(np.atleast_1d(top.subplots(1, len(order))), order):
        topology.draw_graph(ax, name, n)
    axes = bottom.subplots(1, 4)
    labels = {t: topology.SHORT.get(t, t) for t in order}
    handles = curves(axes[0], table, "eval_pref_acc", "topology", labels=labels, order=order)
    cons = table[(table["round"] >= 1) & ~exact(table)]
    curves(axes[1], cons, "consensus_error", "topology", labels=labels, order=order, log=True,
           ylabel="consensus error after gossip")
    panel_consensus(axes[2], table)
    panel_final(axes[3], table, legend=False)
    ylim_acc(axes[0], axes[3])
    titles = ("DecDPO", "complete: 0", "last round", "final round")
    for k, ax in enumerate(axes):
        style.panel_label(ax, f"({'bcde'[k]})", titles[k])
    handles += reference_handles(table)
    bottom.legend(handles, [h.get_label() for h in handles], loc="outside lower center", ncols=len(handles))
    top.suptitle(f"(a) graphs (Metropolis weights) and spectral gaps — {subtitle(table)}", fontsize=6.5,
                 x=0.01, ha="left")
    paths = style.save(fig, out_dir, NAME)
    return paths + style.single(out_dir, NAME, lambda ax: panel_final(ax, table))
