"""Verdicts that can fail: negative controls, coefficient verdicts, the regime limit, and the
rule that combines them (analysis.verdict.decide, Claim.run)."""

import numpy as np
import pytest

from analysis import Verdict, decide, judge_ratio, ratio_fit
from theory_lab.claims.base import REGISTRY, Claim, Context, Control, Outcome, Small, claim

OK = Verdict("confirmed", "ok")
REFUTED = Verdict("refuted", "no")


def _ratios(rng, true=1.0, n_seeds=8, noise=0.05):
    pred = np.tile(np.geomspace(1e-4, 1e-1, 5), n_seeds)
    obs = true * pred * np.exp(rng.normal(0, noise, pred.size))
    return obs, pred, np.repeat(np.arange(n_seeds), 5)


def test_ratio_fit_covers_the_true_coefficient_and_x2_is_refuted():
    obs, pred, seeds = _ratios(np.random.default_rng(0), true=1.05)
    fit = ratio_fit(obs, pred, seeds)
    assert fit.bootstrap == "seeds" and fit.ci_low < 1.05 < fit.ci_high
    assert judge_ratio(fit, (0.8, 1.25)).status == "confirmed"
    assert judge_ratio(fit.scaled(2.0), (0.8, 1.25)).status == "refuted"
    assert fit.scaled(2.0).ratio == pytest.approx(fit.ratio / 2)


def test_noisy_ratio_cannot_confirm():
    """A CI wider than the band is never confirmed, however well centred (LLM rule, item 6)."""
    obs, pred, seeds = _ratios(np.random.default_rng(1), true=1.0, n_seeds=3, noise=0.6)
    fit = ratio_fit(obs, pred, seeds)
    assert fit.ci_high / fit.ci_low > 1.25 / 0.8
    assert judge_ratio(fit, (0.8, 1.25)).status == "inconclusive"


def test_decide_needs_every_control_refuted_and_the_regime():
    assert decide(OK, controls={"a": REFUTED}).status == "confirmed"
    weak = decide(OK, controls={"a": REFUTED, "b": OK})
    assert weak.status == "inconclusive" and "does not discriminate" in weak.reason and "b" in weak.reason
    assert "not run" in decide(OK, missing=["c"]).reason
    assert decide(OK, coefficient=REFUTED).status == "refuted"
    assert decide(REFUTED, controls={"a": REFUTED}).status == "refuted"
    assert decide(OK, coefficient=Verdict("inconclusive", "wide")).status == "inconclusive"
    out = decide(OK, controls={"a": REFUTED}, small=("ηEL", 0.5, 0.3))
    assert out.status == "outside regime" and "0.5" in out.reason
    assert decide(OK, controls={"a": REFUTED}, small=("ηEL", 0.1, 0.3)).status == "confirmed"
    alone = decide(OK)
    assert alone.status == "inconclusive" and "no negative control" in alone.reason


@pytest.fixture
def toy_claim():
    """A claim whose check reports a prediction, a coefficient and one algorithm control."""

    @claim("toy", statement="s", source="test", metric="m", regime="η = {eta}", params={"eta": 0.5},
           predicted="p", tolerance=0.1, band=(0.8, 1.25), small=Small("ηL", 0.3),
           controls=[Control("other", "algorithm", "has the effect")])
    def check(ctx: Context, c: Claim) -> Outcome:
        obs, pred, seeds = _ratios(np.random.default_rng(2))
        out = Outcome(0.0, (0.0, 0.0), OK, small=c.params["eta"] * 0.4)
        out.coefficient_check(c, obs, pred, seeds)
        return out.control("other", "slope 1.0", Verdict("refuted", "far off"))

    yield REGISTRY["toy"]
    REGISTRY.pop("toy")


def test_claim_run_applies_the_rule(toy_claim):
    assert toy_claim.regime == "η = 0.5"
    assert [k.name for k in toy_claim.controls] == ["other", "coefficient ×2"]
    out = toy_claim.run(Context())
    assert out.prediction.status == "confirmed" and out.coefficient_verdict.status == "confirmed"
    assert out.controls["coefficient ×2"].verdict.status == "refuted"
    assert out.verdict.status == "confirmed", out.verdict.reason


def test_unreported_control_makes_the_claim_inconclusive(toy_claim):
    original = toy_claim.check
    object.__setattr__(toy_claim, "check", lambda ctx, c: Outcome(0.0, (0.0, 0.0), OK, small=0.1))
    try:
        out = toy_claim.run(Context())
    finally:
        object.__setattr__(toy_claim, "check", original)
    assert out.verdict.status == "inconclusive" and "control other not run" in out.verdict.reason


def test_bad_control_kind_is_rejected():
    with pytest.raises(ValueError):
        Control("x", "vibes", "no")


def test_x2_control_equals_a_fit_against_twice_the_prediction():
    obs, pred, seeds = _ratios(np.random.default_rng(3))
    direct, scaled = ratio_fit(obs, 2 * pred, seeds), ratio_fit(obs, pred, seeds).scaled(2.0)
    for a, b in ((direct.ratio, scaled.ratio), (direct.ci_low, scaled.ci_low), (direct.ci_high, scaled.ci_high)):
        assert a == pytest.approx(b, rel=1e-12)


def test_exact_ratios_are_judged_on_their_range():
    """Deterministic ratios: the interval is [min, max], so one ratio off the band stops a confirmation."""
    fit = ratio_fit([1.0, 1.1, 1.3], [1.0, 1.0, 1.0], exact=True)
    assert (fit.ci_low, fit.ci_high, fit.bootstrap) == (pytest.approx(1.0), pytest.approx(1.3), "exact")
    assert judge_ratio(fit, (0.8, 1.25)).status == "inconclusive"
    assert judge_ratio(ratio_fit([1.0, 1.1], [1.0, 1.0], exact=True), (0.8, 1.25)).status == "confirmed"


def test_llm_ratio_with_a_wide_interval_cannot_confirm():
    """Item 6: an LLM claim confirms only when every interval lies inside the band."""
    from theory_lab.claims.llm import _ci_verdict

    assert _ci_verdict([1.0], [0.95], [1.05], "r").status == "confirmed"
    assert _ci_verdict([1.0], [0.6], [1.4], "r").status == "inconclusive"
    assert _ci_verdict([2.0], [1.6], [2.4], "r").status == "refuted"
