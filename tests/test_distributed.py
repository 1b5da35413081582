"""Clients over processes with torch.distributed (gloo): the multi-process run reproduces the
in-process run's metrics with the same seeds, and a killed rank stops the others with an error
naming it, within the timeout."""

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from theory_lab.cli import main

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
METRICS = ["subopt", "grad_norm_sq", "consensus_error", "consensus_error_pre", "train_loss",
           "eval_pref_acc", "reward_margin", "comm_bytes"]

SYNTHETIC = """
[run]
seeds = [0, 1]
rounds = 12
log_every = 3
[problem]
n_clients = 8
pairs_per_client = 30
heldout_pairs = 10
dim = 4
n_contexts = 6
heterogeneity = 1.0
dirichlet_alpha = 0.5
[algorithm]
batch_size = 4
"""


def free_port() -> int:
    """A port p with p and p + 1 free (the side store listens on MASTER_PORT + 1), drawn below
    Linux's ephemeral range (32768-60999): an OS-assigned port lies inside that range, where any
    process's outgoing connection can take p + 1 before the ranks bind it (a flaky failure seen
    when the suite ran beside other jobs)."""
    rng = random.Random()
    for _ in range(100):
        port = rng.randrange(20000, 32000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("", port))
                b.bind(("", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no two adjacent free ports in 20000-32000")


def torchrun(nproc: int, args: list[str], timeout=180) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}",
           f"--master-port={free_port()}", "-m", "theory_lab", *args, "--backend", "torch", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)


def why(done: subprocess.CompletedProcess) -> str:
    """A failed run's stderr: the ranks' own lines first (torchrun's summary at the end only says
    which rank died and by which signal), then that summary's tail."""
    err = done.stderr
    return err if len(err) <= 4000 else err[:2500] + "\n[...]\n" + err[-1500:]


CASES = {
    "feddpo-partial-stale": ('name = "feddpo"\nlocal_steps = 2\nparticipation = 5\nq_max = 2\noptimizer = "adamw"\n'
                             'lr = 0.05', "", 2),
    "decdpo-ring": ('name = "decdpo"\nlocal_steps = 2\nlr = 1.0', '[topology]\nname = "ring"', 3),
    "decdpo-one-peer-exponential": ('name = "decdpo"\nlr = 1.0', '[topology]\nname = "one_peer_exponential"', 4),
    "scaffold": ('name = "scaffold"\nlocal_steps = 3\nparticipation = 6\nlr = 1.0', "", 2),
    "gradient-tracking": ('name = "gradient_tracking"\nlr = 1.0', '[topology]\nname = "ring"', 2),
    "feddpo-server-adam": ('name = "feddpo"\nlocal_steps = 2\nparticipation = 5\nlr = 1.0\nserver_opt = "adam"\n'
                           'server_lr = 0.05', "", 2),
    # factorised policy (FACTORISED): personal B factors with stale starts; the exact residual
    "feddpo-lora-fedsa": ('name = "feddpo"\nlocal_steps = 2\nparticipation = 5\nq_max = 2\noptimizer = "adamw"\n'
                          'lr = 0.05\nlora_aggregation = "fedsa"', "", 2),
    "scaffold-lora-ffa": ('name = "scaffold"\nlocal_steps = 2\nparticipation = 6\nlr = 1.0\nlora_aggregation = "ffa"',
                          "", 2),
    "feddpo-lora-exact": ('name = "feddpo"\nlocal_steps = 2\nparticipation = 5\nq_max = 2\nlr = 1.0\n'
                          'lora_aggregation = "exact"', "", 2),
}
FACTORISED = "dim = 4\nlora_rank = 1\nlora_rows = 2\n"
LORA_METRICS = ["lora_agg_error", "lora_agg_error_rel", "personal_pref_acc"]


@pytest.mark.parametrize("case", list(CASES))
def test_multi_process_reproduces_in_process(case, tmp_path):
    algorithm, extra, nproc = CASES[case]
    cfg = tmp_path / "cfg.toml"
    text = SYNTHETIC.replace("[algorithm]\n", "[algorithm]\n" + algorithm + "\n") + extra + "\n"
    lora = "lora_aggregation" in algorithm
    cfg.write_text(text.replace("dim = 4\n", FACTORISED) if lora else text)
    assert main(["synthetic", "--config", str(cfg), "--out", str(tmp_path / "one"), "--quiet"]) == 0
    done = torchrun(nproc, ["synthetic", "--config", str(cfg), "--out", str(tmp_path / "many")])
    assert done.returncode == 0, why(done)
    one, many = (pd.read_csv(tmp_path / d / "results.csv") for d in ("one", "many"))
    for m in METRICS + (LORA_METRICS if lora else []):
        np.testing.assert_allclose(many[m], one[m], rtol=1e-9, atol=1e-13, err_msg=m)
    assert one["subopt"].iloc[-1] < one["subopt"].iloc[0]


