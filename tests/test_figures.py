"""paper_figures and demos: every figure draws (PDF + PNG, non-empty) from tiny runs, the cache
makes a second call only redraw, draw works on a hand-made table, every demo runs and saves.
The LLM-track figures the same way (tiny random Llama, real data), and the FedPDPO figure from
hand-made sweep results."""

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

from paper_figures import cli, fedpdpo, participation, style, verification
from paper_figures.experiments import Lab, config_hash
from theory_lab.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data is not beside the checkout")
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


def test_pngs_are_for_print_and_every_step_says_it_started(drawn):
    from PIL import Image

    out, _, lines, _ = drawn
    assert style.PRINT_DPI >= 300                  # the default (these tests draw at 50 for speed)
    for name in cli.FIGURES:
        dpi = Image.open(out / f"{name}.png").info.get("dpi", (0, 0))
        assert round(min(dpi)) == 50, (name, dpi)  # the resolution it was drawn at, recorded in the file
    started = [line.split()[0] for line in lines if line.rstrip().endswith("...")]
    assert started == list(cli.FIGURES)            # a line before each (possibly long) step


def test_the_synthetic_verification_figure_runs_no_llm_claim(tmp_path, monkeypatch):
    from paper_figures import verification
    from theory_lab import verify

    class Stop(Exception):
        pass

    ran = []

    def record(ids, **kw):
        ran.extend(ids)
        raise Stop

    monkeypatch.setattr(verify, "verify", record)
    with pytest.raises(Stop):
        verification.prepare(Lab(tmp_path / "cache", size="quick"))
    assert ran and not [c for c in ran if c.startswith("llm")]


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


# ----------------------------------------------------------------------------- the LLM track

def fake_llm_table(points: list[dict], rounds=(0, 2, 4, 6), seeds=(0,), n: int = 5) -> pd.DataFrame:
    """An LLM-track results table by hand: one run per point (config columns as the runner writes
    them), every metric the LLM figures read."""
    rng = np.random.default_rng(0)
    base = {"algorithm": "feddpo", "n_clients": n, "local_steps": 3, "participation": n, "q_max": 0,
            "stale_rule": "model_average", "topology": "server", "spectral_gap": np.nan, "batch_size": 2,
            "lr": 1e-3, "model": "smollm2", "dataset": "hh-rlhf", "pairs_per_client": 12, "reference_pref_acc": 0.55}
    rows = []
    for i, point in enumerate(points):
        for seed in seeds:
            for r in rounds:
                acc = rng.uniform(0.3, 0.9, n) * (r > 0)
                rows.append({"run_id": i, **base, **point, "seed": seed, "round": r, "train_loss": 0.69 / (1 + 0.1 * r),
                             "grad_norm_sq": 0.05 + 0.01 * r * rng.random(), "consensus_error": 1e-3 * r * rng.random(),
                             "consensus_error_pre": 1e-3 * (r + 1) * rng.random(), "eval_pref_acc": acc.mean(),
                             "reward_margin": 0.01 * r, "comm_bytes": 98304 * r,
                             **{f"eval_pref_acc_client{c}": a for c, a in enumerate(acc)}})
    return pd.DataFrame(rows)


def fake_llm_inputs() -> dict:
    gaps = {"complete": 1.0, "ring": 0.69, "star": 0.36, "path": 0.24}
    return {
        "comparative": fake_llm_table([{"algorithm": "centralized", "topology": "none", "comm_bytes": 0}, {},
                                       {"participation": 3}, {"algorithm": "decdpo", "topology": "ring",
                                                              "spectral_gap": 0.69}]),
        "local_steps": fake_llm_table([{"local_steps": E} for E in (1, 3, 6)], seeds=(0, 1)),  # bands drawn too
        "participation": fake_llm_table([{"participation": S} for S in (1, 3, 5)]),
        "topology": fake_llm_table([{"algorithm": "decdpo", "topology": t, "spectral_gap": p}
                                    for t, p in gaps.items()]),
        "staleness": fake_llm_table([{}, {"q_max": 4}, {"q_max": 4, "stale_rule": "delta"}]),
    }


