"""Summary dashboard: one panel per experiment family of the Distributed DPO paper on the
synthetic track, plus the verification summary: (a) comparative curves, (b) drift floor against
E−1, (c) participation floor against 1/S, (d) consensus error against the spectral gap,
(e) stationary gap against q_max, (f) fitted against predicted exponents of the claim registry.
Its inputs are the other figures' inputs (the same cached runs)."""

from __future__ import annotations

from pathlib import Path

from paper_figures import comparative, local_steps, participation, staleness, style, topology, verification
from paper_figures.experiments import Lab

NAME = "dashboard"
PARTS = {"comparative": comparative, "local_steps": local_steps, "participation": participation,
         "topology": topology, "staleness": staleness, "verification": verification}


def prepare(lab: Lab) -> dict:
    return {name: module.prepare(lab) for name, module in PARTS.items()}


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
        verification.panel_exponents(f, inputs["verification"])
        style.panel_label(f, "(f)", "verification")
    else:
        f.set_axis_off()
    return style.save(fig, out_dir, NAME)
