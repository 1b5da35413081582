"""Server-based algorithms: FedDPO (FedAvg with E local steps, S-of-N sampling, a server
optimizer, bounded staleness), FedProx (a proximal term in the local steps) and SCAFFOLD
(control variates).

A round is four hooks, in the manner of Flower's strategies, so a variant overrides one:
`sample_participants` -> `start_models` -> `local` -> `aggregate` -> `server_update`.

Staleness follows a real delay model: each participant starts its local steps from the server
model of d rounds ago, d ~ U{0..q_max} (or d = q_max), and the server either averages the
returned models (`model_average`, what the Jiang'26 code does) or applies the averaged deltas
to its current model (`delta`, asynchronous SGD). The server step applies an update rule
(theory_lab.update_rules: FedAvg, FedAvgM, FedAdagrad, FedAdam, FedYogi) to that delta.

Factorised (LoRA) parameters are aggregated by `algorithm.lora_aggregation`
(theory_lab.factorised): `aggregate_factors` keeps fedsa's personal B factors and exact's frozen
delta, and measures the aggregation error every round.
"""

from __future__ import annotations

import torch

from dataclasses import dataclass

from theory_lab.algorithms.base import Algorithm, RoundInfo, register
from theory_lab.algorithms.params import (ClientOptimizer, Common, LocalSteps, PlainSGD, Proximal, Sampling,
                                          ServerOptimizer, Staleness)
from theory_lab.errors import ConfigError
from theory_lab.factorised import RULES as LORA_RULES
from theory_lab.factorised import aggregation_error, dense_size, part_mask, products
from theory_lab.optim import Optimizer, gather_rows, put_rows
from theory_lab.update_rules import Inputs, server_optimizer

SERVER_SETTINGS = {"sgd": (), "avgm": ("server_momentum",), "adagrad": ("server_betas", "server_eps"),
                   "adam": ("server_betas", "server_eps"), "yogi": ("server_betas", "server_eps")}
SERVER_HYPER = {"server_momentum", "server_betas", "server_eps"}   # read only by the rules that use them


