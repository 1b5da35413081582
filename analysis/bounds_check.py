"""Does a run stay under its instantiated upper bound, and how loose is the bound?"""

from __future__ import annotations

import numpy as np


def bound_validity(empirical, bound, rtol: float = 1e-9) -> dict:
    """Compare an empirical curve with its bound point by point (arrays broadcast together).

    Returns: valid (no violation among checked points; vacuously True when none were checked),
    violations (count), n_points (checked), first_violation (flat index or None), and
    tightness = {"median", "max", "min"} of bound/empirical over points with empirical > 0
    (min < 1 is the worst violation).
    NaN on either side means "not logged" and is skipped; +inf empirical (divergence) against a
    finite bound is a violation. `rtol` absorbs rounding when a run sits exactly on its bound.
    """
    e, b = np.broadcast_arrays(np.asarray(empirical, float), np.asarray(bound, float))
    e, b = e.ravel(), b.ravel()
    checked = ~np.isnan(e) & ~np.isnan(b)
    with np.errstate(invalid="ignore"):
        ok = e <= b + rtol * np.abs(b)
    bad = np.flatnonzero(checked & ~ok)
    pos = checked & np.isfinite(e) & (e > 0)
    ratio = b[pos] / e[pos]
    tight = ({"median": float(np.median(ratio)), "max": float(ratio.max()),
              "min": float(ratio.min())} if ratio.size else
             {"median": float("nan"), "max": float("nan"), "min": float("nan")})
    return {"valid": bool(bad.size == 0), "violations": int(bad.size),
            "n_points": int(checked.sum()),
            "first_violation": int(bad[0]) if bad.size else None, "tightness": tight}