def fake_fedpdpo_dir(path: Path, dataset: str = "imdb-cad", n: int = 3, seed: int = 0) -> Path:
    """What `theory-lab sweep --config configs/fedpdpo/*.toml --out path` writes, by hand."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, variant in enumerate(["fedpdpo", "fedpdpo-no-head", "local-dpo", "feddpo", "scaffold"]):
        for r in (0, 8):
            acc = rng.uniform(0.4, 1.0, n) * (r > 0)
            rows.append({"run_id": i, "enabled": variant.startswith("fedpdpo") or None, "variant": variant,
                         "algorithm": "scaffold" if variant == "scaffold" else "feddpo", "n_clients": n,
                         "partition": "dirichlet", "model": "tiny", "dataset": dataset, "seed": 0, "round": r,
                         "eval_pref_acc": acc.mean(), "comm_bytes": 1000 * r,
                         **{f"eval_pref_acc_client{c}": a for c, a in enumerate(acc)}})
    path.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(path / "results.csv", index=False)
    (path / "manifest.json").write_text(json.dumps({"reference_pref_acc": {"weighted": 0.6, "per_client": [0.6] * n}}))
    return path


@pytest.fixture(scope="module")
def llm_drawn(tmp_path_factory):
    """Every LLM figure from tiny-model runs (the FedPDPO one from a hand-made sweep dir)."""
    tmp = tmp_path_factory.mktemp("llm_figures")
    sweep = fake_fedpdpo_dir(tmp / "fedpdpo_imdb3")
    lines = []
    paths = cli.main(str(tmp / "out"), size="tiny", only=["llm"], llm_model="tiny", fedpdpo=[str(sweep)],
                     log=lines.append)
    return tmp / "out", paths, lines, sweep


@needs_data
@pytest.mark.parametrize("name", cli.LLM_FIGURES)
def test_every_llm_figure_writes_pdf_and_png(llm_drawn, name):
    out, paths, lines, _ = llm_drawn
    for ext in ("pdf", "png"):
        path = out / f"{name}.{ext}"
        assert path in paths
        assert path.is_file() and path.stat().st_size > 1000, path
    assert "LLM track, reduced for a CPU: tiny, 6 train + 4 held-out pairs per client" in lines[0]


@needs_data
def test_llm_runs_shared_by_families_run_once(llm_drawn):
    """17 grid points over the five families, 12 distinct configs: 12 runs, one cache entry each
    (plus the conflict figure's measurements at θ0, one per knob value and seed)."""
    from paper_figures import llm_conflict

    out, _, lines, _ = llm_drawn
    assert f"({12 + len(llm_conflict.KNOBS) * len(llm_conflict.SEEDS)} runs, 0 cache hits" in lines[-1]
    assert len(list((out / "cache").glob("*.csv"))) == 12
    table = pd.read_csv(next((out / "cache").glob("*.csv")))
    assert {"eval_pref_acc", "eval_pref_acc_client4", "grad_norm_sq", "comm_bytes"} <= set(table)
    assert (table["model"] == "tiny").all() and (table["n_clients"] == 5).all()


@needs_data
def test_second_llm_call_only_redraws(llm_drawn):
    out, _, _, sweep = llm_drawn
    cache = sorted((out / "cache").glob("*.*"))
    before = {p: p.stat().st_mtime_ns for p in cache}
    lines = []
    paths = cli.main(str(out), size="tiny", llm=True, llm_model="tiny", only=["llm_comparative", "llm_staleness"],
                     log=lines.append)
    done = [ln for ln in lines[1:-1] if not ln.rstrip().endswith("...")]   # not the "started" lines
    assert "(0 runs, 6 cache hits" in lines[-1] and done and all("cached)" in ln for ln in done)
    assert {p: p.stat().st_mtime_ns for p in sorted((out / "cache").glob("*.*"))} == before
    assert len(paths) == 8


def test_llm_figures_draw_on_a_hand_made_table(tmp_path):
    """The LLM figures read only the results schema: hand-made tables (no runs) draw too."""
    from paper_figures import (llm_comparative, llm_dashboard, llm_local_steps, llm_participation, llm_staleness,
                               llm_topology)

    inputs = fake_llm_inputs()
    modules = {"comparative": llm_comparative, "local_steps": llm_local_steps, "participation": llm_participation,
               "topology": llm_topology, "staleness": llm_staleness}
    for key, module in modules.items():
        paths = module.draw(inputs[key], tmp_path)
        assert [p.name for p in paths] == [f"{module.NAME}{s}" for s in (".pdf", ".png", "_single.pdf", "_single.png")]
    paths = llm_dashboard.draw(inputs, tmp_path)
    assert all(p.stat().st_size > 1000 for p in tmp_path.iterdir())
    assert [p.name for p in paths] == ["llm_dashboard.pdf", "llm_dashboard.png"]


def test_llm_subtitle_says_one_seed_and_no_bands():
    from paper_figures.llm_common import subtitle

    inputs = fake_llm_inputs()
    assert subtitle(inputs["comparative"]) == ("SmolLM2-135M + LoRA, hh-rlhf, 5 clients × 12 pairs, "
                                               "1 seed per run (no bands)")
    assert subtitle(inputs["local_steps"]).endswith("2 seeds, 95% bands")


def test_staleness_lends_the_zero_delay_run_to_both_rules():
    from paper_figures import llm_staleness

    rules = llm_staleness.by_rule(fake_llm_inputs()["staleness"])
    assert list(rules) == ["model_average", "delta"]
    assert sorted(rules["delta"]["q_max"].unique()) == [0, 4]


def test_fedpdpo_figure_from_hand_made_sweeps(tmp_path):
    """Two seeds of one federation (bars with intervals) and a second federation: two panels."""
    dirs = [fake_fedpdpo_dir(tmp_path / f"imdb3_seed{s}", seed=s) for s in (0, 1)]
    dirs.append(fake_fedpdpo_dir(tmp_path / "cross", dataset="hh-rlhf,imdb-cad,pandalm", n=3))
    lab = Lab(tmp_path / "cache", fedpdpo=(*dirs[:2], dirs[2] / "results.csv"))
    table = fedpdpo.prepare(lab)
    s = fedpdpo.summary(table[table["dataset"] == "imdb-cad"])
    assert list(s["variant"]) == ["fedpdpo", "fedpdpo-no-head", "local-dpo", "feddpo", "scaffold"]
    assert (s["n"] == 2).all() and (s["low"] < s["mean"]).all() and all(len(c) == 3 for c in s["clients"])
    paths = fedpdpo.draw(table, tmp_path / "out")
    assert [p.name for p in paths] == ["fedpdpo.pdf", "fedpdpo.png", "fedpdpo_single.pdf", "fedpdpo_single.png"]
    assert all(p.stat().st_size > 1000 for p in paths)


def test_fedpdpo_reads_the_finished_points_of_a_running_sweep(tmp_path):
    done = fake_fedpdpo_dir(tmp_path / "done")
    full = pd.read_csv(done / "results.csv")
    for i, g in full.groupby("run_id"):  # what run_sweep leaves while it runs: points/NNN/, no results.csv
        point = tmp_path / "running" / "points" / f"{i:03d}"
        point.mkdir(parents=True)
        g.drop(columns=["run_id", "variant", "enabled"]).to_csv(point / "results.csv", index=False)
        config = {"llm": {"personal": {"variant": g["variant"].iloc[0]}}}
        (point / "manifest.json").write_text(json.dumps({"config": config, "reference_pref_acc": {"weighted": 0.6}}))
    table = fedpdpo.read(tmp_path / "running")
    assert list(fedpdpo.summary(table)["variant"]) == list(fedpdpo.summary(fedpdpo.read(done))["variant"])
    assert (table["reference_pref_acc"] == 0.6).all()


def test_fedpdpo_figure_skipped_without_results(tmp_path):
    lines = []
    assert cli.main(str(tmp_path), only=["fedpdpo"], log=lines.append) == []
    assert lines[1].startswith("fedpdpo        skipped: no FedPDPO results: pass --fedpdpo DIR")
    with pytest.raises(ConfigError, match="--fedpdpo"):
        cli.main(str(tmp_path), fedpdpo=[str(tmp_path / "nope")], log=None)


def test_figure_selection_with_llm_flags():
    assert cli._modules(None) == list(cli.FIGURES)
    assert cli._modules(None, llm=True) == list(cli.FIGURES + cli.LLM_FIGURES)
    assert cli._modules(None, fedpdpo=["x"]) == [*cli.FIGURES, "fedpdpo"]
    assert cli._modules("llm,bounds") == [*cli.LLM_FIGURES, "bounds"]
    assert cli._modules(None, conflict_runs=["x"]) == [*cli.FIGURES, "llm_conflict_methods"]
    with pytest.raises(ConfigError, match="--conflict-runs"):   # a source nobody would read
        cli._modules("bounds", conflict_runs=["x"])
    import argparse

    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["figures", "--llm", "--llm-model", "tiny", "--fedpdpo", "a", "--fedpdpo", "b"])
    assert (args.llm, args.llm_model, args.fedpdpo) == (True, "tiny", ["a", "b"])


