"""Measure one .onnx / .tflite file and print one JSON document on stdout.

This file is self-contained on purpose (stdlib + numpy + one runtime, imported
lazily): it is copied to devices where edgehad is not installed and run there
with the device's python. Do not import edgehad or torch here.

    python agent.py MODEL [--runtime auto|ort|tflite] [--threads N] [--warmup N]
                          [--runs N | --seconds S] [--op-profile] [--seed N]
                          [--provider cpu|cuda|tensorrt] [--inputs NPZ] [--progress]

Method: create the session (``init_ms``), run once (``first_ms``), run
``--warmup`` untimed inferences, then ``--runs`` timed ones (or as many as fit
in ``--seconds``), timing only the runtime's run call with ``time.perf_counter``
on input arrays allocated once beforehand: seeded random ones of each input's
dtype, or the samples of ``--inputs`` (an .npz whose arrays ``arr_0``,
``arr_1``, ... hold N samples of each input in the model's input order; float
samples for an int8 input are quantized with the input's own scale and zero
point), used in turn. ``samples_ms`` keeps every timed run. Peak memory is the process's peak
RSS as the OS reports it; ``rss_delta_mb`` is that peak minus the RSS measured
after importing the runtime and before loading the model. With
``--op-profile``, onnxruntime's profiler runs on a separate short session after
the timed runs, so it never slows the timed ones.

``--progress`` prints one line per phase on stderr ("edgehad-agent: ...") for a
caller that streams it (the SSH runner does).

Errors (a missing runtime, an unreadable model) print ``{"error": "..."}`` and
exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time

import numpy as np

_ORT_DTYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int16)": np.int16,
    "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_,
}
_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
              "tensorrt": "TensorrtExecutionProvider"}
_PROFILE_RUNS = 20  # inferences in the separate op-profiling session


class AgentError(Exception):
    """Something the user must fix; printed as {"error": ...}, exit 2."""


# -- memory and machine ------------------------------------------------------
def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB elsewhere


def current_rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            resident_pages = int(f.read().split()[1])
        return resident_pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()  # no /proc: the peak so far is the best available baseline


def machine() -> dict:
    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        fields = {k.strip().lower(): v.strip() for k, v in fields.items()}
        cpu = fields.get("model name") or fields.get("hardware") or fields.get("model") or (
            f"implementer {fields['cpu implementer']} part {fields['cpu part']}"
            if "cpu part" in fields else None)
    except OSError:
        cpu = platform.processor() or None
    model = None
    try:
        with open("/proc/device-tree/model", "rb") as f:
            model = f.read().decode(errors="replace").strip("\x00").strip() or None
    except OSError:
        pass
    return {"arch": platform.machine(), "cpu": cpu, "device_model": model,
            "cores": os.cpu_count(), "python": platform.python_version()}


# -- a minimal session over each runtime -------------------------------------
def _dim(d) -> int:
    """A dimension as an int; dynamic ones (None, a name, -1) become 1."""
    try:
        return int(d) if int(d) > 0 else 1
    except (TypeError, ValueError):
        return 1


def _random_input(shape, dtype, rng):
    dtype = np.dtype(dtype)
    shape = [_dim(d) for d in shape]
    if np.issubdtype(dtype, np.floating):
        return rng.standard_normal(shape).astype(dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, shape).astype(np.bool_)
    if dtype in (np.int8, np.uint8):  # quantized inputs are fed raw: cover the whole range
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max + 1, shape, dtype=dtype)
    return rng.integers(0, 10, shape).astype(dtype)  # indices, token ids: keep them small


def random_feed(specs, rng) -> dict:
    return {key: _random_input(shape, dtype, rng) for key, shape, dtype, _ in specs}


def file_feeds(path, specs) -> list[dict]:
    """One feed per sample of the ``--inputs`` archive, converted to each input's dtype (quantized if int8)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = [archive[f"arr_{i}"] if f"arr_{i}" in archive.files else None for i in range(len(specs))]
    except (OSError, ValueError) as exc:
        raise AgentError(f"{path}: not a readable .npz of input samples ({' '.join(str(exc).split())})") from None
    counts = set()
    for i, ((key, shape, dtype, quant), array) in enumerate(zip(specs, arrays)):
        if array is None:
            raise AgentError(f"{path}: no array arr_{i} for input {i} ({key}); the model has {len(specs)} input(s)")
        want = [_dim(d) for d in shape]
        if list(array.shape[1:]) != want:
            raise AgentError(f"{path}: arr_{i} holds samples of shape {list(array.shape[1:])}, "
                             f"input {key} wants {want}")
        counts.add(array.shape[0])
    if len(counts) != 1 or 0 in counts:
        raise AgentError(f"{path}: every arr_i needs the same number (>0) of samples, got {sorted(counts)}")
    feeds = [{} for _ in range(counts.pop())]
    for (key, _, dtype, quant), array in zip(specs, arrays):
        dtype = np.dtype(dtype)
        if quant and np.issubdtype(dtype, np.integer) and np.issubdtype(array.dtype, np.floating):
            scale, zero = quant
            info = np.iinfo(dtype)
            array = np.clip(np.round(array / scale) + zero, info.min, info.max)
        array = np.ascontiguousarray(array.astype(dtype))
        for feed, sample in zip(feeds, array):
            feed[key] = sample
    return feeds


