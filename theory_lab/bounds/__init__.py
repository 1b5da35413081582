"""Convergence bounds and stationary floors of distributed DPO, as pure functions of exact constants.

One module per kind of statement, all re-exported here (`from theory_lab import bounds; bounds.X`):
`constants` (the exact constants every bound takes), `floors` (noise, participation and drift
floors), `staleness` (delays and the stale floors), `consensus` (DecDPO), `smoothness` (of the DPO
landscape), `rates` (the theorems' rate bounds), `lower` (lower bounds on hard instances) and
`rounds` (rounds to epsilon, inverting the rate bounds).

Every function takes plain numbers or numpy arrays (broadcast together) and returns a float for
scalar input, an array otherwise. Derivations, assumptions and sources: `docs/theory.md` (section
numbers below refer to it). Notation (one replica of the synthetic problem):

    L       smoothness of f (global); L_max = max_i L_i (clients); L_sample: of one sample's loss
    mu      strong convexity of f at theta* (may be 0); mu_global: of every client loss everywhere
    sigma2  per-sample gradient variance at theta*, averaged over clients; batch b gives sigma2/b
    zeta2   sum_i w_i ||grad f_i(theta*)||^2 (heterogeneity at the optimum)
    F0      f(theta_0) - f*;  D2 = ||theta_0 - theta*||^2
    n, S    clients, participants per round; E local steps; tau gossip period; q_max staleness
    p       1 - rho^2, rho = max(|lambda_2(W)|, |lambda_n(W)|)
    eta     local step size; eta_g server step size; b batch size; R communication rounds

Two kinds of statement live here, and the docstrings say which:

* **floors** (`*_floor`, `consensus_*`, `spectral_consensus`): exact to leading order in the step
  size for a quadratic model, derived in theory.md section 3-4. These are *predictions*, with their
  coefficients; the general forms are order-of-magnitude (or leading-order upper) bounds.
* **rate bounds** (`*_bound`, `rounds_to_epsilon`): the upper bounds of the cited theorems. Where a
  theorem is stated with O(.) only, the hidden constant is set to 1 (argument `const`) and flagged
  "uncertain constant: checked numerically in the claim registry (bound-validity)".

Common parameters
-----------------
Arguments that many functions share; each function's docstring names them and adds only what is
particular to it (e.g. which smoothness constant its theorem assumes).

eta : float or array
    Local step size; in a rate bound, a constant step, None for the tuned step.
E : int or array, optional
    Local steps per round.
eta_g : float or array, optional
    Server step size.
S : int or array, optional
    Participants per round, 1 <= S <= n; None means n.
b : int or array, optional
    Batch size (per client and local step).
n : int or array
    Number of clients.
sigma2 : float or array
    Per-sample gradient variance at theta*, averaged over clients.
zeta2 : float or array
    Heterogeneity at the optimum, sum_i w_i ||grad f_i(theta*)||^2.
L, mu : float or array, optional
    Of the floors: the global L (lambda_max(H)) and the global mu at theta* (lambda_min(H)),
    needed for metric "grad_norm_sq" and "dist2" respectively.
metric : {"subopt", "grad_norm_sq", "dist2"}, optional
    E f - f*, E ||grad f||^2 or E ||theta - theta*||^2.
q_max : int or array
    Largest delay, in rounds, >= 0.
delay : {"uniform", "max"}, optional
    Delay distribution: uniform on {0, ..., q_max}, or always q_max.
p : float or array
    Spectral gap 1 - rho^2 of the mixing matrix, in [0, 1] (1 for local SGD / FedAvg).
tau : int or array, optional
    Local steps between communications (gossip rounds).
R : int or array
    Communication rounds.
c : Constants
    The exact constants of one replica; each function lists the ones it uses, with the
    smoothness (L_sample, L_max or L) and strong convexity (mu_global or mu) its theorem assumes.
regime : {"strongly_convex", "convex", "nonconvex"}, optional
    Which bound.
const : float, optional
    The hidden constant of a theorem stated with O(.) or O~(.).
"""

from theory_lab.bounds._common import ArrayLike
from theory_lab.bounds.consensus import (consensus_heterogeneity, consensus_noise, jiang_consensus_scaling,
                                         spectral_consensus)
from theory_lab.bounds.constants import Constants
from theory_lab.bounds.floors import (drift_fixed_point_quadratic, drift_floor, drift_floor_exact, noise_floor,
                                      participation_floor, sgd_noise_floor)
from theory_lab.bounds.lower import local_drift_factor, local_sgd_lower_bound
from theory_lab.bounds.rates import (KOLOSKOVA_C_STEP, decdpo_bound, fedavg_li_bound, feddpo_bound,
                                     gradient_tracking_bound, koloskova_bound, koloskova_step_limit,
                                     local_sgd_woodworth_bound, local_vs_minibatch_crossover, minibatch_sgd_bound,
                                     scaffold_bound)
from theory_lab.bounds.rounds import rounds_to_epsilon
from theory_lab.bounds.smoothness import bandit_smoothness, trajectory_gradient_bound, trajectory_smoothness_bound
from theory_lab.bounds.staleness import (delayed_step_limit, delayed_variance, feddpo_floor, lag_weight_moments,
                                         mean_delay, noise_curvature, staleness_floor, staleness_floor_exact,
                                         staleness_model_factor)

__all__ = [
    "ArrayLike", "Constants", "drift_fixed_point_quadratic", "drift_floor", "drift_floor_exact", "noise_floor",
    "participation_floor", "sgd_noise_floor", "delayed_step_limit", "delayed_variance", "feddpo_floor",
    "lag_weight_moments", "mean_delay", "noise_curvature", "staleness_floor", "staleness_floor_exact",
    "staleness_model_factor", "consensus_heterogeneity", "consensus_noise", "jiang_consensus_scaling",
    "spectral_consensus", "bandit_smoothness", "trajectory_gradient_bound", "trajectory_smoothness_bound",
    "KOLOSKOVA_C_STEP", "decdpo_bound", "fedavg_li_bound", "feddpo_bound", "gradient_tracking_bound",
    "koloskova_bound", "koloskova_step_limit", "local_sgd_woodworth_bound", "local_vs_minibatch_crossover",
    "minibatch_sgd_bound", "scaffold_bound", "local_drift_factor", "local_sgd_lower_bound", "rounds_to_epsilon"
]
