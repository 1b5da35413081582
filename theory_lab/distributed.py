"""Clients spread over processes with torch.distributed: the same communicator interface as the
in-process one, so the algorithms run unchanged.

Each rank holds a contiguous block of clients. Every rank keeps stacks of full size but only its
own rows are live: it computes gradients only for them (`ShardedOracle`), averages by
all_reduce of its rows' weighted sum, and gossips with `batch_isend_irecv`, sending exactly the
rows its graph neighbours on other ranks need, with the mixing weights applied on arrival. Random
draws (minibatches, participants, delays) are made identically on every rank for all clients,
which is what makes a multi-process run reproduce the in-process one. gloo on CPU, NCCL on GPU.

A rank that dies or hangs makes the others stop within the timeout with an error naming it.
Every rank keeps two counters in a side TCPStore: a heartbeat, bumped every second by a thread,
and the number of communications it has entered. A rank whose heartbeat has stopped is dead (a
killed rank may die inside the same collective as the others, so the call count alone cannot
name it); otherwise the rank behind in calls is the one that hung.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist

from theory_lab.errors import LabError


class TorchCommunicator:
    def __init__(self, n_clients: int, timeout_s: float = 60.0):
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.timeout_s = timeout_s
        owner = np.zeros(n_clients, dtype=int)
        for r, block in enumerate(np.array_split(np.arange(n_clients), self.world)):
            owner[block] = r
        self.owner = torch.as_tensor(owner)
        self.owned = self.owner == self.rank  # [N] bool
        self.bytes_sent = 0
        self.calls = 0
        self.store = _side_store(self.rank, self.world, timeout_s)
        self._stop = threading.Event()
        self._beat = threading.Thread(target=_heartbeat, args=(self.rank, timeout_s, self._stop), daemon=True)
        self._beat.start()
        # A daemon thread caught inside a store call when the interpreter finalizes aborts the
        # process ("terminate called without an active exception", a torchrun rank's SIGABRT after
        # a finished run): stop the heartbeat before that, on every way out.
        atexit.register(self.close)

    def close(self) -> None:
        """Stop the heartbeat thread and wait for it (idempotent)."""
        self._stop.set()
        self._beat.join()

    # ---- the communicator interface ----
    def average(self, X, weights, clients=None):
        w = weights * self._mine(weights.shape, clients).to(weights.device)
        total = torch.einsum("sk,skp->sp", w.to(X), X)
        self._all_reduce(total)
        return total / weights.sum(dim=1, keepdim=True).to(X.dtype)

    def rows(self, T):
        """Every client's row from the rank that holds it (the others' copies are stale): all_reduce
        of the rows masked to this rank's clients."""
        out = T * self.owned.to(T.device)[None, :, None].to(T.dtype)
        self._all_reduce(out)
        return out

    def consensus(self, X, center, clients=None):
        sq = (X - center.unsqueeze(1)).pow(2).sum(-1) * self._mine(X.shape[:2], clients).to(X.device)
        total = sq.sum(1)
        self._all_reduce(total)
        return total / X.shape[1]

    def mix(self, X, W):
        W = torch.as_tensor(W, dtype=X.dtype, device=X.device)
        need = (W != 0).cpu().numpy()
        mine = self.owned.numpy()
        full = X.clone()
        ops, inbox = [], []
        for peer in range(self.world):
            if peer == self.rank:
                continue
            theirs = (self.owner == peer).numpy()
            send = np.flatnonzero(mine & need[theirs].any(0))   # my rows their rows need
            recv = np.flatnonzero(theirs & need[mine].any(0))   # their rows my rows need
            if len(send):
                out = X[:, send].contiguous()
                ops.append(dist.P2POp(dist.isend, out, peer))
                self.bytes_sent += out.numel() * out.element_size()
            if len(recv):
                buf = torch.empty_like(X[:, recv])
                ops.append(dist.P2POp(dist.irecv, buf, peer))
                inbox.append((recv, buf))
        if ops:
            self._enter()
            try:
                for req in dist.batch_isend_irecv(ops):
                    req.wait()
            except RuntimeError as err:
                raise self._lost(err) from None
        for rows, buf in inbox:
            full[:, rows] = buf
        return torch.matmul(W, full)  # own rows are exact; other rows are never read

    # ---- helpers ----
    def _mine(self, shape, clients):
        """[S, K] 1.0 where the row belongs to this rank (on the host)."""
        ids = torch.arange(len(self.owned)).expand(shape[0], -1) if clients is None else clients
        return self.owned[ids].to(torch.float64)

    def _all_reduce(self, t: torch.Tensor) -> None:
        self._enter()
        try:
            dist.all_reduce(t)
        except RuntimeError as err:
            raise self._lost(err) from None
        self.bytes_sent += t.numel() * t.element_size()

    def _enter(self) -> None:
        self.calls += 1
        self.store.add(f"calls/{self.rank}", 1)

    def _lost(self, err: Exception) -> LabError:
        """Name the rank that died (heartbeat stopped) or hung (behind in calls), from the side store."""
        try:
            before = self._read("beat")
            time.sleep(2.5 * HEARTBEAT_S)
            after, calls = self._read("beat"), self._read("calls")
        except Exception:  # the store lives on rank 0: if it is gone, rank 0 is
            return LabError(f"rank {self.rank}: lost rank 0 (its store is gone) after "
                            f"{self.calls} communications: {_first_line(err)}")
        dead = [r for r in range(self.world) if r != self.rank and after[r] == before[r]]
        behind = [r for r in range(self.world) if calls[r] < max(calls)]
        if dead:
            who, why = dead, "dead or frozen: its heartbeat stopped"
        else:
            who, why = behind, f"silent for {self.timeout_s:g} s"
        return LabError(f"rank {self.rank}: lost rank {', '.join(map(str, who)) or 'unknown'} ({why}) "
                        f"at communication {self.calls}: {_first_line(err)}")

    def _read(self, counter: str) -> list[int]:
        return [self.store.add(f"{counter}/{r}", 0) for r in range(self.world)]


