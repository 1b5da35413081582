"""The algorithms, written once for both tracks against the oracle / communicator interfaces.
Importing this package registers the built-in ones (base.REGISTRY); see base.py for the contract
of a new one."""

from theory_lab.algorithms import centralized, decentralized, federated  # noqa: F401  (registers them)
from theory_lab.algorithms.base import REGISTRY, Algorithm, RoundInfo, register


def make_algorithm(cfg, oracle, comm, gen, rounds: int, topology=None) -> Algorithm:
    return REGISTRY[cfg.name](cfg, oracle, comm, gen, rounds, topology)


__all__ = ["Algorithm", "RoundInfo", "REGISTRY", "make_algorithm", "register"]
