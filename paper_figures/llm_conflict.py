"""Preference conflict, LLM track: the theory's heterogeneity ζ̃² = Σ_i w_i ‖∇f_i(θ0) − ∇f(θ0)‖² and
the per-pair gradient noise σ̃² at θ0 (theory_lab.estimate: heterogeneity, minibatch_variance), as
the data knob llm.conflict moves from 0 (shared preferences) to 1 (the opposed half of the clients
prefers the reverse of every pair): the link between the knob and the constant the floors scale with.

Config: configs/conflict/imdb_4clients.toml (IMDb counterfactual pairs, 4 IID clients, SmolLM2-135M + LoRA
r = 8, β = 0.2), measured at θ0 only (nothing trains), 16 pairs per client at max length 48 for
SmolLM2 (8 at 32 for the tiny model), one data seed, σ̃² from 4 minibatches of 4 pairs per client."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from paper_figures import style
from paper_figures.experiments import CONFIG_DIR, Lab
from theory_lab.config import build_config, read_toml
from theory_lab.estimate import client_grads, heterogeneity, minibatch_variance
from theory_lab.runner import make_oracle

NAME = "llm_conflict"
KNOBS = (0.0, 0.25, 0.5, 0.75, 1.0)
SEEDS = (0,)     # one data seed: a SmolLM2 measurement takes about a minute and a half on 2 cores
SIZES = {"smollm2": {"pairs_per_client": 16, "max_length": 48, "max_prompt_length": 24},
         "tiny": {"pairs_per_client": 8, "max_length": 32, "max_prompt_length": 12}}
BATCH, DRAWS = 4, 4


def measure(data: dict) -> dict:
    """ζ̃² and σ̃² at θ0 of one config (exact client gradients; σ̃² over DRAWS minibatches)."""
    oracle = make_oracle(build_config(data))
    theta = oracle.init_params()
    G = client_grads(oracle, theta)                 # the exact gradients, shared by both estimates
    sigma2, stderr, _ = minibatch_variance(oracle, theta, BATCH, DRAWS, torch.Generator().manual_seed(0), G=G)
    return {"zeta2": float(heterogeneity(oracle, theta, G)[0]), "sigma2": float(sigma2[0]),
            "sigma2_se": float(stderr[0])}


def prepare(lab: Lab) -> pd.DataFrame:
    from llm.model import reuse_loaded_models   # lazy: transformers loads only when this figure is drawn

    base = read_toml(CONFIG_DIR.parent / "conflict" / "imdb_4clients.toml")
    base.pop("sweep")
    base["llm"].update(model=lab.llm_model, **SIZES["tiny" if lab.llm_model == "tiny" else "smollm2"])
    rows = []
    with reuse_loaded_models():
        for knob in KNOBS:
            for seed in SEEDS:
                data = {**base, "llm": {**base["llm"], "conflict": knob, "seed": seed}}
                # keyed by the data and model (the [llm] section): nothing else changes a measurement at θ0
                value = lab.value({"llm_conflict": data["llm"], "batch": BATCH, "draws": DRAWS},
                                  lambda d=data: measure(d))
                rows.append({"conflict": knob, "seed": seed, "n_clients": data["llm"]["n_clients"],
                             "pairs_per_client": data["llm"]["pairs_per_client"], **value})
    return pd.DataFrame(rows)


def panel(ax, table: pd.DataFrame, y: str, label: str) -> None:
    g = table.groupby("conflict")[y]
    ax.plot(g.mean().index, g.mean().to_numpy(), "-o", color="0.1", ms=4, mfc="white", label="measured at θ0")
    ax.set_xlabel("preference conflict (llm.conflict)")
    ax.set_ylabel(label)
    ax.set_xticks(KNOBS)


def draw(table: pd.DataFrame, out_dir) -> list[Path]:
    fig, axes = style.figure("double", 2.4, 1, 2)
    panel(axes[0], table, "zeta2", r"heterogeneity $\tilde\zeta^2$ at $\theta_0$")
    panel(axes[1], table, "sigma2", r"gradient noise $\tilde\sigma^2$ at $\theta_0$")
    g = table.groupby("conflict")["zeta2"].mean()
    c = np.linspace(0, 1, 50)   # identical clients, half opposed: client means (1 − 2c)g, so ζ̃² grows as c²
    axes[0].plot(c, g.loc[0.0] + c**2 * (g.loc[1.0] - g.loc[0.0]), "--", color="0.5", lw=1,
                 label="c² through the ends")
    # what n pairs per client give even with identical preferences: (1 − 1/N) σ̃² / n
    N, n = int(table["n_clients"].iloc[0]), int(table["pairs_per_client"].iloc[0])
    axes[0].axhline((1 - 1 / N) * table["sigma2"].mean() / n, color="0.5", ls=":", lw=1,
                    label=f"sampling level (1 − 1/N) σ̃²/n, n = {n}")
    style.panel_label(axes[0], "(a)", f"ζ̃²(1) / ζ̃²(0) = {g.loc[1.0] / g.loc[0.0]:.2f}")
    style.panel_label(axes[1], "(b)", "per-pair noise, same pairs")
    style.legend_below(axes[0], 1)
    paths = style.save(fig, out_dir, NAME)
    return paths + style.single(out_dir, NAME, lambda ax: panel(ax, table, "zeta2", r"$\tilde\zeta^2$ at $\theta_0$"))
