"""Estimated constants and predictions (theory_lab/estimate.py, theory_lab/predict.py): the
estimators agree with the synthetic problem's exact constants within their stated uncertainty, and
the predicted floors and rankings match short runs of the algorithms."""

import argparse
import json

import numpy as np
import pytest
import torch

from analysis import floors_by
from theory_lab.config import build_config
from theory_lab.errors import ConfigError
from theory_lab.estimate import estimate_constants, exact_values, heterogeneity
from theory_lab.predict import add_parsers, compare, parse_candidates, predict
from theory_lab.results import write_results
from theory_lab.runner import make_oracle, run
from theory_lab.sweep import run_sweep

PROBLEM = {"n_clients": 8, "pairs_per_client": 40, "heldout_pairs": 10, "dim": 5, "n_contexts": 8,
           "heterogeneity": 2.0, "dirichlet_alpha": 0.3, "l2": 0.05}


def config(rounds=300, seeds=(0, 1, 2), **algorithm):
    return {"run": {"seeds": list(seeds), "rounds": rounds, "log_every": 1}, "problem": dict(PROBLEM),
            "algorithm": {"name": "feddpo", "batch_size": 0, "lr": 0.5, **algorithm}}


def parser():
    p = argparse.ArgumentParser(prog="theory-lab")
    add_parsers(p.add_subparsers(dest="command", required=True))
    return p


# ----------------------------------------------------------------------------- estimates

def test_estimates_agree_with_exact_constants_within_their_uncertainty():
    oracle = make_oracle(build_config(config()))
    # the generic path: finite-difference Hessian products, optimum found by descent, f* unknown
    est = estimate_constants(oracle, batch_size=4, draws=64, use_exact_optimum=False)
    exact = exact_values(oracle)
    for name in ("L", "mu", "sigma2", "zeta2", "F0"):
        e, x = est.get(name), exact[name]
        assert np.all(np.isfinite(e.stderr)) and np.all(e.stderr >= 0), name
        assert np.all(np.abs(e.value - x) <= 3 * e.stderr + 1e-6 * np.abs(x)), (name, e.value, e.stderr, x)
    assert np.all(est.sigma2.stderr < 0.1 * est.sigma2.value)       # the test has teeth
    assert est.meta["hessian"].startswith("central differences")
    # at theta* itself, zeta2 is sum_i w_i ||grad f_i||^2 (grad f = 0) exactly
    z = heterogeneity(oracle, oracle.constants.theta_star)
    torch.testing.assert_close(z, oracle.constants.zeta2, rtol=1e-10, atol=1e-14)


# ----------------------------------------------------------------------------- predictions vs runs

@pytest.fixture(scope="module")
def local_steps_runs(tmp_path_factory):
    """FedDPO, exact gradients, E in {1, 3, 6}: run once, predict once."""
    data = {**config(), "sweep": {"variants": [{"algorithm.local_steps": E} for E in (1, 3, 6)]}}
    out = tmp_path_factory.mktemp("local_steps")
    res = run_sweep(data, progress=False)
    write_results(out, res.table, res.manifest)
    return data, res, out


def test_predicted_floors_and_ranking_match_runs_in_local_steps(local_steps_runs):
    data, res, out = local_steps_runs
    floors = floors_by(res.table, "subopt", ["local_steps"], tail=0.25).groupby("local_steps")["floor"].mean()
    eps = 4.0 * floors.max()                                          # above every floor
    pred = predict(data, eps=eps).set_index("E")
    # rounds to eps: more local steps per round reach eps in fewer rounds (E=6, 3, 1) ...
    assert list(pred.sort_values("rank").index) == [6, 3, 1]
    curve = res.table.groupby(["local_steps", "round"])["subopt"].mean()
    observed = {E: int(curve[E][curve[E] <= eps].index[0]) for E in (1, 3, 6)}
    assert sorted(observed, key=observed.get) == [6, 3, 1]
    # ... and the floors order the other way, each within 2x of the run's floor
    assert pred.loc[1, "floor"] == 0 and floors[1] < 1e-5 * floors[3]
    assert floors[1] < floors[3] < floors[6] and pred.loc[3, "floor"] < pred.loc[6, "floor"]
    for E in (3, 6):
        assert 0.5 <= floors[E] / pred.loc[E, "floor"] <= 2.0, (E, floors[E], pred.loc[E, "floor"])
    # the same floors from estimated constants (finite-difference Hessians, no theta*)
    est = predict(data, eps=eps, source="estimated", draws=8).set_index("E")
    np.testing.assert_allclose(est.loc[[3, 6], "floor"], pred.loc[[3, 6], "floor"], rtol=1e-4)
    assert list(est.sort_values("rank").index) == [6, 3, 1]
    assert (pred["bytes_per_round"] == 2 * 8 * 5 * 8).all()          # 2 S P itemsize


