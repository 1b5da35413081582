"""The algorithms, written once for both tracks against the oracle / communicator interfaces."""

from theory_lab.algorithms.base import Algorithm, RoundInfo
from theory_lab.algorithms.centralized import Centralized
from theory_lab.algorithms.decentralized import DecDPO, GradientTracking
from theory_lab.algorithms.federated import FedDPO, Scaffold

REGISTRY: dict[str, type[Algorithm]] = {
    "centralized": Centralized,
    "feddpo": FedDPO,
    "fedprox": FedDPO,  # FedDPO with the proximal term algorithm.prox_mu > 0
    "scaffold": Scaffold,
    "decdpo": DecDPO,
    "gradient_tracking": GradientTracking,
}


def make_algorithm(cfg, oracle, comm, gen, rounds: int, topology=None) -> Algorithm:
    return REGISTRY[cfg.name](cfg, oracle, comm, gen, rounds, topology)


__all__ = ["Algorithm", "RoundInfo", "REGISTRY", "make_algorithm"]
