"""Benchmark: channels-last (NHWC) TFLite files against NCHW ones, MobileNetV2 fp32 and int8, measured in the same run.

    python examples/bench_layout.py [--runs 300] [--threads 1] [--input-size 224]

Method. MobileNetV2-1.0 from the zoo (random weights, seeded), --input-size px (224 by default). Four files,
each made by edgehad.convert exactly as a user gets it (formats="tflite", verified in LiteRT):
- fp32 with tflite_layout "nchw" and "nhwc";
- int8 (PT2E, calib="random" on 64 seeded inputs, float I/O) with "nchw" and "nhwc". Random weights miss
  edgehad's int8 floor of cosine 0.99 against the quantized torch model (bench_quantize.py measured 0.987),
  so the recipe states a floor of 0.95: a benchmark of speed, not accuracy.
Timing (edgehad.export.side_by_side.interleaved_medians, edgehad's one side-by-side timing): one
edgehad.runtime.Session per file, --threads threads (LiteRT, XNNPACK), 20 warm-up runs, then --runs runs per
file interleaved in 10 rounds (the order rotates each round); median ms. Each NHWC file is fed the NCHW
file's input transposed, so both compute on the same pixels; the table also gives the largest difference
between their outputs. Figures move on shared machines (the header gives the load average): read the
ratios, measured in one run.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import platform
import tempfile
from pathlib import Path

import numpy as np

INT8_RECIPE = """name = "int8-layout-bench"
description = "int8 static, random calibration; cosine floor 0.95 (random weights)"
[stages.quantize]
scheme = "int8"
calib = "random"
calib_samples = 64
[stages.export-tflite]
[stages.verify]
min_cosine = 0.95
"""


def convert(model, precision: str, layout: str, tmp: Path) -> dict:
    """One .tflite through edgehad.convert; its report."""
    import edgehad
    from edgehad.core.capture import captured

    kwargs = {}
    if precision == "int8":
        (tmp / "int8.toml").write_text(INT8_RECIPE)
        kwargs["recipe"] = str(tmp / "int8.toml")
    with captured():
        return edgehad.convert(model, formats="tflite", tflite_layout=layout, samples=4,
                               out=tmp / f"{precision}-{layout}", **kwargs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--input-size", type=int, default=224)
    args = ap.parse_args()

    import torch

    from edgehad.export.layout import TO_NHWC
    from edgehad.export.side_by_side import interleaved_medians
    from edgehad.inspection import inspect_file
    from edgehad.runtime import Session
    from edgehad.zoo import get_model

    model = get_model("mobilenet_v2", input_size=args.input_size)
    shape = tuple(model.example_inputs[0].shape)
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(7)).numpy()
    keys = [(p, lay) for p in ("fp32", "int8") for lay in ("nchw", "nhwc")]

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files, cosine = {}, {}
        for precision, layout in keys:
            print(f"converting {precision} {layout} ...", flush=True)
            (entry,) = convert(model, precision, layout, tmp)["artifacts"]
            files[precision, layout], cosine[precision, layout] = Path(entry["path"]), entry["parity"]["cosine"]
        info = {k: inspect_file(p) for k, p in files.items()}
        sessions = {k: Session(str(p), threads=args.threads) for k, p in files.items()}
        feeds = {k: [np.ascontiguousarray(x.transpose(TO_NHWC))] if k[1] == "nhwc" else [x] for k in keys}
        outputs = {k: sessions[k].run(feeds[k])[0] for k in keys}
        load = os.getloadavg()[0]
        timed = interleaved_medians(sessions, None, 10, -(-args.runs // 10), warmup=20, feeds=feeds)
        ms = {k: median * 1e3 for k, (median, _) in timed.items()}

    print(f"\n# MobileNetV2-1.0-{args.input_size}: NHWC vs NCHW TFLite (LiteRT)\n\n"
          f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs (load average {load:.1f} "
          f"before timing); {args.threads} thread(s); {args.runs} runs/file interleaved in 10 rounds after 20 "
          "warm-up; median ms.\n")
    print("| file | input | TRANSPOSE ops | ops | verified cosine | median ms |\n|---|---|---:|---:|---:|---:|")
    for k in keys:
        i = info[k]
        print(f"| {k[0]} {k[1]} | {'x'.join(map(str, i['inputs'][0]['shape']))} | {i['ops'].get('TRANSPOSE', 0)} | "
              f"{sum(i['ops'].values())} | {cosine[k]:.4f} | {ms[k]:.2f} |")
    print("\n| precision | NHWC / NCHW latency | max abs difference of the outputs |\n|---|---:|---:|")
    for precision in ("fp32", "int8"):
        a, b = (precision, "nchw"), (precision, "nhwc")
        diff = float(np.abs(outputs[a].astype(np.float64) - outputs[b]).max())
        print(f"| {precision} | {ms[b] / ms[a]:.3f} | {diff:.3g} |")


if __name__ == "__main__":
    main()
