"""Convergence bounds and stationary floors of distributed DPO, as pure functions of exact constants.

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

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.linalg import solve_discrete_lyapunov

from theory_lab.errors import ConfigError

ArrayLike = float | np.ndarray
_METRICS = ("subopt", "grad_norm_sq", "dist2")
_REGIMES = ("strongly_convex", "convex", "nonconvex")


# ---------------------------------------------------------------------------------------------
# inputs and small helpers
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Constants:
    """Exact constants of one replica (computed by `synthetic/constants.py`).

    Three smoothness constants, L <= L_max <= L_sample, because the theorems assume different ones:
    `L` of f (global), `L_max` = max_i L_i of the client losses (Li et al. 2020, Karimireddy et al.
    2020), `L_sample` of a single sample's loss (Koloskova et al. 2020, Assumption 1; Woodworth et al.
    2020). Two strong-convexity constants: `mu` = lambda_min(hess f(theta*)) (local: the floors) and
    `mu_global`, the strong convexity every client loss has everywhere (the theorems; the l2 weight
    on the DPO problem, whose logistic curvature vanishes far from theta*).

    Parameters
    ----------
    L : float
        Global smoothness of f, > 0.
    mu : float
        Strong convexity of f at theta*, lambda_min(hess f(theta*)), in [0, L] (may be 0).
    sigma2 : float
        Per-sample gradient variance at theta*, averaged over clients, >= 0 (batch b gives sigma2/b).
    zeta2 : float
        Heterogeneity at the optimum, sum_i w_i ||grad f_i(theta*)||^2, >= 0.
    F0 : float
        Initial gap f(theta_0) - f*, >= 0.
    n : int
        Number of clients, >= 1.
    L_max : float or None, optional
        Per-client smoothness max_i L_i, >= L; None means L (read it as `l_max`).
    D2 : float or None, optional
        ||theta_0 - theta*||^2, >= 0; None means 2 F0 / mu_global (read it as `dist2`).
    L_sample : float or None, optional
        Per-sample smoothness, >= L_max; None means L_max (read it as `l_sample`).
    mu_global : float or None, optional
        Strong convexity of every client loss everywhere, in [0, mu]; None means mu (read it as `mu_g`).

    Raises
    ------
    ConfigError
        If L, mu, sigma2, zeta2 or F0 is not a finite int or float >= 0, L is not > 0, mu > L, n is
        not an integer >= 1, or L_max >= L, D2 >= 0, L_sample >= L_max, 0 <= mu_global <= mu fails.

    Notes
    -----
    Defaults: L_max = L, L_sample = L_max, mu_global = mu; D2 (= ||theta_0 - theta*||^2) defaults to
    the strong-convexity bound 2 F0 / mu_global (inf when it is 0).

    Examples
    --------
    >>> c = Constants(L=2.0, mu=0.5, sigma2=1.0, zeta2=0.5, F0=1.0, n=4, L_max=3.0, L_sample=4.0,
    ...               mu_global=0.1)
    >>> c.l_max, c.l_sample, c.mu_g, c.dist2
    (3.0, 4.0, 0.1, 20.0)

    The properties `l_max`, `l_sample`, `mu_g` and `dist2` fall back to the defaults (`l_sample` on
    `l_max`, `dist2` on 2 F0 / mu_g):

    >>> d = Constants(L=2.0, mu=0.5, sigma2=1.0, zeta2=0.5, F0=1.0, n=4)
    >>> d.l_max, d.l_sample, d.mu_g, d.dist2
    (2.0, 2.0, 0.5, 4.0)
    >>> Constants(L=2.0, mu=0.5, sigma2=1.0, zeta2=0.5, F0=1.0, n=4, L_max=3.0).l_sample
    3.0
    >>> Constants(L=1.0, mu=0.0, sigma2=1.0, zeta2=0.0, F0=1.0, n=1).dist2   # mu_g = 0
    inf
    """

    L: float
    mu: float
    sigma2: float
    zeta2: float
    F0: float
    n: int
    L_max: float | None = None
    D2: float | None = None
    L_sample: float | None = None
    mu_global: float | None = None

    def __post_init__(self) -> None:
        for name in ("L", "mu", "sigma2", "zeta2", "F0"):
            v = getattr(self, name)
            if not (isinstance(v, numbers.Real) and math.isfinite(v) and v >= 0):   # numpy scalars too
                raise ConfigError(f"constants.{name}", f"must be a finite number >= 0, got {v!r}")
        if self.L <= 0:
            raise ConfigError("constants.L", f"must be > 0, got {self.L!r}")
        if self.mu > self.L:
            raise ConfigError("constants.mu", f"must be <= L = {self.L}, got {self.mu!r}")
        if not (isinstance(self.n, (int, np.integer)) and self.n >= 1):
            raise ConfigError("constants.n", f"must be an integer >= 1, got {self.n!r}")
        if self.L_max is not None and not self.L_max >= self.L:
            raise ConfigError("constants.L_max", f"must be >= L = {self.L}, got {self.L_max!r}")
        if self.D2 is not None and not self.D2 >= 0:
            raise ConfigError("constants.D2", f"must be >= 0, got {self.D2!r}")
        if self.L_sample is not None and not self.L_sample >= self.l_max:
            raise ConfigError("constants.L_sample", f"must be >= L_max = {self.l_max}, got {self.L_sample!r}")
        if self.mu_global is not None and not 0 <= self.mu_global <= self.mu:
            raise ConfigError("constants.mu_global", f"must lie in [0, mu = {self.mu}], got {self.mu_global!r}")

    @classmethod
    def from_exact(cls, exact, replica: int = 0, D2: float | None = None) -> "Constants":
        """One replica's `Constants` from the exact constants of all replicas.

        From `synthetic.constants.Constants` (tensors, or lists as in a run manifest, over replicas): one
        replica's numbers, with L_max = max_i L_i, and L_sample, mu_global where the exact constants
        carry them.

        Parameters
        ----------
        exact : synthetic.constants.Constants or dict
            Attributes or keys L, mu, sigma2, zeta2, F0 (shape [replicas]), L_clients ([replicas, n]) and
            optionally L_sample, mu_global ([replicas]).
        replica : int, optional
            Index of the replica to take.
        D2 : float or None, optional
            ||theta_0 - theta*||^2, when known; None keeps the default 2 F0 / mu_global.

        Returns
        -------
        Constants
            With n the length of the last axis of L_clients, mu and F0 clipped below at 0,
            L_max = max(max_i L_i, L), L_sample raised to at least L_max and mu_global clipped into [0, mu].

        Raises
        ------
        ConfigError
            If the replica's numbers still fail the checks of `Constants` (e.g. a non-finite value, mu > L).

        Examples
        --------
        >>> exact = {"L": [2.0, 3.0], "mu": [0.5, 0.4], "sigma2": [1.0, 1.1], "zeta2": [0.5, 0.6],
        ...          "F0": [1.0, 2.0], "L_clients": [[2.5, 1.5], [3.5, 2.0]]}
        >>> c = Constants.from_exact(exact, replica=1)
        >>> c.n, c.L, c.l_max, c.l_sample, c.mu_g
        (2, 3.0, 3.5, 3.5, 0.4)
        """
        def num(x, *idx):
            v = np.asarray(x, dtype=float)
            return float(v[idx] if idx else v)

        def get(name):
            return exact.get(name) if isinstance(exact, dict) else getattr(exact, name, None)

        L, mu = num(get("L"), replica), max(num(get("mu"), replica), 0.0)
        L_max = max(float(np.max(np.asarray(get("L_clients"), dtype=float)[replica])), L)
        Ls, mg = get("L_sample"), get("mu_global")
        return cls(L=L, mu=mu, sigma2=num(get("sigma2"), replica), zeta2=num(get("zeta2"), replica),
                   F0=max(num(get("F0"), replica), 0.0), n=int(np.shape(get("L_clients"))[-1]), L_max=L_max,
                   D2=D2, L_sample=None if Ls is None else max(num(Ls, replica), L_max),
                   mu_global=None if mg is None else min(max(num(mg, replica), 0.0), mu))

    @property
    def l_max(self) -> float:
        """Per-client smoothness L_max = max_i L_i (`L_max`, or `L` when it is None)."""
        return self.L if self.L_max is None else float(self.L_max)

    @property
    def l_sample(self) -> float:
        """Per-sample smoothness (`L_sample`, or `l_max` when it is None)."""
        return self.l_max if self.L_sample is None else float(self.L_sample)

    @property
    def mu_g(self) -> float:
        """Strong convexity of every client loss everywhere (`mu_global`, or `mu` when it is None)."""
        return self.mu if self.mu_global is None else float(self.mu_global)

    @property
    def dist2(self) -> float:
        """D2 = ||theta_0 - theta*||^2: `D2` if given, else 2 F0 / `mu_g` (inf when `mu_g` is 0)."""
        if self.D2 is not None:
            return float(self.D2)
        return 2.0 * self.F0 / self.mu_g if self.mu_g > 0 else math.inf


def _ret(x) -> ArrayLike:
    x = np.asarray(x, dtype=float)
    return float(x) if x.ndim == 0 else x


def _div(num, den) -> np.ndarray:
    """num / den elementwise, with 0/0 -> 0 and x/0 -> inf (x > 0)."""
    num, den = np.broadcast_arrays(np.asarray(num, dtype=float), np.asarray(den, dtype=float))
    safe = np.where(den != 0, den, 1.0)
    return np.where(den != 0, num / safe, np.where(num == 0, 0.0, np.inf))


def _check_metric(metric: str) -> None:
    if metric not in _METRICS:
        raise ConfigError("metric", f"must be one of {', '.join(_METRICS)}, got {metric!r}")


def _check_regime(regime: str) -> None:
    if regime not in _REGIMES:
        raise ConfigError("regime", f"must be one of {', '.join(_REGIMES)}, got {regime!r}")


def _rho(p) -> np.ndarray:
    p = np.asarray(p, dtype=float)
    if np.any((p < 0) | (p > 1)):
        raise ConfigError("p", "spectral gap p = 1 - rho^2 must lie in [0, 1]")
    return np.sqrt(1.0 - p)


def _sampling_factor(S, n) -> np.ndarray:
    """(n - S) / (S (n - 1)): variance factor of the mean of S of n items drawn without replacement."""
    S, n = np.asarray(S, dtype=float), np.asarray(n, dtype=float)
    if np.any(S < 1) or np.any(S > n):
        raise ConfigError("participation", "need 1 <= S <= n")
    return _div(n - S, S * (n - 1))


# ---------------------------------------------------------------------------------------------
# stationary floors of FedDPO / local SGD (theory.md section 3)
# ---------------------------------------------------------------------------------------------


def sgd_noise_floor(gamma, noise_trace, L=None, mu=None, *, metric: str = "subopt") -> ArrayLike:
    """Stationary error of SGD with step `gamma` and additive gradient noise of trace tr(C).

    Exact to leading order in gamma for a quadratic model, whatever its Hessian for E f - f*; the
    gradient-norm and distance metrics are upper bounds through L and mu.

    Parameters
    ----------
    gamma : float or array
        Effective step size (eta * eta_g with a server step).
    noise_trace : float or array
        tr(C), trace of the covariance of one step's gradient noise (e.g. sigma2 / (n b)).
    L, mu, metric
        See Common parameters (here L = lambda_max(H), mu = lambda_min(H)).

    Returns
    -------
    float or array
        The floor, broadcast over the arguments (float for scalar input); "dist2" with mu = 0 gives
        inf (0 without noise).

    Raises
    ------
    ConfigError
        Unknown metric, L missing for "grad_norm_sq", or mu missing for "dist2".

    Notes
    -----
    Quadratic model f = 1/2 d^T H d, update d <- (I - gamma H) d - gamma xi, Cov(xi) = C. The stationary
    covariance P solves H P + P H = gamma C + gamma H P H, hence exactly to leading order in gamma:

        E f - f*   = tr(H P)/2   = gamma tr(C) / 4           (no dependence on H at all)
        E ||grad||^2 = tr(H^2 P) = gamma tr(H C) / 2 <= gamma L tr(C) / 2
        E ||d||^2    = tr(P)     = gamma tr(H^-1 C) / 2 <= gamma tr(C) / (2 mu)

    Relative corrections are O(gamma L).

    References
    ----------
    Source: our derivation (theory.md 3.1); the classical statement is the stationary distribution of
    constant-step SGD (e.g. Mandt, Hoffman, Blei 2017).

    Examples
    --------
    >>> sgd_noise_floor(0.1, 2.0)                               # gamma tr(C) / 4
    0.05
    >>> round(sgd_noise_floor(0.1, 2.0, L=3.0, metric="grad_norm_sq"), 6)
    0.3
    """
    _check_metric(metric)
    g, s = np.asarray(gamma, dtype=float), np.asarray(noise_trace, dtype=float)
    if metric == "subopt":
        return _ret(g * s / 4.0)
    if metric == "grad_norm_sq":
        if L is None:
            raise ConfigError("L", "needed for metric 'grad_norm_sq'")
        return _ret(g * np.asarray(L, dtype=float) * s / 2.0)
    if mu is None:
        raise ConfigError("mu", "needed for metric 'dist2'")
    return _ret(_div(g * s, 2.0 * np.asarray(mu, dtype=float)))


def noise_floor(eta, sigma2, b, n, L=None, mu=None, *, eta_g=1.0, metric="subopt") -> ArrayLike:
    """Noise floor of FedDPO / local SGD / minibatch SGD with zeta = 0 and constant steps.

        E f(theta_bar) - f* = eta * eta_g * sigma2 / (4 n b)   (leading order in eta; independent of E)

    Centralized minibatch SGD with batch n*b has the same floor.

    Parameters
    ----------
    eta, sigma2, b
        See Common parameters.
    n : int or array
        Number of clients whose gradients are averaged each round (pass S under partial participation).
    L, mu, eta_g
        See Common parameters.
    metric : {"subopt", "grad_norm_sq", "dist2"}, optional
        Other metrics via `sgd_noise_floor` (grad_norm_sq <= eta eta_g L sigma2/(2 n b),
        dist2 <= eta eta_g sigma2/(2 mu n b)).

    Returns
    -------
    float or array
        The noise floor (broadcast over the arguments).

    Raises
    ------
    ConfigError
        As `sgd_noise_floor` (unknown metric, L or mu missing).

    Notes
    -----
    Assumptions: noise covariance evaluated at theta* (state dependence is higher order), minibatches
    drawn with replacement (without replacement from m samples: multiply sigma2 by (m-b)/(m-1)),
    eta * E * L << 1.

    References
    ----------
    Sources: Stich 2019 (linear speed-up), Koloskova et al. 2020 Thm 2 (the sigma^2/n term); the
    coefficient 1/4 is ours (theory.md 3.1), verified in tests/test_bounds.py.

    Examples
    --------
    >>> round(noise_floor(0.1, 1.0, 4, 8), 8)                   # 0.1 * 1 / (4 * 8 * 4)
    0.00078125
    """
    trace = np.asarray(sigma2, dtype=float) / (np.asarray(n, dtype=float) * np.asarray(b, dtype=float))
    gamma = np.asarray(eta, dtype=float) * np.asarray(eta_g, dtype=float)
    return sgd_noise_floor(gamma, trace, L, mu, metric=metric)


def participation_floor(eta, S, n, zeta2, L=None, mu=None, *, E=1, eta_g=1.0, metric="subopt"):
    """Partial-participation floor of FedDPO with exact local gradients.

    S of n clients sampled uniformly without replacement, uniform client weights:

        E f(theta_bar) - f* = eta * eta_g * E * zeta2 * (n - S) / (4 S (n - 1))   (leading order in eta)

    Zero when S = n.

    Parameters
    ----------
    eta, S, n
        See Common parameters.
    zeta2 : float or array
        Heterogeneity at the optimum with w_i = 1/n.
    L, mu, E, eta_g, metric
        See Common parameters (metric as in `sgd_noise_floor`).

    Returns
    -------
    float or array
        The participation floor, broadcast over the arguments; 0 when S = n.

    Raises
    ------
    ConfigError
        If S < 1 or S > n, or as `sgd_noise_floor` (unknown metric, L or mu missing).

    Notes
    -----
    The sampled mean of S client pseudo-gradients is unbiased with covariance
    (n-S)/(S(n-1)) * (1/n) sum_i g_i g_i^T at theta* (finite-population correction); with E local steps
    a pseudo-gradient is E g_i + O(eta), so the per-round noise is (eta eta_g E)^2 C_p against a
    contraction eta eta_g E H, which gives the floor above via `sgd_noise_floor`.
    Assumptions: uniform weights w_i = 1/n, eta E L << 1; adds to the drift floor (cross term is
    higher order).

    References
    ----------
    Sources: Li et al. 2020 (ICLR) Thm 3 (the (N-K)/(N-1) sampling factor), Jiang'26
    (floor ~ zeta^2/S); the coefficient 1/4 is ours (theory.md 3.2).

    Examples
    --------
    >>> round(participation_floor(0.1, 2, 4, 1.0), 6)           # 0.1 * 1 * 2 / (4 * 2 * 3)
    0.008333
    >>> participation_floor(0.1, 4, 4, 1.0)
    0.0
    """
    trace = np.asarray(E, dtype=float) * np.asarray(zeta2, dtype=float) * _sampling_factor(S, n)
    gamma = np.asarray(eta, dtype=float) * np.asarray(eta_g, dtype=float)
    return sgd_noise_floor(gamma, trace, L, mu, metric=metric)


def drift_floor(eta, E, zeta2, L, mu=None, *, metric="subopt") -> ArrayLike:
    """Client-drift floor of FedDPO / local GD with E exact local steps and constant eta.

    Leading-order upper bound (theory.md 3.3), with L = L_max the largest client smoothness:

        E f(theta_inf) - f* <= eta^2 (E-1)^2 L zeta2 / 8
        ||grad f(theta_inf)||^2 <= eta^2 (E-1)^2 L^2 zeta2 / 4
        ||theta_inf - theta*||^2 <= eta^2 (E-1)^2 L zeta2 / (4 mu)

    Parameters
    ----------
    eta, E, zeta2
        See Common parameters.
    L : float or array
        L_max = max_i L_i, the largest client smoothness (per-client constant, not the global L).
    mu : float or array, optional
        Needed for metric "dist2" (see Common parameters).
    metric : {"subopt", "grad_norm_sq", "dist2"}, optional
        Which of the three bounds above.

    Returns
    -------
    float or array
        The bound, broadcast over the arguments.

    Raises
    ------
    ConfigError
        Unknown metric, or mu missing for "dist2".

    Notes
    -----
    The fixed point moves by delta = eta (E-1)/2 H^-1 v + O(eta^2), v = sum_i w_i H_i grad f_i(theta*)
    (exact leading order: `drift_floor_exact`), and v^T H^-1 v <= sum_i w_i g_i^T H_i g_i <= L zeta2
    (Cauchy-Schwarz; the first step is attained up to o(1) by two clients with 'crossed' Hessians;
    the bound is often an order of magnitude above the exact value). Independent of the
    server step eta_g. Vanishes at E = 1 and whenever all client Hessians at theta* coincide.
    Valid for eta E L << 1 (relative corrections O(eta E L)).

    References
    ----------
    Sources: Koloskova et al. 2020 Thm 2 (the L eta^2 tau^2 zeta^2 consensus term), Woodworth et al.
    2020, Jiang'26 (eta^2 E^2 kappa^2); coefficient 1/8 and the (E-1)^2 form are ours.

    Examples
    --------
    >>> round(drift_floor(0.1, 5, 1.0, 2.0), 6)                 # 0.1^2 * 4^2 * 2 * 1 / 8
    0.04
    >>> drift_floor(0.1, 1, 1.0, 2.0)
    0.0
    """
    _check_metric(metric)
    k = (np.asarray(eta, dtype=float) * (np.asarray(E, dtype=float) - 1.0)) ** 2
    z, Lf = np.asarray(zeta2, dtype=float), np.asarray(L, dtype=float)
    if metric == "subopt":
        return _ret(k * Lf * z / 8.0)
    if metric == "grad_norm_sq":
        return _ret(k * Lf**2 * z / 4.0)
    if mu is None:
        raise ConfigError("mu", "needed for metric 'dist2'")
    return _ret(_div(k * Lf * z, 4.0 * np.asarray(mu, dtype=float)))


def drift_floor_exact(eta, E, hessians, grads, weights=None, *, metric="subopt") -> ArrayLike:
    """Exact leading-order drift floor from the client Hessians and gradients at theta*.

    With H_i = hess f_i(theta*) and g_i = grad f_i(theta*) (theory.md 3.3):

        v = sum_i w_i H_i g_i,  H = sum_i w_i H_i,  c = eta (E-1)
        subopt = c^2/8 * v^T H^-1 v;  grad_norm_sq = c^2/4 * ||v||^2;  dist2 = c^2/4 * ||H^-1 v||^2

    Parameters
    ----------
    eta, E
        See Common parameters.
    hessians : array_like
        Client Hessians H_i at theta*, shape [n, d, d].
    grads : array_like
        Client gradients g_i at theta*, shape [n, d].
    weights : array_like, optional
        Client weights w_i, shape [n], used as given; None means uniform 1/n.
    metric : {"subopt", "grad_norm_sq", "dist2"}, optional
        Which of the three values above.

    Returns
    -------
    float or array
        The floor, broadcast over eta and E.

    Raises
    ------
    ConfigError
        Unknown metric.
    numpy.linalg.LinAlgError
        If H = sum_i w_i H_i is singular (metrics "subopt" and "dist2").

    Notes
    -----
    Exact to O(eta^3) for any C^3 client losses (quadratics: exact fixed point in
    `drift_fixed_point_quadratic`). `eta` and `E` may be arrays.

    Examples
    --------
    Two clients with 'crossed' Hessians; zeta2 = 1 and L_max = 2, so `drift_floor` bounds it by 0.04:

    >>> Hs = np.array([np.diag([1.0, 2.0]), np.diag([2.0, 1.0])])
    >>> G = np.array([[1.0, 0.0], [-1.0, 0.0]])
    >>> round(drift_floor_exact(0.1, 5, Hs, G), 6)
    0.003333
    """
    _check_metric(metric)
    Hs = np.asarray(hessians, dtype=float)
    G = np.asarray(grads, dtype=float)
    n = Hs.shape[0]
    w = np.full(n, 1.0 / n) if weights is None else np.asarray(weights, dtype=float)
    v = np.einsum("i,ijk,ik->j", w, Hs, G)
    Hbar = np.einsum("i,ijk->jk", w, Hs)
    if metric == "subopt":
        coef = float(v @ np.linalg.solve(Hbar, v)) / 8.0
    elif metric == "grad_norm_sq":
        coef = float(v @ v) / 4.0
    else:
        u = np.linalg.solve(Hbar, v)
        coef = float(u @ u) / 4.0
    c = np.asarray(eta, dtype=float) * (np.asarray(E, dtype=float) - 1.0)
    return _ret(c**2 * coef)


def drift_fixed_point_quadratic(eta, E, hessians, centers, weights=None) -> np.ndarray:
    """Exact fixed point of FedAvg with E local GD steps on quadratic client losses.

    Client losses f_i(x) = 1/2 (x-c_i)^T A_i (x-c_i). With M_i = I - eta A_i, one round maps x to
    sum_i w_i [c_i + M_i^E (x - c_i)] (any server step eta_g > 0 has the same fixed point), so x_inf
    solves

        (I - sum_i w_i M_i^E) x = sum_i w_i (I - M_i^E) c_i.

    Used to check the leading-order formula at finite eta.

    Parameters
    ----------
    eta, E
        See Common parameters (here eta is a scalar).
    hessians : array_like
        A_i, shape [n, d, d].
    centers : array_like
        c_i, shape [n, d].
    weights : array_like, optional
        Client weights w_i, shape [n]; None means uniform 1/n.

    Returns
    -------
    numpy.ndarray
        x_inf, shape [d].

    Raises
    ------
    numpy.linalg.LinAlgError
        If I - sum_i w_i M_i^E is singular.

    Examples
    --------
    At E = 1 the fixed point is the optimum x* = (sum_i A_i)^-1 sum_i A_i c_i = (-1/3, 0):

    >>> A = np.array([np.diag([1.0, 2.0]), np.diag([2.0, 1.0])])
    >>> centers = np.array([[1.0, 0.0], [-1.0, 0.0]])
    >>> [round(float(x), 6) for x in drift_fixed_point_quadratic(0.1, 1, A, centers)]
    [-0.333333, 0.0]
    >>> [round(float(x), 6) for x in drift_fixed_point_quadratic(0.1, 5, A, centers)]
    [-0.242931, 0.0]
    """
    A = np.asarray(hessians, dtype=float)
    C = np.asarray(centers, dtype=float)
    n, d = C.shape
    w = np.full(n, 1.0 / n) if weights is None else np.asarray(weights, dtype=float)
    Ms = np.stack([np.linalg.matrix_power(np.eye(d) - eta * A[i], int(E)) for i in range(n)])
    I = np.eye(d)
    lhs = I - np.einsum("i,ijk->jk", w, Ms)
    rhs = np.einsum("i,ijk,ik->j", w, I[None] - Ms, C)
    return np.linalg.solve(lhs, rhs)


def mean_delay(q_max, delay: str = "uniform") -> ArrayLike:
    """Mean staleness q_bar of the delays of FedDPO.

    'uniform' on {0, ..., q_max} gives q_max/2; 'max' gives q_max.

    Parameters
    ----------
    q_max, delay
        See Common parameters.

    Returns
    -------
    float or array
        q_bar, shaped like q_max.

    Raises
    ------
    ConfigError
        Unknown delay.

    Examples
    --------
    >>> mean_delay(4), mean_delay(4, "max")
    (2.0, 4.0)
    """
    q = np.asarray(q_max, dtype=float)
    if delay == "uniform":
        return _ret(q / 2.0)
    if delay == "max":
        return _ret(q)
    raise ConfigError("delay", f"must be 'uniform' or 'max', got {delay!r}")


def lag_weight_moments(q_max: int, weights, delay: str = "uniform") -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of the random lag weights of one round of FedDPO with delays.

    Each participant i (aggregation weight w_i) draws its own delay d_i every round, independently
    (`FedDPO.start_models`): uniform on {0, ..., q_max}, or d_i = q_max for delay='max'. The server
    then sees the lag weights pi_j = sum_i w_i 1[d_i = j], j = 0..q_max, whose mean is the delay
    distribution p and whose covariance is (sum_i w_i^2) (diag(p) - p p^T).

    Parameters
    ----------
    q_max : int
        Largest delay (see Common parameters).
    weights : array_like
        Aggregation weights w_i of the participants, shape [S] (normalised here).
    delay : {"uniform", "max"}, optional
        Delay distribution.

    Returns
    -------
    (p, cov) : arrays [q_max + 1] and [q_max + 1, q_max + 1]
        Mean and covariance of pi; the covariance is 0 for delay='max'.

    Raises
    ------
    ConfigError
        If q_max < 0 or delay is unknown.

    Examples
    --------
    >>> p, cov = lag_weight_moments(1, [0.5, 0.5])
    >>> p.tolist(), cov.tolist()
    ([0.5, 0.5], [[0.125, -0.125], [-0.125, 0.125]])
    """
    q = int(q_max)
    w = np.asarray(weights, dtype=float)
    if q < 0:
        raise ConfigError("q_max", f"must be >= 0, got {q_max!r}")
    if delay == "max":
        p = np.zeros(q + 1)
        p[q] = 1.0
        return p, np.zeros((q + 1, q + 1))
    if delay != "uniform":
        raise ConfigError("delay", f"must be 'uniform' or 'max', got {delay!r}")
    p = np.full(q + 1, 1.0 / (q + 1))
    return p, float(w @ w / w.sum() ** 2) * (np.diag(p) - np.outer(p, p))


