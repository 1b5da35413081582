"""The Python API: a config in, a results table (and manifest) out. The CLI, sweeps, the claim
registry, demos and tests all go through `run`."""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from theory_lab import checkpoint, tracks
from theory_lab.algorithms import make_algorithm
from theory_lab.communicator import InProcessCommunicator
from theory_lab.config import ExperimentConfig, to_dict
from theory_lab.distributed import ShardedOracle, TorchCommunicator
from theory_lab.errors import ConfigError, DivergenceError
from theory_lab.progress import Progress
from theory_lab.results import METRICS, provenance
from theory_lab.topology import describe, make_topology


@dataclass
class RunResult:
    table: pd.DataFrame
    manifest: dict
    algorithm: object  # the finished algorithm (its parameter stack, for tests and demos)
    oracle: object


def make_oracle(cfg: ExperimentConfig):
    """The oracle of the config's track (theory_lab.tracks)."""
    return tracks.get(cfg.track).build_oracle(cfg)


def config_columns(cfg: ExperimentConfig, topology) -> dict:
    """The run's configuration as table columns (the analysis layer groups on these)."""
    a, n = cfg.algorithm, cfg.n_clients
    columns = {
        "algorithm": a.name, "n_clients": n, "local_steps": a.local_steps,
        "participation": a.participation or n, "q_max": a.q_max, "stale_rule": a.stale_rule,
        "topology": topology.name if topology else ("server" if cfg.algorithm_family == "server" else "none"),
        "spectral_gap": topology.spectrum().p if topology else math.nan,
        "lr": a.lr, "schedule": a.schedule, "optimizer": a.optimizer, "batch_size": a.batch_size,
        "server_lr": a.server_lr, "server_opt": a.server_opt, "prox_mu": a.prox_mu,
        "lora_aggregation": a.lora_aggregation,
    }
    return {**columns, **tracks.get(cfg.track).columns(cfg)}


def run(cfg: ExperimentConfig, progress: bool | None = None, label: str = "",
        checkpoint_dir: str | Path | None = None, resume: bool = False,
        backend: str = "inprocess", timeout_s: float = 60.0, oracle=None) -> RunResult:
    """Run one config. With `checkpoint_dir` and run.checkpoint_every = K, the full state is
    saved every K rounds; `resume=True` continues from the checkpoint there, bit-identically.
    backend="torch": this process is one rank of a torch.distributed group holding a block of
    the clients (theory_lab.distributed); every rank returns the same table. `oracle`: run on
    this oracle (a problem built in code) instead of the one the config's track builds; its
    seeds and clients must be the config's."""
    cfg.validate()
    if oracle is None:
        oracle = make_oracle(cfg)
    elif (oracle.n_seeds, oracle.n_clients) != (len(cfg.run.seeds), cfg.n_clients):
        raise ConfigError("run.seeds", f"the oracle given has {oracle.n_seeds} seeds and {oracle.n_clients} clients, "
                                       f"the config {len(cfg.run.seeds)} and {cfg.n_clients}")
    comm = InProcessCommunicator()
    if backend == "torch":
        comm = TorchCommunicator(oracle.n_clients, timeout_s)
        oracle = ShardedOracle(oracle, comm.owned)
        progress = progress if comm.rank == 0 else False
    topology = make_topology(cfg.topology, oracle.n_clients) if cfg.algorithm.decentralized else None
    gen = torch.Generator().manual_seed(cfg.run.seed)
    rounds, config = cfg.run.rounds, to_dict(cfg)
    alg = make_algorithm(cfg.algorithm, oracle, comm, gen, rounds, topology)

    records: list[dict] = []
    counters = {"comm_bytes": 0}
    first_round, start = 0, time.perf_counter()
    if resume:
        done, records, counters = checkpoint.load(checkpoint_dir, alg, gen, config)
        records = [{k: torch.tensor(v, dtype=oracle.dtype) if isinstance(v, list) else v for k, v in rec.items()}
                   for rec in records]
        first_round = done + 1
    zero = torch.zeros(oracle.n_seeds, dtype=oracle.dtype)
    nan = torch.full_like(zero, math.nan)   # a metric this round does not have (no aggregation yet)
    first_loss = records[0]["train_loss"] if records else None
    every = cfg.run.checkpoint_every if checkpoint_dir else 0
    bar = Progress(rounds, label or cfg.algorithm.name, progress)
    bar.update(first_round - 1 if first_round else 0)
    for r in range(first_round, rounds + 1):
        info = None
        if r > 0:
            info = alg.round(r - 1)
            counters["comm_bytes"] += info.comm_bytes
            bar.update()
        if r % cfg.run.log_every == 0 or r == rounds:
            # the table's numbers live on the host, whatever device the parameter stack is on
            metrics = {k: v.cpu() for k, v in oracle.evaluate(alg.model()).items()}
            personal = alg.personal_params()
            metrics.update(personal_metrics(oracle, personal, nan))
            first_loss = metrics["train_loss"] if first_loss is None else first_loss
            _check_divergence(cfg, oracle, alg, metrics["train_loss"], first_loss, r)
            records.append({
                "round": r, "step": alg.t,
                "consensus_error": info.consensus_error.cpu() if info else zero,
                "consensus_error_pre": info.consensus_error_pre.cpu() if info else zero,
                "lora_agg_error": info.lora_agg_error.cpu() if info and info.lora_agg_error is not None else nan,
                "lora_agg_error_rel": info.lora_agg_error_rel.cpu() if info and info.lora_agg_error is not None else nan,
                "comm_bytes": counters["comm_bytes"], "wall_s": time.perf_counter() - start, **metrics,
            })
        if every and r % every == 0 and r < rounds:
            _check_divergence(cfg, oracle, alg, None, first_loss, r)  # never checkpoint a diverged state
            checkpoint.save(checkpoint_dir, alg, gen, r, records, config, counters)
    table = _tidy(records, cfg, topology)
    manifest = {
        "config": config, "config_hash": checkpoint.config_hash(config), "seeds": cfg.run.seeds,
        "rounds": rounds, "topology": describe(topology) if topology else None,
        "constants": _constants(oracle), "wall_s": time.perf_counter() - start, **provenance(),
    }
    if hasattr(oracle, "reference_accuracy"):
        manifest["reference_pref_acc"] = oracle.reference_accuracy()
        manifest.update(getattr(oracle, "data_summary", {}))   # e.g. the clients the conflict knob reverses
    return RunResult(table, manifest, alg, oracle)


