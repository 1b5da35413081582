"""SGD and AdamW over parameter stacks [S, N, P], one independent optimizer per client row.

States live in full [S, N, P] tensors; a step on a subset of clients (partial participation)
gathers and scatters their rows. What happens to the states when clients communicate is an
explicit policy, since practice (AdamW) and theory (plain SGD) differ exactly there:
keep (each client keeps its own), reset (zeros after each communication) or average
(communicated like the model).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:   # the config module imports the algorithms, which import this module
    from theory_lab.config import AlgorithmConfig


def _index(T: torch.Tensor, clients: torch.Tensor) -> torch.Tensor:
    return clients if T.dim() == 2 else clients.unsqueeze(-1).expand(-1, -1, T.shape[-1])


def gather_rows(T: torch.Tensor, clients: torch.Tensor | None) -> torch.Tensor:
    return T if clients is None else T.gather(1, _index(T, clients))


def put_rows(T: torch.Tensor, clients: torch.Tensor | None, rows: torch.Tensor) -> None:
    if clients is None:
        T.copy_(rows)
    else:
        T.scatter_(1, _index(T, clients), rows)


class Optimizer:
    def __init__(self, cfg: AlgorithmConfig, n_seeds: int, n_clients: int, dim: int,
                 dtype: torch.dtype, device: str | torch.device = "cpu"):
        self.cfg = cfg
        shape = (n_seeds, n_clients, dim)
        self.state: dict[str, torch.Tensor] = {}
        if cfg.optimizer == "sgd" and cfg.momentum > 0:
            self.state["momentum"] = torch.zeros(shape, dtype=dtype, device=device)
        if cfg.optimizer == "adamw":
            self.state["exp_avg"] = torch.zeros(shape, dtype=dtype, device=device)
            self.state["exp_avg_sq"] = torch.zeros(shape, dtype=dtype, device=device)
            self.state["count"] = torch.zeros(shape[:2], dtype=dtype, device=device)

    def state_dict(self, prefix: str = "opt.") -> dict[str, torch.Tensor]:
        return {prefix + k: v for k, v in self.state.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor], prefix: str = "opt.") -> None:
        for k, T in self.state.items():
            T.copy_(state[prefix + k])

    @property
    def n_state_tensors(self) -> int:
        """Parameter-sized state tensors, for communication byte counts under 'average'."""
        return sum(1 for k in self.state if k != "count")

    def step(self, X: torch.Tensor, g: torch.Tensor, lr: float, clients: torch.Tensor | None = None) -> torch.Tensor:
        """One update of rows X [S, K, P] (clients [S, K] or None) with gradients g; returns new rows."""
        cfg = self.cfg
        if cfg.optimizer == "sgd":
            if cfg.weight_decay:
                g = g + cfg.weight_decay * X
            if cfg.momentum > 0:
                buf = gather_rows(self.state["momentum"], clients) * cfg.momentum + g
                put_rows(self.state["momentum"], clients, buf)
                g = buf
            return X - lr * g
        b1, b2 = cfg.betas
        m = gather_rows(self.state["exp_avg"], clients).lerp(g, 1 - b1)
        v = gather_rows(self.state["exp_avg_sq"], clients) * b2 + (1 - b2) * g * g
        count = gather_rows(self.state["count"], clients) + 1
        for key, value in (("exp_avg", m), ("exp_avg_sq", v), ("count", count)):
            put_rows(self.state[key], clients, value)
        c = count.unsqueeze(-1)
        m_hat, v_hat = m / (1 - b1**c), v / (1 - b2**c)
        return X * (1 - lr * cfg.weight_decay) - lr * m_hat / (v_hat.sqrt() + cfg.eps)

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