@register
class FedDPO(Algorithm):
    """FedAvg of DPO: E local steps, S of N clients, a server optimizer, bounded staleness."""
    name, family = "feddpo", "server"
    lora_rules = LORA_RULES

    @dataclass
    class Params(Common, LocalSteps, Sampling, Staleness, ServerOptimizer, ClientOptimizer):
        pass

    @classmethod
    def fields_read(cls, cfg) -> set[str]:
        return super().fields_read(cfg) - (SERVER_HYPER - set(SERVER_SETTINGS.get(cfg.server_opt, ())))

    @classmethod
    def check(cls, cfg) -> None:
        if cfg.lora_aggregation == "exact" and cfg.server_opt != "sgd":
            raise ConfigError("algorithm.lora_aggregation", "'exact' makes the server's step exact in the clients' "
                              "weights, which an adaptive server optimizer does not define: use server_opt = 'sgd'")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        o, cfg = self.oracle, self.cfg
        self.steps_per_round = cfg.local_steps
        self.server = o.init_params().clone()
        self.history = [self.server]  # server models of the last q_max rounds, newest first
        self.n_part = cfg.participation or o.n_clients
        self.opt = Optimizer(cfg, o.n_seeds, o.n_clients, o.dim, o.dtype, self.server.device)
        self.server_rule = server_optimizer(cfg.server_opt, cfg.server_momentum, tuple(cfg.server_betas),
                                            cfg.server_eps)
        self.server_state = self.server_rule.init(self.server)
        rule = cfg.lora_aggregation
        if rule == "fedsa":   # B personal: each client's own B factors, [S, N, |B|]
            self.b_mask = part_mask(self.layout, o.dim, "B")
            self.b_clients = self.server[:, self.b_mask].unsqueeze(1).repeat(1, o.n_clients, 1)
        if rule == "exact":   # what the factors miss, folded into the base: [S, D] per round, newest first
            self.deltas = [self.server.new_zeros(o.n_seeds, dense_size(self.layout))]
        self.delay = None     # [S, K]: this round's delays (None: every start is the current model)

    # ------------------------------------------------------------------ the round's hooks
    def sample_participants(self) -> torch.Tensor | None:
        """S of N clients per replica, without replacement ([S, K] sorted), or None for all."""
        o = self.oracle
        if self.n_part == o.n_clients:
            return None
        u = torch.rand(o.n_seeds, o.n_clients, generator=self.gen, dtype=torch.float64)
        return u.argsort(dim=1)[:, : self.n_part].sort(dim=1).values

    def start_models(self, clients, r: int) -> torch.Tensor:
        """Each participant's starting model: the server model of `delay` rounds ago."""
        o, cfg, K = self.oracle, self.cfg, self.n_part
        self.delay = None
        if cfg.q_max == 0:
            return self._own_factors(self.server.unsqueeze(1).expand(-1, K, -1), clients)
        depth = min(cfg.q_max, r)
        if cfg.delay == "max":
            delay = torch.full((o.n_seeds, K), depth, dtype=torch.long)
        else:
            u = torch.rand(o.n_seeds, K, generator=self.gen, dtype=torch.float64)
            delay = (u * (depth + 1)).long().clamp_(max=depth)
        self.delay = delay
        stack = torch.stack(self.history)  # [depth+1, S, P]
        return self._own_factors(stack[delay, torch.arange(o.n_seeds).unsqueeze(1)], clients)

    def start_deltas(self) -> torch.Tensor:
        """exact: [S, K, D] the frozen delta of each participant's start (the round it started from)."""
        if self.delay is None:
            return self.deltas[0].unsqueeze(1).expand(-1, self.n_part, -1)
        return torch.stack(self.deltas)[self.delay, torch.arange(self.oracle.n_seeds).unsqueeze(1)]

    def _own_factors(self, start, clients):
        """fedsa: every participant starts from the shared A and its own B."""
        if self.cfg.lora_aggregation != "fedsa":
            return start
        start = start.clone()
        start[..., self.b_mask] = gather_rows(self.b_clients, clients)
        return start

    def local(self, start, clients) -> torch.Tensor:
        X, _ = self.local_updates(start, clients, self.opt, self.cfg.local_steps, anchor=start)
        return X

    def aggregate(self, X, start, clients, w) -> tuple[torch.Tensor, torch.Tensor]:
        """(the server's pseudo-gradient Δ [S, P], the participants' average model [S, P])."""
        center = self.comm.average(X, w, clients)
        if self.cfg.stale_rule == "delta":
            return self.comm.average(X - start, w, clients), center
        return center - self.server, center

    def aggregate_factors(self, X, start, clients, w, delta, center) -> tuple[torch.Tensor, torch.Tensor]:
        """The lora_aggregation rule's part of the round, before the server update: fedsa keeps
        the participants' B; exact makes the server's effective weight the rule's exact target
        (the average of the clients' weights, or the current one plus their averaged change under
        stale_rule = delta, times server_lr) and folds what the factors miss into the frozen delta.
        Returns the aggregation error (absolute, relative) of what the server will hold."""
        average = lambda T, wt: self.comm.average(T, wt, clients)   # noqa: E731
        if self.cfg.lora_aggregation == "fedsa":
            put_rows(self.b_clients, clients, X[..., self.b_mask])
        if self.cfg.lora_aggregation != "exact":
            return aggregation_error(X, w, self.layout, self.server, server=center, average=average)
        now = self.deltas[0] + products(self.server, self.layout)
        if self.cfg.stale_rule == "delta":
            change = average(products(X, self.layout) - products(start, self.layout), w)
        else:
            change = average(self.start_deltas() + products(X, self.layout), w) - now
        target = now + self.cfg.server_lr * change
        held = products(self.server + self.cfg.server_lr * delta, self.layout)   # the factors after server_update
        self.deltas = [target - held, *self.deltas][: self.cfg.q_max + 1]
        self.oracle.set_frozen_delta(self.deltas[0])
        error = (target - self.deltas[0] - held).norm(dim=-1)
        return error, error / (target - now).norm(dim=-1)

    def server_update(self, delta) -> None:
        step, self.server_state = self.server_rule.update(delta, self.server_state, Inputs(delta, self.server))
        self.server = self.server + self.cfg.server_lr * step
        if self.cfg.lora_aggregation == "fedsa":   # the model evaluated: shared A, the clients' average B
            self.server[:, self.b_mask] = self.comm.average(self.b_clients, self.oracle.weights)
        self.history = [self.server, *self.history][: self.cfg.q_max + 1]

    def round(self, r: int) -> RoundInfo:
        clients = self.sample_participants()
        w = gather_rows(self.oracle.weights, clients)
        start = self.start_models(clients, r)
        stale = self.cfg.lora_aggregation == "exact" and self.delay is not None
        if stale:   # each participant trains on its own start's base
            self.oracle.set_frozen_delta(self.deltas[0], self.start_deltas(), clients)
        X = self.local(start, clients)
        if stale:
            self.oracle.set_frozen_delta(self.deltas[0])
        delta, center = self.aggregate(X, start, clients, w)
        delta, center = self.keep_frozen(0.0, delta), self.keep_frozen(self.server, center)
        error = self.aggregate_factors(X, start, clients, w, delta, center) if self.layout else (None, None)
        self.server_update(delta)
        self.opt.communicate(average=lambda T: self.comm.average(gather_rows(T, clients), w, clients))
        return RoundInfo(self.comm.consensus(X, center, clients), center.new_zeros(center.shape[0]),
                         self.bytes_per_round(), *error)

    # ------------------------------------------------------------------ declaration and state
    def bytes_per_round(self) -> int:
        """Model down and up for each participant (plus averaged optimizer states). Factorised:
        ffa sends only B, fedsa only A; exact also sends each participant the round's dense
        residual (FedEx-LoRA), D = Σ m·k numbers, far more than the factors."""
        copies = 1 + (self.opt.n_state_tensors if self.cfg.state_policy == "average" else 0)
        rule, dim = self.cfg.lora_aggregation, self.oracle.dim
        sent = int(part_mask(self.layout, dim, {"ffa": "B", "fedsa": "A"}[rule]).sum()) if rule in ("ffa", "fedsa") else dim
        residual = dense_size(self.layout) if rule == "exact" else 0
        return self.n_part * (2 * sent * copies + residual) * self.itemsize

    def state_dict(self) -> dict[str, torch.Tensor]:
        factors = {"fedsa": lambda: {"b_clients": self.b_clients},
                   "exact": lambda: {"deltas": torch.stack(self.deltas)}}.get(self.cfg.lora_aggregation, dict)()
        return {"server": self.server, "history": torch.stack(self.history), **self.opt.state_dict(),
                **{f"server_opt.{k}": v for k, v in self.server_state.items()}, **factors}

    def _load(self, state) -> None:
        self.server = state["server"].to(self.server)
        self.history = list(state["history"].to(self.server).unbind(0))
        self.opt.load_state_dict(state)
        self.server_state = {k: state[f"server_opt.{k}"].to(self.server) for k in self.server_state}
        if "b_clients" in state:
            self.b_clients = state["b_clients"].to(self.server).clone()
        if "deltas" in state:
            self.deltas = list(state["deltas"].to(self.server).unbind(0))
            self.oracle.set_frozen_delta(self.deltas[0])

    def model(self) -> torch.Tensor:
        return self.server

    def client_params(self) -> torch.Tensor:
        return self.server.unsqueeze(1).expand(-1, self.oracle.n_clients, -1)

    def personal_params(self) -> torch.Tensor | None:
        if self.cfg.lora_aggregation != "fedsa":
            return None
        rows = self.client_params().clone()
        rows[..., self.b_mask] = self.comm.rows(self.b_clients)
        return rows