def test_fedpdpo_markdown_table_averages_seeds(tmp_path):
    seeds = [fake_fedpdpo_dir(tmp_path / f"seed{s}", seed=s) for s in range(2)]
    table = pd.concat([fedpdpo.read(p).assign(source=k) for k, p in enumerate(seeds)], ignore_index=True)
    text = fedpdpo.markdown(table)
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in text.splitlines()[2:]}
    assert list(rows)[:2] == ["fedpdpo", "fedpdpo-no-head"] and "reference model" in rows
    finals = [pd.read_csv(p / "results.csv").query("round == 8 and variant == 'scaffold'") for p in seeds]
    accs = [float(f["eval_pref_acc"].iloc[0]) for f in finals]
    assert rows["scaffold"][1] == f"{np.mean(accs):.3f} ± {np.std(accs, ddof=1):.3f}"
    client0 = np.mean([float(f["eval_pref_acc_client0"].iloc[0]) for f in finals])
    assert rows["scaffold"][4].split(" / ")[0] == f"{client0:.3f}" and rows["scaffold"][6].strip(" |") == "2"
    # two seeds draw two partitions: client k differs between them, so no per-client mean
    seeds = fedpdpo.markdown(table.assign(seeds_used=table["source"])).splitlines()
    assert all(line.split(" | ")[4] == "–" for line in seeds[2:-1]) and seeds[-1].endswith("| 2 |")


