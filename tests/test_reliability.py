"""Checkpoint and resume (also after SIGKILL), sweeps that skip finished runs, divergence that
keeps the last good checkpoint, atomic outputs, and peft-loadable safetensors adapters."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from theory_lab.cli import main
from theory_lab.results import METRICS

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SAME = [m for m in METRICS if m != "wall_s"]

SYNTHETIC = """
[run]
seeds = [0, 1]
rounds = {rounds}
log_every = {log_every}
checkpoint_every = {every}
[problem]
n_clients = 6
pairs_per_client = 40
heldout_pairs = 10
dim = 4
n_contexts = 6
heterogeneity = 1.0
[algorithm]
name = "{algorithm}"
local_steps = {local_steps}
participation = {participation}
q_max = {q_max}
batch_size = 4
lr = 1.0
optimizer = "{optimizer}"
{extra}
[topology]
name = "ring"
"""


def write(tmp_path, name="cfg.toml", **kw):
    values = dict(rounds=60, log_every=5, every=10, algorithm="feddpo", local_steps=2, participation=4, q_max=2,
                  optimizer="adamw", extra="")
    values.update(kw)
    path = tmp_path / name
    path.write_text(SYNTHETIC.format(**values))
    return path


def table(out):
    return pd.read_csv(Path(out) / "results.csv")


def tiny_llm(tmp_path, rounds, log_every, n_clients, participation, personal="", algorithm=None):
    """A tiny-model LLM config checkpointing every 2 rounds (FedDPO, AdamW, unless `algorithm`
    gives the [algorithm] lines)."""
    algorithm = algorithm or f'name = "feddpo"\nlocal_steps = 2\nparticipation = {participation}\noptimizer = "adamw"\n'
    path = tmp_path / "llm.toml"
    path.write_text(f"""track = "llm"
