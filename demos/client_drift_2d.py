# %% [markdown]
# # Client drift in two dimensions
#
# FedDPO (FedAvg) sends the server model to every client, lets each take E local gradient steps
# on its *own* preference data, and averages the results. With one local step that is exactly
# gradient descent on the global loss f = Σ_i w_i f_i. With many local steps each client walks
# towards its own optimum θ*_i, and the average of those walks is not a step towards θ*: the
# server stalls at a fixed point away from θ*. That gap is the client-drift floor, of order
# η²(E−1)²ζ², ζ² = Σ_i w_i ‖∇f_i(θ*)‖² (docs/theory.md).
#
# A two-dimensional problem (dim = 2) lets us draw it: the contours of the global DPO loss, each
# client's optimum, and the local trajectories of every round. The demo writes the FedAvg loop by
# hand (a dozen lines) and checks it against the lab's FedDPO.
#
# Run: `python demos/client_drift_2d.py [OUT_DIR]` (default `runs/demos/`, or `$DEMO_OUT`);
# `DEMO_SIZE=tiny` makes it faster. It also opens as a notebook (percent cells).

# %%
import os
import sys
from pathlib import Path

import numpy as np
import torch

from paper_figures import style
from theory_lab.config import build_config
from theory_lab.runner import make_oracle, run

TINY = os.environ.get("DEMO_SIZE") == "tiny"
ARGS = [a for a in sys.argv[1:] if not a.startswith("-")]  # a notebook kernel passes -f ...
OUT = Path(ARGS[0] if ARGS else os.environ.get("DEMO_OUT", "runs/demos"))

# %% [markdown]
# ## Three users with different preferences, θ ∈ R²

# %%
PROBLEM = {"n_clients": 3, "dim": 2, "n_contexts": 8, "n_actions": 4, "pairs_per_client": 150,
           "heterogeneity": 2.5, "dirichlet_alpha": 0.3, "l2": 0.05, "beta": 1.0, "reward_scale": 2.0, "seed": 3}
oracle = make_oracle(build_config({"problem": PROBLEM, "run": {"seeds": [0]}}))
c = oracle.constants
theta_star = c.theta_star[0].numpy()
L, zeta2 = float(c.L[0]), float(c.zeta2[0])
w = oracle.weights[0].numpy()
print(f"L = {L:.3g}, mu = {float(c.mu[0]):.3g}, zeta^2 = {zeta2:.3g}, theta* = {theta_star.round(3)}")

# each client's own optimum: Newton on f_i (the oracle gives per-client gradients and Hessians)
X = torch.tensor(theta_star).repeat(1, 3, 1).clone()
for _ in range(30):
    X = X - torch.linalg.solve(oracle.hessian(X), oracle.grad(X).unsqueeze(-1)).squeeze(-1)
client_opt = X[0].numpy()

# %% [markdown]
# ## The loss surface, in closed form
#
# For horizon 1 the DPO loss is logistic: f_i(θ) = Σ_j p_ij log(1 + exp(−β(θ − θ_ref)ᵀz_ij)) + (l2/2)‖θ‖².

# %%
P = oracle.problem
Z, PW, ref = P.dphi[0].numpy(), P.pair_weight[0].numpy(), P.theta_ref[0].numpy()


def client_losses(T):
    """f_i at every point of T [..., 2] -> [..., N]."""
    h = P.beta * np.einsum("nkd,...d->...nk", Z, T - ref)
    return (PW * np.logaddexp(0.0, -h)).sum(-1) + 0.5 * P.l2 * (T**2).sum(-1)[..., None]


probe = theta_star + 0.3
assert np.allclose(client_losses(probe), oracle.loss(torch.tensor(probe).repeat(1, 3, 1))[0].numpy())
span = np.vstack([client_opt, theta_star, ref])
lo, hi = span.min(0) - 0.8, span.max(0) + 0.8
g1, g2 = np.meshgrid(np.linspace(lo[0], hi[0], 160), np.linspace(lo[1], hi[1], 160))
F = client_losses(np.stack([g1, g2], -1)) @ w

