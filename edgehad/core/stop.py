"""Ctrl-C and SIGTERM that cannot be lost.

Python delivers a signal by raising in the main thread at the next bytecode, wherever that is. When
it lands inside a finalizer (``__del__``, a weakref callback: torch's exporters run many), Python
prints "Exception ignored in ..." and goes on, so a KeyboardInterrupt can vanish and a run that was
stopped would publish its output and exit 0 (seen once in a full test run, under load). The CLI's
handlers therefore also record the signal here, and :func:`check` raises it again where it matters:
before an output folder is published (edgehad.core.files.publish). Nothing outside the CLI sets it.

An exporter's native code is no place for the exception either: torch.export, torch.onnx.export,
litert-torch and PT2E run Python inside C++ (dispatcher modes, dynamo frames), and a KeyboardInterrupt
raised at an arbitrary bytecode there can leave C++ state half-built. A convert sent SIGTERM inside
torch.onnx.export died of SIGABRT or SIGSEGV (exit -6/-11, nothing said, its staging folder left) in
3 of about 330 runs on this machine under load (SIGTERM within 0.5 s of the staging folder appearing,
3 converts at once), once in CI. So those calls run under :func:`held` (then 0 of about 350 runs):
the CLI's handlers record a first signal there and return, and :func:`held` raises it when the call
returns. A second signal raises at once (a user who presses Ctrl-C twice means now).
"""

from __future__ import annotations

import contextlib
import signal
import threading

_pending: list[int] = []
_held: list[str] = []  # what is running under held(), innermost last


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that every ``finally`` (staging folders, children) runs as for Ctrl-C."""


def request(signum: int) -> None:
    """Record a stop (the CLI's signal handlers call this before raising)."""
    _pending.append(signum)


def clear() -> None:
    _pending.clear()


def holding() -> str | None:
    """What runs under :func:`held` now (a signal's handler then records it and returns), else None."""
    return _held[-1] if _held else None


def pending() -> bool:
    return bool(_pending)


@contextlib.contextmanager
def held(what: str):
    """Run the body with a first Ctrl-C/SIGTERM held back (recorded), and raise it when the body returns.

    ``what`` names the call for the line the CLI prints ("stopping when torch.onnx.export returns").
    Outside the main thread it holds nothing: signals reach the main thread only, which is elsewhere."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _held.append(what)
    try:
        yield
    finally:
        _held.pop()
        if not _held:
            check()


def check() -> None:
    """Raise the recorded stop again, if a library swallowed it; nothing when none was asked for."""
    if not _pending:
        return
    raise Terminated() if _pending[0] == signal.SIGTERM else KeyboardInterrupt()
