"""The claim registry (see base.py). Importing the package registers every claim, in report order."""

from theory_lab.claims import federated, staleness  # noqa: F401,I001  (registers claims; order = report order)
from theory_lab.claims import decentralized, rates, bound_claims, lora, llm  # noqa: F401,I001
from theory_lab.claims import llm_conflict, llm_conflict_floor  # noqa: F401,I001  (issue 18: the conflict knob)
from theory_lab.claims.base import REGISTRY, Claim, Context, Outcome

__all__ = ["REGISTRY", "Claim", "Context", "Outcome"]
