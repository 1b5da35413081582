"""The tracks a config can name (`track = "synthetic"` or `"llm"`), registered from outside the core.

A track declares the config table it reads, that table's dataclass, how to build its oracle, its
table columns and its own cross-section checks. The core asks this registry and never imports a
track: the built-in tracks' modules are imported by name on first use, as a config's `plugins`
are, so the dependencies point one way (synthetic, llm -> theory_lab).

>>> get("synthetic").section
'problem'
"""

from __future__ import annotations

import contextlib
import importlib
from dataclasses import dataclass
from typing import Any, Callable

from theory_lab.errors import ConfigError

BUILTIN = {"synthetic": "synthetic.track", "llm": "llm.track"}   # name -> the module that registers it


@dataclass(frozen=True)
class Track:
    name: str
    section: str                           # the config table it reads: [problem], [llm]
    config: type                           # that table's dataclass
    build_oracle: Callable[[Any], Any]     # ExperimentConfig -> Oracle
    columns: Callable[[Any], dict]         # ExperimentConfig -> its results-table columns
    check: Callable[[Any], None] = lambda cfg: None   # checks across sections (one ConfigError)
    sweep_context: Callable[[], Any] = contextlib.nullcontext   # held around a sweep's runs


REGISTRY: dict[str, Track] = {}


def register(track: Track) -> Track:
    REGISTRY[track.name] = track
    return track


def get(name: str) -> Track:
    """The track `name`, importing its built-in module on first use."""
    if name not in REGISTRY and name in BUILTIN:
        importlib.import_module(BUILTIN[name])
    if name not in REGISTRY:
        raise ConfigError("track", f"unknown track {name!r}; known: {', '.join(BUILTIN)}")
    return REGISTRY[name]


def sections() -> dict[str, type]:
    """Every built-in track's config table and its dataclass ({"problem": ProblemConfig, ...})."""
    return {get(name).section: get(name).config for name in BUILTIN}
