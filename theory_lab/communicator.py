"""The in-process communicator: averaging and gossip as tensor algebra over the client dimension.

A torch.distributed communicator implements the same two methods with each rank holding some
rows; the algorithms cannot tell them apart.
"""

from __future__ import annotations

import torch


class InProcessCommunicator:
    """Every row lives here. `clients` ([S, K] ids of the rows, None = all N in order) tells a
    distributed communicator which rows its rank holds; in process it is not needed."""

    def average(self, X: torch.Tensor, weights: torch.Tensor, clients: torch.Tensor | None = None) -> torch.Tensor:
        """Weighted average of rows: X [S, K, P], weights [S, K] (normalised here) -> [S, P]."""
        w = weights / weights.sum(dim=1, keepdim=True)
        return torch.einsum("sk,skp->sp", w.to(X), X)

    def rows(self, T: torch.Tensor) -> torch.Tensor:
        """T [S, N, P] with every row as the process that holds its client has it (here: T)."""
        return T

    def consensus(self, X: torch.Tensor, center: torch.Tensor, clients: torch.Tensor | None = None) -> torch.Tensor:
        """(1/K) sum_i ||X_i - center||^2 for X [S, K, P], center [S, P] -> [S]."""
        return (X - center.unsqueeze(1)).pow(2).sum(-1).mean(1)

    def mix(self, X: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
        """One gossip step: row i becomes sum_j W_ij X_j. X [S, N, P], W [N, N]."""
        return torch.matmul(W.to(X), X)
