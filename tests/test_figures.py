"""paper_figures and demos: every figure draws (PDF + PNG, non-empty) from tiny runs, the cache
makes a second call only redraw, draw works on a hand-made table, every demo runs and saves."""

from __future__ import annotations

import importlib
import json
import os
import runpy
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from paper_figures import cli, participation, verification
from paper_figures.experiments import Lab, config_hash

ROOT = Path(__file__).resolve().parent.parent
DEMOS = ["dpo_is_logistic_regression", "client_drift_2d", "spectral_gap_consensus"]


@pytest.fixture(scope="module", autouse=True)
def fast_output():
    """Tests check that files are written, not how they look: one torch thread, small PNGs,
    Type 3 fonts in the PDFs (embedding TrueType subsets costs ~0.7 s a figure), fewer bootstraps."""
    import matplotlib

    from paper_figures import common, style

    saved = torch.get_num_threads(), style.PNG_DPI, matplotlib.rcParams["pdf.fonttype"], common.N_BOOT
    torch.set_num_threads(1)
    style.PNG_DPI, matplotlib.rcParams["pdf.fonttype"], common.N_BOOT = 50, 3, 100
    yield
    torch.set_num_threads(saved[0])
    style.PNG_DPI, matplotlib.rcParams["pdf.fonttype"], common.N_BOOT = saved[1:]


def fake_report(path: Path) -> Path:
    """A verify report.json with one row of each kind the figure draws."""
    rows = [
        {"claim": "drift-floor", "predicted": "slope 2 in (E−1)", "tolerance": 0.3, "value": 1.9, "ci_low": 1.8,
         "ci_high": 2.0, "verdict": "confirmed"},
        {"claim": "staleness-model-average", "predicted": "slope 1 in q_max", "tolerance": 0.3, "value": None,
         "ci_low": None, "ci_high": None, "verdict": "refuted"},
        {"claim": "my-new-claim", "predicted": "slope −1/2 in T", "tolerance": 0.2, "value": -0.4, "ci_low": -0.6,
         "ci_high": -0.3, "verdict": "inconclusive"},
        {"claim": "bound-validity", "predicted": "ratio ≥ 1", "tolerance": 1.0, "value": 12.0, "ci_low": 3.0,
         "ci_high": 70.0, "verdict": "confirmed"},
        {"claim": "full-participation", "predicted": "identical (to rounding)", "tolerance": 1e-10, "value": 1e-16,
         "ci_low": 1e-16, "ci_high": 1e-16, "verdict": "confirmed"},
    ]
    path.write_text(json.dumps({"meta": {"quick": True, "seeds": 3}, "claims": rows}))
    return path


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    """Every figure from tiny runs (the verification figure from a hand-made report)."""
    tmp = tmp_path_factory.mktemp("figures")
    report = fake_report(tmp / "report.json")
    lines = []
    paths = cli.main(str(tmp / "out"), size="tiny", report=str(report), log=lines.append)
    return tmp / "out", paths, lines, report


@pytest.mark.parametrize("name", cli.FIGURES)
def test_every_figure_writes_pdf_and_png(drawn, name):
    out, paths, _, _ = drawn
    for ext in ("pdf", "png"):
        path = out / f"{name}.{ext}"
        assert path in paths
        assert path.is_file() and path.stat().st_size > 1000, path


def test_second_call_only_redraws(drawn):
    """Every figure's inputs come back from the cache: nothing runs, no cached file is rewritten."""
    out, _, _, report = drawn
    cache = sorted((out / "cache").glob("*.*"))
    assert any(p.suffix == ".csv" for p in cache), "the first call cached its results tables"
    before = {p: p.stat().st_mtime_ns for p in cache}
    lab = Lab(out / "cache", size="tiny", report=report)
    for name in cli.FIGURES:
        importlib.import_module(f"paper_figures.{name}").prepare(lab)
    assert lab.runs == 0 and lab.hits > 0
    assert {p: p.stat().st_mtime_ns for p in sorted((out / "cache").glob("*.*"))} == before
    lines = []
    cli.main(str(out), size="tiny", only=["verification"], report=str(report), log=lines.append)
    assert "(0 runs," in lines[-1]


