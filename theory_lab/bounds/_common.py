"""Small helpers shared by the bounds: scalar-or-array returns, safe division, argument checks."""

from __future__ import annotations

import numpy as np

from theory_lab.errors import ConfigError

ArrayLike = float | np.ndarray
_METRICS = ("subopt", "grad_norm_sq", "dist2")
_REGIMES = ("strongly_convex", "convex", "nonconvex")


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
