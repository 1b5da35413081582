"""User-facing errors: each prints as one line (no traceback) from the CLI.

A `LabError` message names the field, file:line or quantity at fault, so the user can fix the
input without reading code.
"""


class LabError(Exception):
    """Base class of every error caused by the user's input or by a run going wrong."""


class ConfigError(LabError):
    """A configuration field is missing, unknown, mistyped or out of range."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


class DataError(LabError):
    """A data file is missing or malformed (the message names file:line)."""


class DivergenceError(LabError):
    """The iterates blew up (NaN/inf or loss explosion)."""
