"""Shared pieces of the LLM-track figures (llm_*.py): running a reduced family of configs/llm/ point by
point through the Lab cache, and the panels they share.

The LLM track has one seed per run (a run is minutes of SmolLM2 on a CPU): its curves are single
runs, drawn without bands (style.mean_band draws a band only where a table has several seeds). Held-
out preference accuracy is the fraction of held-out pairs whose implicit reward margin is > 0; at
round 0 every margin is exactly 0, so the accuracy panels start at round 1. The reference model's
own accuracy (log π_ref(chosen) > log π_ref(rejected), the manifest's reference_pref_acc) is marked
on every accuracy axis, with chance (0.5)."""

from __future__ import annotations

import contextlib
import functools

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from paper_figures import style
from paper_figures.experiments import Lab, llm_config

MODELS = {"smollm2": "SmolLM2-135M + LoRA", "tiny": "tiny random Llama + LoRA"}
ACC = "held-out preference acc."


@contextlib.contextmanager
def _quiet_transformers():
    """No GGUF conversion / weight-loading progress bars in the figures log."""
    try:
        import transformers.modeling_gguf_pytorch_utils as gguf
        from transformers.utils import logging as hf_logging
    except Exception:  # pragma: no cover - transformers absent or another version: bars stay
        yield
        return
    bar = getattr(gguf, "tqdm", None)
    hf_logging.disable_progress_bar()
    if bar is not None:
        gguf.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        hf_logging.enable_progress_bar()
        if bar is not None:
            gguf.tqdm = bar


def family(lab: Lab, name: str, grid: dict | None = None) -> pd.DataFrame:
    """configs/llm/<name>.toml at the reduced sizes, its [sweep.grid] replaced by `grid` when given,
    run point by point (Lab.points: points shared with another family run once)."""
    from llm.model import reuse_loaded_models   # lazy: the FedPDPO figure uses this module without transformers

    data = lab.llm_sized(llm_config(name))
    if grid is not None:
        data.setdefault("sweep", {})["grid"] = grid
    with _quiet_transformers(), reuse_loaded_models():
        return lab.points(data)