class ShardedOracle:
    """An oracle that computes gradients only for this rank's clients (zeros elsewhere)."""

    def __init__(self, oracle, owned: torch.Tensor):
        self._oracle, self._owned = oracle, owned

    def __getattr__(self, name):
        return getattr(self._oracle, name)

    def grad(self, X, clients, batch):
        return self._mine(self._oracle.grad, X, clients, batch)

    def local_step(self, X, clients, batch):
        return self._mine(self._oracle.local_step, X, clients, batch)

    def _mine(self, fn, X, clients, batch):
        """fn on this rank's rows; zeros on the others'."""
        S, K = X.shape[:2]
        ids = torch.arange(K).expand(S, K) if clients is None else clients
        mine = self._owned[ids]
        if S == 1:  # LLM track: skip other ranks' rows entirely (each row is a forward/backward)
            sel = mine[0].nonzero().squeeze(1)
            out = torch.zeros_like(X)
            if sel.numel():
                out[:, sel] = fn(X[:, sel], ids[:, sel], batch)
            return out
        return fn(X, clients, batch) * mine.unsqueeze(-1).to(X)


def rank_name() -> str:
    """"rank{r}of{world}" from torchrun's environment: each rank checkpoints its own clients in a
    folder of that name, so a resume with another world size finds nothing instead of the
    wrong clients."""
    missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise LabError(f"--backend torch: {', '.join(missing)} not set; launch with "
                       "`torchrun --nproc-per-node N -m theory_lab ... --backend torch`")
    return f"rank{os.environ['RANK']}of{os.environ['WORLD_SIZE']}"


def init_from_env(timeout_s: float) -> None:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT)."""
    rank_name()
    backend = "nccl" if torch.cuda.is_available() and os.environ.get("DDPO_BACKEND") != "gloo" else "gloo"
    try:
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    except (RuntimeError, ValueError) as err:
        raise LabError(f"rank {os.environ['RANK']}: could not join the process group within "
                       f"{timeout_s:g} s: {_first_line(err)}") from None


HEARTBEAT_S = 1.0


def _heartbeat(rank: int, timeout_s: float, stop: threading.Event) -> None:
    """Bump beat/{rank} every HEARTBEAT_S through a connection of its own, until `stop` is set."""
    store = _side_store(rank, 0, timeout_s, master=False)
    while not stop.wait(HEARTBEAT_S):
        try:
            store.add(f"beat/{rank}", 1)
        except Exception:  # the store (rank 0) is gone: the main thread reports it
            return


def _side_store(rank: int, world: int, timeout_s: float, master: bool | None = None):
    host, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]) + 1
    is_master = rank == 0 if master is None else master
    return dist.TCPStore(host, port, world if is_master else None, is_master=is_master,
                         timeout=timedelta(seconds=timeout_s), wait_for_workers=False)


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
