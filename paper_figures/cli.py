"""`theory-lab figures --out DIR`: draw every figure, running the experiments it needs (cached
by config hash under DIR/cache, so a second call only redraws).

    from paper_figures.cli import main
    main("runs/figures")                      # every synthetic figure, full size
    main("runs/figures", quick=True, only=["topology", "bounds"])
    main("runs/figures", llm=True)            # + the LLM-track figures (reduced SmolLM2 runs)
    main("runs/figures", only=["llm"], llm_model="tiny")   # the LLM figures alone, tiny model
    main("runs/figures", only=["fedpdpo"], fedpdpo=["runs/fedpdpo_imdb3"])
    main("runs/figures", only=["llm_conflict_methods"])   # from the committed conflict record, no runs
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import sys
import time
from pathlib import Path

import torch

from paper_figures.experiments import Lab, describe_llm_sizes
from theory_lab.errors import ConfigError, LabError

# one module per figure, in drawing order; the dashboard reuses the family figures' runs
FIGURES = ("comparative", "local_steps", "participation", "topology", "staleness", "dashboard",
           "verification", "bounds", "corrections", "smoothness", "lora_aggregation")
# the LLM track (--llm): the five families on reduced SmolLM2 runs, their dashboard, and the FedPDPO
# table from finished sweeps (--fedpdpo DIR; skipped without); the conflict methods from their record
LLM_FIGURES = ("llm_comparative", "llm_local_steps", "llm_participation", "llm_topology", "llm_staleness",
               "llm_dashboard", "llm_conflict", "llm_conflict_methods", "fedpdpo")
GROUPS = {"synthetic": FIGURES, "llm": LLM_FIGURES}


def _modules(only, llm: bool = False, fedpdpo=(), conflict_runs=()) -> list[str]:
    """The figures to draw, in order. A figure's source option (--fedpdpo, --conflict-runs) adds it
    to the default set; with --only, a source for a figure not chosen is an error, not ignored."""
    sourced = {"fedpdpo": ("--fedpdpo", fedpdpo), "llm_conflict_methods": ("--conflict-runs", conflict_runs)}
    if not only:
        return list(FIGURES) + (list(LLM_FIGURES) if llm else [n for n, (_, s) in sourced.items() if s])
    chosen = [o.strip() for o in (only.split(",") if isinstance(only, str) else only) if o.strip()]
    known = FIGURES + LLM_FIGURES
    unknown = [o for o in chosen if o not in known and o not in GROUPS]
    if unknown:
        raise ConfigError("--only", f"unknown figure {unknown[0]!r}; known: {', '.join(known)} "
                                    f"(or the groups {', '.join(GROUPS)})")
    names = list(dict.fromkeys(n for o in chosen for n in GROUPS.get(o, (o,))))
    for name, (option, sources) in sourced.items():
        if sources and name not in names:
            raise ConfigError(option, f"given, but --only does not draw the {name} figure that reads it")
    return names


def main(out: str, quick: bool = False, only: list[str] | None = None, *, report: str | None = None,
         docs: str | None = None, size: str | None = None, llm: bool = False, llm_model: str = "smollm2",
         fedpdpo=(), conflict_runs=(), log=print) -> list[Path]:
    """Draw the figures (the synthetic set, or `only` these names or groups "synthetic", "llm")
    as PDF + PNG into `out`; return their paths.

    Every figure is written at double-column width as `name`, most also with their key panel at
    single-column width as `name`_single.
    quick: fewer rounds and grid points (size "quick"); size="tiny" is for tests.
    report: a `theory-lab verify` report.json for the verification figure (default: run the
    quick suite once, cached). docs: also copy the double-column PNGs into this directory.
    llm: add the LLM-track figures, run reduced (experiments.LLM_SIZES) with `llm_model`
    ("smollm2"; "tiny": the tiny random Llama, fast). fedpdpo: sweep output dirs of
    configs/fedpdpo/*.toml for the FedPDPO figure (added even without llm; skipped without dirs).
    conflict_runs: sweep dirs or CSV records of configs/conflict/imdb_table.toml for the conflict
    methods figure (default: the committed record docs/data/llm_conflict_runs.csv).
    The LLM runs use the process's torch threads (OMP_NUM_THREADS), the synthetic ones one.
    """
    names = _modules(only, llm, fedpdpo, conflict_runs)
    out_dir = Path(out)
    for d in fedpdpo:
        if not Path(d).exists():
            raise ConfigError("--fedpdpo", f"{d}: no such directory")
    for d in conflict_runs:
        if not Path(d).exists():
            raise ConfigError("--conflict-runs", f"{d}: no such sweep folder or CSV file of runs")
    lab = Lab(out_dir / "cache", size=size or ("quick" if quick else "full"), report=Path(report) if report else None,
              llm_model=llm_model, fedpdpo=tuple(Path(d) for d in fedpdpo),
              conflict_runs=tuple(Path(d) for d in conflict_runs), log=log)
    if report and not Path(report).is_file():
        raise ConfigError("--report", f"{report}: no such file")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors: one thread per process is faster on shared cores
    paths: list[Path] = []
    start = time.perf_counter()
    if log and any(n.startswith("llm_") for n in names):
        omp = os.environ.get("OMP_NUM_THREADS", "unset")
        log(f"LLM track, reduced for a CPU: {describe_llm_sizes(llm_model)}; "
            f"{threads} torch thread{'s' * (threads != 1)} (OMP_NUM_THREADS={omp})")
    try:
        for name in names:
            module = importlib.import_module(f"paper_figures.{name}")
            t0, runs0 = time.perf_counter(), lab.runs
            torch.set_num_threads(threads if name.startswith("llm_") else 1)
            if log:
                log(f"{name:<14} ...")   # before its runs, which may take minutes (cached afterwards)
            inputs = module.prepare(lab)
            if inputs is None:  # nothing to draw from (the FedPDPO figure without results)
                if log:
                    log(f"{name:<14} skipped: {getattr(module, 'SKIP', 'no inputs')}")
                continue
            drawn = module.draw(inputs, out_dir)
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
    main(args.out, quick=args.quick, only=args.only, report=args.report, docs=args.docs, llm=args.llm,
         llm_model=args.llm_model, fedpdpo=args.fedpdpo, conflict_runs=args.conflict_runs)
    return 0


def add_parser(subparsers):
    """Register the `figures` subcommand on an argparse subparsers object (theory_lab.cli)."""
    p = subparsers.add_parser("figures", help="draw every figure (runs what it needs, cached by config hash)")
    p.add_argument("--out", default="runs/figures", help="output directory (default runs/figures)")
    p.add_argument("--quick", action="store_true", help="fewer rounds and grid points")
    p.add_argument("--only", help=f"comma-separated figures (default: the synthetic ones, + the LLM ones with "
                                  f"--llm): {','.join(FIGURES + LLM_FIGURES)}, or the groups synthetic, llm")
    p.add_argument("--report", help="a `theory-lab verify` report.json for the verification figure "
                                    "(default: run the quick suite once, cached)")
    p.add_argument("--docs", help="also copy the double-column PNGs into this directory (e.g. docs/figures)")
    p.add_argument("--llm", action="store_true",
                   help="add the LLM-track figures (llm_*, fedpdpo), running the reduced LLM experiments they need")
    p.add_argument("--llm-model", default="smollm2",
                   help="model of the LLM figures: smollm2 (default) or tiny (the tiny random Llama, fast)")
    p.add_argument("--fedpdpo", action="append", default=[], metavar="DIR",
                   help="a finished `theory-lab sweep --config configs/fedpdpo/*.toml` output directory "
                        "for the FedPDPO figure (repeatable; without it that figure is skipped)")
    p.add_argument("--conflict-runs", action="append", default=[], metavar="SRC",
                   help="a sweep folder or CSV record of configs/conflict/imdb_table.toml for the conflict methods "
                        "figure (repeatable; default: the committed record docs/data/llm_conflict_runs.csv)")
    p.set_defaults(func=_command)
    return p


def run(argv: list[str] | None = None) -> int:
    """`python -m paper_figures ...`: the same command without theory_lab.cli."""
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
