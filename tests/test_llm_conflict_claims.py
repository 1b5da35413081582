"""The conflict-knob claims (issue 18, item 3): their judge can confirm and can fail, a claim is
never confirmed while a control stands, and on the tiny model (which cannot learn IMDb) the
claims run end to end, share their runs and report statistic, CI, controls, verdict and reason."""

import json
from pathlib import Path

import numpy as np
import pytest

from analysis.verdict import STATUSES
from theory_lab.claims import REGISTRY, Context
from theory_lab.claims import llm_conflict
from theory_lab.claims.llm_conflict import SETTING, _judge
from theory_lab.cli import main
from theory_lab.verify import select

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PERSONAL = {"llm-conflict-personalization": "fedpdpo", "llm-conflict-local-dpo": "local-dpo",
            "llm-conflict-fedsa": "fedsa"}   # each personalised method's claim
IDS = ["llm-conflict-fedavg", *PERSONAL]
N = 48   # held-out pairs per client in the fake runs


def test_claims_are_opt_in_llm_claims_with_controls():
    assert not set(IDS) & set(select(None)) and set(IDS) <= set(select(None, "llm"))
    for cid in IDS:
        c = REGISTRY[cid]
        assert c.track == "llm" and c.controls and c.tolerance == SETTING["delta"]


def test_judge_confirms_refutes_and_leaves_unresolved():
    d = 0.25
    assert _judge(0.5, (0.3, 0.7), d, "x").status == "confirmed"
    assert _judge(0.0, (-0.2, 0.2), d, "x").status == "refuted"          # excludes an effect of δ
    assert _judge(0.1, (0.02, 0.18), d, "x").status == "refuted"         # real but smaller than δ
    assert _judge(0.3, (-0.1, 0.7), d, "x").status == "inconclusive"     # does not exclude 0
    assert _judge(0.2, (0.05, 0.4), d, "x").status == "inconclusive"     # excludes 0 below δ


def counts(acc):
    return np.rint(np.asarray(acc) * N).astype(int)


def fake(acc, c, ref=(0.5, 0.5, 0.5, 0.5)):
    """A run's summary: accuracy per client (4 clients, clients 1 and 3 opposed)."""
    return {"n": np.full(4, N), "correct": counts(acc), "ref_correct": counts(ref),
            "opposed": [1, 3] if c else None, "train_loss": 0.5}


def outcome(monkeypatch, cid, runs):
    monkeypatch.setattr(llm_conflict, "_runs", lambda ctx, wanted: {w: runs[w] for w in wanted})
    return REGISTRY[cid].run(Context(llm_model="tiny"))


def test_fedavg_claim_confirms_only_when_its_control_is_refuted(monkeypatch):
    runs = {("feddpo", s, 0.0): fake([0.875] * 4, 0.0) for s in SETTING["seeds"]}
    runs |= {("feddpo", s, 1.0): fake([0.75, 0.375, 0.75, 0.375], 1.0) for s in SETTING["seeds"]}
    out = outcome(monkeypatch, "llm-conflict-fedavg", runs)
    assert out.verdict.status == "confirmed" and out.ci[0] <= out.fitted <= out.ci[1]
    assert abs(out.fitted - 0.5) < 1e-9
    # a reference model that prefers the c = 0 labels strongly: its drop stands, nothing is confirmed
    biased = {k: {**v, "ref_correct": counts([0.95] * 4 if k[2] == 0 else [0.05] * 4)} for k, v in runs.items()}
    out = outcome(monkeypatch, "llm-conflict-fedavg", biased)
    assert out.prediction.status == "confirmed" and out.verdict.status == "inconclusive"
    assert "does not discriminate" in out.verdict.reason
    # no drop at all: refuted
    flat = {k: fake([0.875] * 4, k[2]) for k in runs}
    assert outcome(monkeypatch, "llm-conflict-fedavg", flat).verdict.status == "refuted"