class OrtRunner:
    runtime = "ort"

    def __init__(self, path, threads, provider, profile_dir=None):
        import onnxruntime as ort

        name = _PROVIDERS[provider]
        if name not in ort.get_available_providers():
            raise AgentError(f"onnxruntime here has no {name} (available: {', '.join(ort.get_available_providers())}); "
                             f"for cuda install onnxruntime-gpu, or use --provider cpu")
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if profile_dir:
            opts.enable_profiling = True
            opts.profile_file_prefix = os.path.join(profile_dir, "ort")
        providers = [name] if name == "CPUExecutionProvider" else [name, "CPUExecutionProvider"]
        self.session = ort.InferenceSession(path, sess_options=opts, providers=providers)
        self.provider = provider
        self.version = ort.__version__

    def specs(self):
        """(key, shape, dtype, (scale, zero_point) or None) per input, in the model's order."""
        return [(i.name, i.shape, _ORT_DTYPES.get(i.type, np.float32), None) for i in self.session.get_inputs()]

    def make_run(self, feed):
        run = self.session.run
        return lambda: run(None, feed)


class TfliteRunner:
    runtime = "tflite"
    provider = "cpu"

    def __init__(self, path, threads):
        Interpreter, self.version = _import_tflite()
        self.interp = Interpreter(model_path=path, num_threads=threads)
        self.interp.allocate_tensors()

    def specs(self):
        return [(d["index"], list(d["shape"]), d["dtype"], d["quantization"] if d["quantization"][0] else None)
                for d in self.interp.get_input_details()]

    def make_run(self, feed):
        interp = self.interp
        set_tensor, invoke, get_tensor = interp.set_tensor, interp.invoke, interp.get_tensor
        outputs = [d["index"] for d in interp.get_output_details()]
        items = list(feed.items())

        def run():
            for index, array in items:
                set_tensor(index, array)
            invoke()
            return [get_tensor(i) for i in outputs]

        return run

    def op_counts(self):
        counts = {}
        for op in self.interp._get_ops_details():
            counts[op["op_name"]] = counts.get(op["op_name"], 0) + 1
        return [{"op": op, "calls": n, "ms": None, "share": None}
                for op, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def _import_tflite():
    try:
        from ai_edge_litert import __version__ as version
        from ai_edge_litert.interpreter import Interpreter
        return Interpreter, version
    except ImportError:
        pass
    try:
        from tflite_runtime import __version__ as version
        from tflite_runtime.interpreter import Interpreter
        return Interpreter, version
    except ImportError:
        raise AgentError(f"no TFLite runtime for {sys.executable}: pip install ai-edge-litert "
                         f"(or the smaller tflite-runtime)") from None


def import_runtime(runtime):
    if runtime == "ort":
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise AgentError(f"onnxruntime is not installed for {sys.executable}: pip install onnxruntime "
                             f"(onnxruntime-gpu for CUDA/TensorRT)") from None
    else:
        _import_tflite()


# -- op profiling -------------------------------------------------------------
def ort_op_profile(path, threads, provider, feed):
    """Aggregate onnxruntime's profiler kernel times by op type, per inference."""
    with tempfile.TemporaryDirectory(prefix="edgehad-prof-") as tmp:
        runner = OrtRunner(path, threads, provider, profile_dir=tmp)
        run = runner.make_run(feed)
        for _ in range(_PROFILE_RUNS):
            run()
        trace = runner.session.end_profiling()
        with open(trace) as f:
            events = json.load(f)
    by_op = {}
    for ev in events:
        if ev.get("cat") != "Node" or not str(ev.get("name", "")).endswith("_kernel_time"):
            continue
        op = ev.get("args", {}).get("op_name", "?")
        entry = by_op.setdefault(op, {"calls": 0, "us": 0.0, "nodes": set()})
        entry["calls"] += 1
        entry["us"] += float(ev.get("dur", 0))
        entry["nodes"].add(ev["name"][: -len("_kernel_time")])
    runs = _PROFILE_RUNS
    total = sum(e["us"] for e in by_op.values()) or 1.0
    ops = [{"op": op, "nodes": len(e["nodes"]), "calls": e["calls"] // runs, "ms": e["us"] / runs / 1000.0,
            "share": e["us"] / total} for op, e in by_op.items()]
    return sorted(ops, key=lambda o: -o["ms"])


# -- measuring ----------------------------------------------------------------
def progress(args, message: str) -> None:
    if args.progress:
        print(f"edgehad-agent: {message}", file=sys.stderr, flush=True)


def stats(times_ms):
    a = np.asarray(times_ms, dtype=np.float64)
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"mean": float(a.mean()), "std": float(a.std()), "min": float(a.min()), "p50": float(p50),
            "p90": float(p90), "p99": float(p99), "max": float(a.max())}


