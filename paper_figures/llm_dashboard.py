"""Summary dashboard, LLM track: one panel per experiment family, the final held-out preference
accuracy of the averaged model (clients as grey points, reference model and chance marked): (a)
comparative curves, (b) against E, (c) against S, (d) against the spectral gap, (e) against q_max
per server rule, (f) against the megabytes each client sent over the run, every run of the five
families (centralized sends nothing: left out). Its inputs are the five LLM family figures' inputs
(the same cached runs; sizes in experiments.LLM_SIZES, one seed per run)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from paper_figures import llm_comparative, llm_local_steps, llm_participation, llm_staleness, llm_topology, style
from paper_figures.experiments import Lab
from paper_figures.llm_common import ACC, last, reference_handles, reference_lines, subtitle, ylim_acc

NAME = "llm_dashboard"
PARTS = {"comparative": llm_comparative, "local_steps": llm_local_steps, "participation": llm_participation,
         "topology": llm_topology, "staleness": llm_staleness}
KEYS = ["algorithm", "local_steps", "participation", "q_max", "stale_rule", "topology"]
KINDS = {"feddpo": "FedDPO", "decdpo": "DecDPO"}


def prepare(lab: Lab) -> dict:
    return {name: module.prepare(lab) for name, module in PARTS.items()}


def panel_comm(ax, inputs: dict) -> None:
    runs = pd.concat([last(t) for t in inputs.values()], ignore_index=True).drop_duplicates(KEYS)
    runs = runs[runs["comm_bytes"] > 0]
    for i, (alg, g) in enumerate(runs.groupby("algorithm", sort=False)):
        kw = style.styled(2 * i)
        ax.plot(g["comm_bytes"] / g["n_clients"] / 1e6, g["eval_pref_acc"], ls="none", marker=kw["marker"],
                color=kw["color"], markerfacecolor="white", label=KINDS.get(alg, alg))
    reference_lines(ax, runs, legend=False)
    ax.set_xscale("log")
    style.nice_log_ticks(ax, runs["comm_bytes"] / runs["n_clients"] / 1e6)
    ax.set_xlabel("MB sent per client (run total)")
    ax.set_ylabel(f"final {ACC}")
    ax.legend(loc="best", fontsize=5.5)


def draw(inputs: dict, out_dir) -> list[Path]:
    fig, axes = style.figure("double", 4.6, 2, 3)
    (a, b, c), (d, e, f) = axes
    llm_comparative.panel_accuracy(a, inputs["comparative"])
    style.legend_below(a, 2, fontsize=5.5, columnspacing=0.8, handlelength=2.2)
    llm_local_steps.panel_final(b, inputs["local_steps"], legend=False)
    llm_participation.panel_final(c, inputs["participation"], legend=False)
    llm_topology.panel_final(d, inputs["topology"], legend=False)
    rules = llm_staleness.panel_final(e, inputs["staleness"], legend=False)
    style.legend_below(e, 1, handles=rules, fontsize=5.5)
    panel_comm(f, inputs)
    ylim_acc(*axes.ravel())
    for ax, (k, title) in zip(axes.ravel(), enumerate(("comparative", "local steps", "participation", "topology",
                                                        "staleness", "communication"))):
        style.panel_label(ax, f"({'abcdef'[k]})", title)
    handles = reference_handles(inputs["comparative"])
    fig.legend(handles=handles, loc="outside upper center", ncols=len(handles))
    fig.supxlabel(subtitle(inputs["comparative"]) + "; (b)–(f): final round, marker = client-weighted accuracy",
                  fontsize=6, color="0.3")
    return style.save(fig, out_dir, NAME)
