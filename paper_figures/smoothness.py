"""Smoothness against the horizon (trajectory model): the largest eigenvalue of the global
Hessian met at the averaged model along FedDPO runs, per seed, against the derived bound
L(H) = 4β²H²B² + 2βHB² (theory_lab.bounds.trajectory_smoothness_bound), with the fitted growth
exponent (predicted 1: docs/theory.md §2.2) and the tightness ratio bound / measured. Same regime
as the claim smoothness-horizon (theory_lab/claims/rates.py): tabular MDP, β = 2, B = 1, FedDPO
E = 2, batch 4, η = 0.5 from θ_ref, H from 8 to 32."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from analysis import loglog_slope
from paper_figures import common, style
from paper_figures.common import fmt_ci
from paper_figures.experiments import Lab
from theory_lab import bounds as B
from theory_lab.algorithms import make_algorithm
from theory_lab.claims.federated import base
from theory_lab.communicator import InProcessCommunicator
from theory_lab.config import build_config
from theory_lab.runner import make_oracle

NAME = "smoothness"
BETA, BOUND = 2.0, 1.0


def eig_along_run(cfg: dict, rounds: int) -> list[list[float]]:
    """[round][seed]: λmax of the global Hessian at the averaged model after each round."""
    config = build_config(cfg)
    oracle = make_oracle(config)
    alg = make_algorithm(config.algorithm, oracle, InProcessCommunicator(),
                         torch.Generator().manual_seed(config.run.seed), rounds)
    out = [oracle.hessian_max_eig_at(alg.model()).tolist()]
    for r in range(rounds):
        alg.round(r)
        out.append(oracle.hessian_max_eig_at(alg.model()).tolist())
    return out


def prepare(lab: Lab) -> pd.DataFrame:
    Hs = lab.pick([8, 12, 16, 24, 32], [8, 16, 32], [2, 4])   # the claim's long horizons
    rounds = lab.pick(100, 30, 5)
    frames = []
    for H in Hs:
        cfg = base(rounds, local_steps=2, batch_size=4, lr=0.5)
        cfg["run"]["seeds"] = [0, 1, 2]
        cfg["problem"].update(horizon=H, n_contexts=6, n_actions=3, beta=BETA, feature_bound=BOUND,
                              init="reference", l2=0.0)
        lam = np.asarray(lab.value({"eig_along_run": cfg, "rounds": rounds}, lambda cfg=cfg: eig_along_run(cfg, rounds)))
        r, s = np.meshgrid(np.arange(lam.shape[0]), cfg["run"]["seeds"], indexing="ij")
        frames.append(pd.DataFrame({"horizon": H, "round": r.ravel(), "seed": s.ravel(), "lambda_max": lam.ravel(),
                                    "derived": float(B.trajectory_smoothness_bound(BETA, BOUND, H))}))
    return pd.concat(frames, ignore_index=True)


def draw(table: pd.DataFrame, out_dir) -> list[Path]:
    fig, (a1, a2) = style.figure("double", 2.5, 1, 2)
    Hs = sorted(table["horizon"].unique())
    style.mean_band(a1, table, x="round", y="lambda_max", by="horizon", labels={H: f"H = {H}" for H in Hs})
    a1.set_xlabel("round")
    a1.set_ylabel(r"$\lambda_{\max}(\nabla^2 f(\bar\theta))$")
    style.legend_below(a1, min(len(Hs), 3))
    style.panel_label(a1, "(a)", "along FedDPO runs (E = 2, η = 0.5)")

    panel_horizon(a2, table)
    paths = style.save(fig, out_dir, NAME)
    return paths + style.single(out_dir, NAME, lambda ax: panel_horizon(ax, table, ""), height=2.8)


def panel_horizon(ax, table: pd.DataFrame, label: str = "(b)") -> None:
    """Measured smoothness (max along a run, per seed) against the derived L(H), with the fit."""
    Hs = sorted(table["horizon"].unique())
    peak = table.groupby(["horizon", "seed"], as_index=False)["lambda_max"].max()
    derived = table.groupby("horizon")["derived"].first()
    style.seed_points(ax, peak["horizon"], peak["lambda_max"], label="max along a run (per seed)")
    h = [style.errorbars(ax, style.seed_stats(peak, "horizon", "lambda_max", log=True), "horizon", label="mean, 95% CI")]
    grid = np.geomspace(min(Hs), max(Hs), 50)
    h += ax.plot(grid, B.trajectory_smoothness_bound(BETA, BOUND, grid), "--", color="0.35", lw=1.1,
                 label=r"derived $L(H) = 4\beta^2H^2B^2 + 2\beta HB^2$")
    if len(Hs) >= 2:
        fit = loglog_slope(peak["horizon"], peak["lambda_max"], seeds=peak["seed"].to_numpy(),
                           n_boot=common.N_BOOT)
        h += ax.plot(grid, np.exp(fit.intercept) * grid**fit.slope, "-", color="0.1", lw=1,
                     label=f"fit: growth exponent {fmt_ci(fit.slope, fit.ci_low, fit.ci_high)}")
    ratio = derived.loc[peak["horizon"]].to_numpy() / peak["lambda_max"].to_numpy()
    ax.set_xscale("log")
    ax.set_yscale("log")
    style.log_ticks(ax, Hs, fmt="{:g}")
    ax.set_xlabel("horizon H")
    ax.set_ylabel(r"smoothness $L$")
    style.legend_below(ax, 1, handles=h)
    style.panel_label(ax, label, f"tightness bound/measured: {np.median(ratio):.3g} (median)")
