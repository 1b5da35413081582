"""Comparative figure, LLM track: centralized, FedDPO full (S = 5) and partial (S = 3), DecDPO on a
ring; held-out preference accuracy of the averaged model (reference model and chance marked), the
global DPO objective and its squared gradient norm on a fixed evaluation batch, and each client's
final held-out accuracy per method.

Config: configs/llm/comparative.toml (SmolLM2-135M + LoRA r = 8, HH-RLHF, 5 IID clients, E = 3,
AdamW lr 1e-3, β = 0.2), reduced for a CPU (experiments.LLM_SIZES): 12 train + 6 held-out pairs per
client, max length 24 (prompt 12), batch 2, 6 rounds (metrics every 2), one seed per run (no bands)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from paper_figures import comparative, style
from paper_figures.common import add_method
from paper_figures.experiments import Lab
from paper_figures.llm_common import curves, family, family_legend, final_accuracy, reference_handles, ylim_acc

NAME = "llm_comparative"
SHORT = {"FedDPO full (S=5)": "FedDPO S=5", "FedDPO partial (S=3/5)": "FedDPO S=3", "DecDPO (ring)": "DecDPO ring"}


def prepare(lab: Lab) -> pd.DataFrame:
    return add_method(family(lab, "comparative"))


def panel_accuracy(ax, table: pd.DataFrame) -> list:
    if "method" not in table:
        table = add_method(table)
    return curves(ax, table, "eval_pref_acc", "method", order=comparative._order(table))


def draw(table: pd.DataFrame, out_dir) -> list[Path]:
    if "method" not in table:
        table = add_method(table)
    order = comparative._order(table)
    fig, axes = style.figure("double", 2.3, 1, 4)
    handles = panel_accuracy(axes[0], table)
    curves(axes[1], table, "train_loss", "method", order=order, ylabel="DPO objective $f(\\bar\\theta)$")
    curves(axes[2], table, "grad_norm_sq", "method", order=order, log=True, ylabel=r"$\|\nabla f(\bar\theta)\|^2$")
    final_accuracy(axes[3], table, "method", positions={m: k for k, m in enumerate(order)},
                   ticklabels={m: SHORT.get(m, m) for m in order})
    axes[3].set_xlim(-0.5, len(order) - 0.5)
    axes[3].tick_params(axis="x", labelsize=5.5, labelrotation=30)
    for label in axes[3].get_xticklabels():
        label.set_horizontalalignment("right")
        label.set_rotation_mode("anchor")
    ylim_acc(axes[0], axes[3])
    for k, ax in enumerate(axes):
        style.panel_label(ax, f"({'abcd'[k]})", "final round" if k == 3 else "")
    family_legend(fig, handles, table)
    paths = style.save(fig, out_dir, NAME)

    def key(ax):
        handles = panel_accuracy(ax, table) + reference_handles(table, clients=False)
        style.legend_below(ax, 2, handles=handles, columnspacing=1.0)
    return paths + style.single(out_dir, NAME, key)
