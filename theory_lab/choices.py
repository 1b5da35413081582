"""Literal-typed config fields: the one check of their choices, used by the TOML loader
(theory_lab.config) and by every section's `validate` (a config built in Python).

>>> from dataclasses import dataclass
>>> from typing import Literal
>>> @dataclass
... class Section:
...     rule: Literal["a", "b"] = "a"
>>> check_choices(Section(rule="c"), "section.")
Traceback (most recent call last):
...
theory_lab.errors.ConfigError: section.rule: must be one of 'a', 'b', got 'c'
"""

from __future__ import annotations

import typing
from typing import Any

from theory_lab.errors import ConfigError


def check_choice(value: Any, annotation: Any, where: str) -> bool:
    """True when `annotation` is a Literal (and `value` one of its choices); False for any other
    annotation; a ConfigError naming `where` for a value outside the choices."""
    if typing.get_origin(annotation) is not typing.Literal:
        return False
    choices = typing.get_args(annotation)
    if value not in choices:
        raise ConfigError(where, f"must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return True


def check_choices(obj: Any, prefix: str) -> None:
    """Every Literal-typed field of the dataclass `obj` holds one of its choices."""
    for name, hint in typing.get_type_hints(type(obj)).items():
        check_choice(getattr(obj, name), hint, f"{prefix}{name}")
