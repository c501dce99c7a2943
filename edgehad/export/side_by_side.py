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


def export_sessions(models: dict, example_inputs: tuple, fmt: str, folder: Path, threads: int,
                    layout: str = "nhwc") -> tuple[dict, dict]:
    """Export each of ``models`` ({key: nn.Module}) to ``folder/<key>.<fmt>``, fp32; ({key: path}, {key: Session}).

    A TFLite file is written in ``layout`` (default "nhwc", as the export stage writes it by default,
    edgehad.export.layout): a ratio timed on NCHW files, with a TRANSPOSE at each image input and
    output, is not the ratio of the files a user deploys."""
    from edgehad.core.capture import captured
    from edgehad.export.layout import finish, model_layout
    from edgehad.export.onnx import export_onnx
    from edgehad.export.tflite import export_tflite
    from edgehad.runtime import Session

    paths, sessions = {}, {}
    with captured():
        for key, model in models.items():
            paths[key] = Path(folder) / f"{key}.{fmt}"
            if fmt == "onnx":
                export_onnx(model, example_inputs, paths[key])
            else:
                record = model_layout(model, example_inputs, layout)
                export_tflite(model, example_inputs, paths[key], layout=record)
                finish(paths[key], record)
            # fed torch-layout arrays (``feed``): a file stating NHWC images gets them transposed
            sessions[key] = Session(str(paths[key]), threads=threads, layout="nchw")
    return paths, sessions


def interleaved_medians(sessions: dict, feed, rounds: int, per_round: int, warmup: int = 0,
                        feeds: dict | None = None) -> dict:
    """{key: (median seconds per run, runs)} of each Session: ``warmup`` untimed runs each, then ``rounds``
    rounds of ``per_round`` timed runs per session, the order rotating every round.

    Every session runs on ``feed``, except those ``feeds`` ({key: inputs}) gives inputs of their own. Each
    session's inputs are prepared once up front (Session.bind: a file with int8 inputs takes them quantized,
    an NHWC file transposed), so no host-side preparation is timed."""
    # bound once (Session.bind): the timed call is the runtime's alone, as `edgehad profile` times it; the
    # layout transpose, dtype casts and quantization of the inputs happen here, not in every run
    calls = {key: s.bind((feeds or {}).get(key, feed)) for key, s in sessions.items()}
    for call in calls.values():
        for _ in range(warmup):
            call()
    times = {key: [] for key in sessions}
    keys = list(sessions)
    for r in range(rounds):
        for key in keys[r % len(keys):] + keys[:r % len(keys)]:
            call = calls[key]
            for _ in range(per_round):
                t0 = time.perf_counter()
                call()
                times[key].append(time.perf_counter() - t0)
    return {key: (statistics.median(v), len(v)) for key, v in times.items()}
