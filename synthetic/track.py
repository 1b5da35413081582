"""The synthetic track, registered with the core (theory_lab.tracks): config table [problem],
the log-linear oracle (or its factorised form, problem.lora_rank > 0) and its table columns."""

from __future__ import annotations

from synthetic.factorised import FactorisedOracle
from synthetic.oracle import SyntheticOracle
from synthetic.problem import ProblemConfig, build_problem
from theory_lab.errors import ConfigError
from theory_lab.tracks import Track, register


def build_oracle(cfg):
    p = cfg.problem
    oracle = SyntheticOracle(build_problem(p, cfg.run.seeds), init=p.init)
    if p.lora_rank:
        return FactorisedOracle(oracle, p.lora_rows, p.lora_rank, seed=p.seed)
    return oracle


def columns(cfg) -> dict:
    p = cfg.problem
    return {"heterogeneity": p.heterogeneity, "dirichlet_alpha": p.dirichlet_alpha, "horizon": p.horizon,
            "beta": p.beta, "dim": p.dim, "model": "loglinear", "dataset": "synthetic"}


def check(cfg) -> None:
    rule = cfg.algorithm.lora_aggregation
    if rule != "factors" and not cfg.problem.lora_rank:
        raise ConfigError("algorithm.lora_aggregation", f"{rule!r} needs factorised parameters: the llm track, "
                                                        "or problem.lora_rank > 0")


TRACK = register(Track("synthetic", "problem", ProblemConfig, build_oracle, columns, check))
