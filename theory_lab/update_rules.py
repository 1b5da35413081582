"""Update rules with explicit state, in the style of optax: a rule is a pair of pure functions,
`init(params) -> state` and `update(x, state, inputs) -> (step, state)`, and rules chain, each
transforming the previous one's step. `inputs` holds what any rule of a chain may read besides
its own state: the chain's original gradient, the parameters and the step size.

Both sides of federated training are recipes of the same rules:

- the clients' optimizers (theory_lab.optim applies them row by row over the parameter stack,
  X ← X·(1 − ηλ) − step, where λ is AdamW's decoupled weight decay, zero otherwise):

      sgd:    step = η (v ← βv + g + λX)               (coupled weight decay, heavy-ball momentum)
      adamw:  step = η m̂ / (√v̂ + ε)                    (Loshchilov & Hutter; m̂, v̂ bias-corrected)

- the server's (FedDPO applies `params + server_lr * step` to the averaged client delta Δ, a
  pseudo-gradient pointing *down* the loss, so no sign flip), Reddi et al. 2021:

      FedAvgM (Hsu et al. 2019):  v ← βv + Δ;                              step = v
      FedAdagrad:                 m ← β1 m + (1−β1)Δ;  v ← v + Δ²;            step = m / (√v + τ)
      FedAdam:                    m ← β1 m + (1−β1)Δ;  v ← β2 v + (1−β2)Δ²;   step = m / (√v + τ)
      FedYogi:                    m ← β1 m + (1−β1)Δ;  v ← v − (1−β2)Δ² sign(v − Δ²)

  with v started at τ² (Reddi et al., Algorithm 2) and no bias correction, as in the paper.

The step size multiplies the first moment *before* the division (η m̂ / (√v̂ + ε), as the
clients' AdamW always computed it), so the recipes reproduce earlier runs bit for bit.

>>> import torch
>>> rule = momentum(0.5)
>>> state = rule.init(torch.zeros(2))
>>> step, state = rule.update(torch.ones(2), state, Inputs(torch.ones(2)))
>>> step, state = rule.update(torch.ones(2), state, Inputs(torch.ones(2)))
>>> step.tolist()
[1.5, 1.5]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

State = dict[str, torch.Tensor]
SERVER_OPTIMIZERS = ("sgd", "avgm", "adagrad", "adam", "yogi")


@dataclass(frozen=True)
class Inputs:
    """What every rule of a chain may read besides its own state."""
    grad: torch.Tensor                  # the chain's input (a client's gradient, the server's Δ)
    params: torch.Tensor | None = None  # the parameters the step will move
    lr: float = 1.0                     # the step size of this step (schedules change it)


@dataclass(frozen=True)
class UpdateRule:
    """init(params) -> state; update(x, state, inputs) -> (step, new state). Neither mutates."""
    init: Callable[[torch.Tensor], State]
    update: Callable[[torch.Tensor, State, Inputs], tuple[torch.Tensor, State]]


def identity() -> UpdateRule:
    """step = x: plain FedAvg with the server step size."""
    return UpdateRule(lambda p: {}, lambda x, s, inp: (x, s))


def momentum(beta: float) -> UpdateRule:
    """Heavy-ball accumulation v ← βv + x, step = v (FedAvgM; SGD's momentum)."""
    def update(x, s, inp):
        v = s["v"] * beta + x
        return v, {"v": v}
    return UpdateRule(lambda p: {"v": torch.zeros_like(p)}, update)


def _count(p: torch.Tensor) -> torch.Tensor:
    """One step counter per parameter row (per client of a stack [S, N, P])."""
    return torch.zeros(p.shape[:-1], dtype=p.dtype, device=p.device)


def ema(beta: float, debias: bool = False) -> UpdateRule:
    """First moment m ← βm + (1−β)x, step = m, or m / (1 − βᵗ) with `debias` (Adam's m̂)."""
    def update(x, s, inp):
        m = s["m"].lerp(x, 1 - beta)
        if not debias:
            return m, {"m": m}
        count = s["count"] + 1
        return m / (1 - beta ** count.unsqueeze(-1)), {"m": m, "count": count}
    return UpdateRule(lambda p: {"m": torch.zeros_like(p), **({"count": _count(p)} if debias else {})}, update)


def scale_by_lr() -> UpdateRule:
    """step = η x, with η the step size of this step (inputs.lr)."""
    return UpdateRule(lambda p: {}, lambda x, s, inp: (x * inp.lr, s))


def add_decayed_weights(weight_decay: float) -> UpdateRule:
    """step = x + λ·params: weight decay coupled to the gradient (SGD's L2 term)."""
    return UpdateRule(lambda p: {}, lambda x, s, inp: (x + weight_decay * inp.params, s))


def scale_by_second_moment(kind: str, beta: float, eps: float, v0: float | None = None,
                           debias: bool = False) -> UpdateRule:
    """step = x / (√v + ε) with v the Adagrad / Adam / Yogi second moment of the chain's *gradient*
    (inputs.grad; the incoming x is the first moment when chained after `ema`), started at `v0`
    (default ε², Reddi et al.), divided by 1 − βᵗ with `debias` (Adam's v̂)."""
    def second(v, g):
        if kind == "adagrad":
            return v + g * g
        if kind == "adam":
            return v * beta + (1 - beta) * g * g
        g2 = g * g
        return v - (1 - beta) * g2 * torch.sign(v - g2)   # yogi

    def init(p):
        v = torch.full_like(p, eps * eps if v0 is None else v0)
        return {"v": v, "count": _count(p)} if debias else {"v": v}

    def update(x, s, inp):
        v = second(s["v"], inp.grad)
        if not debias:
            return x / (v.sqrt() + eps), {"v": v}
        count = s["count"] + 1
        return x / ((v / (1 - beta ** count.unsqueeze(-1))).sqrt() + eps), {"v": v, "count": count}
    return UpdateRule(init, update)


def chain(*rules: UpdateRule) -> UpdateRule:
    """Apply rules in order, each to the previous one's step; rule i's state is under "i.name"."""
    def init(p):
        return {f"{i}.{k}": v for i, r in enumerate(rules) for k, v in r.init(p).items()}

    def update(x, s, inp):
        out = {}
        for i, r in enumerate(rules):
            x, new = r.update(x, {k.split(".", 1)[1]: v for k, v in s.items() if k.startswith(f"{i}.")}, inp)
            out.update({f"{i}.{k}": v for k, v in new.items()})
        return x, out
    return UpdateRule(init, update)


# ---------------------------------------------------------------------- recipes

def sgd(momentum_: float = 0.0, weight_decay: float = 0.0) -> UpdateRule:
    """The clients' SGD: step = η (g + λX), through heavy-ball momentum when momentum_ > 0."""
    return chain(*([add_decayed_weights(weight_decay)] if weight_decay else []),
                 *([momentum(momentum_)] if momentum_ > 0 else []), scale_by_lr())


def adam(betas: tuple[float, float], eps: float) -> UpdateRule:
    """The clients' Adam step η m̂ / (√v̂ + ε); AdamW's decoupled decay is applied to the weights."""
    return chain(ema(betas[0], debias=True), scale_by_lr(),
                 scale_by_second_moment("adam", betas[1], eps, v0=0.0, debias=True))


def server_optimizer(name: str, momentum_: float = 0.9, betas: tuple[float, float] = (0.9, 0.99),
                     tau: float = 1e-3) -> UpdateRule:
    """The server rule by name: sgd (FedAvg), avgm, adagrad, adam, yogi (Reddi et al. 2021)."""
    if name == "sgd":
        return identity()
    if name == "avgm":
        return momentum(momentum_)
    if name in ("adagrad", "adam", "yogi"):
        return chain(ema(betas[0]), scale_by_second_moment(name, betas[1], tau))
    raise ValueError(f"unknown server optimizer {name!r}; known: {', '.join(SERVER_OPTIMIZERS)}")
