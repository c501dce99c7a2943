"""Drive ``tests.reliability.worker`` over a batch of files, each case bounded in time.

``run_batch(op, paths)`` returns one ``Outcome`` per path. A case that does not
finish within ``case_limit`` seconds is a ``hang``; a worker that dies without
finishing its case (a signal: a segfault in onnxruntime, LiteRT or TFLM) is a
``crash``. Either way the worker is restarted on the next path, so one bad case
costs one case.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLEAN = {"ok", "user", "failed"}   # exit 0, 2, or 1 with a plain (non-internal) message


@dataclass
class Outcome:
    path: str
    outcome: str      # ok | user | failed | raised | internal | crash | hang
    message: str


def run_batch(op: str, paths: list, case_limit: float = 30.0, extra: dict | None = None,
              cwd: str | os.PathLike | None = None) -> list[Outcome]:
    paths = [str(p) for p in paths]
    results: dict[int, Outcome] = {}
    first = 0
    with tempfile.TemporaryDirectory(prefix="rel-worker-") as tmp:
        while first < len(paths):
            job = Path(tmp) / "job.json"
            job.write_text(json.dumps({"op": op, "paths": paths, "first": first, "extra": extra or {}}))
            first = _one_worker(job, paths, first, case_limit, results, Path(tmp) / "stderr.txt", cwd or tmp)
    return [results[i] for i in range(len(paths))]


def _one_worker(job: Path, paths: list, first: int, case_limit: float, results: dict, err_path: Path,
                cwd) -> int:
    """Run a worker from ``first``; return the index to restart from (len(paths) when done)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    with open(err_path, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "tests.reliability.worker", str(job)], cwd=cwd,
                                stdout=subprocess.PIPE, stderr=err, env=env)
    current, started, buffer = None, time.monotonic(), b""
    # the first case also pays for the worker's imports (torch, onnx, LiteRT): allow it longer
    limit = case_limit + 60
    try:
        while True:
            ready, _, _ = select.select([proc.stdout], [], [], 0.5)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:  # EOF: the worker ended
                    proc.wait()
                    if current is None or current in results:
                        return len(paths)
                    tail = " ".join(err_path.read_text(errors="replace").split())[-300:]
                    results[current] = Outcome(paths[current], "crash",
                                               f"worker exited with {proc.returncode}: {tail}")
                    return current + 1
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    kind, _, rest = line.decode().partition(" ")
                    if kind == "START":
                        current, started = int(rest), time.monotonic()
                    elif kind == "DONE":
                        index, _, doc = rest.partition(" ")
                        d = json.loads(doc)
                        results[int(index)] = Outcome(paths[int(index)], d["outcome"], d["message"])
                        limit = case_limit
            if current is not None and current not in results and time.monotonic() - started > limit:
                proc.kill()
                proc.wait()
                results[current] = Outcome(paths[current], "hang", f"no result after {limit:.0f} s")
                return current + 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def write_mutants(folder: Path, name: str, suffix: str, mutants: list) -> list[Path]:
    """Write ``(label, bytes)`` mutants as ``folder/NAME-<k>-<label>SUFFIX``; return the paths in order."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, (label, data) in enumerate(mutants):
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in label)
        path = folder / f"{name}-{k:03d}-{safe}{suffix}"
        path.write_bytes(data)
        paths.append(path)
    return paths


def summary(results: list[Outcome], accept=CLEAN) -> tuple[int, list[Outcome]]:
    """(count handled cleanly, the others)."""
    bad = [r for r in results if r.outcome not in accept]
    return len(results) - len(bad), bad


def describe(bad: list[Outcome], limit: int = 20) -> str:
    return "\n".join(f"  {Path(r.path).name}: {r.outcome}: {r.message[:300]}" for r in bad[:limit])
