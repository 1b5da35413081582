"""Staleness, LLM track: FedDPO with client delays ~ U{0..q_max}, q_max ∈ {0, 4} (the config's {0, 2,
5}, reduced for the CPU budget), under both server rules (average the returned models; apply the
averaged deltas); held-out preference accuracy per rule (reference model and chance marked), and the
last DPO objective and final held-out accuracy against q_max. At q_max = 0 the rules coincide: one
run (model averaging) is drawn for both.

Config: configs/llm/staleness.toml (SmolLM2-135M + LoRA r = 8, HH-RLHF, 5 IID clients, E = 3, AdamW
lr 1e-3, β = 0.2), reduced for a CPU (experiments.LLM_SIZES): 12 train + 6 held-out pairs per
client, max length 24 (prompt 12), batch 2, 6 rounds (metrics every 2), one seed per run (no bands).
q_max = 0 is the same run as FedDPO full in llm_comparative (cached once)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from paper_figures import style
from paper_figures.experiments import Lab
from paper_figures.llm_common import curves, family, family_legend, final_accuracy, last, reference_handles, ylim_acc
from paper_figures.staleness import RULES

NAME = "llm_staleness"
SHORT = {"model_average": "average models", "delta": "apply deltas"}
DELAY = r"max. delay $q_{\max}$"
Q = 4  # the stale runs' q_max (the config's {2, 5} cut to one value for the CPU budget)


def prepare(lab: Lab) -> pd.DataFrame:
    data = family(lab, "staleness", grid={"algorithm.q_max": [0]})
    stale = family(lab, "staleness", grid={"algorithm.q_max": [Q], "algorithm.stale_rule": list(RULES)})
    return pd.concat([data, stale.assign(run_id=stale["run_id"] + 1)], ignore_index=True)


def by_rule(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """{rule: its runs}, the q_max = 0 run lent to a rule that has none (the rules coincide there)."""
    rules = [r for r in RULES if r in set(table["stale_rule"])] or sorted(table["stale_rule"].unique())
    zero = table[table["q_max"] == 0]
    out = {}
    for rule in rules:
        t = table[table["stale_rule"] == rule]
        if not (t["q_max"] == 0).any() and len(zero):
            t = pd.concat([zero.assign(stale_rule=rule, run_id=zero["run_id"] + 10_000), t], ignore_index=True)
        out[rule] = t
    return out


def panel_final(ax, table: pd.DataFrame, legend: bool = True) -> list:
    handles = []
    for i, (rule, t) in enumerate(by_rule(table).items()):
        handles += final_accuracy(ax, t, "q_max", i=2 * i, label=RULES.get(rule, rule), offset=(i - 0.5) * 0.15)
    ax.set_xlabel(DELAY)
    if legend:
        style.legend_below(ax, 2, handles=handles + reference_handles(table), columnspacing=1.0)
    return handles


def panel_loss(ax, table: pd.DataFrame) -> None:
    for i, (rule, t) in enumerate(by_rule(table).items()):
        f = last(t).groupby("q_max", as_index=False)["train_loss"].mean()
        kw = style.styled(2 * i)
        ax.plot(f["q_max"], f["train_loss"], markerfacecolor="white", label=RULES.get(rule, rule), **kw)
    ax.set_xticks(sorted(table["q_max"].unique()))
    ax.set_xlabel(DELAY)
    ax.set_ylabel(r"last DPO objective $f(\bar\theta)$")


def draw(table: pd.DataFrame, out_dir) -> list[Path]:
    rules = by_rule(table)
    fig, axes = style.figure("double", 2.3, 1, len(rules) + 2)
    acc_axes = []
    for k, (rule, t) in enumerate(rules.items()):
        curves(axes[k], t, "eval_pref_acc", "q_max", labels={q: f"$q_{{\\max}}$ = {q}" for q in t["q_max"].unique()})
        axes[k].legend(loc="lower right", fontsize=5.5)
        style.panel_label(axes[k], f"({'abcd'[k]})", SHORT.get(rule, rule))
        acc_axes.append(axes[k])
    panel_loss(axes[-2], table)
    style.panel_label(axes[-2], f"({'abcd'[len(rules)]})")
    handles = panel_final(axes[-1], table, legend=False)
    style.panel_label(axes[-1], f"({'abcde'[len(rules) + 1]})", "final round")
    ylim_acc(*acc_axes, axes[-1])
    family_legend(fig, handles, table)
    paths = style.save(fig, out_dir, NAME)
    return paths + style.single(out_dir, NAME, lambda ax: panel_final(ax, table), height=2.8)
