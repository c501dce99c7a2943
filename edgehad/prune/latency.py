"""Measured latency of the original and the pruned model, exported the same way.

Both models are exported fp32 to each format and timed in the same process
with edgehad.runtime.Session: 10 warm-up runs each, then ``runs`` runs per
file interleaved in rounds (so that machine noise hits both alike), median
milliseconds at ``threads`` threads. The profiler (``edgehad profile``) is the
tool for absolute figures on a device; this is the ratio a user asks about
right after pruning.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def compare_latency(original, pruned, example_inputs: tuple, workdir: Path, formats=("onnx", "tflite"),
                    runs: int = 50, threads: int = 1) -> dict:
    from edgehad.export.side_by_side import export_sessions, interleaved_medians

    workdir.mkdir(parents=True, exist_ok=True)
    feed = [np.asarray(t.detach().numpy()) for t in example_inputs]
    result = {"method": f"median of {runs} interleaved runs after 10 warm-up, {threads} thread(s), fp32, in process"}
    for fmt in formats:
        _, sessions = export_sessions({"original": original, "pruned": pruned}, example_inputs, fmt, workdir, threads)
        timed = interleaved_medians(sessions, feed, rounds=10, per_round=max(1, runs // 10), warmup=10)
        ms = {name: median * 1e3 for name, (median, _) in timed.items()}
        result[fmt] = {"original_ms": round(ms["original"], 4), "pruned_ms": round(ms["pruned"], 4),
                       "ratio": round(ms["pruned"] / ms["original"], 3)}
    return result
