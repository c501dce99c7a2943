"""The device lock: one timing at a time on a device (a board, or this machine), across processes.

A search's workers convert in parallel but time one at a time (``DIR/device.lock``, edgehad.search): a
device is a resource of capacity 1. A measurement inside a conversion (the per-layer latency table and its
calibration, edgehad.prune) holds the same lock when the conversion runs in a search worker: the worker
puts the lock's path in ``$EDGEHAD_DEVICE_LOCK`` and :func:`measuring_lock` takes it; outside a search
there is no lock. Here, below both, so that pruning does not import the search.
"""

from __future__ import annotations

import contextlib
import os
import threading

# set by the search worker (edgehad.search.worker) to its spec's lock: measurements inside the conversion hold it
LOCK_ENV = "EDGEHAD_DEVICE_LOCK"
_HELD = threading.local()   # the lock files this thread holds (device_lock is re-entrant per thread)


@contextlib.contextmanager
def device_lock(path: str | None):
    """Hold an exclusive lock on ``path`` (fcntl.flock): one timing at a time on the device it stands for.

    Re-entrant within a thread: flock excludes every other open of the file, this process's own included, so
    a measurement inside a held lock (a latency table inside a trial's timing) would otherwise wait on itself.
    Another thread, or another process, waits.
    """
    if path is None or path in _held_here():
        yield
        return
    import fcntl

    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        _held_here().add(path)
        try:
            yield
        finally:
            _held_here().discard(path)
            fcntl.flock(handle, fcntl.LOCK_UN)


def measuring_lock():
    """The device lock of the search worker this process is (``$EDGEHAD_DEVICE_LOCK``), or no lock outside a
    search: what a measurement inside a trial's conversion holds (edgehad.prune.latency_table), so that it
    never times beside another trial's timing or measurement."""
    return device_lock(os.environ.get(LOCK_ENV) or None)


def _held_here() -> set:
    held = getattr(_HELD, "paths", None)
    if held is None:
        held = _HELD.paths = set()
    return held
