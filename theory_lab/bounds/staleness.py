"""Floors under staleness (theory.md section 3): delay moments, the exact stale floor, its model
form, the delayed step limit, and FedDPO's whole floor (noise, participation, drift, staleness)."""

from __future__ import annotations

import math

import numpy as np
from scipy.linalg import solve_discrete_lyapunov

from theory_lab.bounds._common import ArrayLike, _check_metric, _ret
from theory_lab.bounds.constants import Constants
from theory_lab.bounds.floors import drift_floor, noise_floor, participation_floor
from theory_lab.errors import ConfigError


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
    >>> from theory_lab.bounds.floors import sgd_noise_floor
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
