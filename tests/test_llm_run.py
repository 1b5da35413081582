"""The LLM track end to end through the CLI (tiny random model, real data), every shipped LLM
config valid, and bad input answered by one line."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from theory_lab.cli import main
from theory_lab.config import build_config, read_toml
from theory_lab.sweep import grid_points

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
TINY = ["--set", 'llm.model="tiny"', "--set", "llm.n_clients=3", "--set", "llm.pairs_per_client=6",
        "--set", "llm.heldout_per_client=4", "--set", "run.rounds=2", "--set", "run.log_every=1",
        "--set", "llm.max_length=40", "--set", "llm.max_prompt_length=12", "--set", "llm.eval_batch_size=4",
        "--set", f'llm.data_dir="{DATA}"', "--quiet"]
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data is not beside the checkout")


@needs_data
def test_llm_run_writes_schema_and_reference_baseline(tmp_path):
    out = tmp_path / "out"
    assert main(["llm", "--config", str(ROOT / "configs/llm/hh_feddpo.toml"), "--out", str(out), *TINY]) == 0
    table = pd.read_csv(out / "results.csv")
    assert list(table["round"]) == [0, 1, 2]
    assert {"eval_pref_acc", "reward_margin", "grad_norm_sq", "comm_bytes", "eval_pref_acc_client2"} <= set(table)
    assert np.isnan(table["eval_pref_acc"].iloc[0])  # at the reference every implicit margin is exactly 0
    assert (table["run_id"] == 0).all()              # one schema: a single run is run 0
    assert table["comm_bytes"].iloc[-1] > 0 and table["train_loss"].notna().all()
    manifest = (out / "manifest.json").read_text()
    assert '"reference_pref_acc"' in manifest and '"model": "tiny"' in manifest


@pytest.mark.parametrize("path", sorted((ROOT / "configs/llm").glob("*.toml")), ids=lambda p: p.stem)
def test_every_llm_config_is_valid_at_every_grid_point(path):
    data = read_toml(path)
    for point in grid_points(data):
        cfg = build_config(data, [f"{k}={v!r}".replace("'", '"') for k, v in point.items()])
        assert cfg.track == "llm" and cfg.llm.n_clients == 5


@needs_data
@pytest.mark.parametrize("override,field", [
    ('llm.model="no-such-model-anywhere"', "llm.model"),
    ('llm.target_modules=["nope_proj"]', "llm.target_modules"),
    ("llm.max_prompt_length=40", "llm.max_prompt_length"),
    ('llm.dataset="imdb"', "llm.dataset"),
    ('llm.data_dir="/nonexistent/data"', "llm.data_dir"),
    ("llm.pairs_per_client=100000", "llm.pairs_per_client"),
])
def test_llm_bad_input_is_one_line(tmp_path, capsys, override, field):
    code = main(["llm", "--config", str(ROOT / "configs/llm/hh_feddpo.toml"), "--out", str(tmp_path / "o"),
                 *TINY, "--set", override])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and field in err, err


@needs_data
def test_llm_sweep_loads_the_model_once_and_equals_separate_runs(tmp_path, monkeypatch):
    """...and computes each client set's reference log-probs once (the same base weights: the
    values a fresh computation gives, so the tables are equal to the last bit)."""
    import llm.model
    from llm.oracle import LLMOracle

    loads, references = [], []
    real, real_reference = llm.model._load, LLMOracle._reference
    monkeypatch.setattr(llm.model, "_load", lambda *a: loads.append(a) or real(*a))
    monkeypatch.setattr(LLMOracle, "_reference", lambda self, tp: references.append(tp) or real_reference(self, tp))
    cfg = tmp_path / "sweep.toml"
    cfg.write_text((ROOT / "configs/llm/hh_feddpo.toml").read_text()
                   + '[sweep.grid]\n"algorithm.local_steps" = [1, 2]\n')
    assert main(["sweep", "--config", str(cfg), "--out", str(tmp_path / "sweep"), *TINY]) == 0
    assert len(loads) == 1
    assert len(references) == 2 * 3   # train and held-out pairs of 3 clients, for both points
    swept = pd.read_csv(tmp_path / "sweep" / "results.csv")
    for run_id, steps in enumerate([1, 2]):
        out = tmp_path / f"one{steps}"
        assert main(["llm", "--config", str(ROOT / "configs/llm/hh_feddpo.toml"), "--out", str(out), *TINY,
                     "--set", f"algorithm.local_steps={steps}"]) == 0
        assert len(references) == 6 * (1 + steps)   # a run alone: its own references
        one = pd.read_csv(out / "results.csv")
        mine = swept[swept["run_id"] == run_id].reset_index(drop=True)
        cols = [c for c in one.select_dtypes("number") if c not in ("wall_s", "run_id")]
        pd.testing.assert_frame_equal(mine[cols], one[cols], check_exact=True)
