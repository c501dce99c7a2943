"""``python -m edgehad.search.worker SPEC.json``: run one trial in this fresh process, write its record.

With ``extra["time_file"]`` in the spec, only time that file on the spec's target (the Ray executor's
timing task, edgehad.search.ray_executor: the conversion ran on another node): the record then holds the
latency metrics alone.

The record goes to ``trial.json`` in the trial's folder, written atomically, so the parent (or a later
``resume``) reads either a whole record or none. One thread for torch and the runtimes: K workers on K
cores do not fight over them, and a trial's numbers do not depend on how many ran beside it. The spec's
device lock goes to ``$EDGEHAD_DEVICE_LOCK``: what the conversion measures on the device (a per-layer latency
table) waits for it as the trial's timing does, so two workers never measure at once.
"""

from __future__ import annotations

import json
import os
import sys

# before torch or a runtime loads: their thread pools are sized when they start
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"


def main(argv=None) -> int:
    from pathlib import Path

    from edgehad.core.files import write_text
    from edgehad.core.jsondoc import dumps
    from edgehad.core.device_lock import LOCK_ENV
    from edgehad.search.trial import RESULT_FILE, TrialSpec, run_trial

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m edgehad.search.worker SPEC.json", file=sys.stderr)
        return 2
    spec = TrialSpec.from_dict(json.loads(Path(argv[0]).read_text()))

    def progress(message: str) -> None:
        print(f"trial {spec.number}: {message}", file=sys.stderr, flush=True)

    if spec.extra.get("time_file"):  # no torch: the profiler runs the file in its runtime, and the device waits
        record = time_file(spec, Path(spec.extra["time_file"]), progress)
    else:
        import torch

        torch.set_num_threads(1)
        if spec.lock:  # a measurement inside the conversion (a latency table) holds the device too
            os.environ[LOCK_ENV] = spec.lock
        record = run_trial(spec, progress=progress)
    write_text(Path(spec.folder) / RESULT_FILE, dumps(record, indent=2) + "\n")
    return 0


def time_file(spec, path, progress) -> dict:
    """``latency_ms`` and ``latency_source`` of ``path``, timed as a trial times its file; never raises."""
    from edgehad.search.trial import _latency, guarded

    record = {"number": spec.number, "status": "failed", "reason": None, "params": spec.params, "metrics": {}}
    return guarded(record, lambda: {"metrics": _latency(spec, path, progress)})


if __name__ == "__main__":
    sys.exit(main())
