"""The experiments behind the figures, cached by config hash.

Every sweep goes through `Lab.sweep(data)`: `data` is a config as a dict (what
`theory_lab.config.read_toml` returns, with an optional [sweep] table), its canonical JSON is
hashed (sha256) and the results table and manifest are kept as `<cache>/<hash>.csv` and
`<hash>.json`. A second call with the same config reads them back and runs nothing, so
`theory-lab figures` twice only redraws. Values computed outside the results schema (a bound,
the largest Hessian eigenvalue along a run) are cached the same way by `Lab.value`.

Sizes: "full" runs the paper's configs (configs/synthetic/*.toml) as they are, "quick" with
fewer rounds, "tiny" (tests) with very few; all keep >= 3 seeds so bands exist.

The LLM track (configs/llm/*.toml, figures llm_*.py) always runs reduced for a CPU (LLM_SIZES, by
`Lab.llm_model`), one seed per run, and point by point (`Lab.points`): each grid point is cached
under the hash of its resolved config, so a run that several families share (FedDPO with E = 3,
S = 5, q_max = 0 is in four of them) runs once.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from theory_lab.config import apply_override, build_config, read_toml, to_dict
from theory_lab.results import atomic_write, atomic_write_text, jsonable
from theory_lab.sweep import grid_points, run_sweep

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs" / "synthetic"
LLM_CONFIG_DIR = CONFIG_DIR.parent / "llm"
CACHE_VERSION = 1  # bump when what a cached table means changes
SIZES = ("full", "quick", "tiny")
ROUNDS = {"full": None, "quick": 120, "tiny": 12}  # None: the config's own
# The LLM families reduced for a CPU (the configs' paper setting: 120 + 40 pairs per client, max length
# 64, batch 4, 15 rounds; the --llm set is 12 distinct runs): "smollm2" (and any other model), sized
# for ~25 min of one core, and the tiny random Llama (seconds).
LLM_SIZES = {
    "smollm2": {"llm.pairs_per_client": 12, "llm.heldout_per_client": 6, "llm.max_length": 24,
                "llm.max_prompt_length": 12, "llm.eval_batch_size": 2, "algorithm.batch_size": 2,
                "run.rounds": 6, "run.log_every": 2},
    "tiny": {"llm.pairs_per_client": 6, "llm.heldout_per_client": 4, "llm.max_length": 32,
             "llm.max_prompt_length": 12, "llm.eval_batch_size": 2, "algorithm.batch_size": 2,
             "run.rounds": 3, "run.log_every": 1},
}


def paper_config(name: str) -> dict:
    """configs/synthetic/<name>.toml as a dict."""
    return read_toml(CONFIG_DIR / f"{name}.toml")


def llm_config(name: str) -> dict:
    """configs/llm/<name>.toml as a dict."""
    return read_toml(LLM_CONFIG_DIR / f"{name}.toml")


def describe_llm_sizes(model: str) -> str:
    """The reduced LLM sizes in words (for the log line)."""
    z = LLM_SIZES["tiny" if model == "tiny" else "smollm2"]
    return (f"{model}, {z['llm.pairs_per_client']} train + {z['llm.heldout_per_client']} held-out pairs per "
            f"client, max length {z['llm.max_length']} (prompt {z['llm.max_prompt_length']}), "
            f"batch {z['algorithm.batch_size']}, "
            f"{z['run.rounds']} rounds (metrics every {z['run.log_every']}), 1 seed per run")


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
    llm_model: str = "smollm2"   # the LLM figures' model: "smollm2", "tiny" (fast, tests) or any llm.model spec
    fedpdpo: tuple = ()          # sweep output dirs (or results.csv files) of configs/fedpdpo/*.toml
    conflict_runs: tuple = ()    # sweep dirs / CSV records of configs/conflict/imdb_table.toml (default: the record)
    log: Callable | None = None   # a print-like callable for progress inside long steps (None: silent)
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

    def llm_sized(self, data: dict) -> dict:
        """A copy of an LLM config run with `llm_model` at the reduced sizes (LLM_SIZES)."""
        data = copy.deepcopy(data)
        apply_override(data, ["llm", "model"], self.llm_model)
        for key, value in LLM_SIZES["tiny" if self.llm_model == "tiny" else "smollm2"].items():
            apply_override(data, key.split("."), value)
        return data

    def points(self, data: dict) -> pd.DataFrame:
        """The results table of a sweep config, each grid point run (or read back) on its own,
        cached under the hash of its resolved config, so points shared by several sweeps run
        once. run_id numbers the points in grid order; on the LLM track the manifest's
        reference_pref_acc (the reference model's own held-out accuracy) and the data sizes
        become columns."""
        base = {k: v for k, v in data.items() if k != "sweep"}
        tables = []
        for i, point in enumerate(grid_points(data)):
            resolved = copy.deepcopy(base)
            for k, v in point.items():
                apply_override(resolved, k.split("."), v)
            cfg = build_config(resolved)
            table, manifest = self.sweep({**base, "sweep": {"variants": [point]}}, key={"point": to_dict(cfg)})
            table = table.assign(run_id=i)
            if cfg.track == "llm":  # the sizes a figure states
                table = table.assign(pairs_per_client=cfg.llm.pairs_per_client,
                                     heldout_per_client=cfg.llm.heldout_per_client, max_length=cfg.llm.max_length)
            ref = manifest.get("reference_pref_acc")
            if isinstance(ref, dict):
                table["reference_pref_acc"] = ref.get("weighted")
            tables.append(table)
        return pd.concat(tables, ignore_index=True)

    def sweep(self, data: dict, key=None) -> tuple[pd.DataFrame, dict]:
        """Results table and manifest of `theory_lab.sweep.run_sweep(data)`, cached by the hash
        of `key` (default: the config itself)."""
        key = config_hash(data if key is None else key)
        if key in self._memo:
            return self._memo[key]
        csv, meta = self.cache_dir / f"{key}.csv", self.cache_dir / f"{key}.json"
        if csv.is_file() and meta.is_file():
            self.hits += 1
            out = pd.read_csv(csv), json.loads(meta.read_text())
        else:
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
