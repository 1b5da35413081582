"""What every algorithm shares, and the contract of a plug-in algorithm.

An algorithm is one class, registered with `@register`, that declares:

- `name` (what `algorithm.name` selects) and `family`: "centralized", "server" or "gossip" (a
  gossip algorithm gets the topology's mixing matrices);
- `Params`: a dataclass of exactly the `[algorithm]` settings it reads, made of the groups of
  theory_lab.algorithms.params, each field with its help text (a setting it does not read is a
  configuration error naming the field, never silently ignored); `fields_read(cfg)` may narrow
  it (FedDPO reads server_betas only with an adaptive server optimizer);
- `check(cfg)`: its own validation (one ConfigError naming the field);
- `lora_rules`: the factorised aggregation rules it implements (theory_lab.factorised). Every
  algorithm has ``factors``; ``ffa`` needs its local steps to go through `local_updates` (which
  then never moves A) and its communication through `keep_frozen`;
- `round(r)`, `model()`, `client_params()`, `bytes_per_round()`;
- `state_dict()` / `load_state_dict()`: every tensor a resumed run needs, by name. Checkpoints
  hold exactly this (plus the step clock `t` and the generator), nothing found by reflection.

The registry is the one list: config validation, the runner's topology decision, predict and the
figures ask it. A module outside the package registers its algorithms on import (config key
`plugins`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from theory_lab.algorithms.params import Common, Settings
from theory_lab.errors import ConfigError
from theory_lab.factorised import part_mask
from theory_lab.optim import Optimizer
from theory_lab.schedules import step_size

if TYPE_CHECKING:
    from theory_lab.config import AlgorithmConfig

FAMILIES = ("centralized", "server", "gossip")

REGISTRY: dict[str, type["Algorithm"]] = {}


def register(cls: type["Algorithm"]) -> type["Algorithm"]:
    """Class decorator: make `cls` selectable as algorithm.name = cls.name."""
    if cls.family not in FAMILIES:
        raise ValueError(f"{cls.__name__}.family must be one of {FAMILIES}, got {cls.family!r}")
    known = {f.name: f for f in dataclasses.fields(Settings)}
    for f in dataclasses.fields(cls.Params):   # the config table holds it, with the same default
        if f.name not in known or _default(f) != _default(known[f.name]) or "help" not in f.metadata:
            raise ValueError(f"{cls.__name__}.Params.{f.name}: not an [algorithm] setting with this default and "
                             "a help text (theory_lab.algorithms.params)")
    REGISTRY[cls.name] = cls
    return cls


def _default(f: dataclasses.Field):
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


@dataclass
class RoundInfo:
    consensus_error_pre: torch.Tensor  # [S]: spread of the client models before communication
    consensus_error: torch.Tensor      # [S]: spread after communication
    comm_bytes: int                    # bytes sent this round by one replica
    lora_agg_error: torch.Tensor | None = None      # [S]: factorised aggregation error (theory_lab.factorised)
    lora_agg_error_rel: torch.Tensor | None = None  # [S]: the same over the round's update


class Algorithm:
    """Base: holds the oracle, communicator, optimizer and the generator for algorithm noise."""

    name = ""
    family = ""
    Params: type = Common   # the settings it reads (a dataclass of theory_lab.algorithms.params groups)
    lora_rules: tuple[str, ...] = ("factors",)
    steps_per_round = 1

    def __init__(self, cfg: AlgorithmConfig, oracle, comm, gen: torch.Generator, rounds: int, topology=None):
        self.cfg, self.oracle, self.comm, self.gen, self.topology = cfg, oracle, comm, gen, topology
        self.rounds = rounds
        self.t = 0  # local steps taken: the clock of the step-size schedule
        self.itemsize = torch.empty((), dtype=oracle.dtype).element_size()
        self.layout = getattr(oracle, "factor_layout", None)   # factorised (LoRA) modules, if any
        if cfg.lora_aggregation != "factors" and not self.layout:
            raise ConfigError("algorithm.lora_aggregation", f"{cfg.lora_aggregation!r} needs factorised parameters "
                              "(an oracle with a factor_layout: the llm track, or problem.lora_rank > 0)")
        # ffa: the A factors never move, so only B trains (and travels)
        self.frozen = part_mask(self.layout, oracle.dim, "A") if cfg.lora_aggregation == "ffa" else None

    # ------------------------------------------------------------------ declaration
    @classmethod
    def fields_read(cls, cfg: AlgorithmConfig) -> set[str]:
        return {f.name for f in dataclasses.fields(cls.Params)}

    @classmethod
    def check(cls, cfg: AlgorithmConfig) -> None:
        """Algorithm-specific validation (the fields it reads are already range-checked)."""

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore from `state_dict()`'s tensors; a missing or unexpected name is an error."""
        mine = self.state_dict()
        missing, extra = mine.keys() - state.keys(), state.keys() - mine.keys()
        if missing or extra:
            raise ConfigError("--resume", f"the checkpoint does not match {self.name}'s state "
                                          f"(missing {sorted(missing)}, unexpected {sorted(extra)})")
        self._load(state)

    def _load(self, state: dict[str, torch.Tensor]) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ shared mechanics
    def lr(self) -> float:
        cfg = self.cfg
        return step_size(cfg.schedule, cfg.lr, self.t, decay_steps=cfg.decay_steps,
                         total_steps=self.rounds * self.steps_per_round)

    def local_updates(self, X, clients, opt: Optimizer, n_steps: int, *, scale=None, correction=None, anchor=None):
        """n_steps optimizer steps of rows X [S, K, P] on their own clients' losses.
        Returns the new rows and the sum of step sizes used (SCAFFOLD needs it)."""
        lr_sum = 0.0
        for _ in range(n_steps):
            lr = self.lr()
            batch = self.oracle.sample_batch(self.gen, self.cfg.batch_size)
            g = self.oracle.local_step(X, clients, batch)
            if scale is not None:
                g = g * scale
            if correction is not None:
                g = g + correction
            if self.cfg.prox_mu:
                g = g + self.cfg.prox_mu * (X - anchor)
            X_new = opt.step(X, g, lr, clients)
            X = X_new if self.frozen is None else torch.where(self.frozen.to(X.device), X, X_new)
            self.t += 1
            lr_sum += lr
        return X, lr_sum

    def keep_frozen(self, before: torch.Tensor | float, after: torch.Tensor) -> torch.Tensor:
        """ffa: a communicated tensor keeps its frozen (A) entries exactly (`before`: the tensor's
        own old entries, or a number): they never travel (averaging identical copies would only
        add rounding)."""
        return after if self.frozen is None else torch.where(self.frozen.to(after.device), before, after)

    def round(self, r: int) -> RoundInfo:
        raise NotImplementedError

    def model(self) -> torch.Tensor:
        """The averaged model theta_bar [S, P] at which metrics are taken."""
        raise NotImplementedError

    def client_params(self) -> torch.Tensor:
        """The parameter stack [S, N, P] (federated: the server model on every client)."""
        raise NotImplementedError

    def personal_params(self) -> torch.Tensor | None:
        """[S, N, P]: the rows the clients use when they differ from `model()` by design
        (fedsa's personal B factors), evaluated as `personal_pref_acc`; None otherwise."""
        return None
