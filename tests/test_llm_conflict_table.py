"""The conflict methods table (paper_figures/llm_conflict_table.py) from a sweep folder: seed means
and spreads, the kept / opposed / worst-client pooling, and unfinished points left out."""

import json

import numpy as np
import pandas as pd
import pytest

from llm.partition import opposed_clients
from paper_figures.llm_conflict_table import by_knob, gather, load, main, markdown, read, summarise


def point(folder, i, method, conflict, seed, acc, finished=True):
    d = folder / "points" / f"{i:03d}"
    d.mkdir(parents=True)
    cfg = {"run": {"seed": seed}, "llm": {"n_clients": 4, "seed": 0, "conflict": conflict,
                                          "personal": {"variant": method}}}
    (d / "manifest.json").write_text(json.dumps({"config": cfg, "wall_s": 60.0,
                                                 "reference_pref_acc": {"per_client": [0.5, 0.5, 0.25, 0.75]}}))
    if finished:
        rows = {"round": [0, 8], "train_loss": [0.69, 0.5],
                **{f"eval_pref_acc_client{i}": [0.5, a] for i, a in enumerate(acc)}}
        pd.DataFrame(rows).to_csv(d / "results.csv", index=False)


def test_table_pools_clients_and_averages_seeds(tmp_path, capsys):
    opposed = opposed_clients(4, 0)
    kept = [i for i in range(4) if i not in opposed]
    acc = np.zeros((2, 4))
    acc[0, kept], acc[0, opposed] = 0.9, (0.4, 0.2)
    acc[1, kept], acc[1, opposed] = 0.8, (0.6, 0.4)
    point(tmp_path, 0, "feddpo", 1.0, 0, acc[0])
    point(tmp_path, 1, "feddpo", 1.0, 1, acc[1])
    point(tmp_path, 2, "fedpdpo", 1.0, 0, [0.1, 0.1, 0.1, 0.1], finished=False)   # still running
    runs = load(tmp_path)
    assert len(runs) == 2 and set(runs["method"]) == {"feddpo"}
    row = summarise(runs).loc[("feddpo", 1.0)]
    assert row["seeds"] == 2
    assert row["kept"] == pytest.approx(0.85) and row["opposed"] == pytest.approx(0.4)
    assert row["opposed_sd"] == pytest.approx(np.std([0.3, 0.5], ddof=1))
    assert row["worst"] == pytest.approx((0.2 + 0.4) / 2) and row["all"] == pytest.approx(acc.mean())
    np.testing.assert_allclose(row["per_client"], acc.mean(0))
    text = markdown(summarise(runs), runs)
    assert "| feddpo | 1 | 2 | 0.625 ± 0.035 | 0.850 ± 0.071 | 0.400 ± 0.141 | 0.300 ± 0.141 |" in text
    assert text.count("reference model") == 1
    assert main([str(tmp_path)]) == 0 and "2 runs" in capsys.readouterr().out


def test_an_empty_folder_is_one_error_line(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_saved_runs_read_back_and_merge_with_a_folder(tmp_path, capsys):
    """--save writes every run; the CSV gives the same table, and with a folder each run counts once."""
    opposed = opposed_clients(4, 0)
    point(tmp_path / "a", 0, "feddpo", 1.0, 0, [0.9, 0.4, 0.8, 0.2])
    point(tmp_path / "b", 0, "feddpo", 1.0, 0, [0.1, 0.1, 0.1, 0.1])   # the same run again: not read twice
    point(tmp_path / "b", 1, "fedsa", 0.0, 2, [0.7, 0.6, 0.5, 0.4])
    saved = tmp_path / "runs.csv"
    assert main([str(tmp_path / "a"), "--save", str(saved)]) == 0
    first = capsys.readouterr().out
    again = read(saved)
    assert again["opposed"].tolist() == [tuple(opposed)]
    np.testing.assert_array_equal(again["acc"][0], [0.9, 0.4, 0.8, 0.2])
    np.testing.assert_array_equal(again["reference"][0], [0.5, 0.5, 0.25, 0.75])
    assert main([str(saved)]) == 0 and capsys.readouterr().out == first
    both = gather([str(saved), str(tmp_path / "b")])
    assert len(both) == 2 and both.set_index("method").loc["feddpo", "acc"][0] == 0.9


def test_a_missing_source_is_one_error_line(tmp_path, capsys):
    assert main([str(tmp_path / "nowhere.csv")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nowhere.csv" in err


def test_methods_keep_their_order_and_knobs_increase_across(tmp_path, capsys):
    """Rows: methods in the table's order (others after them), each method's knob values increasing,
    whatever order the points ran in; --by-knob puts the knob values across, '—' where a method has none."""
    for i, (method, c) in enumerate([("fedsa", 0.0), ("feddpo", 1.0), ("feddpo", 0.0), ("feddpo", 0.5)]):
        point(tmp_path, i, method, c, 0, [0.9, 0.1 + c / 2, 0.8, 0.2])
    summary = summarise(load(tmp_path))
    assert list(summary.index) == [("feddpo", 0.0), ("feddpo", 0.5), ("feddpo", 1.0), ("fedsa", 0.0)]
    text = by_knob(summary, "worst")
    assert text.splitlines()[0] == "| method (worst client) | c = 0 | c = 0.5 | c = 1 |"
    assert text.splitlines()[2] == "| feddpo | 0.100 (1 seed) | 0.200 (1 seed) | 0.200 (1 seed) |"
    assert text.splitlines()[3] == "| fedsa | 0.100 (1 seed) | — | — |"
    assert main([str(tmp_path), "--by-knob", "worst"]) == 0 and capsys.readouterr().out.startswith(text)
