"""Tensor-arena probing: run the model under TFLM in a child process at a given arena size, and
find the smallest size that works.

The arena is the one block of RAM a TFLM application hands the interpreter:
activations (planned so that tensors whose lifetimes do not overlap share
bytes), per-op persistent data (quantization multipliers, scratch buffers) and
the interpreter's own structs. How much a model needs depends on TFLM's memory
planner and kernels, so it is measured, not estimated: a size "works" when a
child (``edgehad.micro.probe``) ran every sample and exited 0.

A failure at some size means "does not fit" whenever a larger arena worked for the
same model, whatever TFLM said: a too-small arena surfaces as an allocator message
("Failed to allocate tail memory"), a crash (SIGSEGV), or a kernel's own check
("kernel_util.cc:516 false was not true" and "Node FULLY_CONNECTED failed to
prepare": the int8 fc_autoencoder says so from 19,968 bytes, TFLM's own count of a
working run, up to 22,256, crashes at 22,272 and works from 22,288). Only a failure
at the largest size tried is a problem of the model, reported with TFLM's message.
The wording of a failure is a hint (``Probe.allocation_failure``): it chooses the
next size to try, never the verdict where a larger size has an answer.

Search (``find_arena``):
1. upper bound: probe ``start`` and double it until a size works, up to ``cap``; a
   failure that does not read like a lack of memory sends the next probe to ``cap``,
   which decides: it works (doubling goes on below it) or the model is at fault;
2. lower bound: the largest non-constant tensor, which the arena must hold with
   room to spare, so that size cannot work (it is not probed);
3. bisection between them (sizes multiples of 16, TFLM's arena alignment) until
   ``hi - lo <= RESOLUTION_BYTES``; its first two splits are TFLM's own count of
   the bytes it used in the working run (RecordingMicroAllocator's "Arena
   allocation total") and 16 bytes below it, which bracket the minimum to 16
   bytes when that count is right (not always: fc_autoencoder's is 19,968 bytes,
   2,320 short of what it needs). ``min_bytes = hi``, the smallest size that
   worked; the true minimum lies in ``(min_bytes - resolution_bytes, min_bytes]``,
   ``resolution_bytes = hi - lo <= 256``. This assumes "works" is monotonic in
   the size, which holds for TFLM's allocator: it only ever needs the total to fit.

``recommended_bytes = ceil(min_bytes * (1 + MARGIN) / 1024) * 1024``.
"""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from edgehad.core.children import run_child
from edgehad.core.errors import EdgehadError, UserInputError

RESOLUTION_BYTES = 256
MARGIN = 0.10  # 10%, then rounded up to whole KiB
ALIGN = 16  # TFLM aligns arena allocations to 16 bytes (MicroArenaBufferAlignment)
CAP_BYTES = 256 * 1024 * 1024  # no MCU has more; a model that needs more is not an MCU model
# Seconds one probe may take. An MCU-sized model runs its samples under TFLM's reference kernels on a
# desktop CPU in well under a second; one that takes minutes loops (a WHILE whose condition never turns
# false) or would take hours on an MCU. The limit turns that into an answer instead of a hang.
PROBE_TIMEOUT_S = 120
HOST_NOTE = (
    "measured on this 64-bit host (8-byte pointers) with TFLM's reference kernels; a 32-bit MCU needs "
    "a little less (its pointers and interpreter structs are smaller), optimized kernels (CMSIS-NN, "
    "ESP-NN) may ask for extra scratch: keep the margin and check MicroInterpreter::arena_used_bytes() "
    "on the device"
)
# What TFLM's allocators print when the arena is too small (single_arena_buffer_allocator.cc,
# micro_allocator.cc, greedy_memory_planner.cc: "Failed to allocate tail memory", "Failed to resize
# buffer", "Too many buffers", "Unable to allocate TfLiteAffineQuantization"). Matched on TFLM's own
# lines only: the Python wrapper's "TFLM failed to allocate tensors" follows every failure, a missing
# kernel too. A hint only: a kernel whose persistent buffer did not fit may say no more than
# "kernel_util.cc:516 false was not true", so whether a larger arena works is what decides.
_ALLOC_MESSAGE = re.compile(r"failed to (allocate|resize)|unable to allocate|too many buffers", re.IGNORECASE)
_RECORDED = re.compile(r"Arena allocation total (\d+) bytes")


