"""Run many files through one edgehad reader in this process: ``python -m tests.reliability.worker JOB.json``.

The parent (``tests.reliability.harness``) starts it, bounds each case and
restarts it after a crash or a hang, so one segfault in a native runtime costs
one case, not the batch. JOB.json: ``{"op": NAME, "paths": [...], "first": K,
"extra": {...}}``. For each path from index K on, this prints on its private
channel (the original stdout; fd 1 is pointed at stderr so library chatter
cannot mix in) ``START i`` before the case and ``DONE i {json}`` after it, the
JSON being ``{"outcome", "message"}``:

- ``ok``: the reader returned;
- ``user``: UserInputError (the CLI's exit 2);
- ``failed``: another EdgehadError (the CLI's exit 1), not an "internal error";
- ``raised``: a plain exception from ``edgehad.runtime`` (it is self-contained on
  purpose; its callers turn any exception into a UserInputError);
- ``internal``: any other exception (the CLI would print "internal error").

Crashes and hangs have no DONE line; the parent records them.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import traceback
from pathlib import Path

_OPS = {}


def op(name):
    def register(f):
        _OPS[name] = f
        return f
    return register


@op("inspect")
def _inspect(path, extra):
    from edgehad.inspection import inspect_file

    inspect_file(path)


@op("session")
def _session(path, extra):
    """edgehad.runtime.Session: load, then one run on zeros when the declared shapes are small and fixed."""
    import numpy as np

    from edgehad.runtime import Session

    sess = Session(path, threads=1)
    shapes = [i["shape"] for i in sess.inputs]
    if all(all(isinstance(d, int) and 0 < d for d in s) and math.prod(s) <= 1 << 20 for s in shapes):
        sess.run([np.zeros(s, dtype=np.float32) for s in shapes])


@op("osr-eval")
def _osr_eval(path, extra):
    from edgehad.osr import evaluate

    evaluate(path, "digits?classes=0-5", "digits?classes=6-9")


@op("micro")
def _micro(path, extra):
    from edgehad.micro import check

    check(path, samples=2)


@op("profile")
def _profile(path, extra):
    from edgehad.profiling.job import Job
    from edgehad.profiling.local import profile_file

    profile_file(path, Job(warmup=0, runs=1, timeout=60))


@op("bundle")
def _bundle(path, extra):
    from edgehad.bundle import build

    with tempfile.TemporaryDirectory(prefix="rel-bundle-") as tmp:
        build(path, Path(tmp) / "bundle", warn=lambda message: None)


@op("pt2")
def _pt2(path, extra):
    from edgehad.loading import load_model

    load_model(str(path))


@op("stats")
def _stats(path, extra):
    from edgehad.osr.stats import load_stats

    load_stats(path)


@op("data")
def _data(path, extra):
    from edgehad.data import load_data

    load_data(str(path))


@op("weights")
def _weights(path, extra):
    from edgehad.loading import load_model

    load_model(f"{extra['model_file']}:net", weights=str(path))


def classify(exc: BaseException | None) -> tuple[str, str]:
    from edgehad.core.errors import EdgehadError, UserInputError

    if exc is None:
        return "ok", ""
    message = str(exc)
    if isinstance(exc, UserInputError):
        return "user", message
    if isinstance(exc, EdgehadError):
        return ("internal" if "internal error" in message else "failed"), message
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" at {Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else ""
    text = f"{type(exc).__name__}: {' '.join(message.split())[:300]}{where}"
    # edgehad.runtime raises plain exceptions by design (no edgehad import); a crash of the native code
    # under it would never get here
    origin = next((f.filename for f in reversed(tb) if "/edgehad/" in f.filename.replace(os.sep, "/")), "")
    if origin.replace(os.sep, "/").endswith("edgehad/runtime.py") and not isinstance(exc, (KeyError, IndexError,
                                                                                           AttributeError, TypeError)):
        return "raised", text
    return "internal", text


def main(argv: list[str]) -> int:
    job = json.loads(Path(argv[0]).read_text())
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # third-party prints go to stderr, never into the protocol
    sys.stdout = sys.stderr
    fn, extra = _OPS[job["op"]], job.get("extra", {})
    for i in range(job["first"], len(job["paths"])):
        channel.write(f"START {i}\n")
        channel.flush()
        try:
            fn(job["paths"][i], extra)
            outcome = classify(None)
        except BaseException as exc:  # noqa: BLE001 - SystemExit from a library counts as a bug too
            outcome = classify(exc) if isinstance(exc, Exception) else ("internal", f"{type(exc).__name__}: {exc}")
        channel.write(f"DONE {i} " + json.dumps({"outcome": outcome[0], "message": outcome[1]}) + "\n")
        channel.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
