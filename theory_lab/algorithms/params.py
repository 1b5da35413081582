"""The `[algorithm]` settings, in the groups an algorithm's parameter dataclass is made of.

Each algorithm declares `Params`, a dataclass of exactly the settings it reads, built from these
groups (and, for a plug-in, single fields declared with `setting`); every field carries its help
text. The config table (`theory_lab.config.AlgorithmConfig`) is the union, `Settings`: a setting
that the chosen algorithm's `Params` lacks must stay at its default (an error naming the field).

>>> from dataclasses import dataclass, fields
>>> @dataclass
... class Params(Common, LocalSteps):
...     pass
>>> sorted(f.name for f in fields(Params))[:4]
['batch_size', 'decay_steps', 'local_steps', 'lora_aggregation']
>>> help_text(Params, "local_steps")
'E local steps per round (federated), or tau steps between gossips (decentralized)'
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from theory_lab.factorised import RULES as LORA_RULES
from theory_lab.schedules import SCHEDULES
from theory_lab.update_rules import SERVER_OPTIMIZERS


def setting(default: Any, help: str) -> Any:
    """A dataclass field with its default and its one-line help (`theory-lab algorithms`)."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


def help_text(params: type, name: str) -> str:
    """The help line of field `name` of the dataclass `params`."""
    return next(f.metadata["help"] for f in dataclasses.fields(params) if f.name == name)


@dataclass
class Common:
    """What every algorithm reads."""
    name: str = setting("feddpo", "the algorithm (the registry: theory_lab.algorithms)")
    lr: float = setting(0.1, "the client step size")
    schedule: Literal[SCHEDULES] = setting("constant", "step-size schedule")
    decay_steps: float = setting(100.0, "t0 of the inverse and inv_sqrt schedules")
    batch_size: int = setting(8, "pairs per client per local step; 0 = exact gradients")
    lora_aggregation: Literal[LORA_RULES] = setting(
        "factors", "factorised (LoRA) parameters: factors, ffa, fedsa, exact (docs/lora_aggregation.md)")


@dataclass
class LocalSteps:
    local_steps: int = setting(1, "E local steps per round (federated), or tau steps between gossips (decentralized)")


@dataclass
class Sampling:
    """A server's round: who takes part, and the server's step on their averaged delta."""
    participation: int = setting(0, "S clients sampled per round without replacement; 0 = all")
    server_lr: float = setting(1.0, "the server's step size on the averaged delta")


@dataclass
class Staleness:
    q_max: int = setting(0, "bounded staleness: a client may start from the model of up to q_max rounds ago")
    delay: Literal["uniform", "max"] = setting("uniform", "a client's delay: uniform on 0..q_max, or always q_max")
    stale_rule: Literal["model_average", "delta"] = setting(
        "model_average", "the server averages the returned models, or applies their averaged deltas")


@dataclass
class ServerOptimizer:
    """Reddi et al. 2021's server rules; each reads only its own hyper-parameters."""
    server_opt: Literal[SERVER_OPTIMIZERS] = setting(
        "sgd", "server rule on the averaged delta: sgd (FedAvg), avgm, adagrad, adam, yogi (Reddi et al. 2021)")
    server_momentum: float = setting(0.9, "avgm's beta")
    server_betas: list[float] = setting([0.9, 0.99], "adagrad / adam / yogi's betas")
    server_eps: float = setting(1e-3, "adagrad / adam / yogi's tau")


@dataclass
class Proximal:
    prox_mu: float = setting(0.0, "FedProx's proximal weight")


@dataclass
class PlainSGD:
    """The client optimizer settings of a method defined for plain SGD (no optimizer state)."""
    optimizer: Literal["sgd", "adamw"] = setting("sgd", "the clients' optimizer")
    weight_decay: float = setting(0.0, "SGD L2 term, or AdamW's decoupled decay")


@dataclass
class ClientOptimizer(PlainSGD):
    momentum: float = setting(0.0, "SGD momentum")
    betas: list[float] = setting([0.9, 0.999], "AdamW's betas")
    eps: float = setting(1e-8, "AdamW's epsilon")
    state_policy: Literal["keep", "reset", "average"] = setting(
        "keep", "optimizer state at communication: each client keeps its own, reset, or averaged")


@dataclass
class Settings(Common, LocalSteps, Sampling, Staleness, ServerOptimizer, Proximal, ClientOptimizer):
    """Every setting of the `[algorithm]` table: the union of the groups."""
