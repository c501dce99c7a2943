"""Child processes that end when they should: within their time limit, and never after edgehad.

Every program edgehad starts (a TFLite Micro probe, the profiling agent, qemu
for the emulated target, the tools its setup runs) goes through
:func:`run_child`. It promises:

- **a time limit**: ``timeout`` is required; past it the child and everything it
  started are killed and ``subprocess.TimeoutExpired`` is raised, carrying what
  the child had written so far;
- **its whole family dies with it**: the child leads a process group of its
  own, and on a timeout, an exception, Ctrl-C (KeyboardInterrupt) or SIGTERM in
  edgehad that whole group gets SIGKILL, grandchildren included. A group (not
  only the child's pid) because the child may be a shell or a launcher
  (``unshare`` -> ``sh`` -> ``qemu``) whose own children do the work;
- **it dies with edgehad even when edgehad cannot clean up** (SIGKILL, a
  crash): on Linux the child asks the kernel for SIGKILL when its parent dies
  (``prctl(PR_SET_PDEATHSIG)``). The kernel sends that signal when the *thread*
  that started the child ends; run_child waits in that thread, so it outlives
  the child. It reaches the child only, not grandchildren that edgehad never
  saw; the children edgehad runs do their work in one process.
- **nothing left behind**: when the child exits, whatever it left running in
  its group is killed too.

Ctrl-C that a finalizer swallowed (edgehad.core.stop) is not lost while waiting either: the wait
runs in slices of ``_SLICE_S`` and checks for a recorded stop between them.

SIGTERM: while a child runs in the main thread, a SIGTERM handler kills every
running child's group and then exits with status 143 (128 + SIGTERM) through
``SystemExit``, so ``finally`` blocks and temporary folders are cleaned up. A
handler someone installed before is called after the children are killed.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import threading
import time

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_DRAIN_S = 5.0  # after a kill, how long to wait for the pipes to close (a child that escaped the group)
_SLICE_S = 0.25  # a wait's slice: a stop the CLI recorded (edgehad.core.stop) is acted on within this

_live: set = set()  # children of this process still running, for the SIGTERM handler
_lock = threading.Lock()
_prctl = None


def _load_prctl():
    """libc's prctl, looked up here in the parent: the child between fork and exec should only call it."""
    global _prctl
    if _prctl is None and sys.platform.startswith("linux"):
        import ctypes

        try:
            _prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError):
            _prctl = False
    return _prctl or None


def _die_with_parent(prctl, parent: int):
    """preexec_fn: SIGKILL this child when its parent dies; also if the parent died before prctl took effect."""

    def arm():
        prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # the parent is already gone: the signal will never come
            os._exit(137)

    return arm


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process group of a child started with :func:`popen_options`; a group already gone is fine."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _on_sigterm(previous):
    def handler(signum, frame):
        with _lock:
            running = list(_live)
        for proc in running:
            kill_group(proc)
        if callable(previous):
            previous(signum, frame)
        else:
            raise SystemExit(128 + signum)

    return handler


def _install_sigterm():
    """Our SIGTERM handler while a child runs (main thread only: Python allows no other); the previous one."""
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(signal.SIGTERM)
    if previous == signal.SIG_IGN or getattr(previous, "_edgehad_children", False):
        return None  # ignored on purpose, or ours already (a nested call): leave it
    handler = _on_sigterm(previous)
    handler._edgehad_children = True
    signal.signal(signal.SIGTERM, handler)
    return (previous,)


def popen_options() -> dict:
    """``subprocess.Popen`` keyword arguments for a child that leads its own process group and gets SIGKILL
    when edgehad dies: for a child that must stream or outlive one call (an ssh control master), where
    run_child does not fit. The caller then owns the time limit and calls :func:`kill_group` when done."""
    prctl = _load_prctl()
    return {"process_group": 0, "preexec_fn": _die_with_parent(prctl, os.getpid()) if prctl else None}