@pytest.mark.parametrize("cid", PERSONAL)
def test_personalization_claim_needs_its_null_method_refuted(cid, monkeypatch):
    method = PERSONAL[cid]
    feddpo = {0.0: fake([0.875] * 4, 0.0), 1.0: fake([0.75, 0.375, 0.75, 0.375], 1.0)}
    seeds = SETTING["seeds"] + SETTING["control_seeds"]
    runs = {("feddpo", s, c): feddpo[c] for s in seeds for c in (0.0, 1.0)}
    runs |= {(method, s, c): fake([0.875] * 4, c) for s in SETTING["seeds"] for c in (0.0, 1.0)}
    out = outcome(monkeypatch, cid, runs)
    assert out.verdict.status == "confirmed" and abs(out.fitted - 0.5) < 1e-9
    assert out.controls["FedDPO, other seeds"].verdict.status == "refuted"
    # the method losing the opposed clients as FedDPO does: no growth, refuted
    flat = {**runs, **{(method, s, 1.0): feddpo[1.0] for s in SETTING["seeds"]}}
    assert outcome(monkeypatch, cid, flat).verdict.status == "refuted"
    # FedDPO's control seeds keeping the opposed clients too: the control is not refuted
    for s in SETTING["control_seeds"]:
        runs[("feddpo", s, 1.0)] = fake([0.75, 0.875, 0.75, 0.875], 1.0)
    out = outcome(monkeypatch, cid, runs)
    assert out.prediction.status == "confirmed" and out.verdict.status == "inconclusive"


def test_a_run_is_read_with_the_model_each_client_uses():
    """FedSA's clients predict with their own B (personal_pref_acc_client*), the others with
    the model evaluate() scores (eval_pref_acc_client*)."""
    import pandas as pd

    shared = {"round": [8], "train_loss": [0.5], **{f"eval_pref_acc_client{i}": [0.5] for i in range(4)}}
    manifest = {"reference_pref_acc": {"per_client": [0.25] * 4}, "opposed_clients": [1, 3]}
    plain = llm_conflict._summary(pd.DataFrame(shared), manifest, [4] * 4)
    own = llm_conflict._summary(pd.DataFrame({**shared, **{f"personal_pref_acc_client{i}": [0.75] for i in range(4)}}),
                                manifest, [4] * 4)
    assert plain["correct"].tolist() == [2] * 4 and own["correct"].tolist() == [3] * 4
    assert own["ref_correct"].tolist() == [1] * 4 and own["opposed"] == [1, 3]


def test_the_claims_runs_are_the_points_of_the_methods_table():
    """`verify --runs runs/conflict_table` reads the claims' runs from a sweep of
    configs/conflict/imdb_table.toml: every (method, seed, c) a claim needs is one of its points,
    as the trajectory its config decides."""
    import tomllib

    from theory_lab.config import apply_override

    path = Path(__file__).resolve().parents[1] / "configs" / "conflict" / "imdb_table.toml"
    table = tomllib.loads(path.read_text())
    points = set()
    for variant in table.pop("sweep")["variants"]:
        data = json.loads(json.dumps(table))
        for key, value in variant.items():
            apply_override(data, key.split("."), value)
        points.add(llm_conflict._trajectory_key(data))
    ctx = Context()
    for method in ("feddpo", *PERSONAL.values()):
        for seed in SETTING["seeds"] + (SETTING["control_seeds"] if method == "feddpo" else ()):
            for c in SETTING["conflicts"]:
                assert llm_conflict._trajectory_key(llm_conflict._config(ctx, method, seed, c)) in points, (method, seed, c)


