"""Smoothness of the log-linear DPO landscape (theory.md section 2)."""

from __future__ import annotations

import numpy as np

from theory_lab.bounds._common import ArrayLike, _ret


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
