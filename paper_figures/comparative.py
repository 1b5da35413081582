"""Comparative figure (Distributed DPO paper): centralized minibatch SGD, FedDPO with full and
partial participation, DecDPO on a ring; suboptimality, squared gradient norm at the averaged
model, held-out preference accuracy and client spread, mean over seeds with 95% bands.
Config: configs/synthetic/comparative.toml."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from paper_figures import style
from paper_figures.common import add_method
from paper_figures.experiments import Lab, paper_config

NAME = "comparative"
ORDER = ["centralized", "FedDPO full (S=5)", "FedDPO partial (S=3/5)", "DecDPO (ring)"]


def prepare(lab: Lab) -> pd.DataFrame:
    data = lab.sized(paper_config("comparative"))
    data["run"]["log_every"] = 1  # the transient is a few rounds long: log every round, bin on a log axis
    table, _ = lab.sweep(data)
    return add_method(table)


def _order(table: pd.DataFrame) -> list[str]:
    present = list(dict.fromkeys(table.sort_values("run_id")["method"]))
    return [m for m in ORDER if m in present] + [m for m in present if m not in ORDER]


def panel_subopt(ax, table: pd.DataFrame, legend: bool = True) -> None:
    style.mean_band(ax, table, y="subopt", by="method", order=_order(table), logx=True)
    ax.set_xlabel("round")
    ax.set_ylabel(r"$f(\bar\theta) - f^\star$")
    if legend:
        ax.legend(loc="upper right")


def draw(table: pd.DataFrame, out_dir) -> list[Path]:
    if "method" not in table:
        table = add_method(table)
    order = _order(table)
    fig, axes = style.figure("double", 2.0, 1, 4)
    panels = [("subopt", r"$f(\bar\theta) - f^\star$", True), ("grad_norm_sq", r"$\|\nabla f(\bar\theta)\|^2$", True),
              ("eval_pref_acc", "held-out preference acc.", False),
              ("consensus_error_pre", "client spread before comm.", True)]
    for k, (ax, (metric, label, log)) in enumerate(zip(axes, panels)):
        data = table
        if metric == "consensus_error_pre":  # centralized has no clients to spread
            data = table[table.groupby("method")[metric].transform("max") > 0]
        lines = style.mean_band(ax, data, y=metric, by="method", order=[m for m in order if m in set(data["method"])],
                                log=log, logx=True)
        ax.set_xlabel("round")
        ax.set_ylabel(label)
        style.panel_label(ax, "(" + "abcd"[k] + ")")
        if k == 0:
            handles = lines
    fig.legend(handles, [h.get_label() for h in handles], loc="outside upper center", ncols=len(handles))
    paths = style.save(fig, out_dir, NAME)

    def key(ax):
        panel_subopt(ax, table, legend=False)
        style.legend_below(ax, 2, columnspacing=1.0)
    return paths + style.single(out_dir, NAME, key)
