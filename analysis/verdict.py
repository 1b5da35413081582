"""Claim verdicts: confirmed / refuted / inconclusive / outside regime, each with a reason.

A refuted claim is a result, not a bug; an inconclusive one says what would be needed (more
seeds, a cleaner regime), so the report never over-states what the data show. A verdict can be
trusted only if the same check would have refuted a wrong prediction: `decide` confirms a claim
only when its prediction (and coefficient) pass AND every negative control is refuted by the
same check, inside the claim's regime.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .fits import FitResult, RatioFit

STATUSES = ("confirmed", "refuted", "inconclusive", "outside regime")


@dataclass
class Verdict:
    status: str
    reason: str

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")


def _unusable_or_outside(fit, estimate: float, band: tuple[float, float], what: str, desc: str, target: str,
                         note: str = "") -> Verdict | None:
    """The two verdicts every interval check shares: no finite estimate or CI (inconclusive), or
    a CI entirely outside the band (refuted, with the caller's `note`); None when the interval
    needs the caller's own tests."""
    if not all(map(math.isfinite, (estimate, fit.ci_low, fit.ci_high))):
        return Verdict("inconclusive", f"no usable {what} or CI ({fit.n_points} points, "
                                       f"{fit.n_dropped} dropped) to compare with the {target}.")
    if fit.ci_high < band[0] or fit.ci_low > band[1]:
        return Verdict("refuted", f"{desc} lies entirely outside the {target}{note}.")
    return None


def judge_exponent(fit: FitResult, predicted: float, tol: float, min_r2: float = 0.9,
                   max_ci_width: float | None = None) -> Verdict:
    """Compare a fitted slope with a predicted one, band [predicted − tol, predicted + tol].

    refuted: the whole CI lies outside the band (the data exclude the prediction).
    confirmed: |slope − predicted| ≤ tol, the CI overlaps the band, the CI is no wider than
    `max_ci_width` (default 2·tol: the data must resolve the band) and r² ≥ min_r2.
    The r² test is skipped for a flat prediction (|predicted| ≤ tol): when y does not depend
    on x, r² is ~0 by construction and says nothing about the fit.
    """
    pct = f"{100 * fit.ci_level:g}%"
    desc = (f"slope {fit.slope:.3g} ({pct} CI [{fit.ci_low:.3g}, {fit.ci_high:.3g}], "
            f"r²={fit.r2:.3g}, {fit.n_points} points, {fit.n_seeds} seeds)")
    target = f"predicted {predicted:g} ± {tol:g}"
    poor = (f"; note r²={fit.r2:.3g} < {min_r2:g}, not a clean power law in this range"
            if fit.r2 < min_r2 and abs(predicted) > tol else "")
    early = _unusable_or_outside(fit, fit.slope, (predicted - tol, predicted + tol), "fit", f"fitted {desc}",
                                 target, poor)
    if early:
        return early
    width = 2 * tol if max_ci_width is None else max_ci_width
    if fit.ci_high - fit.ci_low > width:
        return Verdict("inconclusive", f"fitted {desc} is wider than {width:g}, too wide to "
                                       f"resolve the {target}; more seeds or points are needed.")
    if abs(predicted) > tol and not fit.r2 >= min_r2:
        return Verdict("inconclusive", f"fitted {desc} has r² below {min_r2:g}: the curve is not "
                                       f"a clean power law here, so the {target} is not tested.")
    if abs(fit.slope - predicted) > tol:
        return Verdict("inconclusive", f"fitted {desc} is off the {target} although its CI "
                                       f"overlaps the band.")
    return Verdict("confirmed", f"fitted {desc} agrees with the {target}.")


def judge_identical(max_abs_diff: float, atol: float) -> Verdict:
    """Trajectories that should coincide (e.g. FedDPO E=1, S=N vs centralized SGD)."""
    if not math.isfinite(max_abs_diff):
        return Verdict("inconclusive", f"max abs difference is {max_abs_diff}: nothing to compare.")
    if max_abs_diff <= atol:
        return Verdict("confirmed", f"trajectories agree: max abs difference {max_abs_diff:.3g} "
                                    f"≤ {atol:.3g}.")
    return Verdict("refuted", f"trajectories differ: max abs difference {max_abs_diff:.3g} "
                              f"> {atol:.3g}.")


def judge_bound(validity: dict) -> Verdict:
    """Verdict from `bound_validity`'s dict."""
    t = validity.get("tightness", {})
    if validity.get("n_points", 0) == 0:
        return Verdict("inconclusive", "no logged point could be compared with its bound.")
    if validity["valid"]:
        return Verdict("confirmed", f"empirical ≤ bound at all {validity['n_points']} points; "
                                    f"bound/empirical median {t.get('median', float('nan')):.3g}, "
                                    f"max {t.get('max', float('nan')):.3g}.")
    return Verdict("refuted", f"bound violated at {validity['violations']} of "
                              f"{validity['n_points']} points, first at index "
                              f"{validity['first_violation']} (worst bound/empirical "
                              f"{t.get('min', float('nan')):.3g}).")


def judge_ordering(values: dict[str, float], expected_order: list[str],
                   descending: bool = True, rtol: float = 0.0) -> Verdict:
    """Is values[expected_order[0]] > values[expected_order[1]] > … (or < … if not descending)?

    Missing or NaN values, and neighbours within `rtol` of each other (not separable), make the
    verdict inconclusive; a strictly reversed neighbouring pair refutes it.
    """
    missing = [k for k in expected_order if k not in values or not math.isfinite(values[k])]
    if missing:
        return Verdict("inconclusive", f"no finite value for {missing}.")
    rel = ">" if descending else "<"
    chain = f" {rel} ".join(f"{k} ({values[k]:.3g})" for k in expected_order)
    ties = []
    for a, b in zip(expected_order, expected_order[1:]):
        va, vb = values[a], values[b]
        if abs(va - vb) <= rtol * max(abs(va), abs(vb)):
            ties.append(f"{a}≈{b}")
        elif (va < vb) if descending else (va > vb):
            return Verdict("refuted", f"expected {chain}, but {a} {'<' if descending else '>'} {b}.")
    if ties:
        return Verdict("inconclusive", f"expected {chain}, but cannot separate {', '.join(ties)}.")
    return Verdict("confirmed", f"observed order {chain} as expected.")


def judge_ratio(fit: RatioFit, band: tuple[float, float]) -> Verdict:
    """Judge an observed/predicted coefficient against a declared band [lo, hi].

    refuted: the whole CI lies outside the band. confirmed: the whole CI lies inside it (so the
    data resolve the band: noisier data cannot confirm more easily). inconclusive otherwise.
    """
    lo, hi = band
    pct = "exact: range of" if fit.bootstrap == "exact" else f"{100 * fit.ci_level:g}%"
    desc = (f"observed/predicted {fit.ratio:.3g} ({pct} CI [{fit.ci_low:.3g}, {fit.ci_high:.3g}], "
            f"single ratios {fit.min:.3g}..{fit.max:.3g}, {fit.n_points} points, {fit.n_seeds} seeds)")
    target = f"band [{lo:g}, {hi:g}]"
    early = _unusable_or_outside(fit, fit.ratio, band, "ratio", desc, target)
    if early:
        return early
    if lo <= fit.ci_low and fit.ci_high <= hi:
        return Verdict("confirmed", f"{desc} lies inside the {target}.")
    return Verdict("inconclusive", f"{desc} straddles the edge of the {target}: not resolved.")


def decide(prediction: Verdict, *, coefficient: Verdict | None = None,
           controls: dict[str, Verdict] | None = None, missing: list[str] = (),
           small: tuple[str, float, float] | None = None) -> Verdict:
    """A claim's final verdict from its parts.

    Parameters
    ----------
    prediction : the check's verdict on the predicted form (exponent, ordering, identity…)
    coefficient : the verdict on observed/predicted (None where no exact coefficient exists)
    controls : name -> the same check's verdict on that negative control (each must be refuted)
    missing : declared controls the check did not run
    small : (name, value, limit) of the claim's small parameter

    Returns
    -------
    Verdict, in this order of precedence: "outside regime" when value > limit (never confirmed
    there); "refuted" when the prediction or coefficient is; "inconclusive" when either is;
    "inconclusive (does not discriminate: …)" when no control is declared, or one was not run or
    not refuted; otherwise "confirmed".
    """
    parts = [f"prediction: {prediction.status} ({prediction.reason})"]
    if coefficient is not None:
        parts.append(f"coefficient: {coefficient.status} ({coefficient.reason})")
    body = " ".join(parts)
    if small is not None:
        name, value, limit = small
        if not (math.isfinite(value) and value <= limit):
            return Verdict("outside regime", f"{name} = {value:.3g} exceeds its declared limit {limit:g}: "
                                             f"the leading-order prediction is not tested here. {body}")
    judged = [prediction] + ([coefficient] if coefficient is not None else [])
    for status in ("refuted", "inconclusive", "outside regime"):
        if any(v.status == status for v in judged):
            return Verdict("refuted" if status == "refuted" else "inconclusive", body)
    if not controls and not missing:
        return Verdict("inconclusive", f"does not discriminate: no negative control declared, so nothing shows "
                                       f"that this check could have failed. {body}")
    weak = [f"control {n} not run" for n in missing]
    weak += [f"control {n} is {v.status}, not refuted ({v.reason})"
             for n, v in (controls or {}).items() if v.status != "refuted"]
    if weak:
        return Verdict("inconclusive", f"does not discriminate: {'; '.join(weak)}. {body}")
    ctl = f" Every control refuted by the same check ({', '.join(controls)})." if controls else ""
    return Verdict("confirmed", body + ctl)
