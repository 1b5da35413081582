"""The claim registry and `theory-lab verify`: reports are written, and a wrong prediction is
refuted (the verification can fail)."""

import json
from pathlib import Path

import pytest

from analysis import judge_exponent
from theory_lab.claims import REGISTRY, Context
from theory_lab.claims.base import Outcome, claim
from theory_lab.claims.federated import base, slope_claim
from theory_lab.cli import main


@pytest.fixture
def wrong_claim():
    """The noise floor with a deliberately wrong prediction: slope -2 in n (it is -1)."""

    @claim("wrong-noise-floor", statement="the noise floor falls like 1/n² (deliberately wrong)",
           source="test", metric="subopt floor", regime="as noise-floor", predicted="slope −2 in n",
           tolerance=0.25)
    def check(ctx: Context) -> Outcome:
        ns = (2, 8, 32)
        cfg = base(200, batch_size=1, lr=0.5)
        cfg["problem"].update(heterogeneity=0.0, dirichlet_alpha=0.0)
        res = ctx.sweep(cfg, [{"problem.n_clients": n} for n in ns])
        fit, _, _ = slope_claim(ctx, "wrong", "n", dict(enumerate(ns)), res, "subopt", -2.0, 0.25, tail=0.6)
        return Outcome.from_fit(fit, judge_exponent(fit, -2.0, 0.25), -2.0)

    yield "wrong-noise-floor"
    REGISTRY.pop("wrong-noise-floor")


def test_wrong_prediction_is_refuted_and_strict_fails(wrong_claim, tmp_path, capsys):
    code = main(["verify", "--claims", wrong_claim, "--out", str(tmp_path), "--strict"])
    assert code == 1
    report = json.loads((tmp_path / "report.json").read_text())
    (row,) = report["claims"]
    assert row["verdict"] == "refuted"
    assert -1.4 < row["value"] < -0.7  # the data say -1
    assert "strict" in capsys.readouterr().err


def test_verify_writes_report_table_and_figure(tmp_path, capsys):
    assert main(["verify", "--quick", "--claims", "full-participation,noise-floor", "--out", str(tmp_path)]) == 0
    md = (tmp_path / "report.md").read_text()
    assert "| full-participation |" in md and "## noise-floor" in md and "theory-lab verify --claims noise-floor" in md
    rows = {r["claim"]: r for r in json.loads((tmp_path / "report.json").read_text())["claims"]}
    assert rows["full-participation"]["verdict"] == "confirmed"
    assert (tmp_path / "figures" / "noise-floor.png").stat().st_size > 1000
    assert "| noise-floor |" in capsys.readouterr().out


def test_every_claim_is_declared_with_its_metadata():
    required = {"drift-floor", "participation-floor", "noise-floor", "full-participation",
                "scaffold-no-drift", "staleness-model-average", "staleness-delta"}
    assert required <= set(REGISTRY)
    for c in REGISTRY.values():
        assert c.source and c.regime and c.predicted and c.metric and c.tolerance > 0


def test_unknown_claim_is_one_line(capsys):
    assert main(["verify", "--claims", "nope"]) == 2
    assert "--claims" in capsys.readouterr().err


DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data is not beside the checkout")
def test_llm_claims_run_on_a_tiny_model_and_are_opt_in(tmp_path):
    """The LLM-track claims run end to end on the tiny random Llama (the real verdicts come from
    SmolLM2: docs/verification). At E = 1 the drift prediction is exact, so its ratio is 1."""
    from theory_lab.verify import select

    assert not {"llm-drift", "llm-consensus"} & set(select(None))          # opt-in
    ids = ["llm-drift", "llm-participation", "llm-consensus", "llm-staleness", "llm-lora-agg"]
    assert set(ids) <= set(select(None, "llm"))
    assert main(["verify", "--quick", "--claims", ",".join(ids), "--llm-model", "tiny", "--llm-lr", "0.05",
                 "--data-dir", str(DATA), "--out", str(tmp_path)]) == 0
    rows = {r["claim"]: r for r in json.loads((tmp_path / "report.json").read_text())["claims"]}
    assert set(rows) == set(ids)
    drift = rows["llm-drift"]["details"]["observed/predicted per E"]
    assert abs(drift["1"] - 1.0) < 1e-3, drift
    lora = rows["llm-lora-agg"]                      # the η² law of factor averaging, its rival order refuted
    assert {k["name"]: k["verdict"] for k in lora["controls"]}["rival order"] == "refuted"
    for r in rows.values():
        assert r["verdict"] in ("confirmed", "refuted", "inconclusive")
        assert r["command"] == f"theory-lab verify --claims {r['claim']} --llm-model tiny --llm-lr 0.05 --data-dir {DATA}"


def test_an_llm_claim_declares_the_step_size_option_exactly_when_its_module_reads_it():
    """The report's reproduce command sets --llm-lr only for the claims that read it (the conflict
    claims train with their own AdamW step), so each claim's `reads` must match its code."""
    import inspect

    from theory_lab.claims import REGISTRY

    llm = [c for c in REGISTRY.values() if c.track == "llm"]
    assert any("llm_lr" in c.reads for c in llm) and any("llm_lr" not in c.reads for c in llm)
    for c in llm:
        assert ("llm_lr" in c.reads) == ("ctx.llm_lr" in inspect.getsource(inspect.getmodule(c.check))), c.id


def test_report_carries_coefficient_controls_and_small_parameter(tmp_path):
    """Acceptance of issue 13: per claim, coefficient obs/pred [CI] with its band, each control with
    its outcome, the small parameter with its limit, the verdict and its reason."""
    assert main(["verify", "--quick", "--claims", "participation-floor", "--out", str(tmp_path)]) == 0
    (row,) = json.loads((tmp_path / "report.json").read_text())["claims"]
    coef = row["coefficient"]
    assert coef["band"] == [0.8, 1.25] and coef["ci_low"] <= coef["ratio"] <= coef["ci_high"]
    controls = {k["name"]: k for k in row["controls"]}
    assert set(controls) == {"rival ζ²/S", "coefficient ×2"}
    assert all(k["verdict"] == "refuted" and k["fitted"] for k in controls.values())
    assert row["small"]["name"] == "ηL_max" and row["small"]["value"] <= row["small"]["limit"]
    assert row["prediction_verdict"] == "confirmed" and row["verdict"] == "confirmed"
    md = (tmp_path / "report.md").read_text()
    assert "- control rival ζ²/S (rival law" in md and "- coefficient observed/predicted:" in md
    assert "- small parameter ηL_max:" in md and "| 2/2 |" in md


@pytest.fixture
def outside_claim():
    """A claim whose measured small parameter exceeds its declared limit."""
    from analysis import Verdict
    from theory_lab.claims.base import Small

    @claim("outside-toy", statement="toy", source="test", metric="m", regime="r", predicted="p",
           tolerance=0.1, small=Small("ηL", 0.3))
    def check(ctx: Context) -> Outcome:
        return Outcome(1.0, (1.0, 1.0), Verdict("confirmed", "fits"), small=0.6)

    yield "outside-toy"
    REGISTRY.pop("outside-toy")


def test_outside_regime_is_reported_never_confirmed(outside_claim, tmp_path):
    assert main(["verify", "--claims", outside_claim, "--out", str(tmp_path)]) == 0
    (row,) = json.loads((tmp_path / "report.json").read_text())["claims"]
    assert row["verdict"] == "outside regime" and "ηL = 0.6" in row["reason"]
    assert "1 outside regime" in (tmp_path / "report.md").read_text()