def delayed_variance(c: float, k: float, lag_mean, lag_cov) -> float:
    """Stationary second moment of a scalar recursion with random lag weights, per unit noise.

    E x^2 of x_{t+1} = c x_t + k sum_j pi_j x_{t-j} + nu_t, with random lag weights pi (fresh every
    round, mean `lag_mean`, covariance `lag_cov`) and white noise nu of variance 1, both independent
    of the past (theory.md 3.4).

    Parameters
    ----------
    c, k : float
        Coefficients of one round (`_stale_coefficients`).
    lag_mean, lag_cov : array_like
        Moments of pi (`lag_weight_moments`), shapes [q + 1] and [q + 1, q + 1].

    Returns
    -------
    float
        The stationary E x^2 for unit noise; inf when not mean-square stable.

    Notes
    -----
    With z_t = (x_t, ..., x_{t-q}) and A-bar the companion matrix of the mean coefficients
    a = c e_0 + k p, the stationary second moment S solves

        S = A-bar S A-bar^T + e_0 e_0^T (1 + k^2 tr(Cov(pi) S)),

    because the random part of A is k (pi - p)^T in its first row, independent of z_t. Hence
    S = S_0 / (1 - k^2 tr(Cov(pi) S_0)) with S_0 the Lyapunov solution for unit noise
    (scipy.linalg.solve_discrete_lyapunov). Exact for this linear model; inf when it is not
    mean-square stable.

    Examples
    --------
    >>> round(delayed_variance(0.0, 0.5, [1.0], [[0.0]]), 6)    # AR(1): 1 / (1 - 0.25)
    1.333333
    """
    p = np.asarray(lag_mean, dtype=float)
    cov = np.asarray(lag_cov, dtype=float)
    m = p.size
    A = np.zeros((m, m))
    A[0] = k * p
    A[0, 0] += c
    A[1:, :-1] = np.eye(m - 1)
    if np.max(np.abs(np.linalg.eigvals(A))) >= 1.0:
        return math.inf
    Q = np.zeros((m, m))
    Q[0, 0] = 1.0
    S0 = solve_discrete_lyapunov(A, Q)
    r = k * k * float(np.sum(cov * S0))
    return float(S0[0, 0] / (1.0 - r)) if r < 1.0 else math.inf


