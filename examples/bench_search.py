"""Benchmark: trials/hour of `edgehad search` with 1 and 2 local workers, the same trials in both runs.

    python examples/bench_search.py [--trials 8] [--epochs 20,30] [--out DIR]

zoo:digits_cnn on the digits data, a fine-tuning-bound space: channel pruning (magnitude, ratio 0.1..0.6,
no latency measurement in the prune stage), --epochs epochs of recovery fine-tuning, no quantization, ONNX
only; objectives accuracy and size (no timing: a device is serialized, and this measures what scales).
The same seed in both runs, so both convert the same trials (checked: same parameters, same front);
each worker process runs torch and onnxruntime with 1 thread (edgehad.search.worker), so 2 workers want
2 idle cores. Printed: per run the trials and the conversions (a trial whose recipe equals an earlier
one's is not converted again), trials/hour over the trials' window (the first worker's start to the last
record) and over the whole call (which adds the search's fixed costs: checking the model and data, the
results), the seconds of one trial inside its worker, the load average before the run, and the ratios.

The bar of issue #16: 2 workers complete >= 1.6x the trials/hour of 1 worker on 2 idle cores. On a loaded
machine (load average above the core count) the ratio says little: compare only runs on an idle one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

SPACE = """
name = "bench-search"
[stages.prune]
ratio = {{low = 0.1, high = 0.6, step = 0.05}}
latency = false
[stages.finetune]
epochs = {{choices = [{epochs}]}}
[stages.quantize]
scheme = "none"
[stages.export-onnx]
"""


def run(jobs: int, trials: int, space: Path, out: Path) -> dict:
    from edgehad.api import search  # edgehad.search is the package; the API call lives in edgehad.api
    from edgehad.core.capture import captured

    load = os.getloadavg()[0]
    started = time.monotonic()
    with captured():
        doc = search("zoo:digits_cnn", data="digits", out=out, space=str(space), trials=trials, jobs=jobs,
                             seed=0, objectives=("accuracy", "size"),
                             progress=lambda message: print(f"  jobs {jobs}: {message}", file=sys.stderr, flush=True))
    wall = time.monotonic() - started
    done = [t for t in doc["trials"] if t["status"] != "failed"]
    converted = [t for t in doc["trials"] if t.get("same_as") is None]
    # the trials' window: the first worker's start (its spec.json) to the last record (trial.json); the
    # search's own fixed costs (checking the model and data, writing results) stay out of it
    folders = [out / "trials" / str(t["number"]) for t in converted]
    window = max((f / "trial.json").stat().st_mtime for f in folders) - min((f / "spec.json").stat().st_mtime
                                                                           for f in folders)
    return {"jobs": jobs, "wall_s": wall, "window_s": window, "trials": len(doc["trials"]), "measured": len(done),
            "conversions": len(converted), "per_hour": 3600 * len(doc["trials"]) / window,
            "per_hour_wall": 3600 * len(doc["trials"]) / wall, "load": load,
            "params": [t["params"] for t in doc["trials"]], "front": doc["front"],
            "cpu_s": sum(t["seconds"] or 0 for t in converted)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8, help="trials per run (8: one whole generation)")
    parser.add_argument("--epochs", default="20,30", help="fine-tuning epochs to choose from")
    parser.add_argument("--out", type=Path, default=None, help="folder for both searches (default: a temp folder)")
    args = parser.parse_args()

    root = args.out or Path(tempfile.mkdtemp(prefix="bench-search-"))
    root.mkdir(parents=True, exist_ok=True)
    space = root / "space.toml"
    space.write_text(SPACE.format(epochs=", ".join(str(int(e)) for e in args.epochs.split(","))))
    rows = [run(jobs, args.trials, space, root / f"jobs{jobs}") for jobs in (1, 2)]
    one, two = rows
    same = one["params"] == two["params"] and one["front"] == two["front"]
    cores = os.cpu_count()
    print(f"edgehad search, zoo:digits_cnn, digits, prune 0.1..0.6 + finetune {args.epochs} epochs, ONNX fp32; "
          f"{args.trials} trials, seed 0; 1 thread per worker; {cores} cores")
    print(f"{'workers':>7} {'trials':>6} {'converted':>9} {'trials s':>8} {'trials/hour':>11} {'wall s':>7} "
          f"{'trials/hour (wall)':>18} {'s/trial (worker)':>16} {'load before':>11}")
    for r in rows:
        print(f"{r['jobs']:>7} {r['trials']:>6} {r['conversions']:>9} {r['window_s']:>8.1f} {r['per_hour']:>11.1f} "
              f"{r['wall_s']:>7.1f} {r['per_hour_wall']:>18.1f} {r['cpu_s'] / max(r['conversions'], 1):>16.1f} "
              f"{r['load']:>11.2f}")
    print(f"ratio 2 workers / 1 worker: {two['per_hour'] / one['per_hour']:.2f}x over the trials "
          f"({two['per_hour_wall'] / one['per_hour_wall']:.2f}x wall, the search's fixed costs included); bar: >= 1.6x "
          f"on 2 idle cores; same trials and front in both runs: {same}; load average now {os.getloadavg()[0]:.2f}")
    (root / "bench.json").write_text(json.dumps(rows, indent=2, default=str))
    if not same:
        sys.exit("the two runs searched different trials: the comparison is void")


if __name__ == "__main__":
    main()