# %% [markdown]
# ## FedAvg by hand: E exact local steps per client, then the weighted average

# %%
def fedavg(E, eta, rounds, start):
    server, paths, servers = torch.tensor(start)[None].clone(), [], [start.copy()]
    for _ in range(rounds):
        Xc = server[:, None].repeat(1, 3, 1)
        local = [Xc[0].numpy().copy()]
        for _ in range(E):
            Xc = Xc - eta * oracle.grad(Xc)
            local.append(Xc[0].numpy().copy())
        server = torch.einsum("sk,skd->sd", oracle.weights, Xc)
        paths.append(np.stack(local))  # [E+1, N, 2]
        servers.append(server[0].numpy().copy())
    return paths, np.stack(servers)


eta = 0.5 / L
rounds = 8 if TINY else 25
start = ref.copy()
runs = {E: fedavg(E, eta, rounds, start) for E in (1, 20)}

# the same with the lab's FedDPO (exact gradients, full participation): identical server models
lab = run(build_config({"problem": PROBLEM, "run": {"seeds": [0], "rounds": rounds},
                        "algorithm": {"name": "feddpo", "local_steps": 20, "lr": eta, "batch_size": 0}}),
          progress=False)
gap = np.abs(lab.algorithm.model()[0].numpy() - runs[20][1][-1]).max()
print(f"hand-written FedAvg vs theory_lab FedDPO after {rounds} rounds: max |diff| = {gap:.1e}")
assert gap < 1e-10

# how far from θ* each E stalls
floors = {}
for E in (1, 2, 5, 10, 20):
    _, s = fedavg(E, eta, 10 if TINY else 80, start)
    floors[E] = np.linalg.norm(s - theta_star, axis=1)
    print(f"E = {E:2d}: ‖θ_server − θ*‖ after {len(s) - 1} rounds = {floors[E][-1]:.3g}")

# %% [markdown]
# ## The figure: local trajectories on the contours of the global loss

# %%
fig, axes = style.figure("double", 2.9, 1, 3)
for ax, E in zip(axes[:2], (1, 20)):
    paths, servers = runs[E]
    ax.contour(g1, g2, F, levels=14, colors="0.75", linewidths=0.6)
    for k in range(3):
        for p in paths:
            ax.plot(p[:, k, 0], p[:, k, 1], color=style.GREYS[k + 1], ls=style.LINES[k + 1], lw=0.8)
        ax.plot(*client_opt[k], marker=style.MARKERS[k + 1], color="0.2", mfc="white", ms=6, ls="none",
                label=f"client {k + 1} optimum $\\theta^\\star_{k + 1}$")
    ax.plot(servers[:, 0], servers[:, 1], "-o", color="0.0", ms=2.5, lw=1.2, label="server model")
    ax.plot(*theta_star, marker="*", color="0.0", ms=10, ls="none", label=r"global optimum $\theta^\star$")
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel(r"$\theta_1$")
    ax.set_ylabel(r"$\theta_2$")
    ax.grid(False)
    style.panel_label(ax, "(a)" if E == 1 else "(b)", f"E = {E}, η = 0.5/L")
style.legend_below(axes[0], 2, fontsize=6)
for i, (E, d) in enumerate(floors.items()):
    axes[2].plot(np.arange(len(d)), d, label=f"E = {E}", markevery=max(len(d) // 6, 1), mfc="white", **style.styled(i))
axes[2].set_yscale("log")
axes[2].set_ylim(1e-3, 2)
axes[2].annotate("E = 1: to θ* at a linear rate", (0.97, 0.5), xycoords="axes fraction", ha="right", fontsize=6)
axes[2].set_xlabel("round")
axes[2].set_ylabel(r"$\|\theta_{server} - \theta^\star\|$")
style.legend_below(axes[2], 3)
style.panel_label(axes[2], "(c)", "drift floor grows with E")
paths = style.save(fig, OUT, "client_drift_2d")
print("figure:", ", ".join(map(str, paths)))