def test_multi_process_checkpoint_resumes_to_the_in_process_result(tmp_path):
    """Each rank checkpoints its own clients; resuming with the same world size continues the
    run exactly, and another world size is refused with one line."""
    cfg = tmp_path / "cfg.toml"
    algorithm, extra, _ = CASES["feddpo-partial-stale"]
    cfg.write_text(SYNTHETIC.replace("log_every = 3\n", "log_every = 3\ncheckpoint_every = 5\n")
                   .replace("[algorithm]\n", "[algorithm]\n" + algorithm + "\n") + extra + "\n")
    assert main(["synthetic", "--config", str(cfg), "--out", str(tmp_path / "one"), "--quiet"]) == 0
    many = tmp_path / "many"
    done = torchrun(2, ["synthetic", "--config", str(cfg), "--out", str(many)])
    assert done.returncode == 0, why(done)
    assert sorted(p.name for p in (many / "checkpoint").iterdir()) == ["rank0of2", "rank1of2"]
    (many / "results.csv").unlink()
    done = torchrun(2, ["synthetic", "--resume", str(many)])  # from round 10 of 12
    assert done.returncode == 0, why(done)
    one, resumed = (pd.read_csv(d / "results.csv") for d in (tmp_path / "one", many))
    for m in METRICS:
        np.testing.assert_allclose(resumed[m], one[m], rtol=1e-9, atol=1e-13, err_msg=m)
    done = torchrun(3, ["synthetic", "--resume", str(many)])
    assert done.returncode != 0 and "same number of processes" in done.stderr


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data is not beside the checkout")
def test_multi_process_reproduces_in_process_tiny_llm(tmp_path):
    cfg = tmp_path / "llm.toml"
    cfg.write_text(f"""track = "llm"
[run]
rounds = 3
[llm]
model = "tiny"
data_dir = "{DATA}"
dataset = "imdb-cad"
n_clients = 4
pairs_per_client = 6
heldout_per_client = 4
max_length = 40
max_prompt_length = 12
eval_batch_size = 4
[algorithm]
name = "decdpo"
local_steps = 2
batch_size = 2
lr = 0.05
[topology]
name = "ring"
""")
    assert main(["llm", "--config", str(cfg), "--out", str(tmp_path / "one"), "--quiet"]) == 0
    done = torchrun(2, ["llm", "--config", str(cfg), "--out", str(tmp_path / "many")])
    assert done.returncode == 0, why(done)
    one, many = (pd.read_csv(tmp_path / d / "results.csv") for d in ("one", "many"))
    for m in ["train_loss", "grad_norm_sq", "consensus_error", "eval_pref_acc", "reward_margin"]:
        np.testing.assert_allclose(many[m], one[m], rtol=2e-4, atol=1e-6, err_msg=m)  # float32 model


def test_killed_rank_ends_the_others_with_an_error_naming_it(tmp_path):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(SYNTHETIC.replace("rounds = 12", "rounds = 10000000").replace(
        "[algorithm]\n", '[algorithm]\nname = "decdpo"\nlr = 1.0\n') + '[topology]\nname = "ring"\n')
    port, procs = free_port(), []
    for rank in range(2):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "theory_lab", "synthetic", "--config", str(cfg), "--out", str(tmp_path / "o"),
             "--quiet", "--backend", "torch", "--timeout", "15"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    # wait until rank 1 is communicating: it records its calls in the side store (MASTER_PORT + 1)
    from datetime import timedelta

    import torch.distributed as dist

    deadline = time.time() + 90
    while True:
        assert time.time() < deadline, "the ranks never started communicating"
        assert procs[0].poll() is None and procs[1].poll() is None, procs[0].stderr.read()[-2000:]
        try:
            store = dist.TCPStore("127.0.0.1", port + 1, is_master=False, timeout=timedelta(seconds=2),
                                  wait_for_workers=False)
            if store.check(["calls/1"]) and int(store.get("calls/1")) > 5:
                break
        except (RuntimeError, ValueError):
            pass
        time.sleep(0.5)
    procs[1].send_signal(signal.SIGKILL)
    start = time.time()
    _, err = procs[0].communicate(timeout=60)
    assert time.time() - start < 30  # within the timeout (plus start-up slack)
    assert procs[0].returncode == 2, err[-2000:]
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "lost rank 1" in lines[0], err[-2000:]


EXIT_WITH_A_BUSY_HEARTBEAT = """
import torch.distributed as dist
from theory_lab import distributed
distributed.HEARTBEAT_S = 0.0   # the heartbeat thread always inside a store call
dist.init_process_group("gloo")
comm = distributed.TorchCommunicator(2, 10.0)   # held until the interpreter finalizes
"""


def test_a_rank_exits_cleanly_while_its_heartbeat_is_busy():
    """A daemon thread inside a store call when the interpreter finalizes aborts the process
    (SIGABRT, "terminate called without an active exception"): the communicator stops its
    heartbeat at exit. Without that, this exits with -6 nearly every time."""
    env = {**os.environ, "RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    for _ in range(3):
        done = subprocess.run([sys.executable, "-c", EXIT_WITH_A_BUSY_HEARTBEAT], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, why(done)
