"""Rate fits with bootstrap confidence intervals over seeds.

Every fit here is linear least squares on a design matrix A (log–log slope, straight line, or a
fixed basis of bound terms with non-negative coefficients). Uncertainty comes from a bootstrap:
- over seeds when there are >= 2 distinct seed curves: one seed's whole curve is one resampling
  unit, because points of one seed are correlated (same trajectory, same data draw);
- over residuals when there is one seed, or all seeds gave identical curves (exact-gradient runs):
  resampling identical copies would give a zero-width CI that means nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats
from scipy.optimize import nnls


@dataclass
class FitResult:
    slope: float
    intercept: float
    ci_low: float                # bootstrap CI of the slope
    ci_high: float
    r2: float                    # in the space that was fitted (log–log for power laws)
    n_points: int
    n_seeds: int
    n_dropped: int = 0           # non-finite / non-positive points left out of the fit
    intercept_ci_low: float = float("nan")
    intercept_ci_high: float = float("nan")
    ci_level: float = 0.95
    bootstrap: str = "seeds"     # "seeds", "residuals", or "none" (too few points for a CI)


@dataclass
class TermsFit:
    names: list[str]
    coef: dict[str, float]
    ci_low: dict[str, float]
    ci_high: dict[str, float]
    rel_residual: float          # ||W(y - ŷ)|| / ||W y||, W = relative weights (or I)
    n_points: int
    n_seeds: int
    n_dropped: int = 0
    ci_level: float = 0.95
    bootstrap: str = "seeds"


def _rng(rng) -> np.random.Generator:
    # A fixed default seed keeps reports bit-identical across reruns; pass a Generator to vary it.
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(0 if rng is None else rng)


def _solve(A: np.ndarray, y: np.ndarray, nonneg: bool) -> np.ndarray:
    # Rank-deficient resamples (e.g. every drawn seed has a single x) cannot identify the fit.
    if np.linalg.matrix_rank(A) < A.shape[1]:
        return np.full(A.shape[1], np.nan)
    return nnls(A, y)[0] if nonneg else np.linalg.lstsq(A, y, rcond=None)[0]


def _seeds_identical(A, y, idx, n_groups) -> bool:
    rows = np.column_stack([A, y])
    ref = None
    for g in range(n_groups):
        r = rows[idx == g]
        r = r[np.lexsort(r.T[::-1])]
        if ref is None:
            ref = r
        elif r.shape != ref.shape or not np.allclose(r, ref, rtol=1e-12, atol=0.0):
            return False
    return True


def _fit(A, y, seeds, nonneg, n_boot, ci, rng):
    """Point estimate, percentile CI per coefficient, bootstrap mode, number of distinct seeds."""
    coef = _solve(A, y, nonneg)
    seeds = np.zeros(len(y), dtype=int) if seeds is None else np.asarray(seeds)
    _, idx = np.unique(seeds, return_inverse=True)
    G = int(idx.max()) + 1 if idx.size else 0
    rng = _rng(rng)
    if G >= 2 and not _seeds_identical(A, y, idx, G):
        mode = "seeds"
        counts = rng.multinomial(G, np.full(G, 1.0 / G), size=n_boot)
        # Drawing seed g c times == weighting its rows by c in least squares (sqrt on rows).
        w = np.sqrt(counts[:, idx])
        boots = np.array([_solve(A * wi[:, None], y * wi, nonneg) for wi in w])
    else:
        keep = idx == 0  # identical seeds: one copy of the curve carries all the information
        A1, y1 = A[keep], y[keep]
        n, p = A1.shape
        if n <= p or not np.all(np.isfinite(coef)):
            return coef, np.full((2, p), np.nan), "none", G
        mode = "residuals"
        fitted = A1 @ coef
        # Leverage-free rescaling of residuals by sqrt(n/(n-p)); centred because nnls fits
        # have no guaranteed intercept.
        res = (y1 - fitted) * np.sqrt(n / (n - p))
        res -= res.mean()
        draws = rng.integers(0, n, size=(n_boot, n))
        boots = np.array([_solve(A1, fitted + res[d], nonneg) for d in draws])
    ok = np.all(np.isfinite(boots), axis=1)
    if ok.sum() < n_boot / 2:
        return coef, np.full((2, A.shape[1]), np.nan), mode, G
    a = 100 * (1 - ci) / 2
    q = np.percentile(boots[ok], [a, 100 - a], axis=0)
    # Small-sample expansion (after Hesterberg's expanded percentile interval): with G seeds the
    # plain percentile CI covers ~55% (G=2), ~76% (G=3), ~88% (G=8) instead of 95%, because
    # the bootstrap variance is shrunk by (G-1)/G and z is used where t_{G-1} applies. Scaling
    # the deviations by sqrt(G/(G-1))·t/z restores nominal coverage in simulation.
    if mode == "seeds":
        c = np.sqrt(G / (G - 1)) * stats.t.ppf(0.5 + ci / 2, G - 1)
    else:  # residuals were already rescaled by sqrt(n/(n-p)); t_{n-p} replaces z
        c = stats.t.ppf(0.5 + ci / 2, A1.shape[0] - A1.shape[1])
    lims = coef + c / stats.norm.ppf(0.5 + ci / 2) * (q - coef)
    return coef, np.maximum(lims, 0.0) if nonneg else lims, mode, G


def _r2(A, y, coef) -> float:
    ssr = float(np.sum((y - A @ coef) ** 2))
    sst = float(np.sum((y - y.mean()) ** 2))
    return 1.0 if sst == 0 else 1.0 - ssr / sst


def _shape_r2(x, y, coef) -> float:
    """r² of the line against the mean of y at each distinct x: whether the relation has the
    fitted shape. Seed-to-seed noise at one x averages out instead of reading as misfit (with
    no repeated x this is the ordinary r²)."""
    xs, inverse = np.unique(x, return_inverse=True)
    means = np.bincount(inverse, weights=y) / np.bincount(inverse)
    return _r2(np.column_stack([xs, np.ones_like(xs)]), means, coef) if len(xs) >= 2 else float("nan")


def _line(x, y, seeds, n_boot, ci, rng, log: bool) -> FitResult:
    x, y = np.asarray(x, float).ravel(), np.asarray(y, float).ravel()
    keep = np.isfinite(x) & np.isfinite(y)
    if log:
        keep &= (x > 0) & (y > 0)
    s = None if seeds is None else np.asarray(seeds).ravel()[keep]
    x, y = x[keep], y[keep]
    if log:
        x, y = np.log(x), np.log(y)
    A = np.column_stack([x, np.ones_like(x)])
    if len(y) < 2:
        coef, lims, mode, G = np.full(2, np.nan), np.full((2, 2), np.nan), "none", 0
    else:
        coef, lims, mode, G = _fit(A, y, s, False, n_boot, ci, rng)
    return FitResult(float(coef[0]), float(coef[1]), float(lims[0, 0]), float(lims[1, 0]),
                     _shape_r2(x, y, coef) if len(y) >= 2 else float("nan"), int(len(y)), G,
                     int((~keep).sum()), float(lims[0, 1]), float(lims[1, 1]), ci, mode)


def loglog_slope(x, y, seeds=None, n_boot: int = 1000, ci: float = 0.95, rng=None) -> FitResult:
    """Slope of log y against log x (power-law exponent); non-positive points are dropped."""
    return _line(x, y, seeds, n_boot, ci, rng, log=True)


def linear_fit(x, y, seeds=None, n_boot: int = 1000, ci: float = 0.95, rng=None) -> FitResult:
    """y = slope·x + intercept, for claims linear in x (floor vs 1/S − 1/N, gap vs q_max)."""
    return _line(x, y, seeds, n_boot, ci, rng, log=False)


def rate_in_T(rounds, values, seeds=None, start_frac: float = 0.1, n_boot: int = 1000,
              ci: float = 0.95, rng=None) -> FitResult:
    """Log–log slope of a curve against the round index, after the first `start_frac` of the run."""
    r = np.asarray(rounds, float).ravel()
    keep = r >= start_frac * np.nanmax(r)
    s = None if seeds is None else np.asarray(seeds).ravel()[keep]
    return loglog_slope(r[keep], np.asarray(values, float).ravel()[keep], s, n_boot, ci, rng)


def fit_terms(x_columns: dict[str, np.ndarray], y, seeds=None, n_boot: int = 1000,
              ci: float = 0.95, rng=None, relative: bool = True) -> TermsFit:
    """y ≈ Σ_k c_k·t_k with fixed basis columns t_k and c_k ≥ 0 (scipy nnls), bootstrap CIs.

    relative=True weights each point by 1/ŷ (relative errors): floors span orders of magnitude across a sweep and
    noise is multiplicative, so plain least squares would only fit the largest floors.
    """
    names = list(x_columns)
    A = np.column_stack([np.asarray(x_columns[k], float).ravel() for k in names])
    y = np.asarray(y, float).ravel()
    keep = np.all(np.isfinite(A), axis=1) & np.isfinite(y)
    if relative:
        keep &= y > 0
    A, y = A[keep], y[keep]
    s = None if seeds is None else np.asarray(seeds).ravel()[keep]
    if len(y) < len(names):
        raise ValueError(f"fit_terms: {len(y)} usable points for {len(names)} terms")
    w = np.ones_like(y)
    if relative:
        # Weights 1/y_obs favour points with negative noise (biased low); one reweighting pass
        # with 1/ŷ from the first fit removes most of that bias.
        yhat = A @ _solve(A / y[:, None], np.ones_like(y), True)
        w = 1.0 / yhat if np.all(yhat > 0) else 1.0 / y
    Aw, yw = A * w[:, None], y * w
    coef, lims, mode, G = _fit(Aw, yw, s, True, n_boot, ci, rng)
    rel = float(np.linalg.norm(yw - Aw @ coef) / np.linalg.norm(yw))
    return TermsFit(names, dict(zip(names, map(float, coef))),
                    dict(zip(names, map(float, lims[0]))), dict(zip(names, map(float, lims[1]))),
                    rel, int(len(y)), G, int((~keep).sum()), ci, mode)


@dataclass
class RatioFit:
    """Observed/predicted coefficient: the geometric mean of the per-point ratios, with a CI."""
    ratio: float
    ci_low: float
    ci_high: float
    min: float                   # smallest and largest single ratio (spread across the sweep)
    max: float
    n_points: int
    n_seeds: int
    n_dropped: int = 0
    ci_level: float = 0.95
    bootstrap: str = "seeds"     # "seeds", "residuals", "none", "exact" (CI = range), "draws" (t-interval)

    def scaled(self, factor: float) -> "RatioFit":
        """The same fit against a prediction multiplied by `factor` (the ×2 coefficient control):
        the log-mean and its bootstrap are equivariant, so every ratio is divided by `factor`."""
        k = 1.0 / factor
        return RatioFit(self.ratio * k, self.ci_low * k, self.ci_high * k, self.min * k, self.max * k,
                        self.n_points, self.n_seeds, self.n_dropped, self.ci_level, self.bootstrap)


def ratio_fit(observed, predicted, seeds=None, n_boot: int = 1000, ci: float = 0.95, rng=None,
              exact: bool = False) -> RatioFit:
    """Observed/predicted as exp(mean log ratio), CI by the same bootstrap as the slope fits.

    The log scale weights a sweep whose values span decades evenly (a floor 100× smaller counts
    as much as the largest). Uncertainty comes from seeds (each seed is its own random problem),
    not from the spread of ratios across the sweep, which `min` / `max` report.

    Parameters
    ----------
    observed, predicted : arrays of equal length (one entry per run and seed)
    seeds : the seed of each entry (None: one seed)
    exact : deterministic ratios (no sampling noise, e.g. one exact-gradient run per setting): the
        interval is their range [min, max], so a band judged on it must hold every single ratio
        (a bootstrap over a few settings would measure the spread between settings, not noise)

    Returns
    -------
    RatioFit; non-finite or non-positive ratios are dropped and counted.
    """
    r = np.asarray(observed, float).ravel() / np.asarray(predicted, float).ravel()
    keep = np.isfinite(r) & (r > 0)
    s = None if seeds is None else np.asarray(seeds).ravel()[keep]
    y = np.log(r[keep])
    if y.size == 0:
        nan = float("nan")
        return RatioFit(nan, nan, nan, nan, nan, 0, 0, int((~keep).sum()), ci, "none")
    if exact:
        return RatioFit(float(np.exp(y.mean())), float(np.exp(y.min())), float(np.exp(y.max())),
                        float(np.exp(y.min())), float(np.exp(y.max())), int(y.size), 1, int((~keep).sum()), ci, "exact")
    coef, lims, mode, G = _fit(np.ones((y.size, 1)), y, s, False, n_boot, ci, rng)
    return RatioFit(float(np.exp(coef[0])), float(np.exp(lims[0, 0])), float(np.exp(lims[1, 0])),
                    float(np.exp(y.min())), float(np.exp(y.max())), int(y.size), G, int((~keep).sum()), ci, mode)