def _stale_coefficients(rule: str, m_E: float, eta_g: float) -> tuple[float, float]:
    """(c, k) of one round on a curvature direction, m_E = (1 - eta h)^E (E local steps).
    model_average rule: theta+ = (1 - eta_g) theta + eta_g sum_j pi_j m_E theta_{t-j};
    delta rule: theta+ = theta - eta_g (1 - m_E) sum_j pi_j theta_{t-j}."""
    if rule == "model_average":
        return 1.0 - eta_g, eta_g * m_E
    if rule == "delta":
        return 1.0, -eta_g * (1.0 - m_E)
    raise ConfigError("rule", f"must be 'delta' or 'model_average', got {rule!r}")


def staleness_floor_exact(eta, hessian, noise_cov, q_max, weights, *, E=1, eta_g=1.0, rule="model_average",
                          delay="uniform", sample_cov=None, metric="subopt") -> float:
    """Stationary error of FedDPO with independent per-client random delays, exact for the quadratic model.

    Global Hessian H at theta*, Gaussian-free: only second moments enter (theory.md 3.4). All orders
    in eta for the quadratic.

    Parameters
    ----------
    eta : float
        Local step size.
    hessian : array_like
        H = hess f(theta*), shape [d, d].
    noise_cov : array_like
        Covariance of the aggregated per-step gradient noise, sum_i w_i^2 Cov_i / b, shape [d, d].
    q_max : int
        Largest delay; delays are uniform on {0..q_max} per client and round, or all equal to q_max
        (delay='max').
    weights : array_like
        Aggregation weights of the participants, shape [S] (normalised here).
    E, eta_g
        See Common parameters.
    rule : {"model_average", "delta"}, optional
        'model_average': the server averages the returned models; 'delta': it applies the averaged
        deltas.
    delay : {"uniform", "max"}, optional
        Delay distribution.
    sample_cov : array_like, optional
        Covariance of the participants' mean heterogeneity gradient under partial participation
        (trace zeta2 (n - S)/(S (n - 1))), shape [d, d]; None for full participation.
    metric : {"subopt", "grad_norm_sq", "dist2"}, optional
        E f - f*, E ||grad f||^2 or E ||theta - theta*||^2.

    Returns
    -------
    float
        The stationary value of the metric; inf when the recursion is not mean-square stable.

    Raises
    ------
    ConfigError
        Unknown metric, rule or delay, or q_max < 0.

    Notes
    -----
    Per eigendirection (h, U^T C U diagonal s) one round is x+ = c x + k sum_j pi_j x_{t-j} + noise
    (`_stale_coefficients`) with per-round noise variance
    eta_g^2 eta^2 (sum_{e<E} m^{2e} s + (sum_{e<E} m^e)^2 s_sample), m = 1 - eta h, and
    `delayed_variance` gives its second moment. Client Hessian heterogeneity is neglected (it moves
    the fixed point, `drift_floor_exact`, not the noise floor, to leading order).

    Examples
    --------
    >>> H = np.eye(1); C = np.eye(1)
    >>> round(staleness_floor_exact(0.1, H, C, 0, [1.0]) / sgd_noise_floor(0.1, 1.0), 3)  # gamma h/2
    1.053
    """
    _check_metric(metric)
    h, U = np.linalg.eigh(np.asarray(hessian, dtype=float))
    s = np.einsum("ik,ij,jk->k", U, np.asarray(noise_cov, dtype=float), U)
    s_p = (np.zeros_like(s) if sample_cov is None
           else np.einsum("ik,ij,jk->k", U, np.asarray(sample_cov, dtype=float), U))
    p, cov = lag_weight_moments(q_max, weights, delay)
    v = np.empty_like(h)
    for i, (hk, sk, pk) in enumerate(zip(h, s, s_p)):
        m = 1.0 - eta * hk
        powers = m ** np.arange(int(E))
        noise = (eta_g * eta) ** 2 * (np.sum(powers**2) * sk + np.sum(powers) ** 2 * pk)
        c, k = _stale_coefficients(rule, m ** int(E), eta_g)
        v[i] = noise * delayed_variance(c, k, p, cov) if noise > 0 else 0.0
    weight = {"subopt": h / 2.0, "grad_norm_sq": h**2, "dist2": np.ones_like(h)}[metric]
    return float(np.sum(weight * v))


