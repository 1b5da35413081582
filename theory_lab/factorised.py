"""Factorised (LoRA) parameters inside the flat parameter vector, and how a server aggregates them.

A factorised module holds ΔW = s·B A (B [m, r], A [r, k], s = alpha/r). Averaging the flat vector
averages A and B separately, and avg(B)·avg(A) ≠ avg(B A): the server model is not the average
of the client models (FLoRA's "aggregation noise"). The rules (`algorithm.lora_aggregation`):

- ``factors``: average A and B key by key (what OpenFedLLM does, and this toolkit before);
- ``ffa``: A frozen at its initialisation (FFA-LoRA): only B trains and travels, so averaging B is
  exact because every client shares A;
- ``fedsa``: A shared and averaged, B personal to each client (FedSA-LoRA);
- ``exact``: the factors are averaged and the part of avg(s·B A) they miss, the residual
  s(Σ w_i B_i A_i − B̄ Ā), is folded into a frozen dense delta of the base (FedEx-LoRA), so the
  server's effective weights are the exact average of the clients' (FedDPO.aggregate_factors).

An oracle with factorised parameters exposes `factor_layout` (a list of `Factor`) and, for
``exact``, `set_frozen_delta(delta [S, D], rows=None, clients=None)` with D = Σ m·k over its
factors (`rows` [S, K, D]: the deltas that stale participants train on until the next call).

>>> import torch
>>> f = Factor(a=slice(0, 2), a_shape=(1, 2), b=slice(2, 4), b_shape=(2, 1), scale=1.0)
>>> X = torch.tensor([[[1., 0., 1., 0.], [0., 1., 0., 1.]]], dtype=torch.float64)   # [S=1, K=2, P=4]
>>> w = torch.tensor([[0.5, 0.5]], dtype=torch.float64)
>>> aggregation_error(X, w, [f], X.new_zeros(1, 4))[0]     # ‖avg(BA) − avg(B)avg(A)‖_F = ‖diag(.5,.5) − .25‖_F
tensor([0.5000], dtype=torch.float64)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from theory_lab.communicator import InProcessCommunicator

RULES = ("factors", "ffa", "fedsa", "exact")


@dataclass(frozen=True)
class Factor:
    """One low-rank module: where its A [r, k] and B [m, r] sit in the flat vector, and its scale."""
    a: slice
    a_shape: tuple[int, int]
    b: slice
    b_shape: tuple[int, int]
    scale: float

    @property
    def dense_size(self) -> int:
        return self.b_shape[0] * self.a_shape[1]


def dense_size(layout: list[Factor]) -> int:
    """D: entries of all the modules' dense deltas, the size of a frozen delta."""
    return sum(f.dense_size for f in layout)


def part_mask(layout: list[Factor], dim: int, part: str) -> torch.Tensor:
    """[P] bool: the entries of the A (part="A") or B (part="B") factors."""
    mask = torch.zeros(dim, dtype=torch.bool)
    for f in layout:
        mask[f.a if part == "A" else f.b] = True
    return mask


def products(X: torch.Tensor, layout: list[Factor]) -> torch.Tensor:
    """[..., D]: every module's s·B A of the rows X [..., P], flattened and concatenated."""
    out = []
    for f in layout:
        A = X[..., f.a].unflatten(-1, f.a_shape)
        B = X[..., f.b].unflatten(-1, f.b_shape)
        out.append(f.scale * (B @ A).flatten(-2))
    return torch.cat(out, -1)


