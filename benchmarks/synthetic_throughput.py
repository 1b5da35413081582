"""Synthetic-track throughput: client-steps per second of the batched FedDPO against the same
maths written as a plain per-client loop, and against the batched gradient floor.

    .venv/bin/python benchmarks/synthetic_throughput.py                 # the default sizes
    .venv/bin/python benchmarks/synthetic_throughput.py --seeds 8 --clients 64 --dim 16 \
        --batch 16 --steps 5 --json out.json                            # one size

A client-step is one local SGD step of one client of one seed (replica), so a FedDPO round with
E local steps is S·N·E client-steps. Three ways of doing the same work are timed:

  ours    the real FedDPO (theory_lab.algorithms) built the way theory_lab.runner builds it,
          timing `alg.round(r)` only (no metric evaluation); full participation, SGD.
  plain   the same maths the naive way: Python loops over seeds, clients and local steps, each
          client's minibatch gradient of the logistic DPO loss from its own small arrays, then the
          weighted average. Two variants, numpy and torch; the faster one is the baseline. It
          draws the same minibatch indices (the same `sample_batch` calls on the same generator),
          and its models are checked to match ours after a few rounds.
  floor   one `oracle.sample_batch` + `oracle.grad(X, None, batch)` for the whole [S, N, d] stack
          per local step: the cost of a step of this size if the algorithm added nothing.

Targets (the issue): ours ≥ 100× plain; ours' time per local step ≤ 2× the floor's.
Every figure is the median over repeats of a timed block (time.perf_counter), after warm-up;
the three are interleaved repeat by repeat and each ratio is the median of per-repeat ratios, so
both sides of a ratio ran under the same load on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time

import numpy as np
import torch

from synthetic.problem import ProblemConfig
from theory_lab.algorithms import make_algorithm
from theory_lab.communicator import InProcessCommunicator
from theory_lab.config import AlgorithmConfig, ExperimentConfig, RunConfig
from theory_lab.runner import make_oracle

# (S seeds, N clients, d, b, E local steps, H horizon)
DEFAULT_SIZES = [
    (2, 16, 8, 16, 5, 1),
    (8, 64, 16, 16, 5, 1),
    (16, 256, 32, 16, 5, 1),
    (8, 64, 16, 16, 5, 3),
]


# ----------------------------------------------------------------------------- setup

def build(S, N, d, b, E, H, pairs):
    cfg = ExperimentConfig(
        run=RunConfig(seeds=list(range(S)), rounds=1000, seed=0),
        problem=ProblemConfig(n_clients=N, dim=d, horizon=H, pairs_per_client=pairs,
                              heldout_pairs=8, l2=0.01, n_contexts=20, n_actions=5),
        algorithm=AlgorithmConfig(name="feddpo", local_steps=E, batch_size=b, lr=0.1,
                                  optimizer="sgd", schedule="constant"),
    )
    cfg.validate()
    return cfg, make_oracle(cfg)


def make_feddpo(cfg, oracle, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return make_algorithm(cfg.algorithm, oracle, InProcessCommunicator(), gen, cfg.run.rounds)


# ----------------------------------------------------------------------------- the plain loop

class PlainLoop:
    """FedDPO written the naive way: one client at a time, small per-client arrays.

    Per local step of client i of seed s, with minibatch rows Z [b, d] (and visit rows V [b, m]
    when H > 1):  h = β[Z(x − θ_ref) − V(A_x − A_ref)],  c = σ(−h)/b,
    g = −β(cᵀZ − (cᵀV) μ_x) + l2·x,  x ← x − lr·g;  then θ_s ← θ_s + η_s(Σ_i w_i x_i − θ_s).
    """

    def __init__(self, cfg, oracle, backend: str):
        p, a = oracle.problem, cfg.algorithm
        self.oracle, self.backend = oracle, backend
        self.S, self.N, self.E, self.b = oracle.n_seeds, oracle.n_clients, a.local_steps, a.batch_size
        self.lr, self.server_lr, self.beta, self.l2 = a.lr, a.server_lr, p.beta, p.l2
        conv = (lambda t: t.numpy().copy()) if backend == "numpy" else (lambda t: t.clone())
        sizes = p.sizes.tolist()
        # Per-client arrays, each client's own pairs only (setup, not timed).
        self.D = [[conv(p.dphi[s, i, : sizes[i]]) for i in range(self.N)] for s in range(self.S)]
        self.V = None
        if p.visits is not None:
            self.V = [[conv(p.visits[s, i, : sizes[i]]) for i in range(self.N)] for s in range(self.S)]
            self.F = [conv(p.features[s]) for s in range(self.S)]           # [m, k, d]
            self.A_ref = [conv(oracle.A_ref[s]) for s in range(self.S)]     # [m]
        self.ref = [conv(p.theta_ref[s]) for s in range(self.S)]
        w = p.client_weights / p.client_weights.sum(1, keepdim=True)
        self.w = w.tolist()                                                 # python floats
        self.server = conv(oracle.init_params())
        self.gen = torch.Generator().manual_seed(0)

    def _policy(self, F, x):
        if self.backend == "numpy":
            logits = F @ x                                                  # [m, k]
            mx = logits.max(-1, keepdims=True)
            A = mx[:, 0] + np.log(np.exp(logits - mx).sum(-1))
            pi = np.exp(logits - A[:, None])
            return A, np.einsum("ma,mad->md", pi, F)
        logits = F @ x
        A = torch.logsumexp(logits, -1)
        pi = torch.exp(logits - A[:, None])
        return A, torch.einsum("ma,mad->md", pi, F)

    def _client(self, s, i, x, batches):
        beta, l2, lr, b = self.beta, self.l2, self.lr, self.b
        D, ref = self.D[s][i], self.ref[s]
        npy = self.backend == "numpy"
        for e in range(self.E):
            idx = batches[e][s][i]
            Z = D[idx]                                                      # [b, d]
            h = Z @ (x - ref)
            if self.V is not None:
                V = self.V[s][i][idx]                                       # [b, m]
                A, mu = self._policy(self.F[s], x)
                h = h - V @ (A - self.A_ref[s])
            h = beta * h
            c = (1.0 / (1.0 + np.exp(h)) if npy else torch.sigmoid(-h)) / b  # σ(−h)/b
            g = c @ Z
            if self.V is not None:
                g = g - (c @ V) @ mu
            x = x - lr * (l2 * x - beta * g)
        return x

    def round(self):
        # The same draws as FedDPO: one sample_batch over all clients per local step.
        batches = [self.oracle.sample_batch(self.gen, self.b) for _ in range(self.E)]
        if self.backend == "numpy":
            batches = [bt.numpy() for bt in batches]
        new = []
        for s in range(self.S):
            theta = self.server[s]
            acc = 0.0 * theta
            for i in range(self.N):
                acc = acc + self.w[s][i] * self._client(s, i, theta, batches)
            new.append(theta + self.server_lr * (acc - theta))
        self.server = np.stack(new) if self.backend == "numpy" else torch.stack(new)


# ----------------------------------------------------------------------------- timing

def calibrate(fn, warmup_calls, min_block_s):
    """Warm up, and return k: how many calls make a timed block of about min_block_s."""
    t0 = time.perf_counter()
    for _ in range(warmup_calls):
        fn()
    per_call = (time.perf_counter() - t0) / max(warmup_calls, 1)
    return max(1, math.ceil(min_block_s / max(per_call, 1e-9)))


def block(fn, k):
    t0 = time.perf_counter()
    for _ in range(k):
        fn()
    return (time.perf_counter() - t0) / k


def check_plain_matches(cfg, oracle, backend, rounds=2):
    """Max |ours − plain| of the server models after `rounds` rounds from the same generator seed."""
    alg = make_feddpo(cfg, oracle, seed=0)
    plain = PlainLoop(cfg, oracle, backend)
    for r in range(rounds):
        alg.round(r)
        plain.round()
    theirs = torch.as_tensor(np.asarray(plain.server)) if backend == "numpy" else plain.server
    return float((alg.model() - theirs).abs().max())


def bench_size(S, N, d, b, E, H, *, pairs, repeats, min_block_s, plain_backends, log):
    """The three measurements are interleaved, repeat by repeat, so that each ratio compares
    blocks taken under the same load (the machine is shared); medians over repeats."""
    t0 = time.perf_counter()
    cfg, oracle = build(S, N, d, b, E, H, pairs)
    log(f"[S={S} N={N} d={d} b={b} E={E} H={H}] oracle built in {time.perf_counter() - t0:.1f}s")
    steps_per_round = S * N * E            # client-steps in one FedDPO round

    errors = {}
    for backend in plain_backends:
        err = check_plain_matches(cfg, oracle, backend)
        if not err < 1e-9:
            raise RuntimeError(f"plain loop ({backend}) disagrees with FedDPO: max |diff| = {err:.3g}")
        errors[backend] = err

    # ours: FedDPO rounds (seconds per round)
    alg = make_feddpo(cfg, oracle, seed=1)
    counter = iter(range(10**9))

    def ours_round():
        alg.round(next(counter))

    # floor: sample_batch + one batched gradient of the full [S, N, d] stack (seconds per step)
    X = oracle.init_params()[:, None].expand(-1, N, -1).contiguous()
    gen = torch.Generator().manual_seed(2)

    def floor_step():
        oracle.grad(X, None, oracle.sample_batch(gen, b))

    loops = {backend: PlainLoop(cfg, oracle, backend) for backend in plain_backends}
    k_ours = calibrate(ours_round, 3, min_block_s)
    k_floor = calibrate(floor_step, 3 * E, min_block_s)
    for loop in loops.values():
        loop.round()                                                    # warm-up
    samples = {"ours": [], "floor": [], **{f"plain_{k}": [] for k in loops}}
    for _ in range(repeats):
        samples["ours"].append(block(ours_round, k_ours))
        samples["floor"].append(block(floor_step, k_floor))
        for backend, loop in loops.items():                             # one round per block
            samples[f"plain_{backend}"].append(block(loop.round, 1))
    if not torch.isfinite(alg.model()).all():
        raise RuntimeError("FedDPO diverged during the benchmark")

    med = statistics.median
    ours_s, floor_s = med(samples["ours"]), med(samples["floor"])
    over_floor = med(o / (f * E) for o, f in zip(samples["ours"], samples["floor"]))
    plain = {}
    for backend in loops:
        ps = samples[f"plain_{backend}"]
        plain[backend] = {
            "round_s": med(ps), "client_steps_per_s": steps_per_round / med(ps),
            "speedup": med(p / o for p, o in zip(ps, samples["ours"])),
            "max_abs_diff": errors[backend], "round_samples_s": ps,
        }
        log(f"  plain/{backend}: {med(ps) * 1e3:.1f} ms/round, ours is {plain[backend]['speedup']:.1f}x "
            f"faster; matches FedDPO to {errors[backend]:.1e}")
    best = min(plain, key=lambda k: plain[k]["round_s"]) if plain else None
    row = {
        "S": S, "N": N, "d": d, "b": b, "E": E, "H": H, "pairs_per_client": pairs,
        "client_steps_per_round": steps_per_round,
        "ours_round_s": ours_s, "ours_step_s": ours_s / E,
        "ours_client_steps_per_s": steps_per_round / ours_s,
        "floor_step_s": floor_s, "floor_client_steps_per_s": S * N / floor_s,
        "ours_over_floor": over_floor,
        "plain": plain, "plain_best": best,
        "speedup_vs_plain": plain[best]["speedup"] if best else None,
        "ours_round_samples_s": samples["ours"], "floor_step_samples_s": samples["floor"],
    }
    log(f"  ours {ours_s * 1e3:.3f} ms/round ({row['ours_client_steps_per_s']:,.0f} client-steps/s), "
        f"floor {floor_s * 1e3:.3f} ms/step, ours/floor {over_floor:.2f}")
    return row


def fmt_rate(x):
    return f"{x / 1e6:.2f} M" if x >= 1e6 else f"{x / 1e3:.1f} k"


def markdown(rows, threads):
    out = [
        f"torch threads: {threads}; client-steps/s = S·N·E / wall time; "
        "ours/floor = FedDPO time per local step ÷ one batched sample+grad of the same size.",
        "",
        "| S | N | d | b | E | H | ours: ms/round | ours: client-steps/s | plain numpy: client-steps/s "
        "| plain torch: client-steps/s | floor: ms/step | floor: client-steps/s "
        "| ours ÷ fastest plain (target ≥100×) | ours ÷ plain torch | ours step ÷ floor step (target ≤2×) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        pn = r["plain"].get("numpy", {}).get("client_steps_per_s")
        pt = r["plain"].get("torch", {}).get("client_steps_per_s")
        sp = r["speedup_vs_plain"]
        spt = r["plain"].get("torch", {}).get("speedup")
        out.append(
            f"| {r['S']} | {r['N']} | {r['d']} | {r['b']} | {r['E']} | {r['H']} "
            f"| {r['ours_round_s'] * 1e3:.2f} | {fmt_rate(r['ours_client_steps_per_s'])} "
            f"| {fmt_rate(pn) if pn else '-'} | {fmt_rate(pt) if pt else '-'} "
            f"| {r['floor_step_s'] * 1e3:.3f} | {fmt_rate(r['floor_client_steps_per_s'])} "
            f"| {f'{sp:.1f}×' if sp else '-'} | {f'{spt:.1f}×' if spt else '-'} "
            f"| {r['ours_over_floor']:.2f}× |")
    sp = [r["speedup_vs_plain"] for r in rows if r["speedup_vs_plain"]]
    of = [r["ours_over_floor"] for r in rows]
    out.append("")
    if sp:
        out.append(f"ours ≥ 100× fastest plain loop: {sum(x >= 100 for x in sp)}/{len(sp)} sizes "
                   f"(range {min(sp):.1f}×–{max(sp):.1f}×)")
    out.append(f"ours within 2× of the floor: {sum(x <= 2 for x in of)}/{len(of)} sizes "
               f"(range {min(of):.2f}×–{max(of):.2f}×)")
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, help="S replicas (with --clients etc.: one size only)")
    ap.add_argument("--clients", type=int, help="N clients")
    ap.add_argument("--dim", type=int, help="d parameters")
    ap.add_argument("--batch", type=int, help="b pairs per client per local step")
    ap.add_argument("--steps", type=int, help="E local steps per round")
    ap.add_argument("--horizon", type=int, help="H (1 = bandit, >1 = trajectory model)")
    ap.add_argument("--pairs", type=int, default=100, help="pairs per client (default 100)")
    ap.add_argument("--repeats", type=int, default=5, help="timed blocks per measurement (median)")
    ap.add_argument("--block", type=float, default=0.1, help="seconds per timed block (ours, floor)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: all cores)")
    ap.add_argument("--plain", default="numpy,torch", help="plain-loop backends: numpy,torch")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    threads = torch.get_num_threads()
    one = [args.seeds, args.clients, args.dim, args.batch, args.steps, args.horizon]
    if any(v is not None for v in one):
        defaults = DEFAULT_SIZES[1]
        sizes = [tuple(v if v is not None else dv for v, dv in zip(one, defaults))]
    else:
        sizes = DEFAULT_SIZES
    backends = [b for b in args.plain.split(",") if b]
    for b in backends:
        if b not in ("numpy", "torch"):
            ap.error(f"--plain: unknown backend {b!r}")

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    machine = {
        "nproc": os.cpu_count(), "torch": torch.__version__, "numpy": np.__version__,
        "python": platform.python_version(), "platform": platform.platform(),
        "torch_threads": threads, "loadavg_start": os.getloadavg(),
    }
    log(f"machine: {machine}")
    t0 = time.perf_counter()
    rows = [bench_size(*size, pairs=args.pairs, repeats=args.repeats, min_block_s=args.block,
                       plain_backends=backends, log=log) for size in sizes]
    machine["loadavg_end"] = os.getloadavg()
    log(f"total {time.perf_counter() - t0:.1f}s; load average at start {machine['loadavg_start']}, "
        f"at end {machine['loadavg_end']}")
    print(markdown(rows, threads))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": machine, "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
