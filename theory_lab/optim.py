"""The clients' SGD and AdamW over parameter stacks [S, N, P], one independent optimizer per client
row, as update-rule recipes (theory_lab.update_rules).

States live in full [S, N, P] tensors; a step on a subset of clients (partial participation)
gathers and scatters their rows. What happens to the states when clients communicate is an
explicit policy, since practice (AdamW) and theory (plain SGD) differ exactly there:
keep (each client keeps its own), reset (zeros after each communication) or average
(communicated like the model).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from theory_lab import update_rules

if TYPE_CHECKING:   # the config module imports the algorithms, which import this module
    from theory_lab.config import AlgorithmConfig


def _index(T: torch.Tensor, clients: torch.Tensor) -> torch.Tensor:
    clients = clients.to(T.device)   # participants are sampled on the host; the stack may live elsewhere
    return clients if T.dim() == 2 else clients.unsqueeze(-1).expand(-1, -1, T.shape[-1])


def gather_rows(T: torch.Tensor, clients: torch.Tensor | None) -> torch.Tensor:
    return T if clients is None else T.gather(1, _index(T, clients))


def put_rows(T: torch.Tensor, clients: torch.Tensor | None, rows: torch.Tensor) -> None:
    if clients is None:
        T.copy_(rows)
    else:
        T.scatter_(1, _index(T, clients), rows)


class Optimizer:
    """The clients' optimizer over a parameter stack: one update rule (theory_lab.update_rules)
    whose state holds a row per client, X ← X·(1 − ηλ) − step with λ AdamW's decoupled decay."""

    def __init__(self, cfg: AlgorithmConfig, n_seeds: int, n_clients: int, dim: int,
                 dtype: torch.dtype, device: str | torch.device = "cpu"):
        self.cfg = cfg
        if cfg.optimizer == "adamw":
            self.rule, self.decoupled_decay = update_rules.adam(tuple(cfg.betas), cfg.eps), cfg.weight_decay
        else:
            self.rule, self.decoupled_decay = update_rules.sgd(cfg.momentum, cfg.weight_decay), 0.0
        self.state: dict[str, torch.Tensor] = self.rule.init(
            torch.zeros(n_seeds, n_clients, dim, dtype=dtype, device=device))

    def state_dict(self, prefix: str = "opt.") -> dict[str, torch.Tensor]:
        return {prefix + k: v for k, v in self.state.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor], prefix: str = "opt.") -> None:
        for k, T in self.state.items():
            T.copy_(state[prefix + k])

    @property
    def n_state_tensors(self) -> int:
        """Parameter-sized state tensors, for communication byte counts under 'average'."""
        return sum(1 for T in self.state.values() if T.dim() == 3)

    def step(self, X: torch.Tensor, g: torch.Tensor, lr: float, clients: torch.Tensor | None = None) -> torch.Tensor:
        """One update of rows X [S, K, P] (clients [S, K] or None) with gradients g; returns new rows."""
        rows = {k: gather_rows(T, clients) for k, T in self.state.items()}
        step, rows = self.rule.update(g, rows, update_rules.Inputs(g, X, lr))
        for k, T in self.state.items():
            put_rows(T, clients, rows[k])
        return (X * (1 - lr * self.decoupled_decay) if self.decoupled_decay else X) - step

    def communicate(self, average=None, mix=None) -> None:
        """Apply the state policy at a communication. `average(T) -> [S, P]` for federated
        (the result goes to every client), `mix(T) -> [S, N, P]` for gossip."""
        policy = self.cfg.state_policy
        if policy == "keep" or not self.state:
            return
        for key, T in self.state.items():
            if policy == "reset":
                T.zero_()
            elif mix is not None:
                T.copy_(mix(T) if T.dim() == 3 else T)
            else:
                T.copy_(average(T).unsqueeze(1).expand_as(T) if T.dim() == 3 else T)
