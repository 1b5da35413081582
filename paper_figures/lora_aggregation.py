"""LoRA-aware aggregation on the synthetic factorised policy θ = θ_ref + vec(B A)
(theory_lab.factorised, docs/theory.md §3.6): (a) the error of averaging A and B separately after
one round of E = 4 exact steps against the step size, from LoRA's start (B = 0) and from a generic
one, with the leading-order predictions (η³ and η²); (b) the relative aggregation error per round
of a stochastic FedDPO run under each rule: `factors` and `fedsa` carry the error, `ffa` only
rounding, and `exact` none (its residual is that gap, so the logged metric is 0 by construction;
the claim lora-agg-exact-rules checks the policy θ itself: 1.5e-15).

Regime: the claims lora-agg-* (theory_lab/claims/lora.py): θ ∈ R¹² read as 4×3, rank 2,
heterogeneity 2, 10 clients; (b) E = 4 steps of batch 4 at η = 0.05, 3 seeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from paper_figures import style
from paper_figures.experiments import Lab
from theory_lab.claims import REGISTRY
from theory_lab.claims.federated import base
from theory_lab.claims.lora import LORA, one_round
from theory_lab.factorised import RULES

NAME = "lora_aggregation"
E = 4
SEEDS = [0, 1, 2]
FLOOR = 1e-17    # where an exactly-zero error is drawn on the log axis
STARTS = {False: "B₀ = 0", True: "B₀ ≠ 0"}
ORDER = {False: "η³", True: "η²"}


def prepare(lab: Lab) -> pd.DataFrame:
    claim = REGISTRY["lora-agg-init"]
    rows = []
    for generic in (False, True):
        for eta in lab.pick(np.geomspace(1e-3, 0.128, 8), np.geomspace(1e-3, 0.128, 5), [0.004, 0.016]):
            key = {"lora_one_round": LORA, "eta": float(eta), "E": E, "generic": generic, "seeds": SEEDS}
            obs, pred = lab.value(key, lambda eta=eta, generic=generic: [
                v.tolist() for v in one_round(claim, SEEDS, float(eta), E, generic)[:2]])
            rows += [{"panel": "eta", "start": STARTS[generic], "order": ORDER[generic], "eta": float(eta),
                      "seed": s, "error": o, "predicted": p} for s, o, p in zip(SEEDS, obs, pred)]
    cfg = base(lab.pick(40, 20, 4), local_steps=E, batch_size=4, lr=0.05)
    cfg["problem"].update(dim=LORA["dim"], lora_rank=LORA["rank"], lora_rows=LORA["rows"], init="reference",
                          heterogeneity=LORA["heterogeneity"])
    cfg["run"].update(seeds=SEEDS, log_every=1)
    cfg["sweep"] = {"grid": {"algorithm.lora_aggregation": list(RULES)}}
    table, _ = lab.sweep(cfg)
    runs = table[table["round"] > 0][["lora_aggregation", "round", "seed", "lora_agg_error_rel"]]
    runs = runs.assign(panel="rounds", error=runs["lora_agg_error_rel"].clip(lower=FLOOR))
    return pd.concat([pd.DataFrame(rows), runs.drop(columns="lora_agg_error_rel")], ignore_index=True)


def panel_eta(ax, table: pd.DataFrame, label: str = "(a)") -> None:
    t = table[table["panel"] == "eta"]
    handles = []
    for i, (start, g) in enumerate(t.groupby("start", sort=False)):
        style.seed_points(ax, g["eta"], g["error"], i)
        mean = g.groupby("eta")[["error", "predicted"]].mean().reset_index()
        kw = style.styled(i)
        handles += ax.plot(mean["eta"], mean["error"], linestyle="none", marker=kw["marker"], color=kw["color"],
                           markerfacecolor="white", label=f"{start}: measured")
        handles += ax.plot(mean["eta"], mean["predicted"], linestyle=kw["linestyle"], color=kw["color"], lw=1,
                           label=f"{start}: {g['order'].iloc[0]} (leading order)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("step size η")
    ax.set_ylabel(r"$\|\Sigma\, w_i B_iA_i - \bar B\bar A\|_F$")
    style.legend_below(ax, 2, handles=handles)
    style.panel_label(ax, label, f"one round, E = {E} exact steps")


def panel_rounds(ax, table: pd.DataFrame, label: str = "(b)") -> None:
    t = table[table["panel"] == "rounds"]
    order = ["factors", "fedsa", "ffa", "exact"]
    lines = style.mean_band(ax, t, x="round", y="error", by="lora_aggregation", order=order)
    ax.set_xlabel("round")
    ax.set_ylabel(f"relative error (exact's 0 at {FLOOR:g})")
    style.legend_below(ax, 2, handles=lines)
    style.panel_label(ax, label, "FedDPO, batch 4")


def draw(table: pd.DataFrame, out_dir) -> list[Path]:
    fig, (a1, a2) = style.figure("double", 2.8, 1, 2)
    panel_eta(a1, table)
    panel_rounds(a2, table)
    paths = style.save(fig, out_dir, NAME)
    return paths + style.single(out_dir, NAME, lambda ax: panel_eta(ax, table, ""), height=3.0)