def test_compare_places_runs_against_predictions(local_steps_runs):
    _, _, out = local_steps_runs
    cmp = compare(out).set_index("E")
    # E=1 has no floor: the run is still descending geometrically (not stationary) towards 0
    assert cmp.loc[1, "floor_predicted"] == 0 and not cmp.loc[1, "stationary"]
    assert cmp.loc[[3, 6], "floor_ratio"].between(0.5, 2.0).all()
    assert cmp["rounds_ratio"].between(0.4, 1.5).all()


def test_participation_floor_and_ranking_match_runs():
    data = config(rounds=400, seeds=range(8))
    Ss = (2, 4, 8)
    pred = predict(data, candidates=[{"algorithm.participation": S} for S in Ss]).set_index("S")
    observed = {}
    for S in Ss:
        cfg = build_config(data, [f"algorithm.participation={S}"])
        t = run(cfg, progress=False).table
        observed[S] = floors_by(t, "subopt", ["participation"], tail=0.5)["floor"].mean()
    assert sorted(Ss, key=lambda S: pred.loc[S, "floor"]) == sorted(Ss, key=observed.get) == [8, 4, 2]
    for S in (2, 4):
        assert 0.5 <= observed[S] / pred.loc[S, "floor"] <= 2.0, (S, observed[S], pred.loc[S, "floor"])


def test_decdpo_consensus_drift_floor_matches_a_run():
    """DecDPO's fixed-point bias (docs/theory.md), leading order in eta: small eta, from theta*."""
    data = config(rounds=2000, seeds=(0, 1), name="decdpo", lr=0.05)
    data["problem"]["init"] = "optimum"
    data["run"]["log_every"] = 10
    data["topology"] = {"name": "ring"}
    pred = predict(data)
    t = run(build_config(data), progress=False).table
    observed = floors_by(t, "subopt", ["algorithm"], tail=0.2)["floor"].mean()
    assert 0.75 <= observed / pred.loc[0, "floor"] <= 1.1


# ----------------------------------------------------------------------------- CLI

TOML = """
[run]
seeds = [0, 1]
rounds = 200
log_every = 2
[problem]
n_clients = 6
pairs_per_client = 30
heldout_pairs = 10
dim = 4
n_contexts = 6
heterogeneity = 2.0
dirichlet_alpha = 0.3
l2 = 0.05
[algorithm]
name = "feddpo"
lr = 0.5
batch_size = 0
"""


def test_cli_constants_and_predict(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(TOML)
    p = parser()
    out = tmp_path / "constants.json"
    args = p.parse_args(["constants", "--config", str(cfg), "--batch-size", "2", "--draws", "16", "--out", str(out)])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "sigma2" in text and "exact" in text and "ratio" in text
    saved = json.loads(out.read_text())
    assert saved["comparison"]["L"]["ratio"][0] == pytest.approx(1.0, rel=1e-6)
    assert len(saved["estimates"]["zeta2"]["value"]) == 2

    pred_out = tmp_path / "pred.json"
    args = p.parse_args(["predict", "--config", str(cfg), "--candidates", "algorithm.local_steps=1,3",
                         "--candidates", "algorithm.name=feddpo,scaffold", "--json", "--out", str(pred_out)])
    assert args.func(args) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 4 and [r["rank"] for r in rows] == [1, 2, 3, 4]
    assert json.loads(pred_out.read_text())["rows"] == rows
    by = {(r["algorithm"], r["E"]): r for r in rows}
    assert by[("scaffold", 3)]["floor"] == 0 < by[("feddpo", 3)]["floor"]   # SCAFFOLD: no drift
    assert by[("scaffold", 3)]["bytes_per_round"] == 2 * by[("feddpo", 3)]["bytes_per_round"]

    res = tmp_path / "res"
    r = run(build_config({**__import__("tomllib").loads(TOML)}, ["algorithm.local_steps=3"]), progress=False)
    write_results(res, r.table, r.manifest)
    args = p.parse_args(["predict", "--results", str(res)])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "floor_ratio" in text and "rounds_ratio" in text


def test_bad_candidates_are_one_clear_config_error(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(TOML)
    p = parser()
    for spec, field in (("algorithm.local_stepz=1,3", "algorithm.local_stepz"), ("local_steps", "key=v1"),
                        ("algorithm.local_steps=1,,3", "empty value")):
        args = p.parse_args(["predict", "--config", str(cfg), "--candidates", spec])
        with pytest.raises(ConfigError) as err:
            args.func(args)
        assert "\n" not in str(err.value) and field in str(err.value) and str(err.value).startswith("--candidates")
    args = p.parse_args(["predict", "--config", str(cfg), "--candidates", "algorithm.local_steps=0"])
    with pytest.raises(ConfigError, match="algorithm.local_steps"):
        args.func(args)
    with pytest.raises(ConfigError, match="--eps"):
        predict({}, eps=-1.0)
    assert parse_candidates(["topology.name=ring,path", "algorithm.q_max=0,2"]) == [
        {"topology.name": "ring", "algorithm.q_max": 0}, {"topology.name": "ring", "algorithm.q_max": 2},
        {"topology.name": "path", "algorithm.q_max": 0}, {"topology.name": "path", "algorithm.q_max": 2}]