def run_child(cmd, *, timeout: float, input: str | bytes | None = None, stdin=None, env: dict | None = None,
              cwd=None, text: bool = True, on_stderr_line=None) -> subprocess.CompletedProcess:
    """Run ``cmd`` (an argument list; never a shell string) with its output captured, like ``subprocess.run``.

    ``input``: data for its stdin; ``stdin``: an open file for it instead; neither: /dev/null.
    ``text``: decode the output, undecodable bytes replaced (a child's garbage must not crash edgehad).
    ``on_stderr_line``: called with each stderr line as it comes (a child's progress), in text mode without
    ``input``; the lines are in the result's ``stderr`` too.

    Raises ``subprocess.TimeoutExpired`` (``.output``/``.stderr``: what it wrote until then) after
    ``timeout`` seconds, once the child and its process group are dead; see the module docstring
    for what else is killed when.
    """
    if isinstance(cmd, (str, bytes)):
        raise TypeError("run_child takes an argument list, never a shell string")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not (math.isfinite(timeout)
                                                                                  and timeout > 0):
        raise ValueError(f"run_child needs a time limit in seconds > 0, got {timeout!r}")
    if input is not None and stdin is not None:
        raise ValueError("run_child takes input or stdin, not both")
    if on_stderr_line is not None and (input is not None or not text):
        raise ValueError("run_child streams stderr lines in text mode without input only")
    restore = _install_sigterm()
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE if input is not None else stdin or subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd,
                                text=text, errors="replace" if text else None, **popen_options())
        with _lock:
            _live.add(proc)
        try:
            if on_stderr_line is None:
                stdout, stderr = _sliced(lambda first, t: proc.communicate(input if first else None, timeout=t),
                                         proc, timeout)
            else:
                stdout, stderr = _stream(proc, timeout, on_stderr_line)
        except subprocess.TimeoutExpired as exc:
            kill_group(proc)
            stdout, stderr = _drain(proc) if on_stderr_line is None else (exc.output, exc.stderr)
            raise subprocess.TimeoutExpired(proc.args, timeout, output=stdout, stderr=stderr) from None
        except BaseException:  # KeyboardInterrupt, SystemExit from SIGTERM, anything: no child outlives us
            kill_group(proc)
            _drain(proc)
            raise
        finally:
            with _lock:
                _live.discard(proc)
        # What the child left running in its group. Safe after the reap: a group id stays taken while any
        # member lives, so it names no one else's group; with no member left, killpg finds nothing.
        kill_group(proc)
        return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    finally:
        if restore is not None:
            signal.signal(signal.SIGTERM, restore[0])


def _stream(proc: subprocess.Popen, timeout: float, on_line):
    """``communicate()`` for a child whose stderr lines go to ``on_line`` as they come: one reader thread per
    pipe (a full pipe must never block the child), the wait bounded by ``timeout``."""
    out: list[str] = []
    err: list[str] = []

    def read_stderr():
        for line in proc.stderr:
            err.append(line)
            try:
                on_line(line.rstrip("\n"))
            except Exception:  # a progress display that fails must not lose the child's output
                pass

    readers = [threading.Thread(target=read_stderr, daemon=True),
               threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True)]
    for reader in readers:
        reader.start()
    try:
        _sliced(lambda first, t: proc.wait(timeout=t), proc, timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        try:
            proc.wait(timeout=_DRAIN_S)
        except subprocess.TimeoutExpired:
            pass
        for reader in readers:
            reader.join(timeout=_DRAIN_S)
        raise subprocess.TimeoutExpired(proc.args, timeout, output="".join(out), stderr="".join(err)) from None
    for reader in readers:
        reader.join(timeout=_DRAIN_S)  # a grandchild that left the group may hold a pipe open
    return "".join(out), "".join(err)


def _sliced(wait, proc: subprocess.Popen, timeout: float):
    """``wait(first, t)`` (a communicate or wait with timeout ``t``) in slices until it returns, within ``timeout``.

    Between slices, a Ctrl-C or SIGTERM that reached the CLI but was swallowed (a KeyboardInterrupt raised
    inside a finalizer is dropped by Python) is raised again: edgehad.core.stop.check().
    """
    from edgehad.core import stop

    deadline = time.monotonic() + timeout
    first = True
    while True:
        left = deadline - time.monotonic()
        try:
            return wait(first, max(0.0, min(left, _SLICE_S)))
        except subprocess.TimeoutExpired:
            if left <= _SLICE_S:
                raise subprocess.TimeoutExpired(proc.args, timeout) from None
        first = False  # communicate() sends its input once; a retry goes on reading
        stop.check()


def _drain(proc: subprocess.Popen):
    """Reap a killed child; what it wrote, if the pipes close soon (a process that left the group may hold them)."""
    try:
        return proc.communicate(timeout=_DRAIN_S)
    except (subprocess.TimeoutExpired, ValueError, OSError):
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass
        try:
            proc.wait(timeout=_DRAIN_S)
        except subprocess.TimeoutExpired:
            pass
        return None, None
