"""Floors of converged curves: the level a run settles at, and whether it has settled.

Constant-step runs (drift, participation, noise, consensus, staleness claims) converge to a
neighbourhood, not to the optimum; the claims are about the size of that neighbourhood. We read it
from the end of the run, and refuse to call it a floor while the curve is still moving.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd


def _logged(values) -> np.ndarray:
    # NaN means "not logged at this round" in the results schema; +inf is kept on purpose so
    # that a diverged run reports an infinite floor instead of silently looking converged.
    v = np.asarray(values, dtype=float).ravel()
    return v[~np.isnan(v)]


TAIL = 0.25   # the default tail fraction of a floor, for every caller (claims, figures, predict)


def _tail(values, tail: float) -> np.ndarray:
    if not 0.0 < tail <= 1.0:
        raise ValueError(f"tail must be in (0, 1], got {tail}")
    v = _logged(values)
    if v.size == 0:
        return v
    return v[-max(1, math.ceil(tail * v.size)):]


def plateau(values: np.ndarray, tail: float = TAIL) -> float:
    """Floor of a converged curve: mean of the last `tail` fraction of logged rounds.

    For a stochastic curve that oscillates around its stationary level the tail mean is the
    estimate of that level (a tail minimum would be biased low by the noise).
    """
    t = _tail(values, tail)
    return float(t.mean()) if t.size else float("nan")


def is_stationary(values: np.ndarray, tail: float = TAIL, rtol: float = 0.05,
                  atol: float = 0.0) -> bool:
    """True when the two halves of the tail have means within `rtol` (relative) of each other.

    A curve still decreasing (or growing) at the end has distinct half-means, so its tail mean
    is an upper (lower) bound on the floor, not the floor. `atol` lets floors at machine zero
    (e.g. consensus error of an exact method) count as stationary despite round-off jitter.
    """
    t = _tail(values, tail)
    if t.size < 2 or not np.all(np.isfinite(t)):
        return False
    h = t.size // 2
    m1, m2 = t[:h].mean(), t[h:].mean()
    return bool(abs(m1 - m2) <= atol + rtol * max(abs(m1), abs(m2)))


def floors_by(df: pd.DataFrame, metric: str, by: Sequence[str], tail: float = TAIL,
              rtol: float = 0.05) -> pd.DataFrame:
    """One row per (config group, seed): columns `by` (+ `seed`), `floor`, `stationary`, `n_rounds`.

    Rows are ordered by `round` inside each group. Two rows with the same round in one group
    mean `by` is missing a column that distinguishes runs; that is an error, because averaging
    unrelated runs into one "floor" would be silently wrong.
    """
    if metric not in df.columns:
        raise KeyError(f"metric column {metric!r} not in results (have: {sorted(df.columns)})")
    keys = list(by)
    missing = [k for k in keys if k not in df.columns]
    if missing:
        raise KeyError(f"group-by columns not in results: {missing}")
    if "seed" in df.columns and "seed" not in keys:
        keys.append("seed")
    out_cols = keys + ["floor", "stationary", "n_rounds"]
    if not keys:
        raise ValueError("floors_by needs at least one group column (or a `seed` column)")
    rows = []
    for key, g in df.groupby(keys, sort=True, dropna=False):
        if "round" in g.columns:
            g = g.sort_values("round", kind="stable")
            if g["round"].duplicated().any():
                raise ValueError(f"duplicate rounds in group {dict(zip(keys, key))}: add the "
                                 f"column that distinguishes these runs to `by`")
        v = g[metric].to_numpy(dtype=float)
        rows.append({**dict(zip(keys, key)), "floor": plateau(v, tail),
                     "stationary": is_stationary(v, tail, rtol),
                     "n_rounds": int(np.count_nonzero(~np.isnan(v)))})
    return pd.DataFrame(rows, columns=out_cols)