def aggregation_error(X: torch.Tensor, w: torch.Tensor, layout: list[Factor], start: torch.Tensor, *,
                      server: torch.Tensor | None = None, average=None) -> tuple[torch.Tensor, torch.Tensor]:
    """How far the aggregated model is from the average of the client models, in effective weights.

    Parameters
    ----------
    X : [S, K, P] client rows after their local steps; w : [S, K] their weights.
    layout : the factorised modules.
    start : [S, P] the round's common start (the relative error's scale).
    server : [S, P] the aggregated factors (default: the weighted average of X).
    average : the communicator's weighted average (default: in-process).

    Returns
    -------
    (error [S], relative [S]): ‖Σ w_i s B_iA_i − s B A‖_F, summed over modules in
    quadrature, and that over ‖Σ w_i s B_iA_i − s B_0 A_0‖_F, the size of the round's update.
    One module's dense products at a time: the clients' [S, K, m·k] never for all modules at once.
    """
    average = average or InProcessCommunicator().average
    server = average(X, w) if server is None else server
    gap, update = 0.0, 0.0
    for f in layout:
        mean_product = average(products(X, [f]), w)
        gap = gap + (mean_product - products(server, [f])).pow(2).sum(-1)
        update = update + (mean_product - products(start, [f])).pow(2).sum(-1)
    return gap.sqrt(), (gap / update).sqrt()


def leading_error(G: torch.Tensor, w: torch.Tensor, A0: torch.Tensor, B0: torch.Tensor, scale: float,
                  eta: float, E: int) -> torch.Tensor:
    """[S]: the leading-order aggregation error after E exact-gradient steps of size η from a
    common start (docs/theory.md §3.6), for one module.

    Parameters
    ----------
    G : [S, K, m, k] each client's gradient with respect to the effective weight W = s B A, at the start.
    w : [S, K] client weights (normalised here).
    A0 : [S, r, k], B0 : [S, m, r] the common start; scale : s.

    Returns
    -------
    With Ḡ = Σ w_i G_i, the error s‖Σ w_i δB_i δA_i − δB̄ δĀ‖_F is, to leading order,

        B0 ≠ 0:  η² E² s³ ‖Σ_i w_i (G_i − Ḡ) A0ᵀ B0ᵀ (G_i − Ḡ)‖                       (δA_i ≈ −ηE s B0ᵀ G_i)
        B0 = 0:  η³ s⁴ E²(E − 1)/2 ‖Σ_i w_i (G_i − Ḡ) A0ᵀ A0 (G_iᵀG_i − Σ_j w_j G_jᵀG_j)‖  (A moves only once B has)

    driven by the heterogeneity of the client gradients: 0 when every G_i is the same.
    """
    w = (w / w.sum(1, keepdim=True)).to(G.dtype)[..., None, None]
    D = G - (w * G).sum(1, keepdim=True)
    if bool((B0 != 0).any()):
        cov = (w * D @ (A0.mT @ B0.mT)[:, None] @ D).sum(1)
        return eta**2 * E**2 * scale**3 * cov.flatten(-2).norm(dim=-1)
    M = G.mT @ G
    cov = (w * D @ (A0.mT @ A0)[:, None] @ (M - (w * M).sum(1, keepdim=True))).sum(1)
    return eta**3 * scale**4 * E**2 * (E - 1) / 2 * cov.flatten(-2).norm(dim=-1)


def leading_error_from_factor_grads(grads: torch.Tensor, w: torch.Tensor, layout: list[Factor], eta: float,
                                    E: int) -> torch.Tensor:
    """[S]: the generic-start (B0 ≠ 0) leading error of `leading_error`, from the clients' gradients
    with respect to the factors themselves, grads [S, K, P] (what any oracle returns; no dense G):
    δB_i ≈ −ηE ∂f_i/∂B, δA_i ≈ −ηE ∂f_i/∂A, so the error is η²E² s ‖Σ w_i (g^B_i − ḡ^B)(g^A_i − ḡ^A)‖_F,
    all modules in quadrature."""
    w = (w / w.sum(1, keepdim=True)).to(grads.dtype)[..., None, None]
    sq = 0.0
    for f in layout:
        gA = grads[..., f.a].unflatten(-1, f.a_shape)
        gB = grads[..., f.b].unflatten(-1, f.b_shape)
        dA, dB = gA - (w * gA).sum(1, keepdim=True), gB - (w * gB).sum(1, keepdim=True)
        sq = sq + (f.scale * (w * dB @ dA).sum(1)).flatten(-2).pow(2).sum(-1)
    return eta**2 * E**2 * sq.sqrt()