def measure(args) -> dict:
    path = args.model
    if not os.path.isfile(path):
        raise AgentError(f"{path}: no such file")
    runtime = args.runtime
    if runtime == "auto":
        if path.endswith(".onnx"):
            runtime = "ort"
        elif path.endswith(".tflite"):
            runtime = "tflite"
        else:
            raise AgentError(f"{path}: cannot pick a runtime from the extension; use a .onnx or .tflite file "
                             f"or --runtime ort|tflite")
    if runtime == "tflite" and args.provider != "cpu":
        raise AgentError(f"--provider {args.provider} is for onnxruntime; TFLite runs on the CPU here")

    import_runtime(runtime)
    baseline_mb = current_rss_mb()

    start = time.perf_counter()
    try:
        runner = OrtRunner(path, args.threads, args.provider) if runtime == "ort" else TfliteRunner(path, args.threads)
    except AgentError:
        raise
    except Exception as exc:
        raise AgentError(f"{path}: {runtime} cannot load this model: {' '.join(str(exc).split())}") from None
    init_ms = (time.perf_counter() - start) * 1000

    specs = runner.specs()
    feeds = file_feeds(args.inputs, specs) if args.inputs else [random_feed(specs, np.random.default_rng(args.seed))]
    feed = feeds[0]
    calls = [runner.make_run(f) for f in feeds]
    n_calls = len(calls)
    clock = time.perf_counter

    progress(args, f"loaded in {init_ms:.0f} ms; warm-up {args.warmup} runs")
    start = clock()
    calls[0]()
    first_ms = (clock() - start) * 1000
    for i in range(args.warmup):
        calls[i % n_calls]()

    progress(args, f"timing {f'{args.seconds} s' if args.seconds is not None else f'{args.runs} runs'}")
    times = []
    i = 0
    if args.seconds is not None:
        budget_end = clock() + args.seconds
        while not times or clock() < budget_end:
            run = calls[i % n_calls]
            start = clock()
            run()
            times.append(clock() - start)
            i += 1
    else:
        for i in range(args.runs):
            run = calls[i % n_calls]
            start = clock()
            run()
            times.append(clock() - start)
    peak_mb = peak_rss_mb()  # before op profiling, which loads a second session

    result = {
        "latency_ms": stats([t * 1000 for t in times]),
        "samples_ms": [round(t * 1000, 6) for t in times],
        "first_ms": first_ms,
        "init_ms": init_ms,
        "throughput_ips": len(times) / sum(times) if sum(times) > 0 else None,
        "peak_rss_mb": peak_mb,
        "rss_delta_mb": max(0.0, peak_mb - baseline_mb),
        "size_bytes": os.path.getsize(path),
        "runs": len(times),
        "warmup": args.warmup,
        "threads": args.threads,
        "runtime": runtime,
        "runtime_version": runner.version,
        "provider": runner.provider,
        "inputs": {str(k): {"shape": list(v.shape), "dtype": v.dtype.name} for k, v in feed.items()},
        "seed": args.seed,
        "input_source": f"{n_calls} sample(s) from {os.path.basename(args.inputs)}" if args.inputs else "random",
        "ops": None,
        "machine": machine(),
    }
    if args.op_profile:
        progress(args, "op profile")
        if runtime == "ort":
            result["ops"] = ort_op_profile(path, args.threads, args.provider, feed)
            result["ops_note"] = (f"onnxruntime profiler, kernel time by op type, mean per inference over "
                                  f"{_PROFILE_RUNS} runs of a separate session after the timed runs")
        else:
            result["ops"] = runner.op_counts()
            result["ops_note"] = ("the Python TFLite runtime exposes no per-op timing: op counts from the "
                                  "interpreter (DELEGATE is the XNNPACK node that runs the ops it took over), "
                                  "ms not measured")
    return result


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise AgentError(message)


