"""The oracle interface: what an algorithm may ask of a problem, on either track.

Algorithms see a parameter stack ``X`` of shape ``[S, K, P]`` (seeds, client rows, parameters)
and never know whether the rows are log-linear policies or LoRA adapters.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch


class Oracle(Protocol):
    n_seeds: int          # S: leading dimension of every parameter stack
    n_clients: int        # N
    dim: int              # P: parameters per client
    dtype: torch.dtype
    weights: torch.Tensor  # [S, N] client weights w_i (sum to 1 over clients)
    smoothness: torch.Tensor | None  # [S] global L when known (for the 2/L divergence message)
    reports_clients: bool  # optional: evaluate() also reports eval_pref_acc_client{i} (per-client columns)

    def init_params(self) -> torch.Tensor:
        """Starting model theta_0, shape [S, P]."""

    def sample_batch(self, gen: torch.Generator, batch_size: int) -> Any:
        """Draw one local step's minibatch for *every* client (so the draw does not depend on
        which clients participate or which process holds them). ``batch_size == 0`` means the
        exact gradient and returns None."""

    def grad(self, X: torch.Tensor, clients: torch.Tensor | None, batch: Any) -> torch.Tensor:
        """Gradient of each client's loss at its own row. ``X``: [S, K, P] rows of the clients
        ``clients`` ([S, K] long; None means all N in order). ``batch`` from ``sample_batch``
        (None: exact gradient). Returns [S, K, P]."""

    def local_step(self, X: torch.Tensor, clients: torch.Tensor | None, batch: Any) -> torch.Tensor:
        """What a client's training step takes: ``grad(X, clients, batch)``, after which the
        oracle may advance state it keeps per client outside the stack (FedPDPO's personal
        modules take their own step on the same batch). The one oracle call that changes state;
        ``grad``, ``loss`` and ``evaluate`` never do (constants are estimated with them)."""

    def personal_accuracy(self, X: torch.Tensor) -> torch.Tensor:
        """Optional. [S, N]: held-out preference accuracy of client i at its own row X[:, i]
        ([S, N, P]): the metric of algorithms whose clients keep personal parameters (fedsa's B
        factors; `Algorithm.personal_params`), logged client-weighted as `personal_pref_acc`."""

    def evaluate(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """Metrics of the averaged model theta [S, P], each a tensor [S]: any of ``subopt``,
        ``grad_norm_sq``, ``dist_to_opt``, ``train_loss``, ``eval_pref_acc``, ``reward_margin``."""
