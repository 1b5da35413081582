"""Rounds to epsilon: the rate bounds of `rates` inverted numerically (feeds `theory-lab predict`)."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from theory_lab.bounds._common import ArrayLike, _ret
from theory_lab.bounds.constants import Constants
from theory_lab.bounds.rates import (decdpo_bound, fedavg_li_bound, feddpo_bound, gradient_tracking_bound,
                                     local_sgd_woodworth_bound, minibatch_sgd_bound, scaffold_bound)
from theory_lab.errors import ConfigError

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