@register
class FedProx(FedDPO):
    """FedDPO with the proximal term prox_mu/2 ‖x − x_start‖² in the local steps (Li et al. 2020)."""
    name = "fedprox"

    @dataclass
    class Params(FedDPO.Params, Proximal):
        pass

    @classmethod
    def check(cls, cfg) -> None:
        super().check(cfg)
        if not cfg.prox_mu > 0:
            raise ConfigError("algorithm.prox_mu", "fedprox needs a proximal weight > 0")


@register
class Scaffold(FedDPO):
    """SCAFFOLD (Karimireddy et al. 2020), option II control variates, SGD local steps."""
    name = "scaffold"

    @dataclass
    class Params(Common, LocalSteps, Sampling, PlainSGD):
        """Plain SGD steps (no optimizer state), no staleness, FedAvg's server step."""

    @classmethod
    def check(cls, cfg) -> None:
        super().check(cfg)
        if cfg.optimizer != "sgd":
            raise ConfigError("algorithm.optimizer", "scaffold is defined for SGD; use 'sgd'")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.c = torch.zeros_like(self.server)
        self.c_clients = self.server.new_zeros(self.oracle.n_seeds, self.oracle.n_clients, self.oracle.dim)

    def local(self, start, clients) -> torch.Tensor:
        self.c_i = gather_rows(self.c_clients, clients)
        X, self.lr_sum = self.local_updates(start, clients, self.opt, self.cfg.local_steps,
                                            correction=self.c.unsqueeze(1) - self.c_i, anchor=start)
        return X

    def aggregate(self, X, start, clients, w):
        c_new = self.c_i - self.c.unsqueeze(1) + (start - X) / self.lr_sum
        center = self.comm.average(X, w, clients)
        # c += sum_{i in S} w_i (c_i+ - c_i) keeps c = sum_i w_i c_i at all times
        self.c = self.c + self.comm.average(c_new - self.c_i, w, clients) * w.sum(1, keepdim=True)
        put_rows(self.c_clients, clients, c_new)
        return center - self.server, center

    def bytes_per_round(self) -> int:
        return 2 * super().bytes_per_round()   # the model and the control variate, both ways

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {**super().state_dict(), "c": self.c, "c_clients": self.c_clients}

    def _load(self, state) -> None:
        super()._load(state)
        self.c, self.c_clients = state["c"].to(self.c), state["c_clients"].to(self.c_clients).clone()