def parse_args(argv):
    p = _Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("model")
    p.add_argument("--runtime", choices=["auto", "ort", "tflite"], default="auto")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--warmup", type=int, default=10)
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--runs", type=int, default=100)
    budget.add_argument("--seconds", type=float, default=None)
    p.add_argument("--op-profile", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--provider", choices=sorted(_PROVIDERS), default="cpu")
    p.add_argument("--inputs", default=None)
    p.add_argument("--progress", action="store_true")
    args = p.parse_args(argv)
    if args.threads < 1:
        raise AgentError("--threads must be at least 1")
    if args.warmup < 0:
        raise AgentError("--warmup must be 0 or more")
    if args.seconds is None and args.runs < 1:
        raise AgentError("--runs must be at least 1")
    if args.seconds is not None and args.seconds <= 0:
        raise AgentError("--seconds must be more than 0")
    return args


def main(argv=None) -> int:
    # Runtimes may print on the C-level stdout; keep that on stderr so stdout holds only the JSON.
    sys.stdout.flush()
    json_fd = os.dup(1)
    os.dup2(2, 1)
    code = 0
    try:
        document = measure(parse_args(argv))
    except AgentError as exc:
        document, code = {"error": str(exc)}, 2
    except Exception as exc:  # a bug here or in the runtime: still one JSON document
        document, code = {"error": f"internal error: {type(exc).__name__}: {' '.join(str(exc).split())}"}, 1
    sys.stdout.flush()
    with os.fdopen(json_fd, "w") as out:
        out.write(json.dumps(document) + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
