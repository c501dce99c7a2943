"""Measured latency of the original and the pruned model, exported the same way.

Both models are exported fp32 to each format and timed in the same process
with edgehad.runtime.Session: 10 warm-up runs each, then ``runs`` runs per
file interleaved in rounds (so that machine noise hits both alike), median
milliseconds at ``threads`` threads. The profiler (``edgehad profile``) is the
tool for absolute figures on a device; this is the ratio a user asks about
right after pruning.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np


def compare_latency(original, pruned, example_inputs: tuple, workdir: Path, formats=("onnx", "tflite"),
                    runs: int = 50, threads: int = 1) -> dict:
    from edgehad.core.capture import captured
    from edgehad.export.onnx import export_onnx
    from edgehad.export.tflite import export_tflite
    from edgehad.runtime import Session

    workdir.mkdir(parents=True, exist_ok=True)
    feed = [np.asarray(t.detach().numpy()) for t in example_inputs]
    result = {"method": f"median of {runs} interleaved runs after 10 warm-up, {threads} thread(s), fp32, in process"}
    for fmt in formats:
        files = {}
        with captured():
            for name, model in (("original", original), ("pruned", pruned)):
                path = workdir / f"{name}.{fmt}"
                (export_onnx if fmt == "onnx" else export_tflite)(model, example_inputs, path)
                files[name] = Session(str(path), threads=threads)
        times = {name: [] for name in files}
        for s in files.values():
            for _ in range(10):
                s.run(feed)
        for r in range(10):
            order = list(files) if r % 2 == 0 else list(reversed(files))
            for name in order:
                for _ in range(max(1, runs // 10)):
                    t0 = time.perf_counter()
                    files[name].run(feed)
                    times[name].append((time.perf_counter() - t0) * 1e3)
        ms = {name: statistics.median(v) for name, v in times.items()}
        result[fmt] = {"original_ms": round(ms["original"], 4), "pruned_ms": round(ms["pruned"], 4),
                       "ratio": round(ms["pruned"] / ms["original"], 3)}
    return result
