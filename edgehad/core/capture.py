"""Keep third-party chatter off the user's terminal and off stdout.

litert-torch prints ~70 progress lines, some from C++ straight to file
descriptor 1, and torch.onnx logs warnings to fd 2. ``contextlib.redirect_stdout``
cannot catch native writes, so ``captured()`` points fds 1 and 2 at a log file
for the duration. The log is kept so that a failure can show what the
exporter said, and ``--debug`` passes it through to stderr instead.

edgehad's own progress goes to ``console()``, which writes to a duplicate of
the original stderr taken at import, so it stays visible while fd 2 is captured.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile

_state = {"passthrough": False, "console": None}


def set_passthrough(on: bool) -> None:
    """``--debug``: let third-party output through to stderr (never to stdout)."""
    _state["passthrough"] = bool(on)


def console():
    """The rich console for progress and messages (stderr, survives fd capture)."""
    if _state["console"] is None:
        from rich.console import Console

        stream = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")
        _state["console"] = Console(file=stream, stderr=True, highlight=False, soft_wrap=True)
    return _state["console"]


class CapturedLog:
    text: str = ""

    def tail(self, n: int = 20) -> str:
        return "\n".join(self.text.strip().splitlines()[-n:])


@contextlib.contextmanager
def captured():
    """Send fds 1 and 2 to a log (or, with passthrough, fd 1 to fd 2) while the body runs."""
    console()  # take the duplicate of stderr before it is redirected
    log = CapturedLog()
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    sink = tempfile.TemporaryFile(mode="w+b")
    try:
        if _state["passthrough"]:
            os.dup2(saved[1], 1)
        else:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
        with contextlib.redirect_stdout(sys.stderr):
            yield log
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
        sink.seek(0)
        log.text = sink.read().decode("utf-8", errors="replace")
        sink.close()
