"""Communication per round: the in-process communicator against torch.distributed (gloo) with
2 and 4 processes, and the bytes each moves against the analytic count.

    .venv/bin/python benchmarks/comm_round.py                       # N = 8 clients, P in 1e3..1e6
    .venv/bin/python benchmarks/comm_round.py --dims 460800 --procs 2 --json out.json

The two primitives the algorithms call once per round are timed on a float32 stack X [1, N, P]
(the LLM track's dtype; P = 460 800 is SmolLM2-135M's LoRA r = 8 on q_proj, v_proj):

  average   FedDPO's server step: the weighted mean of the N client rows (one all_reduce of the
            rank's partial sum over torch.distributed).
  gossip    DecDPO's step X <- W X on a ring (Metropolis weights): each rank sends exactly the rows
            its neighbours on other ranks read, with batch_isend_irecv.

Bytes, summed over ranks per call: `measured` is TorchCommunicator.bytes_sent; `analytic` is
W·P·4 for the all_reduce (each rank hands in one P-vector) and, for gossip, 4·P times the number
of (row, other rank) pairs where that rank has a row whose mixing weight on it is non-zero. The
algorithms' logical count (`logical`: 2·N·P·4 for a server round, one P-vector per directed edge
for gossip) is what a deployment with one client per machine would move.

Each figure is the median over repeats of the slowest rank's time for one call (a barrier
before each), after warm-up. On this 2-core machine 4 processes share 2 cores: that row measures
oversubscription as much as gloo.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from theory_lab.communicator import InProcessCommunicator  # noqa: E402
from theory_lab.distributed import TorchCommunicator, init_from_env
from theory_lab.topology import TopologyConfig, make_topology  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))



def ring(n: int) -> torch.Tensor:
    return torch.as_tensor(make_topology(TopologyConfig(name="ring"), n).W(), dtype=torch.float32)


def gossip_analytic(W: torch.Tensor, world: int) -> int:
    """(row, other rank) pairs in which the other rank reads the row: the rows gossip must send."""
    owner = np.zeros(len(W), dtype=int)
    for r, block in enumerate(np.array_split(np.arange(len(W)), world)):
        owner[block] = r
    need = (W != 0).numpy()
    return sum(int(need[owner == peer][:, j].any()) for j in range(len(W)) for peer in range(world)
               if peer != owner[j])


def time_calls(fn, repeats: int, barrier=lambda: None, reduce_max=lambda t: t) -> float:
    for _ in range(3):  # warm-up: first calls set up gloo's pairs and buffers
        fn()
    times = []
    for _ in range(repeats):
        barrier()
        start = time.perf_counter()
        fn()
        times.append(reduce_max(time.perf_counter() - start))
    return statistics.median(times)


def in_process(n: int, dims: list[int], repeats: int) -> list[dict]:
    comm, W, rows = InProcessCommunicator(), ring(n), []
    for p in dims:
        X, w = torch.randn(1, n, p), torch.ones(1, n)
        rows.append({"procs": 1, "P": p, "average_ms": 1e3 * time_calls(lambda: comm.average(X, w), repeats),
                     "gossip_ms": 1e3 * time_calls(lambda: comm.mix(X, W), repeats)})
    return rows


def worker(n: int, dims: list[int], repeats: int, out: str) -> None:
    """One rank under torchrun: time both primitives and count the bytes handed to gloo."""
    init_from_env(60.0)
    comm, W, world = TorchCommunicator(n, 60.0), ring(n), dist.get_world_size()

    def slowest(t: float) -> float:
        x = torch.tensor([t], dtype=torch.float64)
        dist.all_reduce(x, op=dist.ReduceOp.MAX)
        return float(x)

    def total_bytes(fn) -> int:
        before = comm.bytes_sent
        fn()
        x = torch.tensor([comm.bytes_sent - before], dtype=torch.float64)
        dist.all_reduce(x)
        return int(x)

    rows = []
    for p in dims:
        X, w = torch.randn(1, n, p, generator=torch.Generator().manual_seed(0)), torch.ones(1, n)
        expected = InProcessCommunicator()
        assert torch.allclose(comm.average(X, w), expected.average(X, w), atol=1e-5)
        mine = comm.owned.nonzero().squeeze(1)
        assert torch.allclose(comm.mix(X, W)[:, mine], expected.mix(X, W)[:, mine], atol=1e-5)
        rows.append({
            "procs": world, "P": p,
            "average_ms": 1e3 * time_calls(lambda: comm.average(X, w), repeats, dist.barrier, slowest),
            "gossip_ms": 1e3 * time_calls(lambda: comm.mix(X, W), repeats, dist.barrier, slowest),
            "average_bytes": total_bytes(lambda: comm.average(X, w)), "average_analytic": world * p * 4,
            "gossip_bytes": total_bytes(lambda: comm.mix(X, W)), "gossip_analytic": gossip_analytic(W, world) * p * 4,
            "average_logical": 2 * n * p * 4, "gossip_logical": int((W != 0).sum() - n) * p * 4,
        })
    if dist.get_rank() == 0:
        Path(out).write_text(json.dumps(rows))
    dist.barrier()
    dist.destroy_process_group()


def launch(procs: int, n: int, dims: list[int], repeats: int) -> list[dict]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.json"
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={procs}", f"--master-port={port}",
               __file__, "--worker", out.as_posix(), "--clients", str(n), "--repeats", str(repeats),
               "--dims", *map(str, dims)]
        subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1", "DDPO_BACKEND": "gloo"})
        return json.loads(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--dims", type=int, nargs="+", default=[1000, 100_000, 460_800, 1_000_000])
    ap.add_argument("--procs", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--json", help="write the rows here")
    ap.add_argument("--worker", metavar="OUT", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args.clients, args.dims, args.repeats, args.worker)
    torch.set_num_threads(1)
    rows = in_process(args.clients, args.dims, args.repeats)
    for procs in args.procs:
        rows += launch(procs, args.clients, args.dims, args.repeats)
    head = f"{'procs':>5} {'P':>9} {'average ms':>11} {'gossip ms':>10} {'avg bytes (analytic)':>24} " \
           f"{'gossip bytes (analytic)':>26} {'logical avg / gossip':>22}"
    print(f"N = {args.clients} clients, float32, ring gossip; median of {args.repeats}\n{head}")
    for r in rows:
        line = f"{r['procs']:>5} {r['P']:>9} {r['average_ms']:>11.3f} {r['gossip_ms']:>10.3f}"
        if r["procs"] > 1:
            line += (f" {r['average_bytes']:>11} ({r['average_analytic']:>10}) {r['gossip_bytes']:>12} "
                     f"({r['gossip_analytic']:>11}) {r['average_logical']:>10} / {r['gossip_logical']}")
        print(line)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
