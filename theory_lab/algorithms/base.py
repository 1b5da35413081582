"""What every algorithm shares: local SGD/AdamW steps against the oracle, the step-size clock,
and the per-round record (consensus errors, bytes sent)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from theory_lab.config import AlgorithmConfig
from theory_lab.optim import Optimizer
from theory_lab.schedules import step_size


@dataclass
class RoundInfo:
    consensus_error_pre: torch.Tensor  # [S]: spread of the client models before communication
    consensus_error: torch.Tensor      # [S]: spread after communication
    comm_bytes: int                    # bytes sent this round by one replica


class Algorithm:
    """Base: holds the oracle, communicator, optimizer and the generator for algorithm noise."""

    steps_per_round = 1

    def __init__(self, cfg: AlgorithmConfig, oracle, comm, gen: torch.Generator, rounds: int, topology=None):
        self.cfg, self.oracle, self.comm, self.gen, self.topology = cfg, oracle, comm, gen, topology
        self.rounds = rounds
        self.t = 0  # local steps taken: the clock of the step-size schedule
        self.itemsize = torch.empty((), dtype=oracle.dtype).element_size()

    def lr(self) -> float:
        cfg = self.cfg
        return step_size(cfg.schedule, cfg.lr, self.t, decay_steps=cfg.decay_steps,
                         total_steps=self.rounds * self.steps_per_round)

    def local_updates(self, X, clients, opt: Optimizer, n_steps: int, *, scale=None, correction=None, anchor=None):
        """n_steps optimizer steps of rows X [S, K, P] on their own clients' losses.
        Returns the new rows and the sum of step sizes used (SCAFFOLD needs it)."""
        lr_sum = 0.0
        for _ in range(n_steps):
            lr = self.lr()
            batch = self.oracle.sample_batch(self.gen, self.cfg.batch_size)
            g = self.oracle.grad(X, clients, batch)
            if scale is not None:
                g = g * scale
            if correction is not None:
                g = g + correction
            if self.cfg.prox_mu:
                g = g + self.cfg.prox_mu * (X - anchor)
            X = opt.step(X, g, lr, clients)
            self.t += 1
            lr_sum += lr
        return X, lr_sum

    def round(self, r: int) -> RoundInfo:
        raise NotImplementedError

    def model(self) -> torch.Tensor:
        """The averaged model theta_bar [S, P] at which metrics are taken."""
        raise NotImplementedError

    def client_params(self) -> torch.Tensor:
        """The parameter stack [S, N, P] (federated: the server model on every client)."""
        raise NotImplementedError