def noise_curvature(hessian, noise_cov) -> float:
    """tr(H C) / tr(C): the curvature the gradient noise sees, the delta rule's first-order factor.

    It is <= lambda_max(H) = L, with equality only for noise in the top eigenspace.

    Parameters
    ----------
    hessian : array_like
        H = hess f(theta*), shape [d, d].
    noise_cov : array_like
        Covariance C of the gradient noise, shape [d, d].

    Returns
    -------
    float
        kappa = tr(H C) / tr(C), the `curvature` of `staleness_floor`.

    Examples
    --------
    >>> noise_curvature(np.diag([1.0, 0.1]), np.eye(2))
    0.55
    """
    H, C = np.asarray(hessian, dtype=float), np.asarray(noise_cov, dtype=float)
    return float(np.trace(H @ C) / np.trace(C))


def staleness_model_factor(q_max, sum_w2, *, eta_g=1.0, delay="uniform", small=1e-8) -> float:
    """Leading-order factor floor(q_max) / floor(0) of the model-average rule (eta L -> 0).

    Lagging models slow the mean (a factor 1/(1 + q_bar) for eta_g = 1), and the random lag weights
    add a fluctuation that grows with q_max and with sum_i w_i^2 (1/S for S equal participants):
    1/(1 - k^2 tr(Cov(pi) S_0)) of `delayed_variance`, which stays finite as eta h -> 0.

    Parameters
    ----------
    q_max : int
        Largest delay, >= 0.
    sum_w2 : float
        sum_i w_i^2 of the normalised aggregation weights (1/S for S equal participants).
    eta_g, delay
        See Common parameters.
    small : float, optional
        The eta h at which the ratio is computed.

    Returns
    -------
    float
        The factor; relative error O(small).

    Raises
    ------
    ConfigError
        If q_max < 0 or delay is unknown.

    Notes
    -----
    Computed as the ratio of `delayed_variance` at eta h = `small`; relative error O(small).
    For eta_g = 1 and uniform delays it equals 1 / (1 + q_bar (1 - sum_w2)) (found from this
    computation and checked to 1e-6 in tests/test_staleness_exact.py; q_bar = q_max / 2).
    All clients equally late (delay='max') give exactly 1: the q + 1 interleaved chains decouple.

    Examples
    --------
    >>> round(staleness_model_factor(2, 0.0), 4)    # infinitely many clients: 1 / (1 + 1)
    0.5
    >>> round(staleness_model_factor(4, 1 / 8), 4)  # 8 equal clients: 1 / (1 + 2 * 7/8)
    0.3636
    """
    p, cov = lag_weight_moments(q_max, [1.0], delay)
    c, k = _stale_coefficients("model_average", 1.0 - small, eta_g)
    return delayed_variance(c, k, p, float(sum_w2) * cov) / delayed_variance(c, k, [1.0], [[0.0]])


def staleness_floor(eta, q_max, base_floor, curvature, *, E=1, eta_g=1.0, rule="delta", delay="uniform",
                    sum_w2=0.0):
    """Leading-order noise-driven floor of FedDPO with delays <= q_max (theory.md 3.4).

    The exact quadratic-model value is `staleness_floor_exact`. Delays alone leave theta* a fixed
    point with exact full gradients: staleness acts only on the noise.

    Parameters
    ----------
    eta, q_max
        See Common parameters.
    base_floor : float or array
        The floor without delays (noise_floor + participation_floor).
    curvature : float or array
        kappa = tr(H C)/tr(C) (`noise_curvature`) for the delta rule; kappa <= L (global), so passing
        L gives an upper bound. Not used by the model_average rule.
    E, eta_g
        See Common parameters.
    rule : {"delta", "model_average"}, optional
        How the server combines the stale updates (below).
    delay : {"uniform", "max"}, optional
        Delay distribution.
    sum_w2 : float, optional
        sum_i w_i^2 of the aggregation weights (1/S for S equal participants); model_average rule only.

    Returns
    -------
    float or array
        The floor with delays, broadcast over the arguments.

    Raises
    ------
    ConfigError
        Unknown rule or delay.

    Notes
    -----
    rule='delta' (server applies the averaged stale deltas to the current model: asynchronous SGD):

        floor(q) = base_floor * (1 + eta eta_g E kappa q_bar),   kappa = tr(H C)/tr(C) (`curvature`)

    first order in eta kappa q_max; random per-client delays enter only at second order.
    kappa <= L: passing L gives an upper bound (too large by tr(C) L / tr(H C)).
    Stable only if eta eta_g E L < 2 sin(pi / (2 (2 q + 1))) for a fixed delay q
    (`delayed_step_limit`).

    rule='model_average' (server averages the returned stale models: the Jiang'26 code):

        floor(q) = base_floor * staleness_model_factor(q_max, sum_w2)

    decreasing in q_max: 1/(1 + q_bar) for many participants (sum_w2 -> 0), times the
    random-delay fluctuation 1/(1 - sum_w2 D_q) (D_q = O(q)); 1 for delay='max'.
    `curvature` is not used.

    References
    ----------
    Source: Jiang'26 (gap ~ linear in q_max, for its own analysis); both formulas are ours.

    Examples
    --------
    >>> round(staleness_floor(0.1, 4, 1e-3, 2.0), 8)            # 1e-3 * (1 + 0.1 * 2 * 2)
    0.0014
    >>> round(staleness_floor(0.1, 4, 1e-3, 2.0, rule="model_average", sum_w2=0.25), 6)
    0.0004
    """
    base = np.asarray(base_floor, dtype=float)
    if rule == "delta":
        qbar = np.asarray(mean_delay(q_max, delay), dtype=float)
        gamma = np.asarray(eta, dtype=float) * np.asarray(eta_g, dtype=float) * np.asarray(E, dtype=float)
        return _ret(base * (1.0 + gamma * np.asarray(curvature, dtype=float) * qbar))
    if rule == "model_average":
        q = np.asarray(q_max)
        factor = np.vectorize(lambda qq: staleness_model_factor(int(qq), sum_w2, eta_g=float(eta_g),
                                                                delay=delay))(q)
        return _ret(base * factor)
    raise ConfigError("rule", f"must be 'delta' or 'model_average', got {rule!r}")


def delayed_step_limit(L, q) -> ArrayLike:
    """Largest stable step of gradient descent with a fixed gradient delay q on curvature L.

    gamma < 2 sin(pi / (2 (2q + 1))) / L (= 2/L at q = 0, ~ pi / ((2q + 1) L) for large q).

    Parameters
    ----------
    L : float or array
        Curvature (the global L for the largest direction).
    q : int or array
        Fixed delay, in steps.

    Returns
    -------
    float or array
        The limit, broadcast over L and q.

    Examples
    --------
    >>> delayed_step_limit(1.0, 0), round(delayed_step_limit(1.0, 3), 6)
    (2.0, 0.445042)
    """
    q = np.asarray(q, dtype=float)
    return _ret(2.0 * np.sin(np.pi / (2.0 * (2.0 * q + 1.0))) / np.asarray(L, dtype=float))


def feddpo_floor(eta, c: Constants, *, E=1, S=None, b=1, eta_g=1.0, q_max=0, rule="delta",
                 delay="uniform") -> ArrayLike:
    """Predicted stationary E f(theta_bar) - f* of FedDPO with constant steps.

    The drift floor (as the L_max bound) plus the noise and participation floors, stretched by
    staleness (delta rule: with L in place of tr(H C)/tr(C), an upper bound; model_average rule: S
    equal participants). Leading order.

    Parameters
    ----------
    eta : float or array
        Local step size.
    c : Constants
        Uses c.l_max (per-client L_max, drift), c.L (global L, staleness), c.sigma2, c.zeta2, c.n.
    E, S, b, eta_g
        See Common parameters.
    q_max : int, optional
        Largest delay (0: no staleness).
    rule : {"delta", "model_average"}, optional
        Server rule under staleness (`staleness_floor`).
    delay : {"uniform", "max"}, optional
        Delay distribution.

    Returns
    -------
    float or array
        The predicted floor.

    Raises
    ------
    ConfigError
        If S is outside [1, n], or rule or delay is unknown.

    Examples
    --------
    >>> c = Constants(L=2.0, mu=0.5, sigma2=1.0, zeta2=0.5, F0=1.0, n=4)
    >>> round(feddpo_floor(0.1, c, E=5), 6)                     # drift 0.02 + noise 0.00625
    0.02625
    """
    S = c.n if S is None else S
    base = noise_floor(eta, c.sigma2, b, S, eta_g=eta_g) + participation_floor(
        eta, S, c.n, c.zeta2, E=E, eta_g=eta_g)
    stale = staleness_floor(eta, q_max, base, c.L, E=E, eta_g=eta_g, rule=rule, delay=delay, sum_w2=1.0 / S)
    return _ret(drift_floor(eta, E, c.zeta2, c.l_max) + np.asarray(stale))


# ---------------------------------------------------------------------------------------------
# DecDPO / D-PSGD consensus (theory.md section 4)
# ---------------------------------------------------------------------------------------------


def consensus_heterogeneity(eta, zeta2, p, tau=1) -> ArrayLike:
    """Stationary consensus error of DecDPO from heterogeneity, exact gradients.

    (1/n) sum_i ||theta_i - theta_bar||^2 (after gossip), adapt-then-combine, gossip every tau local
    steps:

        <= eta^2 tau^2 zeta2 rho^2 / (1 - rho)^2,  rho = sqrt(1 - p)     (~ 4 eta^2 tau^2 zeta2 / p^2)

    Parameters
    ----------
    eta : float or array
        Local step size.
    zeta2 : float or array
        Heterogeneity with uniform weights at the optimum of the uniform average.
    p, tau
        See Common parameters (tau: local steps between gossip rounds).

    Returns
    -------
    float or array
        The bound; inf for p = 0 with zeta2 > 0.

    Raises
    ------
    ConfigError
        If p is outside [0, 1].

    Notes
    -----
    This is the supremum over heterogeneity patterns of the exact leading-order formula
    (`spectral_consensus`), attained when grad f_i(theta*) lies in the lambda_2 eigenspace; it is exact
    for the lazy complete family W = (1-a) I + a J / n. Valid for eta tau L << 1 - rho.

    References
    ----------
    Sources: Koloskova et al. 2020 Thm 2 (tau^2 zeta^2 / p^2 term), Lian et al. 2017; coefficient
    ours (theory.md 4.2).

    Examples
    --------
    Lazy complete W with a = 1/2 on 4 nodes (rho = 1/2, p = 3/4): the bound is attained.

    >>> W = 0.5 * np.eye(4) + 0.5 * np.full((4, 4), 0.25)
    >>> G = np.array([[1.0], [-1.0], [1.0], [-1.0]])            # zeta2 = 1
    >>> round(consensus_heterogeneity(0.1, 1.0, 0.75), 6), round(spectral_consensus(0.1, W, G), 6)
    (0.01, 0.01)
    """
    rho = _rho(p)
    e, t = np.asarray(eta, dtype=float), np.asarray(tau, dtype=float)
    return _ret(_div(e**2 * t**2 * np.asarray(zeta2, dtype=float) * rho**2, (1.0 - rho) ** 2))


