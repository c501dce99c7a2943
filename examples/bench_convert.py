"""Benchmark: CLI start-up and a full MobileNetV2 conversion, against the bare exporters.

    python examples/bench_convert.py [--runs 5] [--threads 2]

Prints two tables:
1. `edgehad --help` wall time (median of --runs fresh processes) next to
   `python -c pass` (the interpreter's own start-up) and `python -c "import torch"`,
   showing that the CLI does not import torch to print its help.
2. `edgehad.convert("zoo:mobilenet_v2")` (224x224, 1000 classes, both formats,
   verified on 16 samples) per stage, next to the bare exporters called directly in
   the same process (torch.onnx.export(dynamo=True), litert_torch.convert), so the
   ratio is edgehad's overhead (mostly verification) over exporting alone.
Figures move between runs on shared machines: read the ratios.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def wall(cmd: list[str], runs: int) -> float:
    subprocess.run(cmd, capture_output=True, check=True)  # warm the file cache
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    py = sys.executable
    help_s = wall([py, "-m", "edgehad", "--help"], args.runs)
    bare_s = wall([py, "-c", "pass"], args.runs)
    torch_s = wall([py, "-c", "import torch"], args.runs)
    print(f"## start-up (median of {args.runs} fresh processes)\n")
    print("| command | seconds | ratio to `python -c pass` |\n|---|---:|---:|")
    for name, s in (("python -c pass", bare_s), ("edgehad --help", help_s), ("python -c 'import torch'", torch_s)):
        print(f"| {name} | {s:.3f} | {s / bare_s:.1f}x |")

    import torch

    torch.set_num_threads(args.threads)
    import edgehad
    from edgehad.core.capture import captured
    from edgehad.zoo import get_model

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        report = edgehad.convert("zoo:mobilenet_v2", out=Path(tmp) / "out")
        total = time.perf_counter() - t0

        model = get_model("mobilenet_v2")
        with captured():
            import litert_torch

            t0 = time.perf_counter()
            torch.onnx.export(model, model.example_inputs, dynamo=True).save(str(Path(tmp) / "bare.onnx"))
            onnx_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            litert_torch.convert(model, model.example_inputs).export(str(Path(tmp) / "bare.tflite"))
            tflite_s = time.perf_counter() - t0

    stages = {s["name"]: s["seconds"] for s in report["stages"]}
    print(f"\n## zoo:mobilenet_v2 224x224, {args.threads} threads, one run (includes loading and MAC counting)\n")
    print("| step | edgehad (s) | bare exporter (s) | ratio |\n|---|---:|---:|---:|")
    print(f"| export-onnx | {stages['export-onnx']:.1f} | {onnx_s:.1f} | {stages['export-onnx'] / onnx_s:.2f}x |")
    print(f"| export-tflite | {stages['export-tflite']:.1f} | {tflite_s:.1f} | {stages['export-tflite'] / tflite_s:.2f}x |")
    print(f"| verify (16 samples, 2 runtimes) | {stages['verify']:.1f} | n/a | |")
    print(f"| whole convert | {total:.1f} | {onnx_s + tflite_s:.1f} | {total / (onnx_s + tflite_s):.2f}x |")
    for a in report["artifacts"]:
        p = a["parity"]
        print(f"\n{a['format']}: max_abs {p['max_abs']:.2e}, cosine {p['cosine']:.7f}, top-1 {p['top1_agreement']:.0%}", end="")
    print()


if __name__ == "__main__":
    main()
