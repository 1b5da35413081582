"""Analysis layer: fits recover known exponents/coefficients, floors, bound checks, verdicts."""

import numpy as np
import pandas as pd
import pytest

from analysis import (FitResult, bound_validity, fit_terms, floors_by, is_stationary,
                      judge_bound, judge_exponent, judge_identical, judge_ordering, linear_fit,
                      loglog_slope, plateau, rate_in_T)


def _power_law(rng, n_seeds=8, noise=0.05, a=3.0, b=-2.0, x=None):
    x = np.geomspace(1, 100, 12) if x is None else x
    xs = np.tile(x, n_seeds)
    seeds = np.repeat(np.arange(n_seeds), x.size)
    y = a * xs**b * np.exp(rng.normal(0.0, noise, xs.size))
    return xs, y, seeds


def test_loglog_recovers_exponent_with_seed_bootstrap():
    x, y, s = _power_law(np.random.default_rng(1))
    fit = loglog_slope(x, y, s, rng=np.random.default_rng(2))
    assert fit.bootstrap == "seeds" and fit.n_seeds == 8 and fit.n_points == x.size
    assert fit.ci_low <= -2.0 <= fit.ci_high
    assert abs(fit.slope + 2.0) < 0.02 and fit.r2 > 0.99
    assert fit.intercept_ci_low <= np.log(3.0) <= fit.intercept_ci_high
    assert judge_exponent(fit, -2.0, tol=0.1).status == "confirmed"


def test_ci_widens_with_noise():
    widths = []
    for noise in (0.02, 0.3):
        x, y, s = _power_law(np.random.default_rng(3), noise=noise)
        f = loglog_slope(x, y, s, rng=np.random.default_rng(4))
        widths.append(f.ci_high - f.ci_low)
    assert widths[1] > 5 * widths[0]


def test_single_seed_and_identical_seeds_use_residual_bootstrap():
    x, y, _ = _power_law(np.random.default_rng(5), n_seeds=1, noise=0.05)
    one = loglog_slope(x, y, rng=np.random.default_rng(6))
    assert one.bootstrap == "residuals" and one.ci_low < -2.0 < one.ci_high
    # Deterministic runs: every seed gives the same curve; the CI must not shrink with copies.
    same = loglog_slope(np.tile(x, 4), np.tile(y, 4), np.repeat(np.arange(4), x.size),
                        rng=np.random.default_rng(6))
    assert same.bootstrap == "residuals" and same.n_seeds == 4
    assert same.ci_low == pytest.approx(one.ci_low) and same.ci_high == pytest.approx(one.ci_high)


def test_nonpositive_points_are_dropped_and_counted():
    x = np.array([1.0, 2.0, 4.0, 8.0, 16.0, 32.0])
    y = 5.0 * x**1.5
    y[[1, 3]] = [0.0, np.nan]
    fit = loglog_slope(x, y)
    assert fit.n_dropped == 2 and fit.n_points == 4
    assert fit.slope == pytest.approx(1.5) and fit.ci_low == pytest.approx(1.5)


def test_wrong_prediction_is_refuted():
    x, y, s = _power_law(np.random.default_rng(7), b=1.0)
    fit = loglog_slope(x, y, s, rng=np.random.default_rng(8))
    v = judge_exponent(fit, predicted=2.0, tol=0.2)
    assert v.status == "refuted" and "outside" in v.reason


def test_noisy_tiny_data_is_inconclusive():
    x, y, s = _power_law(np.random.default_rng(9), n_seeds=2, noise=0.8, b=1.0,
                         x=np.array([1.0, 2.0, 4.0]))
    v = judge_exponent(loglog_slope(x, y, s, rng=np.random.default_rng(10)), 1.0, tol=0.2)
    assert v.status == "inconclusive" and "wide" in v.reason


def test_verdict_flags_poor_r2_and_missing_ci():
    fit = FitResult(slope=2.0, intercept=0.0, ci_low=1.9, ci_high=2.1, r2=0.5,
                    n_points=10, n_seeds=3)
    assert "r²" in judge_exponent(fit, 2.0, 0.2).reason
    assert judge_exponent(fit, 2.0, 0.2).status == "inconclusive"
    flat = FitResult(0.01, 0.0, -0.05, 0.06, r2=0.01, n_points=10, n_seeds=3)
    assert judge_exponent(flat, 0.0, 0.1).status == "confirmed"  # r² says nothing when flat
    nan = FitResult(float("nan"), 0.0, float("nan"), float("nan"), float("nan"), 1, 1)
    assert judge_exponent(nan, 1.0, 0.1).status == "inconclusive"


def test_fit_terms_recovers_nonnegative_coefficients():
    rng = np.random.default_rng(11)
    x = np.tile(np.linspace(1.0, 20.0, 15), 6)
    seeds = np.repeat(np.arange(6), 15)
    y = (0.5 * x**2 + 3.0 * x) * np.exp(rng.normal(0.0, 0.03, x.size))
    tf = fit_terms({"x^2": x**2, "x": x}, y, seeds, rng=np.random.default_rng(12))
    assert tf.names == ["x^2", "x"] and tf.bootstrap == "seeds"
    for k, c in {"x^2": 0.5, "x": 3.0}.items():
        assert tf.ci_low[k] <= c <= tf.ci_high[k]
        assert tf.coef[k] == pytest.approx(c, rel=0.05)
    assert tf.rel_residual < 0.05
    # A term absent from the data gets coefficient ~0 and never a negative one.
    tf0 = fit_terms({"x^2": x**2, "x": x, "1": np.ones_like(x)}, y, seeds, n_boot=200)
    assert all(v >= 0 for v in tf0.coef.values()) and tf0.coef["1"] < 0.5