def consensus_noise(eta, sigma2, b, p, tau=1, n=None) -> ArrayLike:
    """Stationary consensus error of DecDPO from gradient noise, zeta = 0.

    After gossip, with gradient noise of trace sigma2/b per client:

        <= ((n-1)/n) eta^2 tau sigma2 rho^2 / (b p),   rho^2 = 1 - p

    Parameters
    ----------
    eta, sigma2, b, p, tau
        See Common parameters (sigma2 at theta*; tau: local steps between gossip rounds).
    n : int or array, optional
        Number of clients; the factor (n-1)/n is dropped when n is None.

    Returns
    -------
    float or array
        The bound; inf for p = 0 with noise (sigma2 > 0).

    Raises
    ------
    ConfigError
        If the spectral gap p is outside [0, 1].

    Notes
    -----
    Exact leading-order value is (eta^2 tau sigma2 / (n b)) sum_{k>=2} lambda_k^2 / (1 - lambda_k^2)
    (`spectral_consensus` with noise_traces); equality for the lazy complete family.

    References
    ----------
    Sources: Jiang'26 Thm 6.1 (eta^2/(1-rho^2)), Koloskova et al. 2020 (tau sigma^2 / p term);
    coefficient ours (theory.md 4.3).

    Examples
    --------
    >>> W = 0.5 * np.eye(4) + 0.5 * np.full((4, 4), 0.25)       # lazy complete, p = 3/4
    >>> round(consensus_noise(0.1, 1.0, 4, 0.75, n=4), 8)
    0.000625
    >>> round(spectral_consensus(0.1, W, np.zeros((4, 1)), noise_traces=0.25), 8)
    0.000625
    """
    rho2 = 1.0 - np.asarray(p, dtype=float)
    _rho(p)
    e, t, s2 = (np.asarray(x, dtype=float) for x in (eta, tau, sigma2))
    val = _div(e**2 * t * s2 * rho2, np.asarray(b, dtype=float) * np.asarray(p, dtype=float))
    if n is not None:
        nn = np.asarray(n, dtype=float)
        val = val * (nn - 1.0) / nn
    return _ret(val)


def spectral_consensus(eta, W, client_grads_at_opt, *, tau=1, noise_traces=None, when="post"):
    """Exact leading-order stationary consensus error of DecDPO for a given mixing matrix.

    Adapt-then-combine, X <- W (X - eta grad F(X)), gossip after every tau local steps, for a
    symmetric doubly stochastic W with eigenpairs (lambda_k, v_k), k >= 2 the non-consensus ones
    (theory.md 4.1):

        post-gossip: (eta^2 / n) sum_k lambda_k^2 [ tau^2 ||v_k^T G||^2 / (1 - lambda_k)^2
                                                    + tau s_k / (1 - lambda_k^2) ]
        pre-gossip : the same without the factor lambda_k^2

    Parameters
    ----------
    eta : float or array
        Local step size (see Common parameters).
    W : array_like
        Symmetric doubly stochastic mixing matrix, shape [n, n].
    client_grads_at_opt : array_like
        G, client gradients at the optimum, shape [n, d] (centred here: only heterogeneity matters).
    tau : int, optional
        Local steps between gossip rounds (see Common parameters).
    noise_traces : float or array_like, optional
        Per-client trace of the minibatch-gradient covariance (sigma_i^2 / b), scalar or [n];
        s_k = sum_i v_ki^2 s_i. None means no noise.
    when : {"post", "pre"}, optional
        Consensus error measured after or before gossip.

    Returns
    -------
    float or array
        The error, shaped like eta; inf if W is disconnected with heterogeneity, or if lambda = -1
        with noise.

    Raises
    ------
    ConfigError
        If `when` is unknown, W is not a symmetric square matrix, or its rows do not sum to 1.

    Notes
    -----
    Neglected: the Hessian coupling (relative O(eta tau L / (1 - lambda_2)), i.e. O(eta^3) in
    absolute terms).

    Examples
    --------
    >>> W = 0.5 * np.eye(4) + 0.5 * np.full((4, 4), 0.25)       # lazy complete, lambda_k = 1/2
    >>> G = np.array([[1.0], [-1.0], [1.0], [-1.0]])
    >>> round(spectral_consensus(0.1, W, G), 6), round(spectral_consensus(0.1, W, G, when="pre"), 6)
    (0.01, 0.04)
    """
    if when not in ("post", "pre"):
        raise ConfigError("when", f"must be 'post' or 'pre', got {when!r}")
    W = np.asarray(W, dtype=float)
    n = W.shape[0]
    if W.shape != (n, n) or not np.allclose(W, W.T, atol=1e-12):
        raise ConfigError("W", "must be a symmetric square matrix")
    if not np.allclose(W.sum(axis=1), 1.0, atol=1e-10):
        raise ConfigError("W", "rows must sum to 1 (doubly stochastic)")
    G = np.asarray(client_grads_at_opt, dtype=float).reshape(n, -1)
    G = G - G.mean(axis=0, keepdims=True)
    lam, V = np.linalg.eigh(W)
    ones = np.full(n, 1.0 / math.sqrt(n))
    P = V.T @ G                                    # rows: v_k^T G
    het = np.sum(P**2, axis=1)
    if noise_traces is None:
        s = np.zeros(n)
    else:
        s = np.broadcast_to(np.asarray(noise_traces, dtype=float), (n,))
    sk = (V**2).T @ s
    scale = max(float(np.sum(G**2)), 1e-300)
    total = 0.0
    t = float(tau)
    consensus_found = False
    for k in range(n):
        if abs(1.0 - lam[k]) < 1e-10:
            if not consensus_found and abs(abs(V[:, k] @ ones) - 1.0) < 1e-8:
                consensus_found = True              # the consensus direction itself
                continue
            if het[k] > 1e-20 * scale or sk[k] > 0:
                return _ret(np.full(np.shape(eta), np.inf))
            continue
        term = t**2 * het[k] / (1.0 - lam[k]) ** 2
        if sk[k] > 0:
            denom = 1.0 - lam[k] ** 2
            term += t * sk[k] / denom if denom > 1e-14 else np.inf
        total += term * (lam[k] ** 2 if when == "post" else 1.0)
    return _ret(np.asarray(eta, dtype=float) ** 2 * total / n)


def jiang_consensus_scaling(eta, p, G2=1.0) -> ArrayLike:
    """Jiang'26 Thm 6.1 scaling of DecDPO's consensus error: eta^2 G2 / (1 - rho^2).

    Parameters
    ----------
    eta, p
        See Common parameters.
    G2 : float or array, optional
        Gradient bound of the theorem; sigma2/b (+ tau zeta2/p for heterogeneous data) is the natural
        instantiation.

    Returns
    -------
    float or array
        eta^2 G2 / p (inf for p = 0 with G2 > 0).

    Notes
    -----
    Uncertain constant: the theorem's constant and its gradient bound G2 are not available to us;
    we implement the scaling with G2 = sigma2/b (+ tau zeta2/p for heterogeneous data) as the natural
    instantiation, checked numerically in the claim registry (consensus-noise).

    References
    ----------
    Jiang'26, Theorem 6.1.

    Examples
    --------
    >>> round(jiang_consensus_scaling(0.1, 0.5), 6)
    0.02
    """
    e, g2 = np.asarray(eta, dtype=float), np.asarray(G2, dtype=float)
    return _ret(_div(e**2 * g2, np.asarray(p, dtype=float)))


# ---------------------------------------------------------------------------------------------
# smoothness of the log-linear DPO landscape (theory.md section 2)
# ---------------------------------------------------------------------------------------------


def bandit_smoothness(beta, Z_second_moment_max_eig, l2=0.0) -> ArrayLike:
    """Smoothness of the horizon-1 (bandit) DPO loss: L = beta^2/4 * lambda_max(E z z^T) + l2.

    Exact (attained at theta = theta_ref, h = 0) (theory.md 2.1).

    Parameters
    ----------
    beta : float or array
        DPO temperature.
    Z_second_moment_max_eig : float or array
        lambda_max(E z z^T) of the pairs' feature differences z = phi(x, y_w) - phi(x, y_l) (for one
        client, L_i; for the weighted mixture of all clients, the global L).
    l2 : float or array, optional
        Weight of the ridge term (l2/2)||theta||^2.

    Returns
    -------
    float or array
        L.

    Notes
    -----
    Hessian beta^2 E[sigma(h) sigma(-h) z z^T] + l2 I with sigma(h) sigma(-h) <= 1/4.

    Examples
    --------
    >>> bandit_smoothness(1.0, 4.0), bandit_smoothness(2.0, 1.0, l2=0.1)
    (1.0, 1.1)
    """
    b = np.asarray(beta, dtype=float)
    return _ret(b**2 / 4.0 * np.asarray(Z_second_moment_max_eig, dtype=float) + np.asarray(l2, dtype=float))


def trajectory_smoothness_bound(beta, B, H, l2=0.0) -> ArrayLike:
    """Smoothness bound of the horizon-H DPO loss: L <= 4 beta^2 H^2 B^2 + 2 beta H B^2 + l2.

    (theory.md 2.2.)

    Parameters
    ----------
    beta : float or array
        DPO temperature.
    B : float or array
        Bound on the feature norm, ||phi|| <= B.
    H : int or array
        Horizon (steps per trajectory).
    l2 : float or array, optional
        Weight of the ridge term (l2/2)||theta||^2.

    Returns
    -------
    float or array
        The bound on L.

    Notes
    -----
    From hess l = s(h)s(-h) grad h grad h^T - s(-h) hess h with ||grad h|| <= 4 beta H B (2H steps, each
    ||phi - mu_theta|| <= 2B), s(h)s(-h) <= 1/4, ||hess h|| <= beta sum_s |visits_s| lambda_max(Cov)
    <= 2 beta H B^2. At H = 1 it is 4x looser in the first term than `bandit_smoothness`
    (it ignores that the two responses share their state).

    Examples
    --------
    >>> trajectory_smoothness_bound(1.0, 1.0, 1)                # 4 + 2
    6.0
    """
    b, Bf, h = (np.asarray(x, dtype=float) for x in (beta, B, H))
    return _ret(4.0 * b**2 * h**2 * Bf**2 + 2.0 * b * h * Bf**2 + np.asarray(l2, dtype=float))


def trajectory_gradient_bound(beta, B, H) -> ArrayLike:
    """Per-pair gradient norm bound ||grad l_j|| <= ||grad h_j|| <= 4 beta H B.

    The Lipschitz constant of the loss, and sqrt of a bound on sigma2. Horizon 1 with a shared
    context: 2 beta B (not what this function returns: it returns 4 beta H B for every H).

    Parameters
    ----------
    beta, B, H
        As in `trajectory_smoothness_bound` (DPO temperature, feature-norm bound, horizon).

    Returns
    -------
    float or array
        4 beta H B.

    Examples
    --------
    >>> trajectory_gradient_bound(0.5, 1.0, 2)
    4.0
    """
    return _ret(4.0 * np.asarray(beta, dtype=float) * np.asarray(H, dtype=float) * np.asarray(B, dtype=float))


# ---------------------------------------------------------------------------------------------
# rate upper bounds (theory.md section 5); R = communication rounds
# ---------------------------------------------------------------------------------------------


def _pow(x, a):
    return np.power(np.maximum(x, 0.0), a)


KOLOSKOVA_C_STEP = 96.0 * math.sqrt(3.0)
"""c in Koloskova et al. 2020's constant-step condition eta <= p / (c tau L): our reading of the
consensus lemma of the appendix (uncertain: not re-derived here); a larger c only admits fewer runs."""


def koloskova_step_limit(c: Constants, *, tau=1, p=1.0, c_step=KOLOSKOVA_C_STEP) -> ArrayLike:
    """Largest constant step for which Koloskova et al. 2020, Thm 2 holds: p / (c_step tau L_sample).

    L is the per-sample smoothness the theorem assumes (`Constants.l_sample`). A run with a larger
    step is outside the theorem: the bound says nothing about it.

    Parameters
    ----------
    c : Constants
        Uses c.l_sample (per-sample L_sample).
    tau, p
        See Common parameters.
    c_step : float, optional
        The constant c of the step condition (`KOLOSKOVA_C_STEP`, our reading: uncertain).

    Returns
    -------
    float or array
        The largest admissible eta.

    Examples
    --------
    >>> koloskova_step_limit(Constants(L=1.0, mu=0.5, sigma2=1.0, zeta2=1.0, F0=1.0, n=2, L_sample=2.0),
    ...                      tau=2, p=0.5, c_step=4.0)
    0.03125
    """
    return _ret(_div(p, c_step * np.asarray(tau, dtype=float) * c.l_sample))