class ArenaSearchError(EdgehadError):
    """No arena up to the cap worked, or TFLM failed for a reason other than the arena size (exit 1).

    ``probe``: the run that failed, so a caller can tell a crash or a refusal from "too large".
    """

    def __init__(self, message: str, probe: Probe | None = None):
        super().__init__(message)
        self.probe = probe


class ProbeTimeoutError(UserInputError):
    """A TFLM run did not finish within its time limit (exit 2: the model loops, or is no MCU model)."""

    def __init__(self, model, timeout: float):
        super().__init__(f"{model}: the model did not finish in {timeout:g} s under TFLite Micro: it may loop (a "
                         f"WHILE whose condition never turns false) or be far too slow for an MCU; check the file "
                         f"(edgehad inspect {model}), or give each run more time with `timeout`")


@dataclass
class Probe:
    """One child run: the size it had, whether it worked, and if not, why."""

    bytes: int
    works: bool
    reason: str = ""  # why it did not work: TFLM's message, or the signal that killed it
    allocation_failure: bool = False  # the failure reads like "arena too small" (a hint, see the module docstring)
    recorded_bytes: int | None = None  # TFLM's RecordingMicroAllocator total, on success

    def as_dict(self) -> dict:
        d = asdict(self)
        d.pop("allocation_failure")
        return d


def child_env() -> dict:
    """The environment of a TFLM or LiteRT child: idle OpenMP threads sleep, and since a crash is an
    expected answer there, Python's faulthandler dumps no stack."""
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    env.pop("PYTHONFAULTHANDLER", None)
    return env


def signal_name(returncode: int) -> str:
    """``SIGSEGV`` for a child killed by signal 11 (``returncode`` -11), ``signal N`` for an unnamed one."""
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def _reason(proc: subprocess.CompletedProcess) -> str:
    lines = [ln.strip() for ln in (proc.stderr or "").splitlines()
             if ln.strip() and not ln.startswith("[RecordingMicroAllocator]")]
    if proc.returncode < 0:
        said = f" after: {lines[0]}" if lines else ""
        return f"crashed with {signal_name(proc.returncode)}{said}"
    # first line is TFLM's own account ("Failed to allocate ..."); the last is the Python-level error
    picked = [lines[0], lines[-1]] if len(lines) > 1 else lines
    return " / ".join(picked)[:300] or f"exit code {proc.returncode}"


def run_probe(model: str | os.PathLike, arena_bytes: int, inputs_npz: str | os.PathLike,
              out_npz: str | os.PathLike | None = None, timeout: float = PROBE_TIMEOUT_S) -> Probe:
    """Run ``edgehad.micro.probe`` in a child process with ``arena_bytes``; outputs land in ``out_npz``.

    Raises ProbeTimeoutError when the run takes more than ``timeout`` seconds (the child is killed):
    a bigger arena would not help, so it is not a "does not fit".
    """
    with tempfile.TemporaryDirectory(prefix="edgehad-micro-") as tmp:
        out = Path(out_npz) if out_npz else Path(tmp) / "out.npz"
        cmd = [sys.executable, "-m", "edgehad.micro.probe", str(model), str(int(arena_bytes)),
               str(inputs_npz), str(out)]
        try:
            proc = run_child(cmd, timeout=timeout, env=child_env())
        except subprocess.TimeoutExpired:
            raise ProbeTimeoutError(model, timeout) from None
        if proc.returncode == 0 and out.is_file():
            found = _RECORDED.search(proc.stderr or "")
            return Probe(int(arena_bytes), True, recorded_bytes=int(found[1]) if found else None)
        reason = _reason(proc)
        tflm_lines = [ln for ln in (proc.stderr or "").splitlines() if not ln.startswith("tflm error:")]
        alloc = proc.returncode < 0 or any(_ALLOC_MESSAGE.search(ln) for ln in tflm_lines)
        return Probe(int(arena_bytes), False, reason, allocation_failure=alloc)


def _kib(n: int) -> str:
    return f"{n:,} bytes ({n / 1024:,.1f} KiB)"


