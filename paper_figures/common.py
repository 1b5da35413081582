"""Small shared pieces of the figure modules: method labels, floors per seed, fixed-exponent
fits, and the `prepare`/`draw` protocol every figure module follows:

    NAME = "local_steps"                       # output file stem
    def prepare(lab: Lab) -> inputs             # runs (or reads from the cache) what it needs
    def draw(inputs, out_dir) -> list[Path]     # draws from the inputs alone (a results table)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import TAIL, floors_by

N_BOOT = 1000  # bootstrap resamples of every fit drawn (analysis.fits default); tests lower it

NAMES = {"centralized": "centralized", "feddpo": "FedDPO", "fedprox": "FedProx", "scaffold": "SCAFFOLD",
         "decdpo": "DecDPO", "gradient_tracking": "gradient tracking"}


def method_label(row) -> str:
    """A readable name of a run: algorithm, with participation or topology where they matter."""
    name = NAMES.get(row["algorithm"], row["algorithm"])
    if row["algorithm"] in ("feddpo", "fedprox", "scaffold"):
        S, N = int(row["participation"]), int(row["n_clients"])
        return f"{name} full (S={S})" if S == N else f"{name} partial (S={S}/{N})"
    if row["algorithm"] in ("decdpo", "gradient_tracking"):
        return f"{name} ({row['topology']})"
    return name


def add_method(table: pd.DataFrame) -> pd.DataFrame:
    table = table.copy()
    firsts = table.groupby("run_id").first().reset_index()
    labels = {r["run_id"]: method_label(r) for _, r in firsts.iterrows()}
    table["method"] = table["run_id"].map(labels)
    return table


def seed_floors(table: pd.DataFrame, metric: str, by, tail: float = TAIL) -> pd.DataFrame:
    """One row per (group, seed): the stationary level of `metric` (tail mean over logged rounds)."""
    return floors_by(table, metric, list(by) if not isinstance(by, str) else [by], tail=tail)


def fixed_slope_fit(x, y, slope: float) -> tuple[float, float]:
    """y ≈ c·x^slope by least squares in log space: returns (c, rms log residual)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = (x > 0) & (y > 0) & np.isfinite(x) & np.isfinite(y)
    if not ok.any():
        return np.nan, np.nan
    r = np.log(y[ok]) - slope * np.log(x[ok])
    logc = r.mean()
    return float(np.exp(logc)), float(np.sqrt(np.mean((r - logc) ** 2)))


def fmt_ci(value: float, low: float, high: float) -> str:
    if not np.isfinite(value):
        return "n/a"
    if not (np.isfinite(low) and np.isfinite(high)):
        return f"{value:.2g}"
    return f"{value:.2g} [{low:.2g}, {high:.2g}]"
