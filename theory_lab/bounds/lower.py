"""Lower bounds on hard instances (theory.md section 5.1, "Lower bounds")."""

from __future__ import annotations

import numpy as np

from theory_lab.bounds._common import ArrayLike, _ret
from theory_lab.errors import ConfigError


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
