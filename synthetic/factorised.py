"""The log-linear policy written as LoRA writes a weight: θ = θ_ref + vec(B A) + δ.

θ [d] is read as an m×k matrix (m = problem.lora_rows, k = d/m); a client trains A [r, k] and
B [m, r], started as peft starts them (A ~ U(±1/√k), B = 0, so θ_0 = θ_ref). δ is the frozen
dense delta that the ``exact`` aggregation rule folds the residual into (zero otherwise). The
loss, its gradient and every metric are the log-linear ones at θ, so LoRA-style bilinear training
and its aggregation error are exact and cheap: by the chain rule, with G = ∇_θ f reshaped to m×k,

    ∇_A f = Bᵀ G,    ∇_B f = G Aᵀ.

Suboptimality is measured against the full-rank optimum θ*. Those constants live in θ-space
(`theta_constants`), not in the factors' space, so the oracle exposes no `constants` of its own:
`predict` and `theory-lab constants` estimate the factorised problem's constants like any oracle's.
"""

from __future__ import annotations

import torch

from synthetic.oracle import SyntheticOracle
from synthetic.problem import DTYPE
from theory_lab.factorised import Factor, products


class FactorisedOracle:
    """The Oracle protocol over rows [A (r×k) | B (m×r)] of a SyntheticOracle's θ."""

    def __init__(self, inner: SyntheticOracle, rows: int, rank: int, seed: int = 0):
        self.inner = inner
        m, k, r = rows, inner.dim // rows, rank
        self.factor_layout = [Factor(a=slice(0, r * k), a_shape=(r, k), b=slice(r * k, r * (k + m)),
                                     b_shape=(m, r), scale=1.0)]
        self.n_seeds, self.n_clients, self.dtype = inner.n_seeds, inner.n_clients, inner.dtype
        self.weights, self.theta_constants = inner.weights, inner.constants
        self.dim = r * (k + m)
        self.smoothness = None          # θ's L does not bound the bilinear loss
        g = torch.Generator().manual_seed(seed)
        a0 = (torch.rand(self.n_seeds, r * k, generator=g, dtype=DTYPE) * 2 - 1) / k ** 0.5
        self._x0 = torch.cat([a0, torch.zeros(self.n_seeds, m * r, dtype=DTYPE)], -1)
        self.theta_ref = inner.problem.theta_ref                                  # [S, d]
        self.frozen_delta = torch.zeros_like(self.theta_ref)
        self.row_deltas = None     # [S, K, d]: the rows' own δ while stale starts train

    def theta(self, X: torch.Tensor) -> torch.Tensor:
        """θ of rows X [S, K, P] -> [S, K, d] (or [S, P] -> [S, d])."""
        if X.dim() == 2:
            return self.theta_ref + self.frozen_delta + products(X, self.factor_layout)
        delta = self.frozen_delta[:, None] if self.row_deltas is None else self.row_deltas
        return self.theta_ref[:, None] + delta + products(X, self.factor_layout)

    def set_frozen_delta(self, delta: torch.Tensor, rows: torch.Tensor | None = None, clients=None) -> None:
        """δ [S, d]: the dense part of θ that no factor holds. `rows` [S, K, d]: until the next
        call, the parameter rows' own δ (clients that started from an older round's model)."""
        self.frozen_delta = delta.to(self.theta_ref).clone()
        self.row_deltas = None if rows is None else rows.to(self.theta_ref)

    def init_params(self) -> torch.Tensor:
        return self._x0.clone()

    def sample_batch(self, gen: torch.Generator, batch_size: int):
        return self.inner.sample_batch(gen, batch_size)

    def grad(self, X, clients, batch):
        f = self.factor_layout[0]
        G = self.inner.grad(self.theta(X), clients, batch).unflatten(-1, (f.b_shape[0], f.a_shape[1]))
        A, B = X[..., f.a].unflatten(-1, f.a_shape), X[..., f.b].unflatten(-1, f.b_shape)
        return f.scale * torch.cat([(B.mT @ G).flatten(-2), (G @ A.mT).flatten(-2)], -1)

    def local_step(self, X, clients, batch):
        return self.grad(X, clients, batch)

    def loss(self, X, clients=None, batch=None):
        return self.inner.loss(self.theta(X), clients, batch)

    def personal_accuracy(self, X: torch.Tensor) -> torch.Tensor:
        return self.inner.personal_accuracy(self.theta(X))

    def evaluate(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.inner.evaluate(self.theta(x))
