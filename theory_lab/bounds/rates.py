"""Rate upper bounds (theory.md section 5); R = communication rounds."""

from __future__ import annotations

import math

import numpy as np

from theory_lab.bounds._common import ArrayLike, _check_regime, _div, _ret, _sampling_factor
from theory_lab.bounds.constants import Constants
from theory_lab.errors import ConfigError


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