def test_lab_cache_counts_runs_and_hits(tmp_path):
    data = {"problem": {"n_clients": 3, "pairs_per_client": 10, "heldout_pairs": 5, "dim": 3, "n_contexts": 4},
            "algorithm": {"name": "feddpo", "lr": 0.5, "batch_size": 2},
            "run": {"seeds": [0, 1, 2], "rounds": 5}}
    first = Lab(tmp_path)
    table, manifest = first.sweep(data)
    assert (first.runs, first.hits) == (1, 0)
    csv = tmp_path / f"{config_hash(data)}.csv"
    stamp = csv.stat().st_mtime_ns
    second = Lab(tmp_path)
    again, manifest2 = second.sweep(data)
    assert (second.runs, second.hits) == (0, 1)
    assert csv.stat().st_mtime_ns == stamp
    pd.testing.assert_frame_equal(table.reset_index(drop=True), again, check_dtype=False)
    assert manifest2["config_hash"] == config_hash(data)
    # another config is another entry
    third = Lab(tmp_path)
    third.sweep({**data, "run": {**data["run"], "rounds": 6}})
    assert third.runs == 1


def test_config_hash_is_canonical():
    a = {"run": {"rounds": 3, "seeds": [0, 1]}, "algorithm": {"lr": 0.1}}
    b = {"algorithm": {"lr": 0.1}, "run": {"seeds": [0, 1], "rounds": 3}}
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash({**a, "algorithm": {"lr": 0.2}})


def test_draw_on_a_hand_made_table(tmp_path):
    """The figures read only the results schema: a table made by hand (no runs) draws too."""
    rng = np.random.default_rng(0)
    rows = [{"run_id": i, "algorithm": "feddpo", "participation": S, "n_clients": 4, "local_steps": 1,
             "batch_size": 4, "lr": 0.5, "seed": seed, "round": r,
             "subopt": 1.0 / (r + 1) + 0.01 / S + 0.001 * rng.random()}
            for i, S in enumerate((1, 2, 4)) for seed in range(3) for r in range(0, 21)]
    paths = participation.draw(pd.DataFrame(rows), tmp_path)
    assert [p.name for p in paths] == ["participation.pdf", "participation.png",
                                       "participation_single.pdf", "participation_single.png"]
    assert all(p.stat().st_size > 1000 for p in paths)


def test_verification_predicted_exponents():
    assert verification.predicted_exponent({"claim": "x", "predicted": "slope −1/2 in T"}) == -0.5
    assert verification.predicted_exponent({"claim": "x", "predicted": "slopes 2 in η"}) == 2.0
    assert verification.predicted_exponent({"claim": "x", "predicted": "ordering"}) is None
    assert verification.predicted_exponent({"claim": "x", "predicted": "?", "predicted_value": -2}) == -2.0
    assert verification.predicted_exponent({"claim": "noise-floor", "predicted": "?"}) == -1.0


def test_unknown_figure_is_a_clear_error(tmp_path):
    from theory_lab.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown figure 'nope'"):
        cli.main(str(tmp_path), only=["nope"], log=None)


def test_add_parser_registers_figures(tmp_path):
    import argparse

    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["figures", "--out", str(tmp_path), "--quick", "--only", "topology,bounds"])
    assert (args.out, args.quick, args.only) == (str(tmp_path), True, "topology,bounds")
    assert args.func is cli._command


@pytest.mark.parametrize("demo", DEMOS)
def test_demo_runs_and_saves_its_figure(demo, tmp_path, monkeypatch):
    monkeypatch.setenv("DEMO_SIZE", "tiny")
    monkeypatch.setattr(sys, "argv", [f"{demo}.py", str(tmp_path)])
    monkeypatch.chdir(ROOT)
    runpy.run_path(str(ROOT / "demos" / f"{demo}.py"), run_name="__main__")
    for ext in ("pdf", "png"):
        path = tmp_path / f"{demo}.{ext}"
        assert path.is_file() and path.stat().st_size > 1000


def test_demos_are_percent_scripts():
    for demo in DEMOS:
        text = (ROOT / "demos" / f"{demo}.py").read_text()
        assert text.startswith("# %% [markdown]")
        assert text.count("\n# %%") >= 4
        assert "DEMO_OUT" in text and "runs/demos" in text


def test_demo_output_dir_from_env(tmp_path, monkeypatch):
    """DEMO_OUT picks the directory when no argument is given (checked without running a demo)."""
    monkeypatch.setenv("DEMO_OUT", str(tmp_path))
    code = (ROOT / "demos" / "dpo_is_logistic_regression.py").read_text()
    line = next(ln for ln in code.splitlines() if ln.startswith("OUT = "))
    ns = {"Path": Path, "os": os, "ARGS": []}
    exec(line, ns)
    assert ns["OUT"] == tmp_path
