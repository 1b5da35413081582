"""The exact constants of one replica that every bound takes (`Constants`)."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from theory_lab.errors import ConfigError


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
