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
"""

from __future__ import annotations

import torch

from theory_lab.algorithms.base import CLIENT_OPTIMIZER, Algorithm, RoundInfo, register
from theory_lab.errors import ConfigError
from theory_lab.optim import Optimizer, gather_rows, put_rows
from theory_lab.update_rules import server_optimizer

SERVER_SETTINGS = {"sgd": (), "avgm": ("server_momentum",), "adagrad": ("server_betas", "server_eps"),
                   "adam": ("server_betas", "server_eps"), "yogi": ("server_betas", "server_eps")}


@register
class FedDPO(Algorithm):
    name, family = "feddpo", "server"
    reads = ("local_steps", "participation", "server_lr", "q_max", "delay", "stale_rule", "server_opt",
             *CLIENT_OPTIMIZER)

    @classmethod
    def fields_read(cls, cfg) -> set[str]:
        return super().fields_read(cfg) | set(SERVER_SETTINGS.get(cfg.server_opt, ()))

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
        if cfg.q_max == 0:
            return self.server.unsqueeze(1).expand(-1, K, -1)
        depth = min(cfg.q_max, r)
        if cfg.delay == "max":
            delay = torch.full((o.n_seeds, K), depth, dtype=torch.long)
        else:
            u = torch.rand(o.n_seeds, K, generator=self.gen, dtype=torch.float64)
            delay = (u * (depth + 1)).long().clamp_(max=depth)
        stack = torch.stack(self.history)  # [depth+1, S, P]
        return stack[delay, torch.arange(o.n_seeds).unsqueeze(1)]

    def local(self, start, clients) -> torch.Tensor:
        X, _ = self.local_updates(start, clients, self.opt, self.cfg.local_steps, anchor=start)
        return X

    def aggregate(self, X, start, clients, w) -> tuple[torch.Tensor, torch.Tensor]:
        """(the server's pseudo-gradient Δ [S, P], the participants' average model [S, P])."""
        center = self.comm.average(X, w, clients)
        if self.cfg.stale_rule == "delta":
            return self.comm.average(X - start, w, clients), center
        return center - self.server, center

    def server_update(self, delta) -> None:
        step, self.server_state = self.server_rule.update(delta, self.server_state)
        self.server = self.server + self.cfg.server_lr * step
        self.history = [self.server, *self.history][: self.cfg.q_max + 1]

    def round(self, r: int) -> RoundInfo:
        clients = self.sample_participants()
        w = gather_rows(self.oracle.weights, clients)
        start = self.start_models(clients, r)
        X = self.local(start, clients)
        delta, center = self.aggregate(X, start, clients, w)
        self.server_update(delta)
        self.opt.communicate(average=lambda T: self.comm.average(gather_rows(T, clients), w, clients))
        return RoundInfo(self.comm.consensus(X, center, clients), center.new_zeros(center.shape[0]),
                         self.bytes_per_round())

    # ------------------------------------------------------------------ declaration and state
    def bytes_per_round(self) -> int:
        """Model down and up for each participant (plus averaged optimizer states)."""
        copies = 1 + (self.opt.n_state_tensors if self.cfg.state_policy == "average" else 0)
        return 2 * self.n_part * self.oracle.dim * self.itemsize * copies

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"server": self.server, "history": torch.stack(self.history), **self.opt.state_dict(),
                **{f"server_opt.{k}": v for k, v in self.server_state.items()}}

    def _load(self, state) -> None:
        self.server = state["server"].to(self.server)
        self.history = list(state["history"].to(self.server).unbind(0))
        self.opt.load_state_dict(state)
        self.server_state = {k: state[f"server_opt.{k}"].to(self.server) for k in self.server_state}

    def model(self) -> torch.Tensor:
        return self.server

    def client_params(self) -> torch.Tensor:
        return self.server.unsqueeze(1).expand(-1, self.oracle.n_clients, -1)


@register
class FedProx(FedDPO):
    """FedDPO with the proximal term prox_mu/2 ‖x − x_start‖² in the local steps (Li et al. 2020)."""
    name = "fedprox"
    reads = (*FedDPO.reads, "prox_mu")

    @classmethod
    def check(cls, cfg) -> None:
        if not cfg.prox_mu > 0:
            raise ConfigError("algorithm.prox_mu", "fedprox needs a proximal weight > 0")


@register
class Scaffold(FedDPO):
    """SCAFFOLD (Karimireddy et al. 2020), option II control variates, SGD local steps."""
    name = "scaffold"
    reads = ("local_steps", "participation", "server_lr", "optimizer", "weight_decay")   # plain SGD: no state

    @classmethod
    def check(cls, cfg) -> None:
        if cfg.optimizer != "sgd":
            raise ConfigError("algorithm.optimizer", "scaffold is defined for SGD; use 'sgd'")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.c = torch.zeros_like(self.server)
        self.c_clients = torch.zeros(self.oracle.n_seeds, self.oracle.n_clients, self.oracle.dim, dtype=self.oracle.dtype)

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