def koloskova_bound(T, c: Constants, *, tau=1, p=1.0, b=1, eta=None, regime="strongly_convex",
                    n_eff=None, extra_variance=0.0, const=1.0, c_step=KOLOSKOVA_C_STEP) -> ArrayLike:
    """Koloskova, Loizou, Boreiri, Jaggi, Stich 2020 (ICML), Theorem 2, after T local iterations.

    Covers local SGD / FedAvg (p = 1, tau = E) and D-PSGD with gossip every tau steps (p = 1 - rho^2).
    Constants as the theorem assumes them: L = `c.l_sample` (Assumption 1: every sample's loss
    F_i(., xi) is L-smooth), mu = `c.mu_g` (every f_i mu-strongly convex everywhere: the l2 weight
    here, not lambda_min at theta*), sigma2 and zeta2 at x*, D2 = ||x_0 - x*||^2.

    Parameters
    ----------
    T : int or array
        Local iterations.
    c : Constants
        Uses c.l_sample (per-sample L_sample), c.mu_g (global mu), c.sigma2, c.zeta2, c.dist2, c.F0, c.n.
    tau, p, b, eta, regime
        See Common parameters.
    n_eff : int or array, optional
        Number of gradients averaged per step; None means c.n.
    extra_variance : float or array, optional
        Added to s / n_eff (e.g. the partial-participation variance).
    const : float, optional
        The hidden constant of the non-standard terms.
    c_step : float, optional
        The constant of the step condition (`koloskova_step_limit`).

    Returns
    -------
    float or array
        E f - f* (convex regimes) or mean ||grad f(theta_bar_t)||^2 (nonconvex); NaN where eta is
        above the step limit.

    Raises
    ------
    ConfigError
        Unknown regime, or regime "strongly_convex" with c.mu_g = 0.

    Notes
    -----
    With s = sigma2/b, sn = s / n_eff + extra_variance, X = tau (tau zeta2 + p s):

      tuned step (eta=None):

        strongly convex: (L tau / p) D2 exp(-mu p T / (L tau)) + sn / (mu T) + const L X / (mu^2 p^2 T^2)
        convex:          sqrt(sn D2 / T) + (const sqrt(L X) D2 / (p T))^(2/3) + L tau D2 / (p T)
        nonconvex:       sqrt(L F0 sn / T) + (const L F0 sqrt(X) / (p T))^(2/3) + L tau F0 / (p T)
            (mean ||grad f(theta_bar_t)||^2; zeta2 at theta* stands in for the paper's uniform zeta-hat)

      constant step eta <= p / (c_step L tau) (`koloskova_step_limit`; NaN above it: outside the theorem):

        (strongly) convex: mu D2 / (2((1 - mu eta/2)^-T - 1)) + eta sn + const L eta^2 X / p^2
                          (-> D2/(eta T) as mu -> 0; weighted average of E f(theta_bar_t) - f*)
        nonconvex:         2 F0 / (eta T) + eta L sn + const L^2 eta^2 X / p^2

    Uncertain constant: the theorem is stated in O~(.); all hidden constants are 1 here except the
    standard SGD terms, and c_step is our reading; checked numerically in the claim registry
    (bound-validity).

    Examples
    --------
    >>> c = Constants(L=2.0, mu=0.5, sigma2=1.0, zeta2=0.5, F0=1.0, n=4)
    >>> round(koloskova_bound(1000, c), 6)
    0.000512
    >>> koloskova_bound(1000, c, eta=1.0)                       # above the step limit
    nan
    """
    _check_regime(regime)
    T = np.asarray(T, dtype=float)
    tau, p = np.asarray(tau, dtype=float), np.asarray(p, dtype=float)
    s = c.sigma2 / np.asarray(b, dtype=float)
    n_avg = c.n if n_eff is None else np.asarray(n_eff, dtype=float)
    sn = s / n_avg + np.asarray(extra_variance, dtype=float)
    X = tau * (tau * c.zeta2 + p * s)
    L, mu, D2, F0 = c.l_sample, c.mu_g, c.dist2, c.F0
    if regime == "strongly_convex" and mu <= 0:
        raise ConfigError("constants.mu", "strongly convex bound needs mu > 0")
    if eta is None:
        if regime == "strongly_convex":
            out = (L * tau / p * D2 * np.exp(-mu * p * T / (L * tau)) + sn / (mu * T)
                   + const * L * X / (mu**2 * p**2 * T**2))
        elif regime == "convex":
            out = (np.sqrt(sn * D2 / T) + _pow(const * np.sqrt(L * X) * D2 / (p * T), 2 / 3)
                   + L * tau * D2 / (p * T))
        else:
            out = (np.sqrt(L * F0 * sn / T) + _pow(const * L * F0 * np.sqrt(X) / (p * T), 2 / 3)
                   + L * tau * F0 / (p * T))
        return _ret(out)
    e = np.asarray(eta, dtype=float)
    if regime == "nonconvex":
        out = 2.0 * F0 / (e * T) + e * L * sn + const * L**2 * e**2 * X / p**2
    else:
        if regime == "strongly_convex":
            a = mu * e / 2.0
            with np.errstate(over="ignore"):
                grow = np.expm1(-T * np.log1p(-a))
            trans = mu * D2 / (2.0 * grow)
        else:
            trans = D2 / (e * T)
        out = trans + e * sn + const * L * e**2 * X / p**2
    inside = e <= koloskova_step_limit(c, tau=tau, p=p, c_step=c_step) * (1 + 1e-12)
    return _ret(np.where(inside, out, np.nan))


def feddpo_bound(R, c: Constants, *, E=1, S=None, b=1, eta=None, regime="strongly_convex", const=1.0,
                 c_step=KOLOSKOVA_C_STEP):
    """FedDPO (FedAvg, server step 1) after R rounds: Koloskova et al. 2020 Thm 2 with tau = E, p = 1.

    The noise term is over the S participants, and the partial-participation variance
    E zeta2 (n-S)/(S(n-1)) is added to it, as in Karimireddy et al. 2020 Thm I
    (M^2 = sigma^2 + K (1 - S/N) G^2). Constants, step condition (NaN outside it) and uncertain
    constants: see `koloskova_bound`.

    Parameters
    ----------
    R : int or array
        Communication rounds (T = R E local iterations).
    c : Constants
        Uses c.l_sample (per-sample L_sample), c.mu_g (global mu) and the rest as `koloskova_bound`.
    E, S, b, eta, regime
        See Common parameters.
    const, c_step : float, optional
        As in `koloskova_bound`.

    Returns
    -------
    float or array
        The bound after R rounds; NaN where eta is above the step limit.

    Raises
    ------
    ConfigError
        If S is outside [1, n], or as `koloskova_bound`.

    Examples
    --------
    >>> c = Constants(L=2.0, mu=0.5, sigma2=1.0, zeta2=0.5, F0=1.0, n=4)
    >>> round(feddpo_bound(100, c, E=5), 6), round(feddpo_bound(100, c, E=5, S=2), 6)
    (0.00156, 0.005893)
    """
    S = c.n if S is None else S
    extra = np.asarray(E, dtype=float) * c.zeta2 * _sampling_factor(S, c.n)
    return koloskova_bound(np.asarray(R, dtype=float) * np.asarray(E, dtype=float), c, tau=E, p=1.0, b=b,
                           eta=eta, regime=regime, n_eff=S, extra_variance=extra, const=const, c_step=c_step)


def decdpo_bound(R, c: Constants, *, p, tau=1, b=1, eta=None, regime="strongly_convex", const=1.0,
                 c_step=KOLOSKOVA_C_STEP):
    """DecDPO / D-PSGD after R gossip rounds (tau local steps each): Koloskova et al. 2020 Thm 2.

    Time to epsilon grows like 1/p when the heterogeneity term dominates. See `koloskova_bound`.

    Parameters
    ----------
    R : int or array
        Gossip rounds, of tau local iterations each (T = R tau).
    c : Constants
        Uses c.l_sample (per-sample L_sample), c.mu_g (global mu) and the rest as `koloskova_bound`.
    p
        See Common parameters.
    tau : int, optional
        Local steps per gossip round.
    b, eta, regime
        See Common parameters.
    const, c_step : float, optional
        The hidden constant and the step-condition constant of `koloskova_bound`.

    Returns
    -------
    float or array
        The bound after R gossip rounds; NaN where eta is above the step limit.

    Raises
    ------
    ConfigError
        As `koloskova_bound`.

    Examples
    --------
    >>> c = Constants(L=2.0, mu=0.5, sigma2=1.0, zeta2=0.5, F0=1.0, n=4)
    >>> round(decdpo_bound(100, c, p=0.5), 6)
    0.00826
    """
    return koloskova_bound(np.asarray(R, dtype=float) * np.asarray(tau, dtype=float), c, tau=tau, p=p, b=b,
                           eta=eta, regime=regime, const=const, c_step=c_step)


def fedavg_li_bound(R, c: Constants, *, E=1, S=None, b=1, G2=None, Gamma=None) -> ArrayLike:
    """Li, Huang, Yang, Wang, Zhang 2020 (ICLR), Thms 1 and 3: FedAvg with decaying steps.

    Steps eta_t = 2 / (mu (gamma + t)), gamma = max(8 kappa, E), kappa = L/mu, after T = R E iterations:

        E f(theta_T) - f* <= kappa / (gamma + T - 1) * (2 (B + C) / mu + mu gamma D2 / 2)
        B = sigma2 / (n b) + 6 L Gamma + 8 (E-1)^2 G2,  C = 4 E^2 G2 (n-S) / (S (n-1))

    Parameters
    ----------
    R
        See Common parameters.
    c : Constants
        Uses c.l_max (per-client L_max), c.mu_g (global mu), c.sigma2, c.zeta2, c.dist2, c.n.
    E, S, b
        See Common parameters.
    G2 : float, optional
        Bound on E||grad F_i(theta, xi)||^2 along the run; None means zeta2 + sigma2/b (see Notes).
    Gamma : float, optional
        f* - sum w_i f_i*; None means zeta2/(2 mu) (see Notes).

    Returns
    -------
    float or array
        The bound on E f(theta_T) - f*.

    Raises
    ------
    ConfigError
        If c.mu_g <= 0, or S is outside [1, n].

    Notes
    -----
    Constants as the theorem assumes them: L = `c.l_max` (Assumption 1: every client loss F_k is
    L-smooth), mu = `c.mu_g` (Assumption 2: every F_k mu-strongly convex everywhere). The step-size
    condition (eta_0 <= 1/(4L)) is built into the schedule: the bound applies only to runs with it.
    (Uniform weights; C for sampling without replacement, C = 0 for S = n.) Assumptions of the paper
    not available exactly here: G2 >= E||grad F_i(theta, xi)||^2 along the run (default, a lower
    proxy: zeta2 + sigma2/b, its value at theta*: uncertain) and Gamma = f* - sum w_i f_i*
    (default zeta2/(2 mu), an upper bound since f_i* >= f_i(theta*) - ||g_i||^2/(2 mu)).

    Examples
    --------
    >>> c = Constants(L=2.0, mu=0.5, sigma2=1.0, zeta2=0.5, F0=1.0, n=4)
    >>> round(fedavg_li_bound(100, c, E=5), 4)
    6.2147
    """
    L, mu = c.l_max, c.mu_g
    if mu <= 0:
        raise ConfigError("constants.mu", "Li et al. 2020 needs mu > 0")
    S = c.n if S is None else S
    G2 = c.zeta2 + c.sigma2 / b if G2 is None else G2
    Gamma = c.zeta2 / (2.0 * mu) if Gamma is None else Gamma
    E_ = np.asarray(E, dtype=float)
    kappa = L / mu
    gamma = np.maximum(8.0 * kappa, E_)
    T = np.asarray(R, dtype=float) * E_
    Bt = c.sigma2 / (c.n * b) + 6.0 * L * Gamma + 8.0 * (E_ - 1.0) ** 2 * G2
    Ct = 4.0 * E_**2 * G2 * _sampling_factor(S, c.n)
    return _ret(kappa / (gamma + T - 1.0) * (2.0 * (Bt + Ct) / mu + mu * gamma * c.dist2 / 2.0))