[run]
rounds = {rounds}
log_every = {log_every}
checkpoint_every = 2
[llm]
model = "tiny"
data_dir = "{DATA}"
dataset = "imdb-cad"
n_clients = {n_clients}
pairs_per_client = 6
heldout_per_client = 4
max_length = 40
max_prompt_length = 12
eval_batch_size = 4
{personal}[algorithm]
{algorithm}batch_size = 2
lr = 0.01
""")
    return path


def kill_after_checkpoint(cmd, out, min_round, timeout=120):
    """Start `cmd`, SIGKILL it once its checkpoint reaches `min_round`; the run must not have finished."""
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    meta = Path(out) / "checkpoint" / "meta.json"
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if json.loads(meta.read_text())["round"] >= min_round:
                break
        except (OSError, ValueError):
            pass
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (Path(out) / "results.csv").exists(), "killed too late: nothing was interrupted"


# settings each registered algorithm reads, chosen to exercise its state (None: the template's default)
RESUME_CASES = {
    "centralized": dict(optimizer="adamw"),
    "feddpo": dict(optimizer="adamw", q_max=2, participation=4, extra="server_opt = \"adam\""),
    "fedprox": dict(optimizer="sgd", participation=4, extra="prox_mu = 0.1\nmomentum = 0.5"),
    "scaffold": dict(optimizer="sgd", participation=4),
    "decdpo": dict(optimizer="adamw", extra="state_policy = \"average\""),
    "gradient_tracking": dict(optimizer="sgd", local_steps=1),
}


def test_every_registered_algorithm_has_a_resume_case():
    from theory_lab.algorithms import REGISTRY

    builtin = {n for n, cls in REGISTRY.items() if cls.__module__.startswith("theory_lab.")}
    assert builtin == set(RESUME_CASES)


@pytest.mark.parametrize("algorithm", sorted(RESUME_CASES))
def test_resume_in_process_is_bit_identical(tmp_path, algorithm):
    kw = {"participation": 0, "q_max": 0, **RESUME_CASES[algorithm]}
    cfg = write(tmp_path, algorithm=algorithm, **kw)
    assert f'name = "{algorithm}"' in cfg.read_text()
    assert main(["synthetic", "--config", str(cfg), "--out", str(tmp_path / "full"), "--quiet"]) == 0
    part = tmp_path / "part"  # the same run, then resumed from its last checkpoint (round 50 of 60)
    assert main(["synthetic", "--config", str(cfg), "--out", str(part), "--quiet"]) == 0
    assert json.loads((part / "checkpoint" / "meta.json").read_text())["round"] == 50
    (part / "results.csv").unlink()
    assert main(["synthetic", "--resume", str(part), "--quiet"]) == 0
    pd.testing.assert_frame_equal(table(part)[SAME], table(tmp_path / "full")[SAME])


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data is not beside the checkout")
@pytest.mark.parametrize("algorithm", sorted(RESUME_CASES))
def test_resume_on_the_tiny_llm_is_bit_identical(tmp_path, algorithm):
    """Every registered algorithm on the LLM track: checkpoint at round 4 of 6, resume, the same table."""
    resumed, full = tiny_llm_resumed(tmp_path, *llm_case(algorithm))
    pd.testing.assert_frame_equal(resumed[SAME], full[SAME])


def llm_case(algorithm: str) -> tuple[str, str]:
    """RESUME_CASES[algorithm] for the tiny LLM's 3 clients: its [algorithm] lines, and a ring
    topology for the gossip algorithms (config text to append)."""
    kw = {"participation": 0, "q_max": 0, "local_steps": 2, **RESUME_CASES[algorithm]}
    block = (f'name = "{algorithm}"\nlocal_steps = {kw["local_steps"]}\nparticipation = {kw["participation"] and 2}\n'
             f'q_max = {kw["q_max"]}\noptimizer = "{kw["optimizer"]}"\n{kw.get("extra", "")}\n')
    return block, '[topology]\nname = "ring"\n' if algorithm in ("decdpo", "gradient_tracking") else ""


def tiny_llm_resumed(tmp_path, block: str, extra: str = "") -> tuple[pd.DataFrame, pd.DataFrame]:
    """The tiny LLM run of the [algorithm] lines `block` (plus config text `extra`) checkpointed at
    round 4 of 6 and resumed, and the same run uninterrupted: their tables."""
    cfg = tiny_llm(tmp_path, rounds=6, log_every=2, n_clients=3, participation=0, algorithm=block)
    cfg.write_text(cfg.read_text() + extra)
    assert main(["llm", "--config", str(cfg), "--out", str(tmp_path / "full"), "--quiet"]) == 0
    part = tmp_path / "part"
    assert main(["llm", "--config", str(cfg), "--out", str(part), "--quiet"]) == 0
    assert json.loads((part / "checkpoint" / "meta.json").read_text())["round"] == 4
    (part / "results.csv").unlink()
    assert main(["llm", "--resume", str(part), "--quiet"]) == 0
    return table(part), table(tmp_path / "full")


@pytest.mark.parametrize("algorithm", sorted(RESUME_CASES))
def test_sigkill_then_resume_matches_uninterrupted_synthetic(tmp_path, algorithm):
    """Every registered algorithm: SIGKILL mid-run (round >= 300 of 4000), resume, the same table."""
    kw = {"participation": 0, "q_max": 0, **RESUME_CASES[algorithm]}
    cfg = write(tmp_path, algorithm=algorithm, rounds=4000, log_every=200, every=100, **kw)
    assert main(["synthetic", "--config", str(cfg), "--out", str(tmp_path / "full"), "--quiet"]) == 0
    out = tmp_path / "killed"
    kill_after_checkpoint([sys.executable, "-m", "theory_lab", "synthetic", "--config", str(cfg), "--out", str(out),
                           "--quiet"], out, min_round=300)
    assert main(["synthetic", "--resume", str(out), "--quiet"]) == 0
    pd.testing.assert_frame_equal(table(out)[SAME], table(tmp_path / "full")[SAME])


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data is not beside the checkout")
@pytest.mark.parametrize("algorithm", sorted(RESUME_CASES))
def test_sigkill_then_resume_matches_uninterrupted_tiny_llm(tmp_path, algorithm):
    """Every registered algorithm on the tiny LLM: SIGKILL mid-run, resume, the same table and adapter."""
    block, topology = llm_case(algorithm)
    cfg = tiny_llm(tmp_path, rounds=40, log_every=10, n_clients=3, participation=0, algorithm=block)
    cfg.write_text(cfg.read_text() + topology)
    assert main(["llm", "--config", str(cfg), "--out", str(tmp_path / "full"), "--quiet"]) == 0
    out = tmp_path / "killed"
    kill_after_checkpoint([sys.executable, "-m", "theory_lab", "llm", "--config", str(cfg), "--out", str(out),
                           "--quiet"], out, min_round=6)
    assert main(["llm", "--resume", str(out), "--quiet"]) == 0
    pd.testing.assert_frame_equal(table(out)[SAME], table(tmp_path / "full")[SAME])
    # the averaged adapter is a peft directory in safetensors, and loads back
    from peft import PeftModel

    from llm.model import load_model

    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    base, _ = load_model("tiny")
    loaded = PeftModel.from_pretrained(base, str(out / "adapter"))
    lora_b = [p for n, p in loaded.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)  # trained (B starts at 0)


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data is not beside the checkout")
def test_fedpdpo_resume_restores_the_personal_modules(tmp_path):
    """The personal modules (and their AdamW state) live in the oracle, not the parameter stack:
    the checkpoint must carry them, or a resumed FedPDPO run restarts them from scratch."""
    cfg = tiny_llm(tmp_path, rounds=6, log_every=2, n_clients=2, participation=2,
                   personal="[llm.personal]\nenabled = true\nhead_rank = 2\nbottleneck_dim = 4\nlr = 0.05\n")
    assert main(["llm", "--config", str(cfg), "--out", str(tmp_path / "full"), "--quiet"]) == 0
    part = tmp_path / "part"
    assert main(["llm", "--config", str(cfg), "--out", str(part), "--quiet"]) == 0
    (part / "results.csv").unlink()
    assert main(["llm", "--resume", str(part), "--quiet"]) == 0  # from round 4 of 6
    pd.testing.assert_frame_equal(table(part)[SAME], table(tmp_path / "full")[SAME])
    from safetensors.torch import load_file

    full, resumed = (load_file(str(d / "adapter" / "personal.safetensors")) for d in (tmp_path / "full", part))
    assert all(torch.equal(full[k], resumed[k]) for k in full)


def test_resume_refuses_a_checkpoint_of_another_config(tmp_path, capsys):
    cfg = write(tmp_path, rounds=20)
    out = tmp_path / "o"
    assert main(["synthetic", "--config", str(cfg), "--out", str(out), "--quiet"]) == 0
    other = write(tmp_path, "other.toml", rounds=20, q_max=0)
    assert main(["synthetic", "--config", str(other), "--resume", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "another config" in err and len(err.strip().splitlines()) == 1
    assert "algorithm.q_max:" in err   # names the field that differs, with both values


def test_sweep_resume_skips_finished_runs(tmp_path):
    cfg = write(tmp_path, rounds=20)
    cfg.write_text(cfg.read_text() + '\n[sweep.grid]\n"algorithm.lr" = [0.5, 1.0]\n')
    out = tmp_path / "sweep"
    assert main(["sweep", "--config", str(cfg), "--out", str(out), "--quiet"]) == 0
    first = table(out)
    stamp = (out / "points" / "000" / "results.csv").stat().st_mtime_ns
    (out / "points" / "001" / "results.csv").unlink()  # as if killed during the second run
    assert main(["sweep", "--config", str(cfg), "--resume", str(out), "--quiet"]) == 0
    assert (out / "points" / "000" / "results.csv").stat().st_mtime_ns == stamp
    pd.testing.assert_frame_equal(table(out)[SAME], first[SAME])


def test_divergence_keeps_the_last_good_checkpoint(tmp_path, capsys):
    cfg = write(tmp_path, rounds=200, log_every=1, every=1, optimizer="sgd", q_max=0)
    out = tmp_path / "o"
    assert main(["synthetic", "--config", str(cfg), "--out", str(out), "--quiet", "--set", "algorithm.lr=1e12",
                 "--set", "problem.beta=5.0"]) == 2
    err = capsys.readouterr().err
    assert "diverged" in err and "2/L" in err
    meta = json.loads((out / "checkpoint" / "meta.json").read_text())
    assert meta["round"] >= 0 and f"round {meta['round'] + 1}" in err  # checkpoint = the round before


def test_atomic_outputs_keep_the_previous_results_when_a_write_fails(tmp_path, monkeypatch, capsys):
    cfg = write(tmp_path, rounds=10)
    out = tmp_path / "o"
    assert main(["synthetic", "--config", str(cfg), "--out", str(out), "--quiet"]) == 0
    before = (out / "results.csv").read_bytes()

    def full_disk(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", full_disk)
    assert main(["synthetic", "--config", str(cfg), "--out", str(out), "--quiet", "--set", "algorithm.lr=0.5",
                 "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and len(err.strip().splitlines()) == 1
    assert (out / "results.csv").read_bytes() == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left behind
