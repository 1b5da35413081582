"""Typed experiment configuration: TOML files, `--set key=value` overrides, validation.

Every section is a dataclass with simple annotated fields; `from_dict` checks unknown keys and
types against the annotations, so a typo or a wrong type is one clear line naming the field.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import json
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from theory_lab import tracks
from theory_lab.algorithms import REGISTRY
from theory_lab.algorithms.params import Settings, help_text
from theory_lab.choices import check_choice, check_choices
from theory_lab.errors import ConfigError
from theory_lab.topology import TopologyConfig



@dataclass
class RunConfig:
    seeds: list[int] = field(default_factory=lambda: [0])  # replicas, vectorized
    rounds: int = 100          # communication rounds
    log_every: int = 1         # metrics every k rounds (round 0 and the last are always logged)
    seed: int = 0              # algorithm noise: minibatches, participants, delays
    divergence_factor: float = 1e6  # stop when the loss exceeds this multiple of its start
    checkpoint_every: int = 0  # save the full state every K rounds (0: never); resume with --resume

    def validate(self) -> None:
        _check(len(self.seeds) >= 1, "run.seeds", "needs at least one seed")
        _check(len(set(self.seeds)) == len(self.seeds), "run.seeds", f"has duplicates: {self.seeds}")
        _check(self.rounds >= 1, "run.rounds", f"must be >= 1, got {self.rounds}")
        _check(self.log_every >= 1, "run.log_every", f"must be >= 1, got {self.log_every}")
        _check(self.divergence_factor > 1, "run.divergence_factor", "must be > 1")
        _check(self.checkpoint_every >= 0, "run.checkpoint_every", f"must be >= 0, got {self.checkpoint_every}")


def describe_algorithms() -> str:
    """Every registered algorithm: its family, its first docstring line, and the [algorithm]
    fields it reads with their defaults and HELP."""
    defaults = AlgorithmConfig()
    out = []
    for name, cls in REGISTRY.items():
        doc = (cls.__doc__ or "").strip().splitlines()
        out.append(f"{name} ({cls.family}){': ' + doc[0] if doc else ''}")
        cfg = dataclasses.replace(defaults, name=name)
        for f in sorted(cls.fields_read(cfg) - {"name", "lora_aggregation"}):
            out.append(f"  {f:<17} = {getattr(defaults, f)!r:<14} {help_text(cls.Params, f)}")
        out.append(f"  lora_aggregation rules: {', '.join(cls.lora_rules)}")
    return "\n".join(out)


@dataclass
class AlgorithmConfig(Settings):
    """The `[algorithm]` table: every setting of theory_lab.algorithms.params. Each algorithm reads
    the fields of its `Params`; the others must stay at their defaults. `theory-lab algorithms`
    lists them per algorithm, with their help."""

    def validate(self) -> None:
        check_choices(self, "algorithm.")
        _check(self.name in REGISTRY, "algorithm.name", f"unknown algorithm {self.name!r}; known: {', '.join(REGISTRY)}")
        _check(self.local_steps >= 1, "algorithm.local_steps", f"must be >= 1, got {self.local_steps}")
        _check(self.participation >= 0, "algorithm.participation", f"must be >= 0, got {self.participation}")
        _check(self.server_lr > 0, "algorithm.server_lr", f"must be > 0, got {self.server_lr}")
        _check(self.q_max >= 0, "algorithm.q_max", f"must be >= 0, got {self.q_max}")
        _check(self.prox_mu >= 0, "algorithm.prox_mu", f"must be >= 0, got {self.prox_mu}")
        _check(self.lr > 0 and math.isfinite(self.lr), "algorithm.lr", f"step size must be > 0, got {self.lr}")
        _check(self.decay_steps > 0, "algorithm.decay_steps", f"must be > 0, got {self.decay_steps}")
        _check(self.batch_size >= 0, "algorithm.batch_size", f"must be >= 0 (0 = exact gradients), got {self.batch_size}")
        _check(0 <= self.momentum < 1, "algorithm.momentum", f"must be in [0, 1), got {self.momentum}")
        _check(self.weight_decay >= 0, "algorithm.weight_decay", f"must be >= 0, got {self.weight_decay}")
        _check(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "algorithm.betas",
               f"must be two numbers in [0, 1), got {self.betas}")
        _check(self.eps > 0, "algorithm.eps", "must be > 0")
        _check(0 <= self.server_momentum < 1, "algorithm.server_momentum", f"must be in [0, 1), got {self.server_momentum}")
        _check(len(self.server_betas) == 2 and all(0 <= b < 1 for b in self.server_betas), "algorithm.server_betas",
               f"must be two numbers in [0, 1), got {self.server_betas}")
        _check(self.server_eps > 0, "algorithm.server_eps", "must be > 0")
        algorithm = REGISTRY[self.name]
        read = algorithm.fields_read(self)
        for f in dataclasses.fields(self):   # a setting the algorithm does not read is an error, not a no-op
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            if f.name not in read and getattr(self, f.name) != default:
                raise ConfigError(f"algorithm.{f.name}", f"{self.name} does not read this setting (it reads "
                                  f"{', '.join(sorted(read - {'name'}))}); remove it")
        _check(self.lora_aggregation in algorithm.lora_rules, "algorithm.lora_aggregation",
               f"{self.name} implements {', '.join(algorithm.lora_rules)}, not {self.lora_aggregation!r}")
        algorithm.check(self)

    @property
    def decentralized(self) -> bool:
        """A gossip algorithm: it needs a topology."""
        return REGISTRY[self.name].family == "gossip"


@dataclass
class ExperimentConfig:
    track: str = "synthetic"
    plugins: list[str] = field(default_factory=list)   # modules imported first: they register algorithms
    run: RunConfig = field(default_factory=RunConfig)
    # the tracks' tables (theory_lab.tracks): their dataclasses come from the registry, so the
    # core never imports a track; None here means the table's defaults
    problem: Any = None   # synthetic track: synthetic.problem.ProblemConfig
    llm: Any = None       # LLM track: llm.config.LLMConfig
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    topology: TopologyConfig = field(default_factory=TopologyConfig)

    def __post_init__(self):
        for name, section in tracks.sections().items():
            if getattr(self, name) is None:
                setattr(self, name, section())

    @staticmethod
    def field_type(name: str) -> type | None:
        """The dataclass of a track's table (from_dict reads it with this type)."""
        return tracks.sections().get(name)

    def validate(self) -> None:
        track = tracks.get(self.track)
        for section in (self.run, getattr(self, track.section), self.algorithm, self.topology):
            section.validate()
        n, s = self.n_clients, self.algorithm.participation
        _check(s <= n, "algorithm.participation", f"S={s} exceeds n_clients={n}")
        track.check(self)

    @property
    def algorithm_family(self) -> str:
        """"centralized", "server" or "gossip": what the registered algorithm declares."""
        return REGISTRY[self.algorithm.name].family

    @property
    def n_clients(self) -> int:
        return getattr(self, tracks.get(self.track).section).n_clients


