"""Gossip algorithms over a mixing matrix W_t: DecDPO (adapt-then-combine: tau local steps, then
X <- W_t X) and gradient tracking (Koloskova, Lin & Stich 2021 form).

Gossip preserves the uniform average of the rows, so each client's gradient is scaled by
N w_i: the consensus point then minimises the weighted global loss sum_i w_i f_i (the factor is
1 when clients hold equally many pairs).
"""

from __future__ import annotations

import torch

from dataclasses import dataclass

from theory_lab.algorithms.base import Algorithm, RoundInfo, register
from theory_lab.algorithms.params import ClientOptimizer, Common, LocalSteps
from theory_lab.optim import Optimizer


@register
class DecDPO(Algorithm):
    """Decentralized DPO, adapt-then-combine: tau local steps, then one gossip X <- W X."""
    name, family = "decdpo", "gossip"

    @dataclass
    class Params(Common, LocalSteps, ClientOptimizer):
        """local_steps: tau, the gossip period."""

    lora_rules = ("factors", "ffa")   # fedsa's personal B and exact's residual have no gossip form here

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        o, cfg = self.oracle, self.cfg
        self.steps_per_round = cfg.local_steps
        self.X = o.init_params().unsqueeze(1).expand(-1, o.n_clients, -1).clone()
        self.scale = (o.n_clients * o.weights).unsqueeze(-1).to(o.dtype)
        self.uniform = torch.ones(o.n_seeds, o.n_clients, dtype=o.dtype, device=self.X.device)
        self.opt = Optimizer(cfg, o.n_seeds, o.n_clients, o.dim, o.dtype, self.X.device)

    def W(self, r: int) -> torch.Tensor:
        return torch.as_tensor(self.topology.W(r), dtype=self.oracle.dtype, device=self.X.device)

    def gossip_bytes(self, r: int, vectors: int = 1) -> int:
        sent = self.oracle.dim if self.frozen is None else int((~self.frozen).sum())   # ffa: B only
        return self.topology.messages_per_round(r) * sent * self.itemsize * vectors

    def round(self, r: int) -> RoundInfo:
        X, _ = self.local_updates(self.X, None, self.opt, self.cfg.local_steps, scale=self.scale)
        pre = self.comm.consensus(X, self.comm.average(X, self.uniform))
        W = self.W(r)
        self.X = self.keep_frozen(X, self.comm.mix(X, W))
        self.opt.communicate(mix=lambda T: self.comm.mix(T, W))
        extra = self.opt.n_state_tensors if self.cfg.state_policy == "average" else 0
        return RoundInfo(pre, self.comm.consensus(self.X, self.model()), self.gossip_bytes(r, 1 + extra))

    def bytes_per_round(self) -> int:
        """Messages of the first round's graph (time-varying graphs: RoundInfo has each round's)."""
        extra = self.opt.n_state_tensors if self.cfg.state_policy == "average" else 0
        return self.gossip_bytes(0, 1 + extra)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"X": self.X, **self.opt.state_dict()}

    def _load(self, state) -> None:
        self.X = state["X"].to(self.X).clone()
        self.opt.load_state_dict(state)

    def model(self) -> torch.Tensor:
        return self.comm.average(self.X, self.uniform)

    def client_params(self) -> torch.Tensor:
        return self.X


@register
class GradientTracking(DecDPO):
    """Gradient tracking: y tracks the average gradient, which removes the heterogeneity term.
    x <- W(x - lr y);  y <- W y + g(x_new) - g(x_old). Plain SGD steps: no client optimizer."""
    name = "gradient_tracking"
    Params = Common   # communicates after every step (local_steps = 1), no optimizer settings
    lora_rules = ("factors",)   # its steps bypass local_updates, so ffa could not freeze A

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.g_prev = self.stochastic_grad(self.X)
        self.Y = self.g_prev.clone()

    def stochastic_grad(self, X: torch.Tensor) -> torch.Tensor:
        batch = self.oracle.sample_batch(self.gen, self.cfg.batch_size)
        return self.oracle.local_step(X, None, batch) * self.scale

    def round(self, r: int) -> RoundInfo:
        W = self.W(r)
        X = self.X - self.lr() * self.Y
        self.t += 1
        pre = self.comm.consensus(X, self.comm.average(X, self.uniform))
        self.X = self.comm.mix(X, W)
        g = self.stochastic_grad(self.X)
        self.Y = self.comm.mix(self.Y, W) + g - self.g_prev
        self.g_prev = g
        return RoundInfo(pre, self.comm.consensus(self.X, self.model()), self.gossip_bytes(r, 2))

    def bytes_per_round(self) -> int:
        return self.gossip_bytes(0, 2)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"X": self.X, "Y": self.Y, "g_prev": self.g_prev}

    def _load(self, state) -> None:
        self.X, self.Y, self.g_prev = (state[k].to(self.X).clone() for k in ("X", "Y", "g_prev"))
