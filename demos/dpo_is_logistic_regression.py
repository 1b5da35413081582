# %% [markdown]
# # DPO on a log-linear policy is logistic regression
#
# A log-linear policy scores a response y to a prompt x by θᵀφ(x, y):
# π_θ(y | x) ∝ exp(θᵀφ(x, y)). For a preference pair (y_w ≻ y_l) the DPO loss is
#
#     ℓ(θ) = −log σ( β [log π_θ(y_w|x)/π_ref(y_w|x) − log π_θ(y_l|x)/π_ref(y_l|x)] ).
#
# Both responses share the prompt, so the log-partition log Σ_y exp(θᵀφ(x, y)) cancels and
# the implicit reward margin is linear in θ:
#
#     h(θ) = β (θ − θ_ref)ᵀ z,   z = φ(x, y_w) − φ(x, y_l).
#
# So ℓ(θ) = log(1 + exp(−h)): logistic regression, with feature vector βz, label "+1" for every
# pair, and weights w = β(θ − θ_ref). This script checks it numerically on the lab's synthetic
# problem: the lab's DPO loss equals a hand-written logistic loss, a plain Newton solver for
# logistic regression lands on the lab's θ*, and DPO trained by SGD converges to it.
#
# Run: `python demos/dpo_is_logistic_regression.py [OUT_DIR]` (default `runs/demos/`, or
# `$DEMO_OUT`); `DEMO_SIZE=tiny` makes it faster. It also opens as a notebook (percent cells).

# %%
import os
import sys
from pathlib import Path

import numpy as np
import torch

from paper_figures import style
from synthetic.oracle import SyntheticOracle
from synthetic.problem import ProblemConfig, build_problem
from theory_lab.config import build_config
from theory_lab.runner import run

TINY = os.environ.get("DEMO_SIZE") == "tiny"
ARGS = [a for a in sys.argv[1:] if not a.startswith("-")]  # a notebook kernel passes -f ...
OUT = Path(ARGS[0] if ARGS else os.environ.get("DEMO_OUT", "runs/demos"))

# %% [markdown]
# ## One user, a contextual bandit, 400 preference pairs

# %%
cfg = ProblemConfig(n_clients=1, dim=5, n_contexts=20, n_actions=5, pairs_per_client=400, beta=0.5,
                    ref_scale=1.0, heldout_pairs=200)
problem = build_problem(cfg, seeds=[0])
oracle = SyntheticOracle(problem)
beta = problem.beta
theta_ref = problem.theta_ref[0].numpy()
Z = problem.dphi[0, 0].numpy()  # [n, d]: z = φ(x, y_w) − φ(x, y_l), the label already folded in
print(f"{Z.shape[0]} pairs, d = {Z.shape[1]}, beta = {beta}")

# %% [markdown]
# ## 1. The DPO loss is the logistic loss on βz

# %%
def logistic_loss(w, X):
    """Mean log(1 + exp(−Xw)): logistic regression with every label +1."""
    return np.mean(np.logaddexp(0.0, -X @ w))


rng = np.random.default_rng(0)
gaps = []
for _ in range(5):
    theta = theta_ref + rng.normal(size=theta_ref.shape)
    dpo = float(oracle.loss(torch.tensor(theta)[None, None])[0, 0])
    lr = logistic_loss(theta - theta_ref, beta * Z)
    gaps.append(abs(dpo - lr))
print(f"max |DPO loss − logistic loss| over 5 random θ: {max(gaps):.2e}")
assert max(gaps) < 1e-12

# %% [markdown]
# ## 2. Logistic regression by Newton's method lands on the lab's θ*

# %%
def newton_logistic(X, iters=50):
    w = np.zeros(X.shape[1])
    for _ in range(iters):
        s = 1.0 / (1.0 + np.exp(X @ w))              # σ(−Xw)
        grad = -(X * s[:, None]).mean(0)
        hess = (X * (s * (1 - s))[:, None]).T @ X / len(X)
        w -= np.linalg.solve(hess, grad)
        if np.linalg.norm(grad) < 1e-14:
            break
    return w


w_lr = newton_logistic(beta * Z)
theta_lr = theta_ref + w_lr
theta_star = oracle.constants.theta_star[0].numpy()
print(f"‖θ_logistic − θ*_lab‖ = {np.linalg.norm(theta_lr - theta_star):.2e}")
assert np.allclose(theta_lr, theta_star, atol=1e-8)

# %% [markdown]
# ## 3. DPO trained with minibatch SGD converges to the logistic-regression solution

# %%
rounds = 60 if TINY else 600
result = run(build_config({
    "problem": {"n_clients": 1, "dim": 5, "n_contexts": 20, "n_actions": 5, "pairs_per_client": 400,
                "beta": 0.5, "ref_scale": 1.0, "heldout_pairs": 200},
    "algorithm": {"name": "centralized", "lr": 4.0, "batch_size": 8, "schedule": "inv_sqrt", "decay_steps": 20},
    "run": {"seeds": [0], "rounds": rounds, "log_every": 1}}), progress=False)
curve = result.table
print(f"after {rounds} SGD steps: f − f* = {curve['subopt'].iloc[-1]:.2e}, "
      f"held-out preference accuracy {curve['eval_pref_acc'].iloc[-1]:.3f}")

# %% [markdown]
# ## The figure

# %%
fig, (a, b, c) = style.figure("double", 2.3, 1, 3)
h = np.linspace(-6, 6, 200)
a.plot(h, np.logaddexp(0, -h), "-", color="0.0", label=r"DPO loss $-\log\sigma(h)$")
margins = beta * Z @ w_lr  # h at θ*: β(θ* − θ_ref)ᵀz
ax2 = a.twinx()
ax2.hist(margins, bins=30, color="0.8", zorder=0)
ax2.set_yticks([])
ax2.set_ylabel("pairs at θ*", fontsize=6.5, color="0.4")
a.set_zorder(ax2.get_zorder() + 1)
a.patch.set_visible(False)
a.set_xlabel(r"implicit reward margin $h = \beta(\theta-\theta_{ref})^\top z$")
a.set_ylabel("loss")
a.legend(loc="upper right")
style.panel_label(a, "(a)", "the logistic loss")

b.plot(theta_star, theta_lr, "o", color="0.0", mfc="white")
lim = np.abs(np.concatenate([theta_star, theta_lr])).max() * 1.1
b.plot([-lim, lim], [-lim, lim], "-", color="0.6", lw=0.8)
b.set_xlabel(r"lab's $\theta^\star$ (DPO, Newton on the oracle)")
b.set_ylabel(r"$\theta_{ref} + w$ (logistic regression)")
style.panel_label(b, "(b)", "same minimiser")

c.plot(curve["round"][1:], curve["subopt"][1:], "-", color="0.0", label=r"$f(\theta_t) - f^\star$")
c.set_xscale("log")
c.set_yscale("log")
c.set_xlabel("SGD step (batch 8, η ∝ 1/√t)")
c.set_ylabel(r"DPO loss $-$ logistic optimum")
style.panel_label(c, "(c)", "SGD on DPO")
paths = style.save(fig, OUT, "dpo_is_logistic_regression")
print("figure:", ", ".join(map(str, paths)))