@pytest.mark.skipif(not DATA.is_dir(), reason="shared data not found")
def test_claims_run_on_the_tiny_model_and_share_their_runs(tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    monkeypatch.setattr(llm_conflict, "_RUNS", {})
    ctx = Context(llm_model="tiny", data_dir=str(DATA))
    REGISTRY["llm-conflict-fedavg"].run(ctx)
    assert ctx.runs == 6                        # FedDPO, three seeds, c ∈ {0, 1}
    REGISTRY["llm-conflict-personalization"].run(ctx)
    assert ctx.runs == 18                       # FedPDPO's six runs and the control's six are new
    REGISTRY["llm-conflict-fedsa"].run(ctx)
    assert ctx.runs == 24                       # only FedSA's six are new
    assert main(["verify", "--claims", ",".join(IDS), "--llm-model", "tiny", "--data-dir", str(DATA),
                 "--out", str(tmp_path)]) == 0
    assert len(llm_conflict._RUNS) == 30        # local DPO's six runs; the rest served from the cache
    rows = {r["claim"]: r for r in json.loads((tmp_path / "report.json").read_text())["claims"]}
    for cid in IDS:
        r = rows[cid]
        assert r["ci_low"] <= r["value"] <= r["ci_high"] and r["reason"] and r["verdict"] in STATUSES
        assert r["details"]["sizes run"]["heldout"] == llm_conflict.TINY["heldout"]
        assert r["command"] == f"theory-lab verify --claims {cid} --llm-model tiny --data-dir {DATA}"  # no --llm-lr
        controls = r["controls"]
        assert controls and all(k["fitted"] and k["verdict"] in STATUSES for k in controls)
        if any(k["verdict"] != "refuted" for k in controls):
            assert r["verdict"] != "confirmed"


@pytest.mark.skipif(not DATA.is_dir(), reason="shared data not found")
def test_claims_read_finished_runs_from_a_sweep_folder(tmp_path, monkeypatch):
    """`verify --runs DIR`: runs whose config decides the same trajectory (here: other variant
    labels, another log cadence, the data directory left to its default) are read, not rerun; an
    unfinished point is run. FedSA's runs are read at each client's own B, as when run directly
    (the other methods' points: test_the_claims_runs_are_the_points_of_the_methods_table)."""
    pytest.importorskip("transformers")
    from theory_lab.sweep import run_sweep

    ctx = Context(llm_model="tiny", data_dir=str(DATA))
    monkeypatch.setattr(llm_conflict, "_RUNS", {})
    ids = ["llm-conflict-fedavg", "llm-conflict-fedsa"]
    direct = {cid: REGISTRY[cid].run(ctx) for cid in ids}
    p = SETTING
    wanted = [(m, s, c) for m, seeds in (("feddpo", p["seeds"] + p["control_seeds"]), ("fedsa", p["seeds"]))
              for s in seeds for c in p["conflicts"]]
    data = llm_conflict._config(ctx, "feddpo", 0, 0.0)
    del data["llm"]["data_dir"]
    data["run"]["log_every"] = 1
    data["sweep"] = {"variants": [{"run.seed": s, "llm.conflict": c, **llm_conflict.METHODS[m],
                                   "llm.personal.variant": f"{m} as labelled in a table"} for m, s, c in wanted]}
    run_sweep(data, progress=False, out_dir=tmp_path / "sweep")
    (tmp_path / "sweep" / "points" / "000" / "results.csv").unlink()   # as if interrupted there

    monkeypatch.setattr(llm_conflict, "_RUNS", {})
    ctx = Context(llm_model="tiny", data_dir=str(DATA), runs_dir=str(tmp_path / "sweep"))
    for cid in ids:
        out = REGISTRY[cid].run(ctx)
        assert (out.fitted, out.ci, out.verdict.status) == (direct[cid].fitted, direct[cid].ci, direct[cid].verdict.status)
    assert ctx.runs == 1   # only the unfinished point
    assert main(["verify", "--claims", IDS[0], "--llm-model", "tiny", "--runs", str(tmp_path / "nowhere"),
                 "--out", str(tmp_path / "v")]) == 2