def scaffold_bound(R, c: Constants, *, E=1, S=None, b=1, regime="strongly_convex", const=1.0):
    """SCAFFOLD, Karimireddy et al. 2020 (ICML), Theorem III (global step sqrt(S)).

        strongly convex: s / (mu R E S) + mu D2 exp(-min(S / (30 n), mu / (162 L)) R)
        nonconvex:       sqrt(L F0 s / (R E S)) + (n/S)^(2/3) L F0 / R
        convex:          sqrt(s D2 / (R E S)) + sqrt(n/S) L D2 / R

    with s = sigma2/b. No zeta2 term: control variates remove client drift (claim scaffold-no-drift).

    Parameters
    ----------
    R
        See Common parameters.
    c : Constants
        Uses c.l_max (per-client L_max: every f_i beta-smooth), c.mu_g (global mu: every f_i
        mu-convex), c.sigma2, c.dist2, c.F0, c.n.
    E, S, b, regime
        See Common parameters.
    const : float, optional
        The O~(.) constant.

    Returns
    -------
    float or array
        The bound of SCAFFOLD after R rounds.

    Raises
    ------
    ConfigError
        Unknown regime.

    Notes
    -----
    Uncertain constant: O~(.) constants set to `const` = 1 (the 30 and 162 are as we read Thm III).

    Examples
    --------
    >>> c = Constants(L=2.0, mu=0.5, sigma2=1.0, zeta2=0.5, F0=1.0, n=4)
    >>> round(scaffold_bound(100, c, regime="convex"), 6)       # sqrt(4 / 400) + 2 * 4 / 100
    0.18
    """
    _check_regime(regime)
    S = c.n if S is None else S
    R, E_, S_ = (np.asarray(x, dtype=float) for x in (R, E, S))
    s, L, mu = c.sigma2 / b, c.l_max, c.mu_g
    if regime == "strongly_convex":
        rate = np.minimum(S_ / (30.0 * c.n), mu / (162.0 * L))
        return _ret(const * s / (mu * R * E_ * S_) + mu * c.dist2 * np.exp(-rate * R))
    if regime == "nonconvex":
        return _ret(np.sqrt(L * c.F0 * s / (R * E_ * S_)) + const * (c.n / S_) ** (2 / 3) * L * c.F0 / R)
    return _ret(np.sqrt(s * c.dist2 / (R * E_ * S_)) + const * np.sqrt(c.n / S_) * L * c.dist2 / R)


def gradient_tracking_bound(R, c: Constants, *, p, c_w=1.0, b=1, regime="strongly_convex", const=1.0):
    """Gradient tracking, Koloskova, Lin, Stich 2021 (NeurIPS), main theorem, after R iterations.

    One gossip per iteration; c_w >= p depends on the most negative eigenvalue of W (~1 for lazy W):

        strongly convex: L D2 exp(-mu p c_w R / L) + s/(n mu R) + const L s / (mu^2 c_w^2 p R^2)
        nonconvex:       sqrt(L F0 s / (n R)) + (const L F0 sqrt(s) / (c_w sqrt(p) R))^(2/3)
                         + L F0 / (p c_w R)
        convex:          sqrt(s D2 / (n R)) + (const sqrt(L s) D2 / (c_w sqrt(p) R))^(2/3) + L D2 / (p c_w R)

    with s = sigma2/b. No zeta2 term (claim gt-no-heterogeneity).

    Parameters
    ----------
    R : int or array
        Iterations (one gossip each).
    c : Constants
        Uses c.l_max (per-client L_max: every f_i L-smooth), c.mu_g (global mu: every f_i mu-strongly
        convex), c.sigma2, c.dist2, c.F0, c.n.
    p
        See Common parameters.
    c_w : float, optional
        The theorem's mixing constant (>= p).
    b, regime, const
        See Common parameters (const: the O~(.) constant).

    Returns
    -------
    float or array
        The bound after R iterations.

    Raises
    ------
    ConfigError
        If regime is not "strongly_convex", "convex" or "nonconvex".

    Notes
    -----
    Uncertain constant: O~(.) constants set to 1 and the definition of c_w as we read it; checked
    numerically in the claim registry.

    Examples
    --------
    >>> c = Constants(L=2.0, mu=0.5, sigma2=1.0, zeta2=0.5, F0=1.0, n=4)
    >>> round(gradient_tracking_bound(100, c, p=0.5), 6)
    0.00663
    """
    _check_regime(regime)
    R, p = np.asarray(R, dtype=float), np.asarray(p, dtype=float)
    s, L, mu = c.sigma2 / b, c.l_max, c.mu_g
    if regime == "strongly_convex":
        return _ret(L * c.dist2 * np.exp(-mu * p * c_w * R / L) + s / (c.n * mu * R)
                    + const * L * s / (mu**2 * c_w**2 * p * R**2))
    A = c.F0 if regime == "nonconvex" else c.dist2
    lead = np.sqrt(L * A * s / (c.n * R)) if regime == "nonconvex" else np.sqrt(s * A / (c.n * R))
    mid = (L * A * np.sqrt(s) if regime == "nonconvex" else np.sqrt(L * s) * A) / (c_w * np.sqrt(p) * R)
    return _ret(lead + _pow(const * mid, 2 / 3) + L * A / (p * c_w * R))


def minibatch_sgd_bound(R, c: Constants, *, E=1, b=1, regime="strongly_convex") -> ArrayLike:
    """Minibatch SGD with the same compute (batch n E b per round).

    The baseline of Woodworth, Patel, Srebro 2020 (NeurIPS) section 3 (standard SGD bounds, up to
    constants):

        strongly convex: L D2 exp(-mu R / L) + s / (mu n E R);  convex: L D2 / R + sqrt(s D2 / (n E R));
        nonconvex: L F0 / R + sqrt(L F0 s / (n E R)),  s = sigma2 / b.

    Parameters
    ----------
    R : int or array
        Communication rounds (one minibatch step each).
    c : Constants
        Uses c.l_sample (per-sample L_sample: sigma2 at the optimum), c.mu_g (global mu), c.sigma2,
        c.dist2, c.F0, c.n.
    E : int or array, optional
        Local steps of the compared local method (batch n E b).
    b : int, optional
        Batch size per client and local step.
    regime
        See Common parameters.

    Returns
    -------
    float or array
        The bound of minibatch SGD after R rounds.

    Raises
    ------
    ConfigError
        Unknown regime.

    Examples
    --------
    >>> c = Constants(L=2.0, mu=0.5, sigma2=1.0, zeta2=0.5, F0=1.0, n=4)
    >>> round(minibatch_sgd_bound(100, c, regime="convex"), 6)  # 2 * 4 / 100 + sqrt(4 / 400)
    0.18
    """
    _check_regime(regime)
    R, E_ = np.asarray(R, dtype=float), np.asarray(E, dtype=float)
    s, L, mu = c.sigma2 / b, c.l_sample, c.mu_g
    if regime == "strongly_convex":
        return _ret(L * c.dist2 * np.exp(-mu * R / L) + s / (mu * c.n * E_ * R))
    if regime == "convex":
        return _ret(L * c.dist2 / R + np.sqrt(s * c.dist2 / (c.n * E_ * R)))
    return _ret(L * c.F0 / R + np.sqrt(L * c.F0 * s / (c.n * E_ * R)))


def local_sgd_woodworth_bound(R, c: Constants, *, E=1, b=1, regime="strongly_convex") -> ArrayLike:
    """Local SGD on heterogeneous data, Woodworth, Patel, Srebro 2020 (NeurIPS) Theorem 3.

    Up to constants and log factors (s = sigma2/b, D2 = ||theta0 - theta*||^2):

        convex: L D2/(E R) + sqrt(s D2/(n E R)) + (L s D2^2)^(1/3)/(E^(1/3) R^(2/3))
                + (L zeta2 D2^2)^(1/3)/R^(2/3)
        strongly convex: L D2 exp(-mu E R / L) + s/(mu n E R) + L s/(mu^2 E R^2) + L zeta2/(mu^2 R^2)

    Parameters
    ----------
    R
        See Common parameters.
    c : Constants
        Uses c.l_sample (per-sample L_sample: every sample's loss H-smooth and convex), c.mu_g (global
        mu), c.sigma2, c.zeta2, c.dist2, c.n.
    E, b
        See Common parameters.
    regime : {"strongly_convex", "convex"}, optional
        Which bound ("nonconvex" is refused).

    Returns
    -------
    float or array
        The bound of local SGD after R rounds.

    Raises
    ------
    ConfigError
        For regime "nonconvex" (the theorem is stated for convex objectives) or an unknown regime.

    Notes
    -----
    Uncertain constant: all set to 1.

    Examples
    --------
    >>> c = Constants(L=2.0, mu=0.5, sigma2=1.0, zeta2=0.5, F0=1.0, n=4)
    >>> round(local_sgd_woodworth_bound(100, c, E=5), 6)
    0.00156
    """
    if regime == "nonconvex":
        raise ConfigError("regime", "Woodworth et al. 2020 is stated for convex objectives")
    _check_regime(regime)
    R, E_ = np.asarray(R, dtype=float), np.asarray(E, dtype=float)
    s, L, D2, z = c.sigma2 / b, c.l_sample, c.dist2, c.zeta2
    if regime == "strongly_convex":
        mu = c.mu_g
        return _ret(L * D2 * np.exp(-mu * E_ * R / L) + s / (mu * c.n * E_ * R) + L * s / (mu**2 * E_ * R**2)
                    + L * z / (mu**2 * R**2))
    return _ret(L * D2 / (E_ * R) + np.sqrt(s * D2 / (c.n * E_ * R))
                + _pow(L * s * D2**2, 1 / 3) / (E_ ** (1 / 3) * R ** (2 / 3))
                + _pow(L * z * D2**2, 1 / 3) / R ** (2 / 3))


