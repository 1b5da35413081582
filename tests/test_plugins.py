"""A new algorithm written in this file only (nothing else in the repository names it): it runs on
the synthetic track, on the tiny LLM and on 2 gloo ranks, resumes bit-identically, and the
settings it does not read are refused. Also: the server optimizers (Reddi et al. 2021)."""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.test_distributed import torchrun, why
from theory_lab.algorithms import REGISTRY, Algorithm, RoundInfo, register
from theory_lab.algorithms.params import Common, LocalSteps, setting
from theory_lab.cli import main
from theory_lab.config import build_config
from theory_lab.optim import Optimizer
from theory_lab.runner import run

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
METRICS = ["subopt", "grad_norm_sq", "consensus_error", "train_loss", "eval_pref_acc", "comm_bytes"]


@register
class LookaheadFedAvg(Algorithm):
    """FedAvg whose server keeps a slow copy: every round the slow model moves half way to the
    new average (Zhang et al. 2019's lookahead, as a server rule). Explicit state: both models."""
    name, family = "test_lookahead", "server"

    @dataclass
    class Params(Common, LocalSteps):
        server_lr: float = setting(1.0, "the slow model's step towards the new average, halved")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        o = self.oracle
        self.steps_per_round = self.cfg.local_steps
        self.fast = o.init_params().clone()
        self.slow = self.fast.clone()
        self.opt = Optimizer(self.cfg, o.n_seeds, o.n_clients, o.dim, o.dtype, self.fast.device)

    def round(self, r: int) -> RoundInfo:
        start = self.fast.unsqueeze(1).expand(-1, self.oracle.n_clients, -1)
        X, _ = self.local_updates(start, None, self.opt, self.cfg.local_steps)
        self.fast = self.comm.average(X, self.oracle.weights)
        self.slow = self.slow + 0.5 * self.cfg.server_lr * (self.fast - self.slow)
        self.fast = self.slow.clone()
        return RoundInfo(self.comm.consensus(X, self.fast), self.fast.new_zeros(self.fast.shape[0]),
                         self.bytes_per_round())

    def bytes_per_round(self) -> int:
        return 2 * self.oracle.n_clients * self.oracle.dim * self.itemsize

    def state_dict(self):
        return {"fast": self.fast, "slow": self.slow}

    def _load(self, state):
        self.fast, self.slow = state["fast"].clone(), state["slow"].clone()

    def model(self):
        return self.slow

    def client_params(self):
        return self.slow.unsqueeze(1).expand(-1, self.oracle.n_clients, -1)


PLUGIN = 'plugins = ["tests.test_plugins"]\n'
SYNTHETIC = PLUGIN + """
[run]
seeds = [0, 1]
rounds = 30
log_every = 5
checkpoint_every = 10
[problem]
n_clients = 6
pairs_per_client = 30
heldout_pairs = 10
dim = 4
n_contexts = 6
heterogeneity = 1.0
[algorithm]
name = "test_lookahead"
local_steps = 2
batch_size = 4
lr = 1.0
"""