def first_working(model, inputs_npz, start: int, cap: int = CAP_BYTES, progress=None,
                  timeout: float = PROBE_TIMEOUT_S) -> tuple[Probe, list]:
    """Probe ``start``, doubling until a size works, up to ``cap``; (the smallest probe that worked, every probe).

    A failure that does not read like a lack of memory is checked at ``cap`` at once (one probe) rather
    than after every doubling: if ``cap`` works, the failure was "does not fit" and doubling goes on below
    it; if ``cap`` fails too, the model is at fault. Raises ArenaSearchError when ``cap`` fails.
    """
    progress = progress or (lambda msg: None)
    probes = []

    def probe(size: int) -> Probe:
        p = run_probe(model, size, inputs_npz, timeout=timeout)
        probes.append(p)
        progress(f"arena {_kib(size)}: {'works' if p.works else 'does not fit (' + p.reason + ')'}")
        return p

    size, at_cap = _align_up(max(start, ALIGN)), None  # at_cap: the probe of ``cap``, once made
    while True:
        p = at_cap if at_cap is not None and size >= cap else probe(size)
        if p.works:
            return p, probes
        if size >= cap:
            raise _largest_failed(model, p, cap)
        if not p.allocation_failure and at_cap is None:
            at_cap = probe(cap)
            if not at_cap.works:
                raise _largest_failed(model, at_cap, cap)
        size = min(size * 2, cap)


def _largest_failed(model, p: Probe, cap: int) -> ArenaSearchError:
    """The error for a failure at the largest size tried, where nothing larger can say "does not fit"."""
    if p.allocation_failure:
        return ArenaSearchError(f"{model}: no arena up to {cap // 1024} KiB worked (largest tried: {_kib(p.bytes)}: "
                                f"{p.reason}); the model is too large for TFLM on an MCU", p)
    return ArenaSearchError(f"{model}: TFLM cannot run it even with a {_kib(p.bytes)} arena (the largest tried), "
                            f"so not for lack of memory: {p.reason}", p)


def larger_works(model, failed: Probe, inputs_npz, cap: int = CAP_BYTES, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether ``failed`` was a lack of memory: ``cap`` works for the same model (one probe; False at ``cap``)."""
    if failed.bytes >= cap:
        return False
    return run_probe(model, cap, inputs_npz, timeout=timeout).works


def _align_up(n: int) -> int:
    return -(-int(n) // ALIGN) * ALIGN


def recommended(min_bytes: int, margin: float = MARGIN) -> int:
    """``min_bytes * (1 + margin)`` rounded up to a whole KiB."""
    return math.ceil(min_bytes * (1 + margin) / 1024) * 1024


def find_arena(model, inputs_npz, lower: int, start: int, cap: int = CAP_BYTES,
               resolution: int = RESOLUTION_BYTES, progress=None, timeout: float = PROBE_TIMEOUT_S) -> dict:
    """The smallest working arena (module docstring); a dict for the ``arena`` key of ``check``.

    ``lower`` is a size known not to work (the largest activation tensor), ``start``
    the first size tried for the upper bound; ``timeout`` the seconds each probe may take.
    """
    progress = progress or (lambda msg: None)
    top, probes = first_working(model, inputs_npz, start, cap, progress, timeout)
    hi, recorded = top.bytes, top.recorded_bytes
    lo = min(_align_up(lower), hi - ALIGN)
    for p in probes:  # sizes that failed while doubling are lower bounds too (each is below ``hi``)
        if not p.works:
            lo = max(lo, p.bytes)
    # TFLM's own count of what it used is the likely answer: try it and one alignment step below first,
    # which usually brackets the minimum to 16 bytes in two probes; bisection does the rest either way.
    hints = [h for h in (_align_up(recorded), _align_up(recorded) - ALIGN) if lo < h < hi] if recorded else []
    while hi - lo > (ALIGN if hints else resolution):
        if hints:
            mid = hints.pop(0)
            if not lo < mid < hi:
                continue
        else:
            mid = _align_up((lo + hi) // 2)
        if mid >= hi:
            break
        p = run_probe(model, mid, inputs_npz, timeout=timeout)
        probes.append(p)
        progress(f"arena {_kib(mid)}: {'works' if p.works else 'does not fit'}")
        # ``hi`` worked for this model, so a failure below it is "does not fit", whatever TFLM's words
        if p.works:
            hi = mid
        else:
            lo = mid
    return {
        "min_bytes": hi,
        "recommended_bytes": recommended(hi),
        "margin": MARGIN,
        "resolution_bytes": hi - lo,
        "lower_bound_bytes": _align_up(lower),
        "tflm_recorded_bytes": recorded,
        "probes": [p.as_dict() for p in probes],
        "host_note": HOST_NOTE,
    }
