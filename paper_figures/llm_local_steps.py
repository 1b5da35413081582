"""Local steps, LLM track: FedDPO with E ∈ {1, 3, 6} local AdamW steps per round; held-out preference
accuracy (reference model and chance marked), the global DPO objective, the client spread before
averaging (the client drift that grows with E), and each client's final held-out accuracy against E.

Config: configs/llm/local_steps.toml (SmolLM2-135M + LoRA r = 8, HH-RLHF, 5 IID clients, AdamW lr
1e-3, β = 0.2), reduced for a CPU (experiments.LLM_SIZES): 12 train + 6 held-out pairs per client,
max length 24 (prompt 12), batch 2, 6 rounds (metrics every 2), one seed per run (no bands). E = 3
is the same run as FedDPO full in llm_comparative (cached once)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from paper_figures import style
from paper_figures.experiments import Lab
from paper_figures.llm_common import curves, family, family_legend, final_accuracy, reference_handles, ylim_acc

NAME = "llm_local_steps"


def prepare(lab: Lab) -> pd.DataFrame:
    return family(lab, "local_steps")


def labels(table: pd.DataFrame) -> dict:
    return {E: f"E = {E}" for E in sorted(table["local_steps"].unique())}


def panel_final(ax, table: pd.DataFrame, legend: bool = True) -> None:
    final_accuracy(ax, table, "local_steps")
    ax.set_xlabel("local steps E")
    if legend:
        style.legend_below(ax, 2, handles=reference_handles(table), columnspacing=1.0)


def draw(table: pd.DataFrame, out_dir) -> list[Path]:
    fig, axes = style.figure("double", 2.3, 1, 4)
    lab = labels(table)
    handles = curves(axes[0], table, "eval_pref_acc", "local_steps", labels=lab)
    curves(axes[1], table, "train_loss", "local_steps", labels=lab, ylabel="DPO objective $f(\\bar\\theta)$")
    spread = table[table["round"] >= 1]
    curves(axes[2], spread, "consensus_error_pre", "local_steps", labels=lab, log=True,
           ylabel="client spread before averaging")
    panel_final(axes[3], table, legend=False)
    ylim_acc(axes[0], axes[3])
    for k, ax in enumerate(axes):
        style.panel_label(ax, f"({'abcd'[k]})", "FedDPO" if k == 0 else "final round" if k == 3 else "")
    family_legend(fig, handles, table)
    paths = style.save(fig, out_dir, NAME)
    return paths + style.single(out_dir, NAME, lambda ax: panel_final(ax, table))
