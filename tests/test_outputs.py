"""Output folders: checked before any compute, never silently overwritten or mixed, resumable by
name alone, and written with the modes the umask gives."""

import os
import stat

import pandas as pd
import pytest

import theory_lab.runner
from theory_lab.cli import main

CFG = """
[run]
seeds = [0]
rounds = 6
[problem]
n_clients = 4
pairs_per_client = 20
heldout_pairs = 5
dim = 3
n_contexts = 5
[algorithm]
name = "feddpo"
lr = 0.5
"""


def write(tmp_path, grid=None, name="cfg.toml"):
    path = tmp_path / name
    path.write_text(CFG + (f'[sweep.grid]\n"algorithm.lr" = {grid}\n' if grid else ""))
    return str(path)


def test_existing_results_are_refused_then_replaced_with_overwrite(tmp_path, capsys):
    cfg, out = write(tmp_path), tmp_path / "o"
    assert main(["synthetic", "--config", cfg, "--out", str(out), "--quiet"]) == 0
    before = (out / "results.csv").read_bytes()
    assert main(["synthetic", "--config", cfg, "--out", str(out), "--quiet", "--set", "algorithm.lr=0.2"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "results.csv").read_bytes() == before                 # untouched
    assert main(["synthetic", "--config", cfg, "--out", str(out), "--quiet", "--set", "algorithm.lr=0.2",
                 "--overwrite"]) == 0
    assert (out / "results.csv").read_bytes() != before


def test_a_smaller_sweep_over_a_larger_one_leaves_no_stale_points(tmp_path):
    out = tmp_path / "s"
    assert main(["sweep", "--config", write(tmp_path, "[0.1, 0.2, 0.3, 0.4]"), "--out", str(out), "--quiet"]) == 0
    assert main(["sweep", "--config", write(tmp_path, "[0.5, 0.6]"), "--out", str(out), "--quiet",
                 "--overwrite"]) == 0
    assert sorted(p.name for p in (out / "points").iterdir()) == ["000", "001"]
    assert sorted(pd.read_csv(out / "results.csv")["lr"].unique()) == [0.5, 0.6]


def test_a_bad_output_folder_fails_before_any_compute(tmp_path, monkeypatch, capsys):
    def no_compute(*args, **kwargs):
        raise AssertionError("computed before checking the output folder")

    monkeypatch.setattr(theory_lab.runner, "run", no_compute)
    (tmp_path / "afile").write_text("x")
    for out in (tmp_path / "afile", tmp_path / "afile" / "sub"):
        for command, grid in (("synthetic", None), ("sweep", "[0.1]")):
            assert main([command, "--config", write(tmp_path, grid), "--out", str(out), "--quiet"]) == 2
            err = capsys.readouterr().err.strip()
            assert err.startswith("error: --out") and len(err.splitlines()) == 1


def test_sweep_resumes_from_its_folder_alone_with_its_overrides(tmp_path):
    out = tmp_path / "s"
    args = ["--config", write(tmp_path, "[0.1, 0.2]"), "--out", str(out), "--quiet", "--set", "run.rounds=8"]
    assert main(["sweep", *args]) == 0
    first = pd.read_csv(out / "results.csv")
    (out / "points" / "001" / "results.csv").unlink()   # as if killed during the second point
    (out / "results.csv").unlink()
    os.remove(write(tmp_path, "[0.1, 0.2]"))             # the config file is not needed any more
    assert main(["sweep", "--resume", str(out), "--quiet"]) == 0
    again = pd.read_csv(out / "results.csv")
    assert again["round"].max() == 8                     # the --set came back from sweep.json
    cols = ["run_id", "seed", "round", "subopt", "dist_to_opt"]
    pd.testing.assert_frame_equal(again[cols], first[cols])


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_outputs_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        out = tmp_path / "o"
        assert main(["synthetic", "--config", write(tmp_path), "--out", str(out), "--quiet"]) == 0
    finally:
        os.umask(old)
    for name in ("results.csv", "manifest.json"):
        assert stat.S_IMODE((out / name).stat().st_mode) == mode, name
    assert stat.S_IMODE(out.stat().st_mode) == mode | 0o111 & ~umask


def test_verify_refuses_an_old_report_and_overwrite_does_not_mix_figures(tmp_path, capsys):
    out = tmp_path / "v"
    assert main(["verify", "--claims", "full-participation", "--seeds", "1", "--quick", "--out", str(out)]) == 0
    (out / "figures").mkdir(exist_ok=True)
    (out / "figures" / "old-claim.png").write_bytes(b"x")      # a figure of an earlier report
    assert main(["verify", "--claims", "full-participation", "--seeds", "1", "--quick", "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["verify", "--claims", "full-participation", "--seeds", "1", "--quick", "--out", str(out),
                 "--overwrite"]) == 0
    assert not (out / "figures" / "old-claim.png").exists()
