"""Two (or more) models exported the same way and timed side by side in one process.

The question after a pipeline stage is a ratio — pruned against original, with
head against without — so both files run in the same process with
edgehad.runtime.Session, warmed up alike, then timed in rounds whose order
rotates, so that drift on a shared machine hits every file alike. Medians, not
means: a preempted run must not move the figure. For absolute figures on a
device, ``edgehad profile`` measures each file in its own process.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path


def export_sessions(models: dict, example_inputs: tuple, fmt: str, folder: Path, threads: int) -> tuple[dict, dict]:
    """Export each of ``models`` ({key: nn.Module}) to ``folder/<key>.<fmt>``, fp32; ({key: path}, {key: Session})."""
    from edgehad.core.capture import captured
    from edgehad.export.onnx import export_onnx
    from edgehad.export.tflite import export_tflite
    from edgehad.runtime import Session

    export = export_onnx if fmt == "onnx" else export_tflite
    paths, sessions = {}, {}
    with captured():
        for key, model in models.items():
            paths[key] = Path(folder) / f"{key}.{fmt}"
            export(model, example_inputs, paths[key])
            # fed torch-layout arrays (``feed``): a file stating NHWC images gets them transposed
            sessions[key] = Session(str(paths[key]), threads=threads, layout="nchw")
    return paths, sessions


def interleaved_medians(sessions: dict, feed, rounds: int, per_round: int, warmup: int = 0,
                        feeds: dict | None = None) -> dict:
    """{key: (median seconds per run, runs)} of each Session: ``warmup`` untimed runs each, then ``rounds``
    rounds of ``per_round`` timed runs per session, the order rotating every round.

    Every session runs on ``feed``, except those ``feeds`` ({key: inputs}) gives inputs of their own: a
    file with int8 inputs takes its input quantized once up front, so the host-side quantization that
    Session.run would do on a float input is not timed."""
    inputs = {key: (feeds or {}).get(key, feed) for key in sessions}
    for key, s in sessions.items():
        for _ in range(warmup):
            s.run(inputs[key])
    times = {key: [] for key in sessions}
    keys = list(sessions)
    for r in range(rounds):
        for key in keys[r % len(keys):] + keys[:r % len(keys)]:
            run, fed = sessions[key].run, inputs[key]
            for _ in range(per_round):
                t0 = time.perf_counter()
                run(fed)
                times[key].append(time.perf_counter() - t0)
    return {key: (statistics.median(v), len(v)) for key, v in times.items()}
