"""Where trials run: K local worker processes (the default; a Ray executor will offer the same interface).

The interface a search drives, whatever runs the trials::

    with LocalExecutor(jobs=2) as ex:
        futures = [ex.submit(spec) for spec in generation]   # TrialSpec -> future-like (.done(), .result())
        for record in ex.in_order(futures): ...               # each record once it and all before it are done

Each trial is a fresh ``python -m edgehad.search.worker SPEC.json`` child, started with
edgehad.core.children.popen_options (its own process group, SIGKILL when this process dies, even by
kill -9), rather than a ProcessPoolExecutor:

- a trial's converters hold global state (litert-torch's patched torch, ONNX exporters' caches, thread
  pools); a fresh process per trial starts from nothing, and costs only an import (seconds) against a
  conversion (tens of seconds to hours);
- a crash in native code (a segfault in an exporter) ends that trial alone, where it breaks a whole pool
  (BrokenProcessPool) and every trial in flight;
- every trial has a time limit that kills it and everything it started (its process group), which a
  pool cannot do to a running task;
- a pool's workers outlive a parent killed with SIGKILL; these children do not.

This process polls its children (no threads: the children's parent-death signal is tied to the thread that
started them, so the main thread starts them all). Their output goes to ``worker.log`` in the trial folder.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import Future
from pathlib import Path

from edgehad.search.trial import LOG_FILE, RESULT_FILE, TrialSpec

POLL_S = 0.2


class LocalExecutor:
    def __init__(self, jobs: int = 1, python: str | None = None):
        self.jobs = jobs
        self.python = python or sys.executable
        self._queued: list[tuple[TrialSpec, Future]] = []
        self._running: list[tuple[TrialSpec, Future, subprocess.Popen, float, object]] = []

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def submit(self, spec: TrialSpec) -> Future:
        """Queue one trial; it starts as soon as fewer than ``jobs`` run."""
        future: Future = Future()
        self._queued.append((spec, future))
        self._pump()
        return future

    def in_order(self, futures):
        """Each future's record in the order given, as soon as it and all before it are done."""
        for future in futures:
            while not future.done():
                self._pump()
                if not future.done():
                    time.sleep(POLL_S)
            yield future.result()

    def close(self) -> None:
        """Kill every running trial (its whole process group) and drop the queued ones."""
        from edgehad.core.children import kill_group

        for spec, future, proc, _, log in self._running:
            kill_group(proc)
            proc.wait()
            log.close()
            future.cancel() or future.done() or future.set_result(_failed(spec, "the search stopped"))
        self._running.clear()
        for _, future in self._queued:
            future.cancel()
        self._queued.clear()

    def _pump(self) -> None:
        from edgehad.core.children import kill_group

        still = []
        for item in self._running:
            spec, future, proc, deadline, log = item
            code = proc.poll()
            if code is None and time.monotonic() > deadline:
                kill_group(proc)
                proc.wait()
                log.close()
                future.set_result(_failed(spec, f"timed out after {spec.timeout_s:g} s: the worker was killed"))
                continue
            if code is None:
                still.append(item)
                continue
            kill_group(proc)  # whatever it left running in its group
            log.close()
            future.set_result(_record(spec, code))
        self._running = still
        while self._queued and len(self._running) < self.jobs:
            spec, future = self._queued.pop(0)
            self._running.append((spec, future, *self._start(spec)))

    def _start(self, spec: TrialSpec):
        from edgehad.core.children import popen_options

        folder = Path(spec.folder)
        (folder / RESULT_FILE).unlink(missing_ok=True)  # a record left by an earlier, interrupted try
        spec_file = folder / "spec.json"
        spec_file.write_text(json.dumps(spec.as_dict(), indent=2))
        log = open(folder / LOG_FILE, "w")
        proc = subprocess.Popen([self.python, "-m", "edgehad.search.worker", str(spec_file)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                **popen_options())
        return proc, time.monotonic() + spec.timeout_s, log


def _record(spec: TrialSpec, code: int) -> dict:
    """The worker's record; a worker that died without one is a failed trial saying how it ended."""
    folder = Path(spec.folder)
    try:
        return json.loads((folder / RESULT_FILE).read_text())
    except (OSError, ValueError):
        pass
    tail = ""
    try:
        lines = [ln for ln in (folder / LOG_FILE).read_text(errors="replace").splitlines() if ln.strip()]
        tail = lines[-1].strip() if lines else ""
    except OSError:
        pass
    how = f"killed by signal {-code}" if code < 0 else f"exit {code}"
    return _failed(spec, f"the worker ended without a result ({how})" + (f": {tail[:300]}" if tail else ""))


def _failed(spec: TrialSpec, reason: str) -> dict:
    return {"number": spec.number, "status": "failed", "reason": reason, "params": spec.params, "metrics": {},
            "files": [], "objective_file": None, "recipe": str(Path(spec.folder) / "recipe.toml"), "seconds": None}
