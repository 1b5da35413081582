"""The results schema shared by both tracks: one tidy table (CSV, one row per run x seed x logged
round) plus a JSON manifest. Everything is written atomically (temporary file, then rename), so a
crash never leaves a half-written table that looks complete, with the modes the umask gives (a
results folder on a shared file system is readable by the group when the umask says so).

An output folder is checked before any compute (`prepare_out_dir`): it must be writable, and a
folder that already holds results is refused unless the user asks to overwrite (or resume) it."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy
import pandas as pd
import scipy
import torch

from theory_lab.errors import LabError

TABLE = "results.csv"
MANIFEST = "manifest.json"
SWEEP = "sweep.json"   # a sweep's config and overrides, written when it starts

METRICS = ("round", "step", "subopt", "grad_norm_sq", "consensus_error", "consensus_error_pre",
           "dist_to_opt", "train_loss", "eval_pref_acc", "reward_margin", "comm_bytes", "wall_s",
           "lora_agg_error", "lora_agg_error_rel", "personal_pref_acc")


# what the tools write into an output folder: --overwrite removes these, and only these
OUTPUTS = (TABLE, MANIFEST, SWEEP, "points", "checkpoint", "adapter", "report.json", "report.md", "figures")


def umask_mode(mode: int = 0o666) -> int:
    """`mode` as the process's umask leaves it (what open() would give a new file)."""
    mask = os.umask(0)
    os.umask(mask)
    return mode & ~mask


def prepare_out_dir(out: str | Path, *, overwrite: bool = False, resume: bool = False,
                    resumable: bool = True, flag: str = "--out") -> Path:
    """Check an output folder before any compute, and return it.

    A path naming a file, or a folder that cannot be written, is an error now rather than after
    an hour of compute. A folder that already holds results is refused unless `overwrite` or
    `resume` (continue it). With `overwrite` the previous outputs stay until the new run has
    written its own; then `remove_stale` removes what the new run did not replace."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise LabError(f"{flag}: {out} is a file, not a folder")
    old = [name for name in OUTPUTS if (out / name).exists()] if out.is_dir() else []
    if old and not (overwrite or resume):
        raise LabError(f"{flag}: {out} already holds results ({', '.join(old)}): pass --overwrite to "
                       "replace them" + (" or --resume to continue them" if resumable else ""))
    if out.is_dir():
        try:
            fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=out)
            os.close(fd)
            os.unlink(probe)
        except OSError as err:
            raise LabError(f"{flag}: cannot write to {out}: {err.strerror}") from None
    else:   # created when the first result is written: a run refused for bad input leaves nothing
        parent = next(p for p in out.absolute().parents if p.exists())
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            raise LabError(f"{flag}: cannot create {out}: {parent} is not a writable folder")
    return out


def remove_stale(out: str | Path, written: set[str]) -> None:
    """After a finished run: remove the tool outputs in `out` that this run did not write (an old
    adapter or checkpoint, an old sweep's sweep.json), so a folder never mixes two runs."""
    for name in set(OUTPUTS) - set(written):
        path = Path(out) / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def atomic_write(path: str | Path, write) -> None:
    """Call write(tmp_path), then rename onto `path` (same directory, so the rename is atomic).
    The file gets the mode the umask gives a new file (mkstemp's own is 0600)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        os.close(fd)
    except OSError as err:
        raise LabError(f"{path.parent}: cannot write output: {err.strerror}") from None
    try:
        write(tmp)
        os.chmod(tmp, umask_mode())
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


def own_client_accuracies(row: pd.Series, n_clients: int) -> numpy.ndarray:
    """[n_clients]: each client's held-out preference accuracy in a results row with the model the
    client uses: its own rows where the algorithm keeps personal rows (FedSA's B factors,
    `personal_pref_acc_client{i}`), else the model evaluate() scores (`eval_pref_acc_client{i}`:
    the averaged model, or FedPDPO's personalised prediction)."""
    own = "personal_pref_acc_client" if f"personal_pref_acc_client{n_clients - 1}" in row else "eval_pref_acc_client"
    return numpy.array([float(row[f"{own}{i}"]) for i in range(n_clients)])
