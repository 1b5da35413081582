"""`theory-lab figures --out DIR`: draw every figure, running the experiments it needs (cached
by config hash under DIR/cache, so a second call only redraws).

    from paper_figures.cli import main
    main("runs/figures")                      # every figure, full size
    main("runs/figures", quick=True, only=["topology", "bounds"])
"""

from __future__ import annotations

import importlib
import shutil
import sys
import time
from pathlib import Path

from theory_lab.errors import ConfigError

# one module per figure, in drawing order; the dashboard reuses the family figures' runs
FIGURES = ("comparative", "local_steps", "participation", "topology", "staleness", "dashboard",
           "verification", "bounds", "corrections", "smoothness")


def _modules(only) -> list[str]:
    if not only:
        return list(FIGURES)
    chosen = [o.strip() for o in (only.split(",") if isinstance(only, str) else only) if o.strip()]
    unknown = [o for o in chosen if o not in FIGURES]
    if unknown:
        raise ConfigError("--only", f"unknown figure {unknown[0]!r}; known: {', '.join(FIGURES)}")
    return chosen


def main(out: str, quick: bool = False, only: list[str] | None = None, *, report: str | None = None,
         docs: str | None = None, size: str | None = None, log=print) -> list[Path]:
    """Draw the figures (all, or `only` these names) as PDF + PNG into `out`; return their paths.

    Every figure is written at double-column width as `name`, most also with their key panel at
    single-column width as `name`_single.
    quick: fewer rounds and grid points (size "quick"); size="tiny" is for tests.
    report: a `theory-lab verify` report.json for the verification figure (default: run the
    quick suite once, cached). docs: also copy the double-column PNGs into this directory.
    """
    import torch

    from paper_figures.experiments import Lab

    names = _modules(only)
    out_dir = Path(out)
    lab = Lab(out_dir / "cache", size=size or ("quick" if quick else "full"), report=Path(report) if report else None)
    if report and not Path(report).is_file():
        raise ConfigError("--report", f"{report}: no such file")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors: one thread per process is faster on shared cores
    paths: list[Path] = []
    start = time.perf_counter()
    try:
        for name in names:
            module = importlib.import_module(f"paper_figures.{name}")
            t0, runs0 = time.perf_counter(), lab.runs
            drawn = module.draw(module.prepare(lab), out_dir)
            paths += drawn
            if log:
                ran = lab.runs - runs0
                log(f"{name:<14} {', '.join(str(p) for p in drawn)}  ({time.perf_counter() - t0:.1f}s"
                    + (f", {ran} new run{'s' * (ran != 1)})" if ran else ", cached)"))
    finally:
        torch.set_num_threads(threads)
    if docs:
        docs_dir = Path(docs)
        docs_dir.mkdir(parents=True, exist_ok=True)
        for p in paths:
            if p.suffix == ".png" and not p.stem.endswith("_single"):  # the full-width figures only
                shutil.copyfile(p, docs_dir / p.name)
        if log:
            log(f"PNGs copied to {docs_dir}")
    if log:
        log(f"{len(paths)} files in {out_dir} in {time.perf_counter() - start:.1f}s "
            f"({lab.runs} runs, {lab.hits} cache hits; cache: {lab.cache_dir})")
    return paths


def _command(args) -> int:
    main(args.out, quick=args.quick, only=args.only, report=args.report, docs=args.docs)
    return 0


def add_parser(subparsers):
    """Register the `figures` subcommand on an argparse subparsers object (theory_lab.cli)."""
    p = subparsers.add_parser("figures", help="draw every figure (runs what it needs, cached by config hash)")
    p.add_argument("--out", default="runs/figures", help="output directory (default runs/figures)")
    p.add_argument("--quick", action="store_true", help="fewer rounds and grid points")
    p.add_argument("--only", help=f"comma-separated figures (default all): {','.join(FIGURES)}")
    p.add_argument("--report", help="a `theory-lab verify` report.json for the verification figure "
                                    "(default: run the quick suite once, cached)")
    p.add_argument("--docs", help="also copy the double-column PNGs into this directory (e.g. docs/figures)")
    p.set_defaults(func=_command)
    return p


def run(argv: list[str] | None = None) -> int:
    """`python -m paper_figures ...`: the same command without theory_lab.cli."""
    import argparse

    from theory_lab.errors import LabError

    parser = argparse.ArgumentParser(prog="python -m paper_figures")
    sub = parser.add_subparsers(dest="command")
    add_parser(sub)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "figures":
        argv = ["figures", *argv]
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except LabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
