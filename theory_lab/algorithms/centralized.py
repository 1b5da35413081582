"""Centralized minibatch SGD on the pooled data, with the same samples per round as E local steps:
one step on a minibatch of E*b pairs per client (Woodworth et al. 2020's minibatch SGD)."""

from __future__ import annotations

import torch

from dataclasses import dataclass

from theory_lab.algorithms.base import Algorithm, RoundInfo, register
from theory_lab.algorithms.params import ClientOptimizer, Common, LocalSteps
from theory_lab.optim import Optimizer


@register
class Centralized(Algorithm):
    """Centralized minibatch SGD on Σ w_i f_i with the same samples per round (E·b per client)."""
    name, family = "centralized", "centralized"

    @dataclass
    class Params(Common, LocalSteps, ClientOptimizer):
        """local_steps: E, for E*b samples per client per round."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        o = self.oracle
        self.theta = o.init_params().clone()
        self.opt = Optimizer(self.cfg, o.n_seeds, 1, o.dim, o.dtype, self.theta.device)

    def round(self, r: int) -> RoundInfo:
        o, cfg = self.oracle, self.cfg
        batch = o.sample_batch(self.gen, cfg.batch_size * cfg.local_steps)
        rows = self.theta.unsqueeze(1).expand(-1, o.n_clients, -1)
        g = self.comm.average(o.local_step(rows, None, batch), o.weights)  # sum_i w_i g_i
        self.theta = self.opt.step(self.theta.unsqueeze(1), g.unsqueeze(1), self.lr())[:, 0]
        self.t += 1
        zero = torch.zeros(o.n_seeds, dtype=o.dtype)
        return RoundInfo(zero, zero, 0)

    def bytes_per_round(self) -> int:
        return 0

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"theta": self.theta, **self.opt.state_dict()}

    def _load(self, state) -> None:
        self.theta = state["theta"].to(self.theta)
        self.opt.load_state_dict(state)

    def model(self) -> torch.Tensor:
        return self.theta

    def client_params(self) -> torch.Tensor:
        return self.theta.unsqueeze(1).expand(-1, self.oracle.n_clients, -1)