def local_vs_minibatch_crossover(zeta2, sigma2, L, T, E, n, *, mu=0.0, D2=1.0, b=1) -> dict:
    """Woodworth et al. 2020: compare the local-SGD and minibatch-SGD upper bounds after T rounds.

    Local SGD is predicted better iff zeta2 < z_c. Convex (mu = 0):

        z_c = R^2 (L D2 (1 - 1/E)/R - (L s D2^2)^(1/3) / (E^(1/3) R^(2/3)))_+^3 / (L D2^2)

    i.e. local wins only when zeta2 <~ L^2 D2 / R (heterogeneity small against the smoothness/rounds
    scale). Strongly convex: z_c = (mu^2 R^2 / L)(L D2 (e^{-mu R/L} - e^{-mu E R/L}) - L s/(mu^2 E R^2))_+.

    Parameters
    ----------
    zeta2 : float or array
        Heterogeneity at the optimum.
    sigma2 : float
        Per-sample gradient variance at the optimum.
    L : float
        Smoothness, used as the per-sample L_sample of both bounds (L_max = L_sample = L here).
    T : int
        Communication rounds R.
    E : int
        Local steps per round.
    n : int
        Number of clients.
    mu : float, optional
        Strong convexity (global mu); 0 selects the convex bounds.
    D2 : float, optional
        ||theta_0 - theta*||^2.
    b : int, optional
        Batch size.

    Returns
    -------
    dict
        {'local': bound, 'minibatch': bound, 'better': 'local'|'minibatch', 'zeta2_crossover': z_c};
        'local' and 'better' are arrays when zeta2 is.

    Raises
    ------
    ConfigError
        If the numbers fail the checks of `Constants` (e.g. mu > L, n < 1).

    Notes
    -----
    Order-of-magnitude only: the constants of both bounds are unknown (set to 1).

    Examples
    --------
    >>> out = local_vs_minibatch_crossover(1e-4, 1e-6, 1.0, 100, 10, 8)
    >>> out["better"], round(out["zeta2_crossover"], 6)
    ('local', 0.006779)
    """
    c = Constants(L=float(L), mu=float(mu), sigma2=float(sigma2), zeta2=0.0, F0=0.0, n=int(n), D2=float(D2))
    regime = "strongly_convex" if mu > 0 else "convex"
    z = np.asarray(zeta2, dtype=float)
    R, E_ = float(T), float(E)
    local0 = local_sgd_woodworth_bound(R, c, E=E_, b=b, regime=regime)
    mb = minibatch_sgd_bound(R, c, E=E_, b=b, regime=regime)
    if regime == "convex":
        local = local0 + _pow(L * z * D2**2, 1 / 3) / R ** (2 / 3)
        gap = max(mb - local0, 0.0)
        zc = R**2 * gap**3 / (L * D2**2)
    else:
        local = local0 + L * z / (mu**2 * R**2)
        zc = max(mb - local0, 0.0) * mu**2 * R**2 / L
    better = np.where(np.asarray(local) < mb, "local", "minibatch")
    return {"local": _ret(local), "minibatch": float(mb),
            "better": better.item() if better.ndim == 0 else better, "zeta2_crossover": float(zc)}


# ---------------------------------------------------------------------------------------------
# lower bounds on hard instances (theory.md section 5.1, "Lower bounds")
# ---------------------------------------------------------------------------------------------


def local_drift_factor(u, K) -> ArrayLike:
    """Drift factor f_K(u) = K u / (1 - (1 - u)^K) - 1 of local GD on the two-type instance.

    The drift of local GD's fixed point on the two-type instance, in units of zeta / H, at
    u = eta H (theory.md 5.1, "Lower bounds").

    Parameters
    ----------
    u : float or array
        eta H, in [0, 1].
    K : int or array
        Local steps per round (>= 1).

    Returns
    -------
    float or array
        f_K(u) >= 0; increasing in u on [0, 1], 0 at u = 0 and at K = 1, K - 1 at u = 1.

    Raises
    ------
    ConfigError
        If u is outside [0, 1] or K < 1.

    Examples
    --------
    >>> round(local_drift_factor(1.0, 4), 6), local_drift_factor(0.3, 1)
    (3.0, 0.0)
    """
    u, K = np.broadcast_arrays(np.asarray(u, dtype=float), np.asarray(K, dtype=float))
    if np.any((u < 0) | (u > 1)) or np.any(K < 1):
        raise ConfigError("eta H", "needs 0 <= eta H <= 1 and K >= 1")
    # sum_{j<K} (1-u)^j = (1 - (1-u)^K) / u (expm1/log1p: exact for tiny u), K at u = 0, 1 at u = 1
    inside = np.where(u < 1, u, 0.0)   # log1p(-1) would be -inf
    one_minus_sK = np.where(u < 1, -np.expm1(K * np.log1p(-inside)), 1.0)
    geometric = np.where(u > 0, one_minus_sK / np.where(u > 0, u, 1.0), K)
    return _ret(np.where(K == 1, 0.0, K / geometric - 1.0))   # K = 1: no drift, exactly


def local_sgd_lower_bound(R, K, H, zeta2, D2, *, n_grid: int = 4001) -> ArrayLike:
    """Lower bound on E F(x_R) - F* for local SGD with ANY constant step 0 < eta <= 1/H.

    On the two-type hard instance `synthetic.hard_instances.TwoTypeQuadratic` (derived: theory.md 5.1).

    Parameters
    ----------
    R : int or array
        Communication rounds (>= 1).
    K : int or array
        Local steps per round (>= 1).
    H : float
        Smoothness of the curved clients (every f_i is H-smooth).
    zeta2 : float or array
        Gradient dissimilarity at the optimum, (1/M) sum_i |grad f_i(x*)|^2.
    D2 : float or array
        |x_0 - x*|^2.
    n_grid : int
        Points of the grid of t over which the maximum is taken (linear on [0.01, 1), and a
        quarter as many geometric below 0.01, where the optimum lies at large R).

    Returns
    -------
    float or array
        The bound, broadcast over R, K, zeta2 and D2.

    Raises
    ------
    ConfigError
        If R < 1, K < 1 or H <= 0.

    Notes
    -----
    The instance: M clients (M even), half with f_1(x) = H x^2/2 - zeta x, half with the linear
    f_2(x) = zeta x, so F = H x^2/4, x* = 0, every f_i H-smooth and convex, and the gradient
    dissimilarity at x* is exactly zeta^2 = (1/M) sum_i |grad f_i(x*)|^2; x_0 = -sqrt(D2). Local
    SGD (K steps of size eta per round, then averaging; any zero-mean additive gradient noise)
    has mean x_R = x_inf + rho^R (x_0 - x_inf), rho = (1 + (1-u)^K)/2, u = eta H, and fixed point
    x_inf = -(zeta/H) f_K(u) (`local_drift_factor`), on the same side as x_0. For every t in (0, 1),
    either rho^R >= t, or u > u_t (rho decreases in u; rho(u_t)^R = t) and then |x_inf| >=
    (zeta/H) f_K(u_t), f_K increasing. Noise only adds variance, so for every eta in (0, 1/H]

        E F(x_R) - F* >= (H/4) max_t min( t^2 D2, (1 - t)^2 zeta2 f_K(u_t)^2 / H^2 ),
        u_t = 1 - (2 t^(1/R) - 1)^(1/K)   (u_t = 1 when 2 t^(1/R) <= 1).

    Any t gives a valid bound, so the maximum over a finite grid is one too. To leading order it
    is ~ zeta2 (K-1)^2 log^2(R)/(H K^2 R^2) for K >= 2 (the 1/R^2 heterogeneity term of Woodworth,
    Patel, Srebro 2020 for strongly convex F, here mu = H/2), and 0 for K = 1, where local SGD is
    minibatch SGD. It bounds local SGD only: minibatch SGD on the same instance converges to x*.

    Constants: H is the per-sample smoothness (the noise is additive, so every sample's loss has
    the client's curvature); the bound assumes the step condition eta H <= 1, full participation,
    server step 1 and equal client weights.

    Examples
    --------
    >>> round(local_sgd_lower_bound(20, 4, 1.0, 1.0, 1.0), 5)
    0.00201
    >>> local_sgd_lower_bound(20, 1, 1.0, 1.0, 1.0)
    0.0
    """
    R, K, zeta2, D2 = (np.asarray(v, dtype=float)[..., None] for v in (R, K, zeta2, D2))
    if np.any(R < 1) or np.any(K < 1) or not H > 0:
        raise ConfigError("lower bound", "needs R >= 1, K >= 1 and H > 0")
    t = np.concatenate([np.geomspace(1e-12, 1e-2, n_grid // 4, endpoint=False), np.linspace(1e-2, 1.0 - 1e-9, n_grid)])
    a = 2.0 * t ** (1.0 / R) - 1.0
    u_t = np.where(a > 0, 1.0 - np.maximum(a, 0.0) ** (1.0 / K), 1.0)
    drift = zeta2 * np.asarray(local_drift_factor(u_t, K)) ** 2 / H**2
    return _ret(H / 4.0 * np.minimum(t**2 * D2, (1.0 - t) ** 2 * drift).max(-1))


# ---------------------------------------------------------------------------------------------
# rounds to epsilon (inverts the bounds above numerically; feeds `theory-lab predict`)
# ---------------------------------------------------------------------------------------------

_BOUNDS: dict[str, Callable] = {
    "centralized": minibatch_sgd_bound,
    "minibatch": minibatch_sgd_bound,
    "feddpo": feddpo_bound,
    "fedavg_li": fedavg_li_bound,
    "local_sgd_woodworth": local_sgd_woodworth_bound,
    "decdpo": decdpo_bound,
    "scaffold": scaffold_bound,
    "gradient_tracking": gradient_tracking_bound,
}


def rounds_to_epsilon(algorithm: str, eps, c: Constants, *, r_max: float = 1e15, **kwargs) -> ArrayLike:
    """Smallest number of communication rounds R with bound(R) <= eps, for the bound of `algorithm`.

    Inverts the bound numerically (bisection on log R, then integer rounding); feeds
    `theory-lab predict`.

    Parameters
    ----------
    algorithm : str
        One of: centralized, minibatch, feddpo, fedavg_li, local_sgd_woodworth, decdpo, scaffold,
        gradient_tracking.
    eps : float or array
        Target accuracy, > 0.
    c : Constants
        The constants, passed to the bound (which chooses L_sample, L_max or mu_global as its theorem
        assumes).
    r_max : float, optional
        Largest number of rounds searched.
    **kwargs
        Go to that bound (E, S, b, p, tau, eta, regime, const, ...).

    Returns
    -------
    float or array
        R as a whole number (float), shaped like eps; inf when the bound stays above eps up to r_max
        (e.g. eps below the floor of a constant step, or NaN: a step outside the theorem).

    Raises
    ------
    ConfigError
        Unknown algorithm, eps <= 0, or any error of the bound.

    Notes
    -----
    Each round has E (FedDPO, SCAFFOLD) or tau (DecDPO) local steps; for gradient tracking a round is
    one step.

    Examples
    --------
    >>> c = Constants(L=2.0, mu=0.5, sigma2=1.0, zeta2=0.5, F0=1.0, n=4)
    >>> rounds_to_epsilon("minibatch", 1e-2, c), rounds_to_epsilon("feddpo", 1e-3, c, E=5, eta=1e-3)
    (51.0, inf)
    """
    if algorithm not in _BOUNDS:
        raise ConfigError("algorithm", f"must be one of {', '.join(_BOUNDS)}, got {algorithm!r}")
    fn = _BOUNDS[algorithm]
    eps = np.asarray(eps, dtype=float)
    if np.any(eps <= 0):
        raise ConfigError("eps", "must be > 0")

    def f(r):
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            return np.broadcast_to(np.asarray(fn(r, c, **kwargs), dtype=float), eps.shape)

    lo = np.zeros(eps.shape)                        # log R
    hi = np.full(eps.shape, math.log(r_max))
    reachable = f(np.exp(hi)) <= eps
    done = f(np.ones(eps.shape)) <= eps
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        ok = f(np.exp(mid)) <= eps
        hi = np.where(ok, mid, hi)
        lo = np.where(ok, lo, mid)
    r = np.maximum(np.ceil(np.exp(hi) * (1.0 - 1e-12)), 1.0)
    r = np.where(reachable & (f(r) > eps), r + 1.0, r)  # integer rounding at the boundary
    r = np.where(done, 1.0, r)
    return _ret(np.where(reachable, r, np.inf))
