"""The experiments behind the figures, cached by config hash.

Every sweep goes through `Lab.sweep(data)`: `data` is a config as a dict (what
`theory_lab.config.read_toml` returns, with an optional [sweep] table), its canonical JSON is
hashed (sha256) and the results table and manifest are kept as `<cache>/<hash>.csv` and
`<hash>.json`. A second call with the same config reads them back and runs nothing, so
`theory-lab figures` twice only redraws. Values computed outside the results schema (a bound,
the largest Hessian eigenvalue along a run) are cached the same way by `Lab.value`.

Sizes: "full" runs the paper's configs (configs/synthetic/*.toml) as they are, "quick" with
fewer rounds, "tiny" (tests) with very few; all keep >= 3 seeds so bands exist.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from theory_lab.config import read_toml
from theory_lab.results import atomic_write, atomic_write_text, jsonable

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs" / "synthetic"
CACHE_VERSION = 1  # bump when what a cached table means changes
SIZES = ("full", "quick", "tiny")
ROUNDS = {"full": None, "quick": 120, "tiny": 12}  # None: the config's own


def paper_config(name: str) -> dict:
    """configs/synthetic/<name>.toml as a dict."""
    return read_toml(CONFIG_DIR / f"{name}.toml")


def config_hash(data) -> str:
    """sha256 of the canonical JSON of a config (sorted keys, no whitespace)."""
    text = json.dumps({"v": CACHE_VERSION, "config": data}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True, default=jsonable)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Lab:
    """What a figure's `prepare` may use: the cache, the size, a verify report path."""

    cache_dir: Path
    size: str = "full"
    report: Path | None = None
    runs: int = 0    # sweeps / values actually computed in this process (cache misses)
    hits: int = 0    # cache hits
    _memo: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.size not in SIZES:
            raise ValueError(f"size must be one of {SIZES}, got {self.size!r}")
        self.cache_dir = Path(self.cache_dir)

    @property
    def quick(self) -> bool:
        return self.size != "full"

    def pick(self, full, quick, tiny=None):
        """The value for the current size (tiny defaults to quick)."""
        return {"full": full, "quick": quick, "tiny": quick if tiny is None else tiny}[self.size]

    def sized(self, data: dict, rounds: int | None = None) -> dict:
        """A copy of `data` run for `rounds` (default: the config's own at full size, ROUNDS at
        quick/tiny), logging about as often per run as the config does."""
        data = copy.deepcopy(data)
        target = rounds if rounds is not None else ROUNDS[self.size]
        if target is None:
            return data
        run = data.setdefault("run", {})
        old, every = run.get("rounds", 100), run.get("log_every", 1)
        run["rounds"] = int(target)
        run["log_every"] = max(1, int(every * target / old)) if target < old else every
        return data

    def sweep(self, data: dict) -> tuple[pd.DataFrame, dict]:
        """Results table and manifest of `theory_lab.sweep.run_sweep(data)`, cached by hash."""
        key = config_hash(data)
        if key in self._memo:
            return self._memo[key]
        csv, meta = self.cache_dir / f"{key}.csv", self.cache_dir / f"{key}.json"
        if csv.is_file() and meta.is_file():
            self.hits += 1
            out = pd.read_csv(csv), json.loads(meta.read_text())
        else:
            from theory_lab.sweep import run_sweep

            self.runs += 1
            res = run_sweep(data, progress=False)
            manifest = {**res.manifest, "figure_config": data, "config_hash": key}
            atomic_write(csv, lambda tmp: res.table.to_csv(tmp, index=False))
            atomic_write_text(meta, json.dumps(manifest, indent=1, default=jsonable) + "\n")
            out = res.table, json.loads(json.dumps(manifest, default=jsonable))
        self._memo[key] = out
        return out

    def value(self, key: dict, compute: Callable[[], object]):
        """A JSON-able value computed by `compute()`, cached under the hash of `key`."""
        h = config_hash(key)
        path = self.cache_dir / f"{h}.value.json"
        if path.is_file():
            self.hits += 1
            return json.loads(path.read_text())["value"]
        self.runs += 1
        value = json.loads(json.dumps(compute(), default=jsonable))
        atomic_write_text(path, json.dumps({"key": key, "value": value}, default=jsonable) + "\n")
        return value


def zeta2_column(table: pd.DataFrame, manifest: dict, name: str = "zeta2") -> pd.DataFrame:
    """Add each (run, seed)'s exact constant `name` (from the sweep manifest) as a column."""
    seeds = manifest["seeds"]
    pos = {s: i for i, s in enumerate(seeds)}
    by_run = {r["run_id"]: r["constants"][name] for r in manifest["runs"]}
    table = table.copy()
    table[name] = [by_run[r][pos[s]] for r, s in zip(table["run_id"], table["seed"])]
    return table
