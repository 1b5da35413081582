"""`theory-lab`: a thin command-line layer over the Python API. User errors print one line
(`error: ...`) and exit with status 2; no traceback."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from paper_figures.cli import add_parser as add_figures_parser
from theory_lab.claims import REGISTRY
from theory_lab.config import (apply_override, build_config, describe_algorithms, from_dict, import_plugins,
                               load_config, parse_override, read_toml)
from theory_lab.distributed import init_from_env, rank_name
from theory_lab.errors import ConfigError, LabError
from theory_lab.predict import add_parsers as add_predict_parsers
from theory_lab.predict import compare
from theory_lab.results import prepare_out_dir, remove_stale, write_results
from theory_lab.runner import run
from theory_lab.sweep import run_sweep, saved_sweep
from theory_lab.topology import TopologyConfig, describe, draw, make_topology
from theory_lab.verify import select, verify
from theory_lab.verify import table as report_table


def _cmd_topology(args) -> None:
    if args.n < 1:
        raise ConfigError("--n", f"must be an integer >= 1 (nodes), got {args.n}")
    data = {"name": args.name, "mixing": args.mixing}
    for text in args.set:
        path, value = parse_override(text)
        apply_override(data, path[1:] if path[0] == "topology" else path, value)
    cfg = from_dict(TopologyConfig, data, "topology.")
    cfg.validate()
    topo = make_topology(cfg, args.n)
    info = describe(topo)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key in ("name", "n", "time_varying", "edges", "rho", "delta", "p"):
            if key in info:
                print(f"{key:>13}: {info[key]}")
        eig = ", ".join(f"{v:.4f}" for v in info["eigenvalues"])
        print(f"{'eigenvalues':>13}: {eig}")
    if args.plot:
        draw(topo, args.plot)
        print(f"graph drawn to {args.plot}", file=sys.stderr)


def _cmd_run(args) -> int:
    progress = False if args.quiet else None
    if not args.out and not args.resume:
        raise ConfigError("--out", "give an output directory (or --resume DIR)")
    out = Path(args.out or args.resume)
    if args.resume and not out.is_dir():
        raise ConfigError("--resume", f"{out}: no such folder")
    rank0 = os.environ.get("RANK", "0") == "0"   # under torchrun only rank 0 clears old outputs and speaks
    ckpt = None
    if args.command == "sweep":
        data, overrides = (read_toml(args.config), []) if args.config else saved_sweep(out) if args.resume else (None, [])
        if data is None:
            raise ConfigError("--config", "give a config file (or --resume DIR)")
        overrides = [*overrides, *args.set]
        _threads_for(build_config(data, overrides).track)   # a bad config or --set fails now, not after the first points
        prepare_out_dir(out, overwrite=args.overwrite, resume=bool(args.resume))
        with _resume_hint(out):
            result = run_sweep(data, overrides, progress=progress, out_dir=out, resume=bool(args.resume))
    else:
        ckpt = out / "checkpoint"
        if args.backend == "torch":  # every rank checkpoints its own clients
            ckpt = ckpt / rank_name()
        missing = ConfigError("--resume", f"{ckpt}: no checkpoint to resume (a run checkpoints only with "
                              "run.checkpoint_every > 0" + (", and resumes with the same number of processes)"
                                                            if args.backend == "torch" else ")"))
        if args.config:
            cfg = load_config(args.config, args.set)
            if "sweep" in read_toml(args.config) and rank0:  # not an error: one point of a sweep is a common run
                print(f"note: {args.config} has a [sweep] table; this runs its base config with your --set "
                      f"overrides only (`theory-lab sweep` runs every point)", file=sys.stderr)
        elif args.resume:  # the config saved with the checkpoint
            try:
                cfg = build_config(json.loads((ckpt / "meta.json").read_text())["config"], args.set)
            except OSError:
                raise missing from None
        else:
            raise ConfigError("--config", "give a config file (or --resume DIR)")
        if cfg.track != args.command:
            raise ConfigError("track", f"the config is for the {cfg.track!r} track; run `theory-lab {cfg.track}`")
        if args.resume and not (ckpt / "meta.json").is_file():
            raise missing
        prepare_out_dir(out, overwrite=args.overwrite and rank0, resume=bool(args.resume) or not rank0,
                        resumable=cfg.run.checkpoint_every > 0)
        ckpt = ckpt if cfg.run.checkpoint_every or args.resume else None
        if args.backend == "torch":
            return _run_distributed(cfg, args, out, ckpt, progress)
        with _resume_hint(out if ckpt else None):
            result = run(cfg, progress=progress, resume=bool(args.resume), checkpoint_dir=ckpt)
    result.manifest["command"] = " ".join(["theory-lab", *sys.argv[1:]])
    write_results(out, result.table, result.manifest)
    written = {"results.csv", "manifest.json", *(("sweep.json", "points") if args.command == "sweep" else ()),
               *(("checkpoint",) if ckpt else ())}
    if hasattr(result.oracle, "save_adapter"):  # LLM track: the averaged adapter, loadable by peft
        result.oracle.save_adapter(result.algorithm.model(), out / "adapter")
        written.add("adapter")
        print(f"adapter: {out / 'adapter'} (peft, safetensors)")
    remove_stale(out, written)
    _summary(result.table)
    print(f"results: {out / 'results.csv'}\nmanifest: {out / 'manifest.json'}")
    return 0


class _resume_hint:
    """On Ctrl-C, say on a line of its own how to continue (when there is a checkpoint to continue)."""

    def __init__(self, out):
        self.out = out

    def __enter__(self):
        return self

    def __exit__(self, kind, err, tb):
        if kind is KeyboardInterrupt:
            hint = f"; continue with: theory-lab {sys.argv[1] if len(sys.argv) > 1 else ''} --resume {self.out}" \
                if self.out else " (no checkpoint: set run.checkpoint_every > 0 to be able to resume)"
            print(f"\ninterrupted{hint}", file=sys.stderr)
            raise SystemExit(130)
        return False


def _run_distributed(cfg, args, out, ckpt, progress) -> int:
    """One rank of `torchrun ... -m theory_lab synthetic|llm --backend torch`: rank 0 writes the
    results; every rank writes its own checkpoint (`ckpt`)."""
    init_from_env(args.timeout)
    try:
        result = run(cfg, progress=progress, backend="torch", timeout_s=args.timeout,
                     checkpoint_dir=ckpt, resume=bool(args.resume))
        if dist.get_rank() == 0:
            result.manifest.update(command=" ".join(["theory-lab", *sys.argv[1:]]), world_size=dist.get_world_size())
            write_results(out, result.table, result.manifest)
            remove_stale(out, {"results.csv", "manifest.json", *(("checkpoint",) if ckpt else ())})
            _summary(result.table)
            print(f"results: {out / 'results.csv'}\nmanifest: {out / 'manifest.json'}")
        dist.barrier()
    finally:
        dist.destroy_process_group()
    return 0


def _cmd_verify(args) -> int:
    if args.results:  # a finished run against its prediction (theory_lab.predict.compare)
        df = compare(args.results)
        cols = ["run_id", "algorithm", "floor_observed", "floor_predicted", "floor_ratio",
                "rounds_observed", "rounds_predicted", "rounds_ratio"]
        print(df[[c for c in cols if c in df]].to_string(index=False))
        return 0

    if args.seeds < 1:
        raise ConfigError("--seeds", f"must be >= 1 (replicas per run), got {args.seeds}")
    if args.runs and not Path(args.runs).is_dir():
        raise ConfigError("--runs", f"{args.runs}: not a folder")
    ids = select(args.claims, args.track)
    out = prepare_out_dir(args.out, overwrite=args.overwrite, resumable=False)
    if any(REGISTRY[cid].track == "llm" for cid in ids):
        _threads_for("llm")
    print(f"{len(ids)} claims ({'quick' if args.quick else 'full'} suite, {args.seeds} seeds)")
    rows = verify(ids, args.quick, args.seeds, out, progress=print, llm_model=args.llm_model, llm_lr=args.llm_lr,
                  data_dir=args.data_dir, runs_dir=args.runs)
    drawn = {Path(r["figure"]).name for r in rows if r["figure"]}
    for old in (out / "figures").glob("*.png"):   # --overwrite: an earlier report's figures do not stay
        if old.name not in drawn:
            old.unlink()
    print("\n" + report_table(rows))
    print(f"\nreport: {out / 'report.md'}\njson: {out / 'report.json'}")
    broken = [r["claim"] for r in rows if r["verdict"] == "refuted" and r["should_hold"]]
    if args.strict and broken:
        print(f"strict: refuted in their regime: {', '.join(broken)}", file=sys.stderr)
        return 1
    return 0


_TORCH_THREADS: list[int] = []   # torch's own default, remembered before the first change


def _threads_for(track: str) -> None:
    """One torch thread for the synthetic track (small tensors: extra threads only add
    synchronisation, and on a shared machine they stall; docs/benchmarks.md), torch's default
    for the LLM track; OMP_NUM_THREADS, when set, decides instead."""
    if "OMP_NUM_THREADS" in os.environ:
        return
    if not _TORCH_THREADS:
        _TORCH_THREADS.append(torch.get_num_threads())
    torch.set_num_threads(1 if track == "synthetic" else _TORCH_THREADS[0])


def _summary(table) -> None:
    """Final-round metrics, mean over seeds, per run (with every setting that differs between runs)."""
    config = list(table.columns[: table.columns.get_loc("seed")])
    varied = [c for c in config if table[c].nunique(dropna=False) > 1]
    keys = list(dict.fromkeys(k for k in ("run_id", "algorithm", "local_steps", "participation", "topology", "q_max",
                                          *varied) if k in table))
    last = table[table["round"] == table.groupby(keys, dropna=False)["round"].transform("max")]
    cols = [c for c in ("subopt", "grad_norm_sq", "consensus_error", "eval_pref_acc", "personal_pref_acc")
            if last[c].notna().any()]
    seeds = table["seed"].nunique()
    print(f"final round ({int(last['round'].max())}), mean over {seeds} seed{'s' * (seeds != 1)}:")
    print(last.groupby(keys, sort=False, dropna=False)[cols].mean().to_string(float_format=lambda v: f"{v:.3e}"))


def _cmd_algorithms(args) -> int:
    import_plugins(args.plugins)
    print(describe_algorithms())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="theory-lab", description="Distributed DPO Lab")
    sub = parser.add_subparsers(dest="command", required=True)

    topo = sub.add_parser("topology", help="a communication graph: mixing matrix and spectrum")
    topo.add_argument("name")
    topo.add_argument("--n", type=int, default=16, help="number of nodes")
    topo.add_argument("--mixing", default="metropolis", help="metropolis or max_degree")
    topo.add_argument("--json", action="store_true", help="machine-readable output")
    topo.add_argument("--plot", metavar="FILE", help="draw the graph to FILE (.png/.pdf)")
    topo.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="e.g. er_p=0.2")
    topo.set_defaults(func=_cmd_topology)

    for name, text in (("synthetic", "one run on the synthetic log-linear problem"),
                       ("llm", "one run of the LLM track (transformers + peft, LoRA)"),
                       ("sweep", "a grid of runs ([sweep.grid] / [[sweep.variants]] in the config)")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--config", help="TOML config file")
        p.add_argument("--out", help="output directory")
        p.add_argument("--resume", metavar="DIR", help="continue the interrupted run (or sweep) in DIR "
                       "from its checkpoint (run.checkpoint_every > 0); output goes to DIR")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config field, e.g. algorithm.lr=0.05 (repeatable)")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        p.add_argument("--overwrite", action="store_true", help="replace the results already in --out")
        if name != "sweep":
            p.add_argument("--backend", choices=("inprocess", "torch"), default="inprocess",
                           help="torch: one rank of a torch.distributed group (launch with torchrun)")
            p.add_argument("--timeout", type=float, default=60.0,
                           help="seconds before a silent rank is declared lost (--backend torch)")
        p.set_defaults(func=_cmd_run)
    alg = sub.add_parser("algorithms", help="the registered algorithms and the [algorithm] fields each reads")
    alg.add_argument("--plugins", action="append", default=[], metavar="MODULE",
                     help="import MODULE first (it registers more algorithms; repeatable)")
    alg.set_defaults(func=_cmd_algorithms)
    ver = sub.add_parser("verify", help="run the claim registry and write a verification report")
    ver.add_argument("--quick", action="store_true", help="reduced suite (fewer points and rounds)")
    ver.add_argument("--claims", help="comma-separated claim ids (default: all)")
    ver.add_argument("--seeds", type=int, default=3, help="replicas per run (default 3)")
    ver.add_argument("--out", default="runs/verify", help="report directory (default runs/verify)")
    ver.add_argument("--overwrite", action="store_true", help="replace a report already in --out")
    ver.add_argument("--results", metavar="DIR",
                     help="instead: place a finished run's observed floor and time to eps against the prediction")
    ver.add_argument("--track", default="synthetic", choices=("synthetic", "llm", "all"),
                     help="which claims without --claims: synthetic (default), llm (SmolLM2 + LoRA, minutes), all")
    ver.add_argument("--llm-model", default="smollm2", help="model of the LLM-track claims (tiny: fast check)")
    ver.add_argument("--llm-lr", type=float, default=0.01, help="SGD step size of the LLM-track claims")
    ver.add_argument("--data-dir", default="", help="data directory of the LLM-track claims")
    ver.add_argument("--runs", default="", metavar="DIR",
                     help="finished runs (a run's or a sweep's folder) the LLM-track claims read instead of rerunning")
    ver.add_argument("--strict", action="store_true",
                     help="exit 1 when a claim that should hold in its regime is refuted")
    ver.set_defaults(func=_cmd_verify)

    add_figures_parser(sub)
    add_predict_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if os.environ.get("RANK", "0") != "0":   # under torchrun, notes and warnings once (rank 0), errors from all
        logging.getLogger().setLevel(logging.ERROR)
    if args.command != "llm":
        _threads_for("synthetic")   # sweep and verify switch back when they meet LLM work
    try:
        return args.func(args) or 0
    except LabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