def personal_metrics(oracle, personal: torch.Tensor | None, nan: torch.Tensor) -> dict[str, torch.Tensor]:
    """`personal_pref_acc`: the clients' held-out accuracy at their own rows, client-weighted (NaN
    when the algorithm keeps no personal rows); per client too where the oracle reports the
    averaged model per client (the LLM track), so the two compare column by column."""
    if personal is None:
        return {"personal_pref_acc": nan}
    acc = oracle.personal_accuracy(personal).double().cpu()   # [S, N]
    out = {"personal_pref_acc": (oracle.weights.double().cpu() * acc).sum(-1).to(oracle.dtype)}
    if getattr(oracle, "reports_clients", False):
        out.update({f"personal_pref_acc_client{i}": acc[:, i].to(oracle.dtype) for i in range(acc.shape[1])})
    return out


def _check_divergence(cfg, oracle, alg, loss, first_loss, r) -> None:
    """Stop with the step size (and 2/L when known) on NaN/inf parameters or a loss blow-up."""
    bad = ~torch.isfinite(alg.model()).all(dim=1).cpu()
    if loss is not None:
        bad |= ~torch.isfinite(loss) | (loss > cfg.run.divergence_factor * first_loss.abs().clamp(min=1.0))
    if bad.any():
        s = int(bad.nonzero()[0, 0])
        hint = ""
        if getattr(oracle, "smoothness", None) is not None:
            two_over_l = 2.0 / float(oracle.smoothness[s])
            hint = f" vs 2/L = {two_over_l:.4g}"
        raise DivergenceError(
            f"run diverged at round {r} (seed {cfg.run.seeds[s]}"
            + (f", loss {float(loss[s]):.4g}" if loss is not None else ", non-finite parameters") + "): "
            f"step size algorithm.lr = {cfg.algorithm.lr:g}{hint}; lower algorithm.lr")


def _tidy(records: list[dict], cfg: ExperimentConfig, topology) -> pd.DataFrame:
    """Long format: one row per (seed, logged round), config columns first."""
    seeds = cfg.run.seeds
    columns = {"seed": [s for _ in records for s in seeds]}
    for key in records[0]:
        values = [rec[key] for rec in records]
        if torch.is_tensor(values[0]):
            columns[key] = torch.stack(values).reshape(-1).tolist()
        else:
            columns[key] = [v for v in values for _ in seeds]
    table = pd.DataFrame(columns)
    for key in METRICS:
        if key not in table:
            table[key] = math.nan
    config = {"run_id": 0, **config_columns(cfg, topology)}   # a sweep numbers its points (run_id)
    for i, (key, value) in enumerate(config.items()):
        table.insert(i, key, value)
    return table[[*config, "seed", *METRICS, *[c for c in table if c not in config and c not in METRICS and c != "seed"]]]


def _constants(oracle) -> dict | None:
    consts = getattr(oracle, "constants", None)
    if consts is None:
        return None
    out = {}
    for f in dataclasses.fields(consts):
        value = getattr(consts, f.name)
        if torch.is_tensor(value) and value.dim() <= 2:
            out[f.name] = value.tolist()
    return out
