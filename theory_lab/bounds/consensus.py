"""DecDPO / D-PSGD consensus (theory.md section 4)."""

from __future__ import annotations

import math

import numpy as np

from theory_lab.bounds._common import ArrayLike, _div, _ret, _rho
from theory_lab.errors import ConfigError


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
