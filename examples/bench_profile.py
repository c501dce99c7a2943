"""Benchmark the profiler itself: repeatability, harness overhead, agreement with Google's tool.

    python examples/bench_profile.py [--invocations 5] [--runs 100] [--warmup 10] [--threads 1]

On MobileNetV2-224, MobileNetV3-Small-224 (a ~1 ms model) and digits_cnn (a
~15 us model), fp32, exported by edgehad,
each measurement a fresh process, interleaved so drift hits every column alike:

1. Repeatability: `edgehad.api.profile` invoked --invocations times with the
   defaults; coefficient of variation (std / mean) of the per-invocation p50.
   Bar: <= 5% on an idle machine.
2. Harness overhead: edgehad's p50 minus the p50 of a bare timing loop in a
   fresh process on the same file (the runtime's own call only: TFLite
   ``invoke()`` on inputs set once, onnxruntime ``run(None, feed)``), same
   warm-up and run count. Bar: <= 2% of a 1 ms model's latency, i.e. 20 us.
3. Agreement: on the same .tflite, same threads, warm-up and runs, edgehad's
   p50 against the median of ai-edge-litert's own
   ``ai_edge_litert/tools/benchmark_litert_model.py`` (CompiledModel.run_by_name
   on preallocated buffers). Bar: within 10%.

Timings drift between runs on shared machines; the ratios within one run are
the result. OMP_WAIT_POLICY=PASSIVE keeps idle OpenMP threads off the cores.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

# A bare loop: the runtime's call and perf_counter, nothing else (no JSON, no RSS, no input cycling).
BARE = r"""
import sys, time, numpy as np
path, threads, warmup, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = np.random.default_rng(0)
if path.endswith(".tflite"):
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=path, num_threads=threads)
    it.allocate_tensors()
    for d in it.get_input_details():
        it.set_tensor(d["index"], rng.standard_normal(d["shape"]).astype(d["dtype"]))
    call = it.invoke
else:
    import onnxruntime as ort
    o = ort.SessionOptions()
    o.intra_op_num_threads, o.inter_op_num_threads = threads, 1
    o.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    s = ort.InferenceSession(path, sess_options=o, providers=["CPUExecutionProvider"])
    feed = {i.name: rng.standard_normal([d if isinstance(d, int) else 1 for d in i.shape]).astype(np.float32)
            for i in s.get_inputs()}
    call = lambda: s.run(None, feed)
for _ in range(warmup + 1):
    call()
t = []
for _ in range(runs):
    t0 = time.perf_counter(); call(); t.append(time.perf_counter() - t0)
print(float(np.median(t)) * 1000)
"""


def edgehad_p50(path: Path, args) -> float:
    from edgehad.api import profile

    (doc,) = profile([path], threads=args.threads, warmup=args.warmup, runs=args.runs)
    return doc["latency_ms"]["p50"]


def bare_p50(path: Path, args) -> float:
    out = subprocess.run([sys.executable, "-c", BARE, str(path), str(args.threads), str(args.warmup),
                          str(args.runs)], capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def google_p50(path: Path, args, tmp: Path) -> float:
    result = tmp / "google.json"
    subprocess.run([sys.executable, "-m", "ai_edge_litert.tools.benchmark_litert_model", f"--model={path}",
                    f"--num_runs={args.runs}", f"--warmup_runs={args.warmup}", f"--num_threads={args.threads}",
                    f"--result_json={result}"], capture_output=True, text=True, check=True)
    return json.loads(result.read_text())["latency"]["median_ms"]


def cv(values: list[float]) -> float:
    return statistics.pstdev(values) / statistics.mean(values)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--invocations", type=int, default=5)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import edgehad

    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        tmp = Path(tmp)
        edgehad.convert("zoo:mobilenet_v2", out=tmp / "mnv2")
        edgehad.convert("zoo:mobilenet_v3_small", out=tmp / "mnv3")
        edgehad.convert("zoo:digits_cnn", out=tmp / "digits")
        files = {f"mobilenet_v2.{ext}": tmp / "mnv2" / f"model.{ext}" for ext in ("tflite", "onnx")}
        files |= {f"mobilenet_v3_small.{ext}": tmp / "mnv3" / f"model.{ext}" for ext in ("tflite", "onnx")}
        files |= {f"digits_cnn.{ext}": tmp / "digits" / f"model.{ext}" for ext in ("tflite", "onnx")}

        ours = {name: [] for name in files}
        bare = {name: [] for name in files}
        google = []
        for i in range(args.invocations):  # interleaved, order alternating: drift hits every column alike
            for name, path in files.items():
                if i % 2:
                    bare[name].append(bare_p50(path, args))
                    ours[name].append(edgehad_p50(path, args))
                else:
                    ours[name].append(edgehad_p50(path, args))
                    bare[name].append(bare_p50(path, args))
            google.append(google_p50(files["mobilenet_v2.tflite"], args, tmp))

    print(f"{args.invocations} invocations x ({args.warmup} warm-up + {args.runs} timed runs), "
          f"{args.threads} thread(s), each a fresh process; p50 in ms, median over invocations\n")
    print("| file | edgehad p50 | CV of p50 (bar <= 5%) | bare loop p50 | overhead, us (bar <= 20) |")
    print("|---|---:|---:|---:|---:|")
    for name in files:
        o, b = statistics.median(ours[name]), statistics.median(bare[name])
        print(f"| {name} | {o:.4f} | {cv(ours[name]):.1%} | {b:.4f} | {(o - b) * 1000:+.1f} |")
    g, o = statistics.median(google), statistics.median(ours["mobilenet_v2.tflite"])
    print(f"\nagreement on mobilenet_v2.tflite: edgehad p50 {o:.3f} ms, benchmark_litert_model median "
          f"{g:.3f} ms (CV {cv(google):.1%}): ratio {o / g:.3f} (bar: within 0.90-1.10)")


if __name__ == "__main__":
    main()