def last(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of each run's last logged round."""
    return table[table["round"] == table.groupby("run_id")["round"].transform("max")]


def client_columns(table: pd.DataFrame) -> list[str]:
    cols = [c for c in table if c.startswith("eval_pref_acc_client")]
    return sorted(cols, key=lambda c: int(c.removeprefix("eval_pref_acc_client")))


def subtitle(table: pd.DataFrame) -> str:
    """"SmolLM2-135M + LoRA, hh-rlhf, 5 clients × 16 pairs, 1 seed per run"."""
    model = str(table["model"].iloc[0]) if "model" in table else "?"
    parts = [MODELS.get(model, model)]
    if "dataset" in table:
        parts.append(str(table["dataset"].iloc[0]))
    n = int(table["n_clients"].iloc[0])
    pairs = f" × {int(table['pairs_per_client'].iloc[0])} pairs" if "pairs_per_client" in table else ""
    parts.append(f"{n} clients{pairs}")
    seeds = int(table.groupby("run_id")["seed"].nunique().max()) if "seed" in table else 1
    parts.append("1 seed per run (no bands)" if seeds == 1 else f"{seeds} seeds, 95% bands")
    return ", ".join(parts)


def reference_lines(ax, table: pd.DataFrame, legend: bool = True) -> None:
    """The reference model's own held-out accuracy (dashed) and chance (dotted)."""
    ax.axhline(0.5, color="0.6", ls=":", lw=0.8, label="chance" if legend else None, zorder=1)
    if "reference_pref_acc" in table and table["reference_pref_acc"].notna().any():
        ref = float(table["reference_pref_acc"].dropna().mean())
        ax.axhline(ref, color="0.35", ls="--", lw=0.9, label=f"reference model ({ref:.2f})" if legend else None,
                   zorder=1)


def curves(ax, table: pd.DataFrame, y: str, by: str, labels: dict | None = None, order: list | None = None,
           log: bool = False, ylabel: str | None = None) -> list:
    """One curve of y against round per value of `by` (accuracy from round 1 with the reference
    marked; a band only where there are several seeds)."""
    acc = y.startswith("eval_pref_acc")
    data = table[table["round"] >= 1] if acc else table
    lines = style.mean_band(ax, data, y=y, by=by, labels=labels, order=order, log=log,
                            styles={k: i for i, k in enumerate(order)} if order else None)
    if acc:
        reference_lines(ax, table, legend=False)
    ax.set_xlabel("round")
    ax.set_ylabel(ylabel or (ACC if acc else y))
    ax.xaxis.get_major_locator().set_params(integer=True)
    return lines


def reference_handles(table: pd.DataFrame, clients: bool = True) -> list:
    """Legend entries of the lines reference_lines draws (and of the grey client points)."""
    out = [Line2D([], [], ls="none", marker="o", ms=2.2, color="0.7", label="each client (final)")] if clients else []
    if "reference_pref_acc" in table and table["reference_pref_acc"].notna().any():
        ref = float(table["reference_pref_acc"].dropna().mean())
        out.append(Line2D([], [], color="0.35", ls="--", lw=0.9, label=f"reference model ({ref:.2f})"))
    return out + [Line2D([], [], color="0.6", ls=":", lw=0.8, label="chance")]


def family_legend(fig, handles: list, table: pd.DataFrame) -> None:
    """The curves' legend and the reference lines above the panels; what was run below them."""
    handles = handles + reference_handles(table)
    ncols = len(handles) if len(handles) <= 5 else (len(handles) + 1) // 2
    fig.legend(handles, [h.get_label() for h in handles], loc="outside upper center", ncols=ncols, columnspacing=1.2)
    fig.supxlabel(subtitle(table), fontsize=6, color="0.3")


def final_accuracy(ax, table: pd.DataFrame, x: str, positions: dict | None = None, ticklabels: dict | None = None,
                   i: int = 0, label: str = "client-weighted", offset: float = 0.0, clients: bool = True) -> list:
    """Last-round held-out accuracy against `x` (numeric, or placed by `positions`): each client's
    accuracy as a small grey point, the client-weighted accuracy (eval_pref_acc) as the marker
    (mean and 95% interval over seeds when there are several), joined by a line."""
    f = last(table).copy()
    f["_x"] = f[x].map(positions) if positions else f[x].astype(float)
    f = f.dropna(subset=["_x"])
    if clients:
        pts = [(xv + offset, v) for c in client_columns(f) for xv, v in zip(f["_x"], f[c]) if np.isfinite(v)]
        if pts:
            px, py = zip(*pts)
            style.seed_points(ax, px, py, i=i)
    st = style.seed_stats(f, "_x", "eval_pref_acc")
    st["_x"] += offset
    kw = style.styled(i)
    handle = style.errorbars(ax, st, "_x", i=i, label=label)
    ax.plot(st["_x"], st["mean"], color=kw["color"], ls=kw["linestyle"], lw=0.9, zorder=2)
    reference_lines(ax, table, legend=False)
    ticks = sorted(f["_x"].unique())
    ax.set_xticks(ticks)
    if ticklabels is not None:
        inverse = {v: k for k, v in (positions or {}).items()}
        keys = [inverse.get(t, t) for t in ticks]
        ax.set_xticklabels([ticklabels.get(k, f"{k:g}" if isinstance(k, (int, float)) else str(k)) for k in keys])
    else:
        ax.set_xticklabels([f"{t:g}" for t in ticks])
    ax.set_ylabel(f"final {ACC}")
    return [handle]


def ylim_acc(*axes) -> None:
    """Accuracy axes share a range that shows chance, the reference and every point."""
    lo = min(min(ax.get_ylim()[0] for ax in axes), 0.45)
    hi = max(max(ax.get_ylim()[1] for ax in axes), 0.55)
    for ax in axes:
        ax.set_ylim(max(lo, 0.0), min(hi, 1.02))
