"""Participation, LLM track: FedDPO with S ∈ {1, 3, 5} of N = 5 clients sampled per round without
replacement; held-out preference accuracy (reference model and chance marked), the global DPO
objective and its squared gradient norm on a fixed evaluation batch, and each client's final held-
out accuracy against S.

Config: configs/llm/participation.toml (SmolLM2-135M + LoRA r = 8, HH-RLHF, E = 3, AdamW lr 1e-3, β
= 0.2), reduced for a CPU (experiments.LLM_SIZES): 12 train + 6 held-out pairs per client, max
length 24 (prompt 12), batch 2, 6 rounds (metrics every 2), one seed per run (no bands). S = 5 is
run as participation = 0 (every client), the same run as FedDPO full in llm_comparative (cached
once)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from paper_figures import style
from paper_figures.experiments import Lab
from paper_figures.llm_common import curves, family, family_legend, final_accuracy, reference_handles, ylim_acc

NAME = "llm_participation"


def prepare(lab: Lab) -> pd.DataFrame:
    return family(lab, "participation", grid={"algorithm.participation": [1, 3, 0]})


def panel_final(ax, table: pd.DataFrame, legend: bool = True) -> None:
    N = int(table["n_clients"].iloc[0])
    final_accuracy(ax, table, "participation", ticklabels={N: f"{N} (all)"})
    ax.set_xlabel("clients per round S")
    if legend:
        style.legend_below(ax, 2, handles=reference_handles(table), columnspacing=1.0)


def draw(table: pd.DataFrame, out_dir) -> list[Path]:
    fig, axes = style.figure("double", 2.3, 1, 4)
    N = int(table["n_clients"].iloc[0])
    lab = {S: f"S = {S} of {N}" for S in sorted(table["participation"].unique())}
    handles = curves(axes[0], table, "eval_pref_acc", "participation", labels=lab)
    curves(axes[1], table, "train_loss", "participation", labels=lab, ylabel="DPO objective $f(\\bar\\theta)$")
    curves(axes[2], table, "grad_norm_sq", "participation", labels=lab, log=True,
           ylabel=r"$\|\nabla f(\bar\theta)\|^2$")
    panel_final(axes[3], table, legend=False)
    ylim_acc(axes[0], axes[3])
    E = int(table["local_steps"].iloc[0])
    for k, ax in enumerate(axes):
        style.panel_label(ax, f"({'abcd'[k]})", f"FedDPO, E = {E}" if k == 0 else "final round" if k == 3 else "")
    family_legend(fig, handles, table)
    paths = style.save(fig, out_dir, NAME)
    return paths + style.single(out_dir, NAME, lambda ax: panel_final(ax, table))
