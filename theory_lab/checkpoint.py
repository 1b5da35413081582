"""Checkpoints: everything a run needs to continue bit-identically, written atomically.

A checkpoint is a directory with `state.safetensors` (the algorithm's `state_dict()`: what it
declares it needs, e.g. parameter stacks, optimizer states, control variates, staleness buffers,
server optimizer moments; the generator's state; and the oracle's client-local state when it has
one, e.g. FedPDPO's personal modules) and
`meta.json` (round, step clock, logged records, the config and its hash). Safetensors, not
pickle: loading a checkpoint someone sends you cannot run code.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from theory_lab.errors import ConfigError, LabError
from theory_lab.results import atomic_write, atomic_write_text

STATE, META = "state.safetensors", "meta.json"


def _trajectory(config: dict) -> dict:
    """The part of a config that decides the trajectory (logging and checkpoint cadence excluded)."""
    run = {k: v for k, v in config.get("run", {}).items() if k not in ("log_every", "checkpoint_every")}
    return {**{k: v for k, v in config.items() if k != "run"}, "run": run}


def config_hash(config: dict) -> str:
    """Hash of the config that decides the trajectory (logging and checkpoint cadence excluded)."""
    text = json.dumps(_trajectory(config), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def config_changes(saved: dict, now: dict) -> list[str]:
    """The trajectory fields that differ, as 'section.key: saved -> now' (for a refused resume)."""
    def flat(d, prefix=""):
        return {k2: v2 for k, v in d.items()
                for k2, v2 in (flat(v, f"{prefix}{k}.").items() if isinstance(v, dict) else [(f"{prefix}{k}", v)])}
    a, b = flat(_trajectory(saved)), flat(_trajectory(now))
    return [f"{k}: {a.get(k, '(unset)')!r} -> {b.get(k, '(unset)')!r}" for k in sorted(a.keys() | b.keys())
            if json.dumps(a.get(k), default=str) != json.dumps(b.get(k), default=str)]


def save(directory: str | Path, alg, gen: torch.Generator, round_: int, records: list[dict], config: dict,
         counters: dict) -> None:
    directory = Path(directory)
    tensors = {f"alg.{k}": v for k, v in alg.state_dict().items()}   # what the algorithm declares, no more
    for key, value in _oracle_state(alg).items():
        tensors[f"oracle.{key}"] = value
    tensors["generator"] = gen.get_state()
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}   # a file holds host tensors
    atomic_write(directory / STATE, lambda tmp: save_file(tensors, tmp))
    meta = {"round": round_, "t": alg.t, "records": _plain(records), "counters": counters, "config": config,
            "config_hash": config_hash(config)}
    atomic_write_text(directory / META, json.dumps(meta) + "\n")


def load(directory: str | Path, alg, gen: torch.Generator, config: dict) -> tuple[int, list[dict], dict]:
    """Restore `alg` and `gen` in place; returns (round, records, counters). Refuses another
    config's checkpoint."""
    directory = Path(directory)
    try:
        meta = json.loads((directory / META).read_text())
    except (OSError, ValueError) as err:
        raise LabError(f"{directory / META}: no readable checkpoint ({err})") from None
    if meta.get("config_hash") != config_hash(config):
        changes = config_changes(meta.get("config", {}), config)
        raise ConfigError("--resume", f"{directory} holds a checkpoint of another config ({'; '.join(changes[:4])}"
                          f"{'; ...' if len(changes) > 4 else ''}): resume with the config and --set "
                          "overrides it was started with (they are read back when --config is left out)")
    try:
        tensors = load_file(str(directory / STATE))
    except Exception as err:  # safetensors raises its own error type for a damaged file
        raise LabError(f"{directory / STATE}: damaged checkpoint ({err})") from None
    gen.set_state(tensors.pop("generator"))
    oracle_state = {k.split(".", 1)[1]: tensors.pop(k) for k in list(tensors) if k.startswith("oracle.")}
    if oracle_state:
        alg.oracle.load_state_dict(oracle_state)
    alg.load_state_dict({k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith("alg.")})
    alg.t = meta["t"]
    return meta["round"], meta["records"], meta["counters"]


def _oracle_state(alg) -> dict[str, torch.Tensor]:
    """State the oracle keeps per client outside the parameter stack (FedPDPO's personal
    parameters and their optimizer); empty for oracles without any."""
    state_dict = getattr(alg.oracle, "state_dict", None)
    return state_dict() if callable(state_dict) else {}


def _plain(records: list[dict]) -> list[dict]:
    return [{k: (v.cpu().tolist() if torch.is_tensor(v) else v) for k, v in rec.items()} for rec in records]
