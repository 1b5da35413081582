"""The staleness claims at their quick sizes: the exact random-delay model is confirmed under both
server rules, and every declared control (Jiang'26's linear law, the replaced mean-delay law,
×2) is refuted by the same check."""

import pytest

from theory_lab.claims.base import REGISTRY, Context


@pytest.mark.parametrize("claim_id", ["staleness-exact-model-average", "staleness-exact-delta"])
def test_exact_staleness_claim_and_its_controls(claim_id):
    c = REGISTRY[claim_id]
    out = c.run(Context(quick=True, seeds=3))
    assert {k.name for k in c.controls} == set(out.controls)
    assert all(ctl.verdict.status == "refuted" for ctl in out.controls.values()), out.controls
    assert out.small <= c.small.limit
    assert out.verdict.status == "confirmed", out.verdict.reason
