"""Errors edgehad raises.

Every message says what was wrong and what to do about it; the CLI prints it
as one ``error: ...`` line and exits with ``exit_code``.
"""


class EdgehadError(Exception):
    """Base class. ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class UserInputError(EdgehadError):
    """Bad usage or bad input: a missing file, a wrong spec, shapes that do not fit."""

    exit_code = 2


class UnsupportedOpError(UserInputError):
    """The exporter cannot lower an operation of the model."""


class ConversionError(EdgehadError):
    """The conversion ran but its result failed a check (e.g. parity over tolerance)."""

    exit_code = 1
