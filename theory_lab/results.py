"""The results schema shared by both tracks: one tidy table (CSV, one row per run x seed x logged
round) plus a JSON manifest. Everything is written atomically (temporary file, then rename), so a
crash never leaves a half-written table that looks complete."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path

import pandas as pd

from theory_lab.errors import LabError

TABLE = "results.csv"
MANIFEST = "manifest.json"

METRICS = ("round", "step", "subopt", "grad_norm_sq", "consensus_error", "consensus_error_pre",
           "dist_to_opt", "train_loss", "eval_pref_acc", "reward_margin", "comm_bytes", "wall_s")


def atomic_write(path: str | Path, write) -> None:
    """Call write(tmp_path), then rename onto `path` (same directory, so the rename is atomic)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        os.close(fd)
    except OSError as err:
        raise LabError(f"{path.parent}: cannot write output: {err.strerror}") from None
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as err:
        raise LabError(f"{path}: cannot write output: {err.strerror}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def provenance() -> dict:
    """Package versions and git revision, for the manifest."""
    import numpy
    import scipy
    import torch

    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        rev = None
    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
            "scipy": scipy.__version__, "pandas": pd.__version__, "git_revision": rev}


def write_results(out_dir: str | Path, table: pd.DataFrame, manifest: dict) -> Path:
    out = Path(out_dir)
    atomic_write(out / TABLE, lambda tmp: table.to_csv(tmp, index=False))
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=2, default=jsonable) + "\n")
    return out


def read_results(out_dir: str | Path) -> tuple[pd.DataFrame, dict]:
    out = Path(out_dir)
    if not (out / TABLE).is_file():
        raise LabError(f"{out / TABLE}: no results table here")
    manifest = json.loads((out / MANIFEST).read_text()) if (out / MANIFEST).is_file() else {}
    return pd.read_csv(out / TABLE), manifest


def jsonable(value):
    """numpy / torch values and paths as JSON (`json.dumps(..., default=jsonable)`)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
