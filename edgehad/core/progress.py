"""Progress of long steps: messages, and a bar over counted steps (the runs a profile times).

A caller's ``progress`` is any ``progress(message)`` callable. The CLI's printer
(edgehad/cli/common.py ``progress_printer``) also has ``bar(label, total)``,
which draws one bar on a terminal. :func:`bar` uses it where it is there;
for a plain callable it says the label once, so every caller still hears of
the step, without a line per update.
"""

from __future__ import annotations

from typing import Callable


class LabelOnly:
    """A bar for a plain ``progress(message)``: the label once at the start, updates dropped."""

    def __init__(self, progress: Callable[[str], None] | None, label: str):
        self.progress, self.label = progress, label

    def __enter__(self):
        if self.progress is not None:
            self.progress(self.label)
        return self

    def update(self, done: float) -> None:
        """``done`` steps of the total so far."""

    def __exit__(self, *exc) -> None:
        return None


def bar(progress, label: str, total: float):
    """A context manager with ``update(done)`` showing ``done`` of ``total`` steps under ``label``."""
    make = getattr(progress, "bar", None)
    return make(label, total) if make is not None else LabelOnly(progress, label)
