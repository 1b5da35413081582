"""The claim registry (see base.py). Importing the package registers every claim."""

from theory_lab.claims import decentralized, federated, llm, rates, staleness  # noqa: F401  (registers claims)
from theory_lab.claims.base import REGISTRY, Claim, Context, Outcome

__all__ = ["REGISTRY", "Claim", "Context", "Outcome"]