def test_linear_fit_and_rate_in_T():
    rng = np.random.default_rng(13)
    inv_s = np.tile(np.array([0.0, 0.1, 0.3, 0.5, 0.8]), 5)
    seeds = np.repeat(np.arange(5), 5)
    y = 0.02 + 4.0 * inv_s + rng.normal(0.0, 0.01, inv_s.size)
    lf = linear_fit(inv_s, y, seeds, rng=np.random.default_rng(14))
    assert lf.ci_low <= 4.0 <= lf.ci_high and lf.intercept_ci_low <= 0.02 <= lf.intercept_ci_high
    r = np.tile(np.arange(0, 500), 3)
    s = np.repeat(np.arange(3), 500)
    # The transient (first 10%) decays fast and would bias the slope if it were kept.
    v = 10.0 / np.maximum(r, 1) * np.exp(rng.normal(0, 0.02, r.size)) + 50 * np.exp(-r / 5)
    rt = rate_in_T(r, v, s, rng=np.random.default_rng(15))
    assert rt.ci_low <= -1.0 <= rt.ci_high and judge_exponent(rt, -1.0, 0.05).status == "confirmed"


def test_plateau_and_stationarity():
    t = np.arange(1000)
    curve = 0.37 + 5.0 * np.exp(-t / 50.0)
    assert plateau(curve) == pytest.approx(0.37, rel=0.01)
    noisy = curve * np.exp(np.random.default_rng(16).normal(0, 0.05, t.size))
    assert plateau(noisy) == pytest.approx(0.37, rel=0.01)
    assert is_stationary(curve) and is_stationary(noisy)
    assert not is_stationary(1.0 / (t + 1.0))          # still decreasing like 1/t
    assert not is_stationary(np.r_[curve, np.inf])     # diverged at the end
    assert np.isnan(plateau(np.full(5, np.nan)))


def test_floors_by_groups_config_and_seed():
    rows = []
    for e in (1, 3):
        for seed in (0, 1):
            for r in range(100):
                rows.append({"algorithm": "feddpo", "local_steps": e, "seed": seed, "round": r,
                             "subopt": 0.1 * e**2 + np.exp(-r / 5.0)})
    df = pd.DataFrame(rows).sample(frac=1.0, random_state=0)   # row order must not matter
    out = floors_by(df, "subopt", ["algorithm", "local_steps"])
    assert list(out.columns) == ["algorithm", "local_steps", "seed", "floor", "stationary",
                                 "n_rounds"]
    assert len(out) == 4 and out["stationary"].all()
    assert np.allclose(out["floor"], 0.1 * out["local_steps"] ** 2, rtol=1e-3)
    with pytest.raises(ValueError, match="duplicate rounds"):
        floors_by(df, "subopt", ["algorithm"])   # local_steps left out: runs would be mixed


def test_bound_validity_catches_single_violation():
    emp = np.array([1.0, 0.5, 0.25, 0.2, np.nan])
    bound = np.array([2.0, 1.0, 0.5, 0.1, 0.05])
    v = bound_validity(emp, bound)
    assert not v["valid"] and v["violations"] == 1 and v["first_violation"] == 3
    assert v["n_points"] == 4
    assert v["tightness"]["median"] == pytest.approx(2.0) and v["tightness"]["max"] == 2.0
    assert judge_bound(v).status == "refuted"
    ok = bound_validity(emp[:3], bound[:3])
    assert ok["valid"] and ok["first_violation"] is None and judge_bound(ok).status == "confirmed"
    # Exactly on the bound up to rounding is not a violation.
    assert bound_validity([1.0 + 1e-12], [1.0])["valid"]
    assert judge_bound(bound_validity([np.nan], [1.0])).status == "inconclusive"


def test_judge_ordering_and_identical():
    gaps = {"complete": 1.0, "exponential": 0.5, "torus": 0.2, "ring": 0.05, "path": 0.01}
    order = ["complete", "exponential", "torus", "ring", "path"]
    assert judge_ordering(gaps, order).status == "confirmed"
    v = judge_ordering({**gaps, "ring": 0.3}, order)
    assert v.status == "refuted" and "torus" in v.reason
    assert judge_ordering({**gaps, "ring": 0.199}, order, rtol=0.05).status == "inconclusive"
    assert judge_ordering({k: gaps[k] for k in order[:-1]}, order).status == "inconclusive"
    assert judge_ordering(gaps, order[::-1], descending=False).status == "confirmed"
    assert judge_identical(1e-14, 1e-12).status == "confirmed"
    assert judge_identical(1e-3, 1e-12).status == "refuted"
    assert judge_identical(float("nan"), 1e-12).status == "inconclusive"


def test_seed_bootstrap_ci_keeps_coverage_with_three_seeds():
    # The plain percentile bootstrap over 3 seeds covers ~76%; the small-sample expansion ~95%.
    hits = 0
    for i in range(100):
        x, y, s = _power_law(np.random.default_rng(i), n_seeds=3, noise=0.2,
                             x=np.geomspace(1, 100, 6))
        f = loglog_slope(x, y, s, n_boot=200, rng=np.random.default_rng(i))
        hits += f.ci_low <= -2.0 <= f.ci_high
    assert hits >= 88