def write(tmp_path, text=SYNTHETIC, name="cfg.toml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_the_plugin_is_registered_and_runs_on_the_synthetic_track(tmp_path):
    assert REGISTRY["test_lookahead"] is LookaheadFedAvg
    out = tmp_path / "o"
    assert main(["synthetic", "--config", write(tmp_path), "--out", str(out), "--quiet"]) == 0
    t = pd.read_csv(out / "results.csv")
    assert (t["algorithm"] == "test_lookahead").all() and (t["topology"] == "server").all()
    assert t.groupby("seed")["subopt"].last().lt(t.groupby("seed")["subopt"].first()).all()   # it optimises


def test_the_plugin_resumes_bit_identically(tmp_path):
    cfg = write(tmp_path)
    assert main(["synthetic", "--config", cfg, "--out", str(tmp_path / "full"), "--quiet"]) == 0
    part = tmp_path / "part"
    assert main(["synthetic", "--config", cfg, "--out", str(part), "--quiet"]) == 0
    assert json.loads((part / "checkpoint" / "meta.json").read_text())["round"] == 20
    (part / "results.csv").unlink()
    assert main(["synthetic", "--resume", str(part), "--quiet"]) == 0
    cols = [m for m in METRICS if m != "eval_pref_acc"]
    pd.testing.assert_frame_equal(pd.read_csv(part / "results.csv")[cols],
                                  pd.read_csv(tmp_path / "full" / "results.csv")[cols])


def test_settings_the_plugin_does_not_read_are_refused(tmp_path, capsys):
    for setting in ("participation=3", "q_max=2", 'optimizer="adamw"', "weight_decay=0.5"):
        assert main(["synthetic", "--config", write(tmp_path), "--out", str(tmp_path / "o"), "--quiet",
                     "--set", f"algorithm.{setting}"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: algorithm.{setting.split('=')[0]}: test_lookahead does not read")
        assert len(err.splitlines()) == 1


@pytest.mark.skipif(not DATA.is_dir(), reason="shared data not found")
def test_the_plugin_runs_on_the_tiny_llm(tmp_path):
    cfg = write(tmp_path, PLUGIN + f"""track = "llm"
[run]
rounds = 2
[llm]
model = "tiny"
data_dir = "{DATA}"
dataset = "imdb-cad"
n_clients = 2
pairs_per_client = 4
heldout_per_client = 2
max_length = 40
max_prompt_length = 12
[algorithm]
name = "test_lookahead"
batch_size = 2
lr = 0.05
""")
    assert main(["llm", "--config", cfg, "--out", str(tmp_path / "o"), "--quiet"]) == 0
    t = pd.read_csv(tmp_path / "o" / "results.csv")
    assert (t["algorithm"] == "test_lookahead").all() and t["train_loss"].iloc[-1] < t["train_loss"].iloc[0]
    assert (tmp_path / "o" / "adapter" / "adapter_model.safetensors").is_file()


def test_the_plugin_on_two_gloo_ranks_equals_the_in_process_run(tmp_path):
    cfg = write(tmp_path)
    assert main(["synthetic", "--config", cfg, "--out", str(tmp_path / "one"), "--quiet"]) == 0
    done = torchrun(2, ["synthetic", "--config", cfg, "--out", str(tmp_path / "two")])
    assert done.returncode == 0, why(done)
    one, two = (pd.read_csv(tmp_path / d / "results.csv") for d in ("one", "two"))
    for m in ("subopt", "grad_norm_sq", "train_loss", "comm_bytes"):
        np.testing.assert_allclose(two[m], one[m], rtol=1e-9, atol=1e-13, err_msg=m)


# ------------------------------------------------------------------------ server optimizers

FED = {"run": {"seeds": [0, 1], "rounds": 400, "log_every": 400},
       "problem": {"n_clients": 6, "pairs_per_client": 40, "heldout_pairs": 10, "dim": 4, "n_contexts": 6,
                   "heterogeneity": 1.0, "l2": 0.05, "init": "optimum"},
       "algorithm": {"name": "feddpo", "local_steps": 3, "batch_size": 0, "lr": 0.25}}


def final_dist(**server) -> np.ndarray:
    cfg = build_config({**FED, "algorithm": {**FED["algorithm"], **server}})
    result = run(cfg, progress=False)
    return result.table.groupby("seed")["dist_to_opt"].last().to_numpy(), result.algorithm.server


@pytest.mark.parametrize("server", [{"server_opt": "avgm", "server_momentum": 0.5, "server_lr": 0.5},
                                    {"server_opt": "adam", "server_lr": 0.01},
                                    {"server_opt": "yogi", "server_lr": 0.01},
                                    {"server_opt": "adagrad", "server_lr": 0.01}])
def test_server_optimizers_keep_fedavgs_fixed_point(server):
    """With exact gradients FedAvg stalls at the drift fixed point x̄ (Δ(x̄) = 0). Every server rule
    here stops exactly where Δ = 0, so each must reach the same point: the drift floor is a
    property of the local steps, not of the server optimizer."""
    fedavg, x_avg = final_dist()
    other, x_other = final_dist(**server)
    assert (fedavg > 1e-6).all()                                # a real drift floor, away from θ*
    torch.testing.assert_close(x_other, x_avg, rtol=1e-5, atol=1e-7)
    _, x_e5 = final_dist(local_steps=5, **server)                # the control: more local steps move it
    assert not torch.allclose(x_e5, x_avg, rtol=1e-3, atol=1e-5)


def test_server_momentum_changes_the_path_and_its_state_is_explicit():
    cfg = build_config({**FED, "run": {**FED["run"], "rounds": 5},
                        "algorithm": {**FED["algorithm"], "server_opt": "avgm", "server_lr": 0.5}})
    result = run(cfg, progress=False)
    state = result.algorithm.state_dict()
    assert set(state) == {"server", "history", "server_opt.v"}
    assert state["server_opt.v"].abs().sum() > 0


def test_predict_on_the_plugin_is_one_clear_line(tmp_path, capsys):
    assert main(["predict", "--config", write(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: algorithm.name: no prediction model for 'test_lookahead'")
    assert len(err.splitlines()) == 1
