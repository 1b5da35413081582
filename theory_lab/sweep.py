"""Sweeps: the cartesian product of a grid over any config fields, every point run with all
seeds (seeds are vectorized inside a run), one results table for the whole sweep.

    [[sweep.variants]]                  # explicit variants (optional) ...
    "algorithm.name" = "centralized"
    [[sweep.variants]]
    "algorithm.name" = "feddpo"
    [sweep.grid]                        # ... crossed with a cartesian grid (optional)
    "algorithm.lr" = [0.05, 0.1]
"""

from __future__ import annotations

import itertools
import json
import shutil
import time
from pathlib import Path

import pandas as pd

from theory_lab import tracks
from theory_lab.checkpoint import config_hash
from theory_lab.config import build_config, to_dict, toml_value
from theory_lab.results import SWEEP, atomic_write_text, jsonable, read_results, write_results
from theory_lab.errors import ConfigError
from theory_lab.runner import RunResult, run


def saved_sweep(out_dir: str | Path) -> tuple[dict, list[str]]:
    """The config and --set overrides a sweep in `out_dir` was started with (for --resume DIR)."""
    path = Path(out_dir) / SWEEP
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        raise ConfigError("--resume", f"{path}: no sweep to resume here (give --config to start one)") from None
    return saved["config"], saved["overrides"]


def grid_points(data: dict) -> list[dict[str, object]]:
    """The points of a config's [sweep] table as {dotted.key: value} dicts: every variant
    ([[sweep.variants]], explicit sets of overrides) crossed with the cartesian grid."""
    sweep = data.get("sweep", {})
    unknown = set(sweep) - {"grid", "variants"}
    if unknown:
        raise ConfigError(f"sweep.{sorted(unknown)[0]}", "unknown key; known keys: grid, variants")
    grid = sweep.get("grid", {})
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"sweep.grid.{key}", f"expected a non-empty list of values, got {values!r}")
    variants = sweep.get("variants", [{}])
    if not isinstance(variants, list) or not all(isinstance(v, dict) for v in variants):
        raise ConfigError("sweep.variants", "expected an array of tables ([[sweep.variants]])")
    keys = list(grid)
    combos = [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]
    return [{**variant, **combo} for variant in variants for combo in combos]


def run_sweep(data: dict, overrides: list[str] = (), progress: bool | None = None,
              out_dir: str | Path | None = None, resume: bool = False) -> RunResult:
    """Run every grid point (command-line overrides apply on top of each point).

    With `out_dir`, each finished point is saved in out_dir/points/NNN/ as it finishes (and
    checkpointed while it runs when run.checkpoint_every > 0); `resume=True` skips finished
    points whose config matches and continues an interrupted one from its checkpoint."""
    points = grid_points(data)
    if out_dir and not resume:   # what `sweep --resume DIR` reads back (no --config, no --set to repeat)
        atomic_write_text(Path(out_dir) / SWEEP, json.dumps({"config": data, "overrides": list(overrides)},
                                                            indent=2, default=jsonable) + "\n")
    tables, runs = [], []
    start = time.perf_counter()
    with _load_models_once(data):  # LLM points share one loaded base model (deep copies)
        for i, point in enumerate(points):
            point_overrides = [f"{k}={toml_value(v)}" for k, v in point.items()]
            cfg = build_config(data, [*point_overrides, *overrides])
            label = f"[{i + 1}/{len(points)}] " + " ".join(f"{k.split('.')[-1]}={v}" for k, v in point.items())
            point_dir = Path(out_dir) / "points" / f"{i:03d}" if out_dir else None
            result = _run_point(cfg, i, point_dir, resume, progress, label)
            table = result.table
            for key, value in point.items():
                # a swept field gets a column unless the schema already has one (algorithm and
                # topology names are the `algorithm` and `topology` columns)
                column = key.split(".")[-1]
                if column not in table and key not in ("algorithm.name", "topology.name"):
                    table.insert(1, column, value)
            tables.append(table)
            runs.append({"run_id": i, "point": point, "constants": result.manifest["constants"],
                         "topology": result.manifest["topology"], "wall_s": result.manifest["wall_s"]})
    if out_dir:   # an older, longer sweep's points beyond this one's (--overwrite)
        for old in sorted((Path(out_dir) / "points").glob("[0-9][0-9][0-9]"))[len(points):]:
            shutil.rmtree(old)
    manifest = {**result.manifest, "sweep": {**data.get("sweep", {}), "overrides": list(overrides)},
                "runs": runs, "wall_s": time.perf_counter() - start}
    manifest.pop("constants", None)
    return RunResult(pd.concat(tables, ignore_index=True), manifest, None, None)


def _load_models_once(data: dict):
    """What the track holds around a sweep's runs (the LLM track: one model load for all)."""
    return tracks.get(data.get("track", "synthetic")).sweep_context()


def _run_point(cfg, run_id: int, point_dir: Path | None, resume: bool, progress, label) -> RunResult:
    if point_dir is None:
        result = run(cfg, progress=progress, label=label)
        result.table["run_id"] = run_id
        return result
    ckpt = point_dir / "checkpoint"
    if resume and (point_dir / "results.csv").is_file():
        table, manifest = read_results(point_dir)
        if manifest.get("config_hash") == config_hash(to_dict(cfg)):
            return RunResult(table, manifest, None, None)  # finished before the interruption
    result = run(cfg, progress=progress, label=label, checkpoint_dir=ckpt,
                 resume=resume and (ckpt / "meta.json").is_file())
    result.table["run_id"] = run_id
    write_results(point_dir, result.table, result.manifest)
    return result
