"""Stationary floors of FedDPO / local SGD with constant steps (theory.md section 3): noise,
participation and client drift, to leading order in the step size."""

from __future__ import annotations

import numpy as np

from theory_lab.bounds._common import ArrayLike, _check_metric, _div, _ret, _sampling_factor
from theory_lab.errors import ConfigError


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