# ----------------------------------------------------------------------------- loading

def _check(ok: bool, field_name: str, message: str) -> None:
    if not ok:
        raise ConfigError(field_name, message)


def _convert(value: Any, annotation: Any, where: str) -> Any:
    """Check `value` against a simple annotation (int, float, str, bool, list[...], X | None)."""
    if check_choice(value, annotation, where):
        return value
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(value, option, where)
            except ConfigError as err:
                errors.append(err)
        raise errors[0]
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(where, f"expected a list, got {value!r}")
        (inner,) = typing.get_args(annotation)
        return [_convert(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
    if annotation is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if annotation is float and value in ("inf", "-inf", "nan"):
        return float(value)
    if isinstance(annotation, type) and isinstance(value, annotation) and not (
        isinstance(value, bool) and annotation is not bool
    ):
        return value
    name = getattr(annotation, "__name__", str(annotation))
    raise ConfigError(where, f"expected {name}, got {value!r}")


def from_dict(cls: type, data: dict, prefix: str = "") -> Any:
    """Build dataclass `cls` from a plain dict, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ConfigError(prefix.rstrip(".") or "config", f"expected a table, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        where = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(where, f"unknown key; known keys: {', '.join(sorted(names))}")
        annotation = getattr(cls, "field_type", lambda name: None)(key) or hints[key]
        if dataclasses.is_dataclass(annotation):
            kwargs[key] = from_dict(annotation, value, f"{where}.")
        else:
            kwargs[key] = _convert(value, annotation, where)
    return cls(**kwargs)


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b=value` -> (['a', 'b'], value); the value is read as TOML, else as a plain string."""
    if "=" not in text:
        raise ConfigError("--set", f"expected key=value, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError as err:
        if raw.strip()[:1] in ("[", "{", '"', "'"):   # meant as TOML, not a bare word
            raise ConfigError(f"--set {key.strip()}", f"invalid TOML value {raw!r} ({err})") from None
        value = raw   # a bare word: algorithm.name=feddpo
    return key.strip().split("."), value


def toml_value(value: Any) -> str:
    """A config value back as TOML text (the inverse of parse_override's value), for overrides
    built from sweep grids and predict candidates."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)   # a JSON string is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(float(value)) if isinstance(value, float) else str(value)


def apply_override(data: dict, path: list[str], value: Any) -> None:
    node = data
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(".".join(path), f"{part} is not a table")
    node[path[-1]] = value


def read_toml(path: str | Path) -> dict:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(str(path), f"cannot read config file: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(str(path), f"not a TOML text file (byte {err.start} is not UTF-8)") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(str(path), f"invalid TOML: {err}") from None


def build_config(data: dict, overrides: list[str] = ()) -> ExperimentConfig:
    data = copy.deepcopy(data)
    data.pop("sweep", None)  # sweep grids are read by theory_lab.sweep
    track = data.get("track", "synthetic")
    for text in overrides:
        path, value = parse_override(text)
        if path[0] == "sweep":
            raise ConfigError(f"--set {'.'.join(path)}", "a sweep's grid is not a run setting: edit the "
                              "[sweep] table of the config (--set applies to every point of it)")
        if path == ["track"] and value != track:
            raise ConfigError("--set track", f"this config is for the {track!r} track; use a config of "
                              f"the {value!r} track instead (configs/)")
        apply_override(data, path, value)
    import_plugins(data.get("plugins", []))
    cfg = from_dict(ExperimentConfig, data)
    cfg.validate()
    return cfg


def import_plugins(modules) -> None:
    """Import the config's `plugins` (module names on sys.path), where new algorithms register
    themselves (theory_lab.algorithms.register): a run in another process, e.g. a torchrun rank,
    finds them through its config."""
    if not isinstance(modules, list) or not all(isinstance(m, str) for m in modules):
        raise ConfigError("plugins", f"expected a list of module names, got {modules!r}")
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise ConfigError("plugins", f"cannot import {name!r}: {err}") from None


def load_config(path: str | Path, overrides: list[str] = ()) -> ExperimentConfig:
    return build_config(read_toml(path), overrides)


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)
