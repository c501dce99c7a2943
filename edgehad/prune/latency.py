"""Measured latency of the original and the pruned model, exported the same way.

Both models are exported fp32 to each format and timed in the same process
with edgehad.runtime.Session: 10 warm-up runs each, then ``runs`` runs per
file interleaved in rounds (so that machine noise hits both alike), median
milliseconds at ``threads`` threads. The profiler (``edgehad profile``) is the
tool for absolute figures on a device; this is the ratio a user asks about
right after pruning.

``scheme="int8"`` (ONNX only) times int8 files instead: each fp32 export is
quantized by onnxruntime's ``quantize_static`` (QDQ, per-channel int8 weights,
uint8 activations, calibrated on a few random inputs like the example), the
same fused kernels (QLinearConv, QGemm) edgehad's int8 ONNX runs; speed does
not depend on the calibration. The quantize stage has not run yet when pruning
does, so this is the int8 ratio of the pruned layers, not of the final file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def compare_latency(original, pruned, example_inputs: tuple, workdir: Path, formats=("onnx", "tflite"),
                    runs: int = 50, threads: int = 1, scheme: str = "fp32", reuse: dict | None = None,
                    float_prefix: dict | None = None, quantile: float = 0.5) -> dict:
    """Original vs pruned, timed side by side. ``reuse``: a dict kept between calls with the same original
    (the latency target's calibration times several pruned models): its export is made once.
    ``float_prefix`` (int8): {"original": k, "pruned": k'}, the leading convs each keeps float (keep_float speed).
    ``quantile``: 0.5 gives medians; the latency target's calibration asks for the lower decile (see allocate.py)."""
    from edgehad.export.side_by_side import export_sessions, interleaved_medians

    workdir.mkdir(parents=True, exist_ok=True)
    feed = [np.asarray(t.detach().numpy()) for t in example_inputs]
    what = "median" if quantile == 0.5 else f"{quantile:.0%} quantile"
    result = {"method": f"{what} of {runs} interleaved runs after 10 warm-up, {threads} thread(s), "
                        f"{'int8 (onnxruntime quantize_static)' if scheme == 'int8' else 'fp32'}, in process"}
    reuse = {} if reuse is None else reuse
    for fmt in formats:
        prefix = float_prefix or {}
        kept = reuse.get((fmt, scheme, threads, prefix.get("original", 0)))
        models = {"pruned": pruned} if kept else {"original": original, "pruned": pruned}
        paths, sessions = export_sessions(models, example_inputs, fmt, workdir, threads)
        if scheme == "int8":
            sessions = {key: _int8_session(path, example_inputs, threads, prefix.get(key, 0))
                        for key, path in paths.items()}
        sessions = {"original": kept or sessions["original"], "pruned": sessions["pruned"]}
        reuse[(fmt, scheme, threads, prefix.get("original", 0))] = sessions["original"]
        if quantile == 0.5:
            timed = interleaved_medians(sessions, feed, rounds=10, per_round=max(1, runs // 10), warmup=10)
            ms = {name: median * 1e3 for name, (median, _) in timed.items()}
        else:
            ms = {name: t * 1e3 for name, t in _interleaved_quantile(sessions, feed, runs, quantile).items()}
        result[fmt] = {"original_ms": round(ms["original"], 4), "pruned_ms": round(ms["pruned"], 4),
                       "ratio": round(ms["pruned"] / ms["original"], 3)}
    return result


def _interleaved_quantile(sessions: dict, feed, runs: int, quantile: float, rounds: int = 10) -> dict:
    """{key: seconds}: the ``quantile`` of each session's ``runs`` runs, interleaved in rotating rounds as
    edgehad.export.side_by_side.interleaved_medians times them (10 warm-up runs each first)."""
    import time

    for s in sessions.values():
        for _ in range(10):
            s.run(feed)
    times = {key: [] for key in sessions}
    keys = list(sessions)
    for r in range(rounds):
        for key in keys[r % len(keys):] + keys[:r % len(keys)]:
            for _ in range(max(1, runs // rounds)):
                t0 = time.perf_counter()
                sessions[key].run(feed)
                times[key].append(time.perf_counter() - t0)
    return {key: float(np.quantile(v, quantile)) for key, v in times.items()}


def _int8_session(fp32: Path, example_inputs: tuple, threads: int, float_convs: int = 0):
    """A Session over onnxruntime's quantize_static of ``fp32`` (QDQ, per-channel, uint8 activations), its
    first ``float_convs`` Conv nodes left float (as keep_float speed leaves the leading convs)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from edgehad.core.capture import captured
    from edgehad.runtime import Session

    pre, out = fp32.with_name(fp32.stem + ".pre.onnx"), fp32.with_name(fp32.stem + ".int8.onnx")
    names = [i.name for i in onnx.load(str(fp32)).graph.input]
    rng = np.random.default_rng(0)
    calib = [{n: (rng.standard_normal(tuple(t.shape)) * float(t.float().std() or 1) + float(t.float().mean()))
              .astype(np.float32) if t.is_floating_point() else t.numpy() for n, t in zip(names, example_inputs)}
             for _ in range(4)]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calib)

        def get_next(self):
            return next(self.it, None)

    with captured():
        quant_pre_process(str(fp32), str(pre))
        convs = [n.name for n in onnx.load(str(pre)).graph.node if n.op_type == "Conv"]
        quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=convs[:float_convs])
    return Session(str(out), threads=threads)
