"""The examples in the public API's docstrings run and hold (bounds, estimate, topology, update
rules, the saved adapter's base reference)."""

import doctest
import importlib
import pkgutil

import pytest

from theory_lab import bounds

BOUNDS = [m.name for m in pkgutil.iter_modules(bounds.__path__) if not m.name.startswith("_")]  # one per kind
MODULES = ["synthetic.problem", "theory_lab.algorithms.params", *(f"theory_lab.bounds.{m}" for m in BOUNDS),
           "theory_lab.curvature", "theory_lab.estimate", "theory_lab.topology", "theory_lab.update_rules", "llm.model"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0