def test_conflict_methods_figure_from_its_record(tmp_path):
    """Drawn without runs from the committed record; a sweep folder's runs replace it, and each
    line is the table's seed mean for that method and knob."""
    from paper_figures import llm_conflict_methods, llm_conflict_table

    lines = []
    paths = cli.main(str(tmp_path / "out"), only=["llm_conflict_methods"], log=lines.append)
    assert [p.name for p in paths] == ["llm_conflict_methods.pdf", "llm_conflict_methods.png",
                                       "llm_conflict_methods_single.pdf", "llm_conflict_methods_single.png"]
    assert "(0 runs, 0 cache hits" in lines[-1]

    runs = llm_conflict_table.read(llm_conflict_methods.RECORD)
    mine = runs[runs["method"].isin(["feddpo", "fedpdpo"]) & runs["conflict"].isin([0.0, 1.0])]
    llm_conflict_table.save(mine, tmp_path / "mine.csv")
    summary, ref = llm_conflict_methods.prepare(Lab(tmp_path / "cache", conflict_runs=(tmp_path / "mine.csv",)))
    assert set(summary.index) == {(m, c) for m in ("feddpo", "fedpdpo") for c in (0.0, 1.0)}
    fig, ax = style.figure()
    llm_conflict_methods.panel(ax, summary, ref, "opposed")
    fed = next(c for c in ax.containers if c.get_label() == "FedDPO")
    opposed = llm_conflict_table.per_run(mine).query("method == 'feddpo'").groupby("conflict")["opposed"].mean()
    np.testing.assert_allclose(np.asarray(fed.lines[0].get_ydata(), float), opposed.to_numpy(float))
    assert list(ref.index) == [0.0, 1.0] and ref.loc[0.0, "opposed"] != ref.loc[1.0, "opposed"]
