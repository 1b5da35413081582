"""Preference conflict, LLM track: the methods against the knob. Held-out preference accuracy at
the last round (mean ± seed sd) against llm.conflict, on (a) the opposed clients, (b) the kept
ones and (c) the worst client, for the shared-model methods (FedDPO, FedProx, SCAFFOLD) and the
personalised ones (local DPO, FedSA, FedPDPO); (d) FedPDPO and its ablations on the opposed
clients. The reference model's own accuracy (dashed) and chance (dotted) are marked.

Drawn from the runs of configs/conflict/imdb_table.toml: by default the committed record
docs/data/llm_conflict_runs.csv (no runs needed), or `theory-lab figures --conflict-runs SRC`
(repeatable: sweep folders or CSV records, read as paper_figures.llm_conflict_table reads them).
The numbers are the ones of that table's `--by-knob` views (docs/llm_conflict.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from paper_figures import llm_conflict_table, style
from paper_figures.experiments import Lab

NAME = "llm_conflict_methods"
RECORD = Path(__file__).resolve().parent.parent / "docs" / "data" / "llm_conflict_runs.csv"
SKIP = f"no conflict runs: {RECORD} is missing and no --conflict-runs SRC was given"
# feddpo-control (FedDPO at other seeds) and feddpo-sgd (SCAFFOLD's baseline) stay in the table only
METHODS = ("feddpo", "fedprox", "scaffold-sgd", "local-dpo", "fedsa", "fedpdpo")
ABLATIONS = ("fedpdpo", "fedpdpo-no-personal-head", "fedpdpo-no-reward-head", "fedpdpo-no-bottleneck")
LABELS = {"feddpo": "FedDPO", "fedprox": "FedProx", "scaffold-sgd": "SCAFFOLD (SGD)", "local-dpo": "local DPO",
          "fedsa": "FedSA", "fedpdpo": "FedPDPO", "fedpdpo-no-personal-head": "no personal head",
          "fedpdpo-no-reward-head": "no reward head", "fedpdpo-no-bottleneck": "no bottleneck"}
PANELS = (("opposed", "(a)", "opposed clients"), ("kept", "(b)", "kept clients"), ("worst", "(c)", "worst client"))


def prepare(lab: Lab) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """The table's summary (llm_conflict_table.summarise) and the reference model's pooled accuracy
    per knob value, from lab.conflict_runs or the committed record."""
    sources = [str(s) for s in lab.conflict_runs] or ([str(RECORD)] if RECORD.is_file() else [])
    runs = llm_conflict_table.gather(sources) if sources else pd.DataFrame()
    if runs.empty:
        return None
    return llm_conflict_table.summarise(runs), reference(runs)


def reference(runs: pd.DataFrame) -> pd.DataFrame:
    """The reference model's accuracy per knob value on each group (all, kept, opposed, worst): the
    knob relabels its held-out pairs, so it moves with c although the model does not."""
    rows = {c: llm_conflict_table.pooled(run.reference, run.opposed)
            for c, run in runs.groupby("conflict").first().iterrows()}
    return pd.DataFrame.from_dict(rows, orient="index").sort_index()


def panel(ax, summary: pd.DataFrame, ref: pd.DataFrame, key: str, methods=METHODS) -> None:
    """Mean ± seed sd of `key` against the knob, one line per method that has runs."""
    ax.plot(ref.index, ref[key], color="0.6", ls="--", lw=0.9, label="reference model")
    ax.axhline(0.5, color="0.6", ls=":", lw=0.8, label="chance")
    knobs = sorted(ref.index)
    for i, method in enumerate(m for m in methods if m in summary.index.get_level_values("method")):
        rows = summary.loc[method].reindex(knobs)   # a knob value not run: a gap, not a straight line over it
        st = style.styled(i)
        ax.errorbar(rows.index, rows[key].to_numpy(float), yerr=np.nan_to_num(rows[f"{key}_sd"].to_numpy(float)),
                    capsize=1.5, markerfacecolor="white", label=LABELS.get(method, method), **st)
    ax.set_xlabel("preference conflict c (llm.conflict)")
    ax.set_ylabel("held-out preference accuracy")
    ax.set_xticks(knobs)
    ax.set_ylim(0.3, 1.0)


def draw(inputs: tuple[pd.DataFrame, pd.DataFrame], out_dir) -> list[Path]:
    summary, ref = inputs
    fig, axes = style.figure("double", 5.4, 2, 2)
    for ax, (key, label, title) in zip(axes.flat, PANELS):
        panel(ax, summary, ref, key)
        style.panel_label(ax, label, title)
    panel(axes[1, 1], summary, ref, "opposed", ABLATIONS)
    style.panel_label(axes[1, 1], "(d)", "FedPDPO's ablations, opposed clients")
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside lower center", ncols=4)
    handles, labels = axes[1, 1].get_legend_handles_labels()
    axes[1, 1].legend(handles[2:], labels[2:], loc="lower center", ncols=2)   # the reference lines: below
    paths = style.save(fig, out_dir, NAME)
    return paths + style.single(out_dir, NAME, lambda ax: (panel(ax, summary, ref, "opposed"),
                                                           style.legend_below(ax, 2)), height=3.6)
