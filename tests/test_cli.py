"""The command line end to end, and bad input answered by one clear line naming the field."""

import json

import pandas as pd
import pytest

from theory_lab.cli import main
from theory_lab.results import METRICS

BASE = """
[run]
seeds = [0, 1]
rounds = 12
log_every = 3
[problem]
n_clients = 4
pairs_per_client = 30
heldout_pairs = 10
dim = 4
n_contexts = 6
heterogeneity = 1.0
[algorithm]
name = "decdpo"
lr = 1.0
batch_size = 4
[topology]
name = "ring"
"""


@pytest.fixture
def cfg_file(tmp_path):
    path = tmp_path / "cfg.toml"
    path.write_text(BASE)
    return path


def test_synthetic_run_writes_schema(cfg_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["synthetic", "--config", str(cfg_file), "--out", str(out), "--quiet"]) == 0
    table = pd.read_csv(out / "results.csv")
    assert set(METRICS) <= set(table.columns)
    assert {"algorithm", "seed", "n_clients", "topology", "spectral_gap", "lr"} <= set(table.columns)
    assert sorted(table["round"].unique()) == [0, 3, 6, 9, 12]
    assert len(table) == 2 * 5
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["algorithm"]["name"] == "decdpo"
    assert manifest["topology"]["name"] == "ring" and len(manifest["constants"]["L"]) == 2
    assert "torch" in manifest and "command" in manifest
    assert "results.csv" in capsys.readouterr().out


def test_sweep_crosses_variants_and_grid(tmp_path, capsys):
    path = tmp_path / "sweep.toml"
    path.write_text(BASE + """
[[sweep.variants]]
"algorithm.name" = "feddpo"
[[sweep.variants]]
"algorithm.name" = "decdpo"
[sweep.grid]
"algorithm.local_steps" = [1, 2]
""")
    out = tmp_path / "out"
    assert main(["sweep", "--config", str(path), "--out", str(out), "--quiet", "--set", "run.rounds=4"]) == 0
    table = pd.read_csv(out / "results.csv")
    assert table["run_id"].nunique() == 4
    assert set(zip(table["algorithm"], table["local_steps"])) == {
        ("feddpo", 1), ("feddpo", 2), ("decdpo", 1), ("decdpo", 2)}
    assert table["round"].max() == 4


def test_topology_command(capsys, tmp_path):
    assert main(["topology", "ring", "--n", "16", "--json", "--plot", str(tmp_path / "g.png")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["n"] == 16 and 0 < info["p"] < 0.2
    assert (tmp_path / "g.png").stat().st_size > 0


BAD = [
    (["--set", "algorithm.participation=9", "--set", 'algorithm.name="feddpo"'], "algorithm.participation"),
    (["--set", "algorithm.lr=-0.1"], "algorithm.lr"),
    (["--set", "algorithm.learning_rate=0.1"], "algorithm.learning_rate"),
    (["--set", 'topology.name="moebius"'], "topology.name"),
    (["--set", "topology.name='custom'", "--set", "topology.weights=[[1,0,0,0],[0,1,0,0],[0,0,0.5,0.5],[0,0,0.5,0.5]]"],
     "topology.weights"),
    (["--set", "topology.name='custom'", "--set", "topology.weights=[[0.5,0.5,0,0],[0.5,0.6,0,0],[0,0,0.5,0.5],[0,0,0.5,0.5]]"],
     "topology.weights"),
    (["--set", "topology.name='custom'", "--set", "topology.weights=[[nan,0.5,0,0.5],[0.5,0,0.5,0],[0,0.5,0,0.5],[0.5,0,0.5,0]]"],
     "topology.weights"),
    (["--set", 'run.rounds="ten"'], "run.rounds"),
    (["--set", "problem.n_clients=0"], "problem.n_clients"),
    (["--set", "algorithm.batch_size=-1"], "algorithm.batch_size"),
]


@pytest.mark.parametrize("extra,field", BAD, ids=[b[1] + str(i) for i, b in enumerate(BAD)])
def test_bad_input_is_one_line_naming_the_field(cfg_file, tmp_path, capsys, extra, field):
    code = main(["synthetic", "--config", str(cfg_file), "--out", str(tmp_path / "o"), "--quiet", *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and field in err
    assert not (tmp_path / "o").exists()


def test_malformed_toml_names_file_and_line(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text("[run]\nrounds = 10\nseeds = [0,\n[problem\n")
    assert main(["synthetic", "--config", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "bad.toml" in err and "line" in err and len(err.strip().splitlines()) == 1


def test_divergence_names_step_size_and_two_over_L(cfg_file, tmp_path, capsys):
    code = main(["synthetic", "--config", str(cfg_file), "--out", str(tmp_path / "o"), "--quiet",
                 "--set", "algorithm.lr=1e9", "--set", "algorithm.batch_size=0", "--set", "problem.beta=5.0"])
    err = capsys.readouterr().err
    assert code == 2 and "diverged" in err and "algorithm.lr = 1e+09" in err and "2/L" in err


def test_one_point_of_a_sweep_config_says_so(tmp_path, capsys):
    path = tmp_path / "sweep.toml"
    path.write_text(BASE + '[sweep.grid]\n"topology.name" = ["ring", "complete"]\n')
    assert main(["synthetic", "--config", str(path), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    assert "[sweep] table" in capsys.readouterr().err
    assert set(pd.read_csv(tmp_path / "o" / "results.csv")["topology"]) == {"ring"}


def test_algorithms_lists_each_one_with_the_fields_it_reads(capsys):
    import dataclasses

    from theory_lab.algorithms import REGISTRY
    from theory_lab.config import AlgorithmConfig

    assert all(f.metadata["help"] for f in dataclasses.fields(AlgorithmConfig))   # every field explained
    assert main(["algorithms"]) == 0
    out = capsys.readouterr().out
    blocks = {b.split(" ", 1)[0]: b for b in ("\n" + out).split("\n") if b and not b.startswith(" ")}
    assert set(blocks) == set(REGISTRY)
    feddpo = out.split("feddpo (server)")[1].split("\nfedprox")[0]
    assert "server_opt" in feddpo and "prox_mu" not in feddpo       # what it reads, and only that
