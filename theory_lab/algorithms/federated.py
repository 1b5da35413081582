"""Server-based algorithms: FedDPO (FedAvg with E local steps, S-of-N sampling, server step size,
bounded staleness), FedProx (a proximal term in the local steps) and SCAFFOLD (control variates).

Staleness follows a real delay model: each participant starts its local steps from the server
model of d rounds ago, d ~ U{0..q_max} (or d = q_max), and the server either averages the
returned models (`model_average`, what the Jiang'26 code does) or applies the averaged deltas
to its current model (`delta`, asynchronous SGD).
"""

from __future__ import annotations

import torch

from theory_lab.algorithms.base import Algorithm, RoundInfo
from theory_lab.optim import Optimizer, gather_rows, put_rows


class FedDPO(Algorithm):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        o, cfg = self.oracle, self.cfg
        self.steps_per_round = cfg.local_steps
        self.server = o.init_params().clone()
        self.history = [self.server]  # server models of the last q_max rounds, newest first
        self.n_part = cfg.participation or o.n_clients
        self.opt = Optimizer(cfg, o.n_seeds, o.n_clients, o.dim, o.dtype, self.server.device)

    def sample_participants(self) -> torch.Tensor | None:
        """S of N clients per replica, without replacement ([S, K] sorted), or None for all."""
        o = self.oracle
        if self.n_part == o.n_clients:
            return None
        u = torch.rand(o.n_seeds, o.n_clients, generator=self.gen, dtype=torch.float64)
        return u.argsort(dim=1)[:, : self.n_part].sort(dim=1).values

    def start_models(self, clients, r: int) -> torch.Tensor:
        """Each participant's starting model: the server model of `delay` rounds ago."""
        o, cfg, K = self.oracle, self.cfg, self.n_part
        if cfg.q_max == 0:
            return self.server.unsqueeze(1).expand(-1, K, -1)
        depth = min(cfg.q_max, r)
        if cfg.delay == "max":
            delay = torch.full((o.n_seeds, K), depth, dtype=torch.long)
        else:
            u = torch.rand(o.n_seeds, K, generator=self.gen, dtype=torch.float64)
            delay = (u * (depth + 1)).long().clamp_(max=depth)
        stack = torch.stack(self.history)  # [depth+1, S, P]
        return stack[delay, torch.arange(o.n_seeds).unsqueeze(1)]

    def round(self, r: int) -> RoundInfo:
        o, cfg = self.oracle, self.cfg
        clients = self.sample_participants()
        start = self.start_models(clients, r)
        w = gather_rows(o.weights, clients)
        X, _ = self.local_updates(start, clients, self.opt, cfg.local_steps, anchor=start)
        center = self.comm.average(X, w, clients)
        if cfg.stale_rule == "delta":
            update = self.comm.average(X - start, w, clients)
        else:
            update = center - self.server
        self.server = self.server + cfg.server_lr * update
        self.history = [self.server, *self.history][: cfg.q_max + 1]
        self.opt.communicate(average=lambda T: self.comm.average(gather_rows(T, clients), w, clients))
        return RoundInfo(self.comm.consensus(X, center, clients), center.new_zeros(center.shape[0]), self.bytes_per_round())

    def bytes_per_round(self) -> int:
        """Model down and up for each participant (plus averaged optimizer states)."""
        copies = 1 + (self.opt.n_state_tensors if self.cfg.state_policy == "average" else 0)
        return 2 * self.n_part * self.oracle.dim * self.itemsize * copies

    def model(self) -> torch.Tensor:
        return self.server

    def client_params(self) -> torch.Tensor:
        return self.server.unsqueeze(1).expand(-1, self.oracle.n_clients, -1)


class Scaffold(FedDPO):
    """SCAFFOLD (Karimireddy et al. 2020), option II control variates, SGD local steps."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.c = torch.zeros_like(self.server)
        self.c_clients = torch.zeros(self.oracle.n_seeds, self.oracle.n_clients, self.oracle.dim, dtype=self.oracle.dtype)

    def round(self, r: int) -> RoundInfo:
        o, cfg = self.oracle, self.cfg
        clients = self.sample_participants()
        start = self.server.unsqueeze(1).expand(-1, self.n_part, -1)
        w = gather_rows(o.weights, clients)
        c_i = gather_rows(self.c_clients, clients)
        X, lr_sum = self.local_updates(start, clients, self.opt, cfg.local_steps,
                                       correction=self.c.unsqueeze(1) - c_i, anchor=start)
        c_new = c_i - self.c.unsqueeze(1) + (start - X) / lr_sum
        center = self.comm.average(X, w, clients)
        self.server = self.server + cfg.server_lr * (center - self.server)
        # c += sum_{i in S} w_i (c_i+ - c_i) keeps c = sum_i w_i c_i at all times
        self.c = self.c + self.comm.average(c_new - c_i, w, clients) * w.sum(1, keepdim=True)
        put_rows(self.c_clients, clients, c_new)
        return RoundInfo(self.comm.consensus(X, center, clients), center.new_zeros(center.shape[0]), 2 * self.bytes_per_round())
