"""Every verdict can fail: each claim's negative controls are refuted by the claim's own check
(same budget, quick sizes), and its ×2 coefficient is refuted wherever a coefficient is exact."""

import pytest

from theory_lab.claims import REGISTRY, Context

CLAIMS = ["full-participation", "drift-floor", "participation-floor", "noise-floor", "scaffold-no-drift", "dpo-eta-beta2-invariance",
          "consensus-heterogeneity", "consensus-noise", "gt-no-heterogeneity", "topology-order",
          "consensus-spectral", "decdpo-bias", "rate-in-T", "smoothness-horizon",
          "lora-agg-init", "lora-agg-generic", "lora-agg-exact-rules", "server-momentum-floor",
          "server-momentum-drift"]


@pytest.mark.parametrize("cid", CLAIMS)
def test_every_control_is_refuted_by_the_claims_own_check(cid):
    c = REGISTRY[cid]
    assert c.controls, f"{cid} declares no negative control"
    out = c.run(Context(quick=True, seeds=3))
    for k in c.controls:
        got = out.controls.get(k.name)
        assert got is not None, f"{cid}: control {k.name} not run"
        assert got.verdict.status == "refuted", f"{cid}: control {k.name}: {got.verdict.reason}"
    if c.band is not None:
        assert out.coefficient_verdict.status == "confirmed", out.coefficient_verdict.reason
        assert out.controls["coefficient ×2"].verdict.status == "refuted"
    if c.small is not None:
        assert out.small is not None and out.small <= c.small.limit, (cid, out.small)


def test_participation_rival_law_is_refuted_in_quick_mode():
    """ζ²/S without the finite-population correction: the same slope-1 check refutes it (issue 13)."""
    out = REGISTRY["participation-floor"].run(Context(quick=True, seeds=3))
    assert out.prediction.status == "confirmed"
    assert out.controls["rival ζ²/S"].verdict.status == "refuted"


def test_smoothness_horizon_is_met_at_the_start_and_linear_in_H():
    """The largest curvature along every run is the one at θ_ref (round 0), and its growth in H is
    linear (the martingale argument), far below the bound's H²."""
    out = REGISTRY["smoothness-horizon"].run(Context(quick=True, seeds=3))
    runs = out.details["met_at_the_start"].split(" of ")
    assert runs[0] == runs[1].split()[0]
    assert out.verdict.status == "confirmed" and abs(out.fitted - 1) < 0.15
