"""Ctrl-C and SIGTERM that cannot be lost.

Python delivers a signal by raising in the main thread at the next bytecode, wherever that is. When
it lands inside a finalizer (``__del__``, a weakref callback: torch's exporters run many), Python
prints "Exception ignored in ..." and goes on, so a KeyboardInterrupt can vanish and a run that was
stopped would publish its output and exit 0 (seen once in a full test run, under load). The CLI's
handlers therefore also record the signal here, and :func:`check` raises it again where it matters:
before an output folder is published (edgehad.core.files.publish). Nothing outside the CLI sets it.
"""

from __future__ import annotations

import signal

_pending: list[int] = []


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that every ``finally`` (staging folders, children) runs as for Ctrl-C."""


def request(signum: int) -> None:
    """Record a stop (the CLI's signal handlers call this before raising)."""
    _pending.append(signum)


def clear() -> None:
    _pending.clear()


def check() -> None:
    """Raise the recorded stop again, if a library swallowed it; nothing when none was asked for."""
    if not _pending:
        return
    raise Terminated() if _pending[0] == signal.SIGTERM else KeyboardInterrupt()
