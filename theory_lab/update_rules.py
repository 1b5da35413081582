"""Update rules with explicit state, in the style of optax: a rule is an `init(params) -> state`
and an `update(delta, state) -> (step, state)` pair of pure functions over tensors, and rules
chain. The server optimizers of Reddi et al. 2021 ("Adaptive Federated Optimization") are short
recipes on top; the server of FedDPO applies `params + server_lr * step` to the averaged client
delta Δ (Δ is a pseudo-gradient pointing *down* the loss, so no sign flip).

    FedAvgM (Hsu et al. 2019):  v ← βv + Δ;                              step = v
    FedAdagrad:                 m ← β1 m + (1−β1)Δ;  v ← v + Δ²;            step = m / (√v + τ)
    FedAdam:                    m ← β1 m + (1−β1)Δ;  v ← β2 v + (1−β2)Δ²;   step = m / (√v + τ)
    FedYogi:                    m ← β1 m + (1−β1)Δ;  v ← v − (1−β2)Δ² sign(v − Δ²)

with v started at τ² (Reddi et al., Algorithm 2) and no bias correction, as in the paper.

>>> import torch
>>> rule = momentum(0.5)
>>> state = rule.init(torch.zeros(2))
>>> step, state = rule.update(torch.ones(2), state)
>>> step, state = rule.update(torch.ones(2), state)
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
class UpdateRule:
    """init(params) -> state; update(delta, state) -> (step, new state). Neither mutates."""
    init: Callable[[torch.Tensor], State]
    update: Callable[[torch.Tensor, State], tuple[torch.Tensor, State]]


def identity() -> UpdateRule:
    """step = Δ: plain FedAvg with the server step size."""
    return UpdateRule(lambda p: {}, lambda d, s: (d, s))


def momentum(beta: float) -> UpdateRule:
    """Heavy-ball accumulation v ← βv + Δ, step = v (FedAvgM)."""
    def update(d, s):
        v = beta * s["v"] + d
        return v, {"v": v}
    return UpdateRule(lambda p: {"v": torch.zeros_like(p)}, update)


def ema(beta: float) -> UpdateRule:
    """First moment m ← βm + (1−β)Δ, step = m."""
    def update(d, s):
        m = s["m"].lerp(d, 1 - beta)
        return m, {"m": m}
    return UpdateRule(lambda p: {"m": torch.zeros_like(p)}, update)


def scale_by_second_moment(kind: str, beta: float, tau: float, of: Callable[[State], torch.Tensor] | None = None
                           ) -> UpdateRule:
    """step = x / (√v + τ) with v the Adagrad / Adam / Yogi second moment of the *delta*, where x is
    the incoming step (the first moment, when chained after `ema`)."""
    def second(v, d):
        d2 = d * d
        if kind == "adagrad":
            return v + d2
        if kind == "adam":
            return beta * v + (1 - beta) * d2
        return v - (1 - beta) * d2 * torch.sign(v - d2)   # yogi

    def update(x, s):
        v = second(s["v"], s["delta"])
        return x / (v.sqrt() + tau), {**s, "v": v}
    return UpdateRule(lambda p: {"v": torch.full_like(p, tau * tau)}, update)


def chain(*rules: UpdateRule) -> UpdateRule:
    """Apply rules in order, each to the previous one's step; every rule also sees the original
    delta under state["delta"] (the second moment is of Δ, not of the first moment)."""
    def init(p):
        return {f"{i}.{k}": v for i, r in enumerate(rules) for k, v in r.init(p).items()}

    def update(d, s):
        x, out = d, {}
        for i, r in enumerate(rules):
            mine = {k.split(".", 1)[1]: v for k, v in s.items() if k.startswith(f"{i}.")}
            x, new = r.update(x, {**mine, "delta": d})
            out.update({f"{i}.{k}": v for k, v in new.items() if k != "delta"})
        return x, out
    return UpdateRule(init, update)


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
