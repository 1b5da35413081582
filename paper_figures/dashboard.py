"""Summary dashboard: one panel per experiment family of the Distributed DPO paper on the
synthetic track, plus the verification summary: (a) comparative curves, (b) drift floor against
E−1, (c) participation floor against 1/S, (d) consensus error against the spectral gap,
(e) stationary gap against q_max, (f) fitted against predicted exponents of the claim registry.
Its inputs are the other figures' inputs (the same cached runs)."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from paper_figures import comparative, local_steps, participation, staleness, style, topology, verification
from paper_figures.experiments import Lab

NAME = "dashboard"
PARTS = {"comparative": comparative, "local_steps": local_steps, "participation": participation,
         "topology": topology, "staleness": staleness, "verification": verification}


def prepare(lab: Lab) -> dict:
    return {name: module.prepare(lab) for name, module in PARTS.items()}


def panel_exponents(ax, report: dict) -> None:
    # exponent claims with a point prediction (not the upper-bound ones, not the ratios)
    rows = [r for r in report["claims"] if r["claim"] not in verification.RATIOS and r["claim"] not in verification.UPPER]
    for r in rows:
        pred = verification.predicted_exponent(r)
        v = verification._num(r.get("value"))
        if pred is None or not np.isfinite(v):
            continue
        lo, hi = verification._num(r.get("ci_low")), verification._num(r.get("ci_high"))
        kw = verification.VERDICT.get(r.get("verdict"), verification.VERDICT["inconclusive"])
        jitter = (zlib.crc32(r["claim"].encode()) % 7 - 3) * 0.06  # claims sharing a predicted value stay apart
        if np.isfinite(lo) and np.isfinite(hi):
            ax.plot([pred + jitter] * 2, [lo, hi], "-", color="0.2", lw=1)
        ax.plot([pred + jitter], [v], ls="none", ms=4, **kw)
    lims = np.array([-2.6, 2.6])
    ax.plot(lims, lims, "-", color="0.6", lw=0.8, zorder=0)
    ax.fill_between(lims, lims - 0.3, lims + 0.3, color="0.9", lw=0, zorder=0)
    ax.set_xlim(*lims)
    ax.set_ylim(*lims)
    ax.set_xlabel("predicted exponent")
    ax.set_ylabel("fitted exponent (95% CI)")
    handles = [style.plt.Line2D([], [], ls="none", ms=4, label=k, **kw) for k, kw in verification.VERDICT.items()]
    ax.legend(handles=handles, loc="upper left", handletextpad=0.2, handlelength=1.0)


def draw(inputs: dict, out_dir) -> list[Path]:
    fig, axes = style.figure("double", 5.0, 2, 3)
    (a, b, c), (d, e, f) = axes
    comparative.panel_subopt(a, inputs["comparative"], legend=False)
    style.legend_below(a, 2, fontsize=5.5, columnspacing=0.8, handlelength=2.2)
    style.panel_label(a, "(a)", "comparative")
    ls = inputs["local_steps"]
    drift = ls[ls["regime"] == "drift"] if "regime" in ls else ls
    (local_steps.panel_drift if "regime" in ls else local_steps.panel_floor)(b, drift, legend=False)
    style.legend_below(b, 1, fontsize=5.5)
    style.panel_label(b, "(b)", "local steps: drift")
    pa = inputs["participation"]
    participation.panel_floor(c, pa[pa["regime"] == "paper"] if "regime" in pa else pa, legend=False)
    style.legend_below(c, 1, fontsize=5.5)
    style.panel_label(c, "(c)", "participation")
    topology.panel_consensus(d, inputs["topology"], legend=False)
    style.legend_below(d, 1, fontsize=5.5)
    style.panel_label(d, "(d)", "topology")
    staleness.panel_gap(e, inputs["staleness"], legend=False)
    style.legend_below(e, 1, fontsize=5.5)
    style.panel_label(e, "(e)", "staleness")
    if inputs.get("verification"):
        panel_exponents(f, inputs["verification"])
        style.panel_label(f, "(f)", "verification")
    else:
        f.set_axis_off()
    return style.save(fig, out_dir, NAME)
