"""Measure one .onnx / .tflite file and print one JSON document on stdout.

This file is self-contained on purpose (stdlib + numpy + one runtime, imported
lazily): it is copied to devices where edgehad is not installed and run there
with the device's python. Do not import edgehad or torch here.

    python agent.py MODEL [--runtime auto|ort|tflite] [--threads N] [--warmup N]
                          [--runs N | --seconds S] [--op-profile] [--seed N]
                          [--provider cpu|cuda|tensorrt] [--trt-fp16] [--power]
                          [--input-shape NAME=1x3x640x640 ...] [--inputs NPZ] [--progress]

Method: create the session (``init_ms``), run once (``first_ms``), run
``--warmup`` untimed inferences, then ``--runs`` timed ones (or as many as fit
in ``--seconds``), timing only the runtime's run call with ``time.perf_counter``
on input arrays allocated once beforehand: seeded random ones of each input's
dtype, or the samples of ``--inputs`` (an .npz whose arrays ``arr_0``,
``arr_1``, ... hold N samples of each input in the model's input order; float
samples for an int8 input are quantized with the input's own scale and zero
point), used in turn. A symbolic input dim (ONNX ``dim_param``, TFLite
``shape_signature`` -1) is never guessed: random inputs take it from
``--input-shape NAME=1x3x640x640`` (TFLite inputs are resized to it), samples
from their own shapes, and a dim neither fills is an error naming it. The shapes
fed are in ``inputs``. ``samples_ms`` keeps every timed run. Peak memory is the process's peak
RSS as the OS reports it; ``rss_delta_mb`` is that peak minus the RSS measured
after importing the runtime and before loading the model. With
``--op-profile``, onnxruntime's profiler runs on a separate short session after
the timed runs, so it never slows the timed ones.

``--progress`` prints one line per phase on stderr ("edgehad-agent: ...") for a
caller that streams it (the SSH runner does).

NVIDIA GPUs (``--provider cuda|tensorrt``, onnxruntime-gpu): the session gets
the requested execution provider first and onnxruntime's fallbacks after it
(TensorRT -> CUDA -> CPU for the nodes a provider cannot take);
``providers_used`` is ``session.get_providers()``, and a session that dropped
the requested provider (onnxruntime does that silently when, say, cuDNN or
TensorRT libraries are missing) is an error, not a CPU measurement under a GPU
label. Inputs are numpy arrays on the host, so each run includes the copies to
and from the GPU, as in an application that feeds numpy arrays. TensorRT builds
its engine while the session is created, so ``init_ms`` includes the engine
build; the engine cache (``trt_engine_cache_enable``) lives in a temporary
folder beside this file for this run only (the op-profiling session reuses it
instead of building again), and fp16 stays off unless ``--trt-fp16``.
``gpu_memory_mb`` is this process's GPU memory as ``nvidia-smi
--query-compute-apps`` reports it after the timed runs (CUDA context included;
None without nvidia-smi, on the CPU provider, or when nvidia-smi cannot see this
process, e.g. from inside a container).

Jetson (a ``tegrastats`` on PATH or at /usr/bin/tegrastats): ``tegrastats
--interval 100`` runs as a child from just before the warm-up (so its own
start-up lands in the untimed runs) to just after the timed runs, writing to an
anonymous temporary file (no reader thread competes with the timed loop); it
is stopped with SIGINT, as Ctrl-C stops it in a terminal, then SIGTERM/SIGKILL
if it lingers. ``tegrastats --stop`` is not used: it stops the instances
started in the background with ``--start``, which would include a user's own
logger. Its lines come back raw in ``tegrastats_lines`` (the host parses them,
edgehad/profiling/tegrastats.py); ``nvmap_mb`` holds /proc/meminfo's
``NvMapMemUsed`` (GPU buffers in the memory CPU and GPU share) before the model
is loaded and after the timed runs. ``--power`` asks the host for the power
rails in the summary; it needs tegrastats, and without it is an error.

Errors (a missing runtime, an unreadable model) print ``{"error": "..."}`` and
exit 2. The runtime raising while running the model on the inputs fed prints
``{"error": "...", "error_kind": "run"}`` (one line: the model, each input's
dtype and shape, the runtime's first line) and exits 1.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
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
TEGRASTATS_INTERVAL_MS = 100
_TEGRASTATS_FALLBACK = "/usr/bin/tegrastats"  # where JetPack puts it: found even when PATH is empty or minimal


class AgentError(Exception):
    """Something the user must fix; printed as {"error": ...}, exit 2."""


class RunFailed(Exception):
    """The runtime raised while running the model on the inputs fed; printed with "error_kind": "run", exit 1."""


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
    """What this device is: arch, CPU, device-tree model, cores (the host names the closest target from it)."""
    cpu, fields = None, {}
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
    if model is None and not fields.get("model", "0").isdigit():  # a Pi's cpuinfo "Model" line (x86 has a number)
        model = fields.get("model")
    return {"arch": platform.machine(), "cpu": cpu, "device_model": model,
            "cpu_implementer": fields.get("cpu implementer"), "cpu_part": fields.get("cpu part"),
            "cores": os.cpu_count(), "python": platform.python_version()}


# -- NVIDIA GPUs and Jetson ----------------------------------------------------
def meminfo_mb(key, path="/proc/meminfo") -> float | None:
    """One /proc/meminfo field in MiB (``NvMapMemUsed`` on a Jetson); None when absent or unreadable."""
    try:
        with open(path) as f:
            for line in f:
                name, _, rest = line.partition(":")
                if name.strip() == key:
                    return int(rest.split()[0]) / 1024  # the kernel prints every field in kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def compute_app_memory_mb(csv_text, pid) -> float | None:
    """``pid``'s used GPU memory (MiB) from ``nvidia-smi --query-compute-apps=pid,used_memory
    --format=csv,noheader,nounits`` output (one ``pid, MiB`` line per process per GPU; summed over GPUs)."""
    total, seen = 0.0, False
    for line in csv_text.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 2 or fields[0] != str(pid):
            continue
        try:
            total += float(fields[1])
            seen = True
        except ValueError:  # "[N/A]" where the driver hides per-process memory
            pass
    return total if seen else None


def _nvidia_smi(*query) -> str | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        proc = subprocess.run([exe, *query, "--format=csv,noheader,nounits"], capture_output=True, text=True,
                              timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def gpu_facts(pid) -> dict:
    """``gpu_memory_mb`` of this process and the GPUs' names and totals, from nvidia-smi (None without it)."""
    apps = _nvidia_smi("--query-compute-apps=pid,used_memory")
    gpus = _nvidia_smi("--query-gpu=name,memory.total")
    devices = None
    if gpus:
        devices = []
        for line in gpus.strip().splitlines():
            name, _, total = line.rpartition(",")
            try:
                devices.append({"name": name.strip(), "memory_total_mb": float(total)})
            except ValueError:
                devices.append({"name": line.strip(), "memory_total_mb": None})
    return {"gpu_memory_mb": compute_app_memory_mb(apps, pid) if apps is not None else None, "gpus": devices}


def trt_cache_dir() -> str:
    """A temporary folder for TensorRT's engine cache beside this file (the remote runner removes that folder
    whole), else in the system temp; removed when the agent exits."""
    try:
        folder = tempfile.mkdtemp(prefix="edgehad-trt-cache-", dir=os.path.dirname(os.path.abspath(__file__)))
    except OSError:  # a read-only install folder
        folder = tempfile.mkdtemp(prefix="edgehad-trt-cache-")
    atexit.register(shutil.rmtree, folder, True)
    return folder


def find_tegrastats() -> str | None:
    found = shutil.which("tegrastats")
    if found:
        return found
    return _TEGRASTATS_FALLBACK if os.access(_TEGRASTATS_FALLBACK, os.X_OK) else None


def _die_with_agent():
    """A ``preexec_fn`` that makes the kernel send the child SIGTERM when the agent dies (PR_SET_PDEATHSIG), so
    an agent killed by the OOM killer or a dropped SSH session leaves no tegrastats running on the device.

    prctl is looked up here, in the parent: between fork and exec the child only makes the call (the runtime's
    threads may hold locks that an import or a library lookup would wait for). None off Linux or without prctl;
    the explicit stop() still ends tegrastats on every path where the agent lives to call it.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig, sigterm = 1, int(signal.SIGTERM)  # PR_SET_PDEATHSIG from linux/prctl.h
    return lambda: prctl(pr_set_pdeathsig, sigterm)


class Tegrastats:
    """``tegrastats --interval 100`` as a child process; ``stop()`` returns its lines (see the module docstring)."""

    def __init__(self, exe, interval_ms=TEGRASTATS_INTERVAL_MS):
        self.out = tempfile.TemporaryFile()
        self.err = tempfile.TemporaryFile()
        self.note = None
        try:
            self.proc = subprocess.Popen([exe, "--interval", str(int(interval_ms))], stdin=subprocess.DEVNULL,
                                         stdout=self.out, stderr=self.err, preexec_fn=_die_with_agent())
        except OSError as exc:
            self.proc = None
            self.note = f"tegrastats did not start: {exc}"

    def stop(self) -> list[str]:
        if self.out.closed:  # stopped already (stop() is also registered with atexit as a backstop)
            return []
        if self.proc is not None and self.proc.poll() is None:
            for stop in (lambda: self.proc.send_signal(signal.SIGINT), self.proc.terminate, self.proc.kill):
                stop()
                try:
                    self.proc.wait(timeout=2)
                    break
                except subprocess.TimeoutExpired:
                    continue
        for handle in (self.out, self.err):
            handle.seek(0)
        text = self.out.read().decode(errors="replace")
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        if not lines and self.note is None:
            err = " ".join(self.err.read().decode(errors="replace").split())[-300:]
            self.note = (f"tegrastats printed nothing: {err}" if err else
                         f"no tegrastats sample: the runs took less than its {TEGRASTATS_INTERVAL_MS} ms interval; "
                         f"use --seconds for a longer run")
        self.out.close()
        self.err.close()
        return lines


# -- a minimal session over each runtime -------------------------------------
def _static(d) -> bool:
    """Whether a dim is a number fixed in the file (not None, a dim_param name, or TFLite's -1)."""
    return isinstance(d, (int, np.integer)) and int(d) >= 0


def parse_shapes(texts) -> dict:
    """``["images=1x3x640x640", "sr="]`` -> ``{"images": [1, 3, 640, 640], "sr": []}`` (the host checked them)."""
    shapes = {}
    for text in texts or ():
        name, sep, dims = text.rpartition("=")
        if not sep or not all(p.isdigit() for p in dims.split("x") if dims):
            raise AgentError(f"--input-shape {text!r}: write NAME=1x3x224x224")
        shapes[name] = [int(p) for p in dims.split("x")] if dims else []
    return shapes


def feed_shapes(names, specs, stated) -> list:
    """Each input's shape: stated (``--input-shape``), else the file's static one; a dim neither fixes is an
    AgentError naming every such dim (random inputs are never drawn at a guessed size)."""
    unknown = sorted(set(stated) - set(names))
    if unknown:
        raise AgentError(f"--input-shape names {', '.join(unknown)}, which the model has no input called; "
                         f"its inputs: {', '.join(names)}")
    shapes, left = [], []
    for name, (_, shape, _, _) in zip(names, specs):
        if name in stated:
            shapes.append(stated[name])
            continue
        if shape is None:
            left.append(f"{name} (rank unknown)")
            continue
        for i, d in enumerate(shape):
            if not _static(d):
                left.append(f"{name}[{i}]" + (f"={d}" if isinstance(d, str) else ""))
        shapes.append([int(d) if _static(d) else None for d in shape])
    if left:
        raise AgentError(f"the model has symbolic dims: {', '.join(left)}; give them with --input-shape "
                         f"NAME=1x3x224x224 or --inputs NPZ")
    return shapes


def _random_input(shape, dtype, rng):
    dtype = np.dtype(dtype)
    if len(shape) == 0:  # a scalar input (a sample rate, a step count): one value, still a 0-d array
        return np.asarray(_random_input([1], dtype, rng)[0])
    if np.issubdtype(dtype, np.floating):
        return rng.standard_normal(shape).astype(dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, shape).astype(np.bool_)
    if dtype in (np.int8, np.uint8):  # quantized inputs are fed raw: cover the whole range
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max + 1, shape, dtype=dtype)
    return rng.integers(0, 10, shape).astype(dtype)  # indices, token ids: keep them small


def random_feed(specs, rng, shapes=None) -> dict:
    """One seeded random array per input, at ``shapes`` (from feed_shapes; default: the specs' own, all static)."""
    shapes = shapes or [shape for _, shape, _, _ in specs]
    return {key: _random_input(shape, dtype, rng) for (key, _, dtype, _), shape in zip(specs, shapes)}


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
        got = list(array.shape[1:])
        if shape is not None and (len(got) != len(shape) or any(_static(d) and int(d) != g
                                                                for d, g in zip(shape, got))):
            want = [int(d) if _static(d) else "?" for d in shape]
            raise AgentError(f"{path}: arr_{i} holds samples of shape {got}, input {key} wants {want}")
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
        for n, feed in enumerate(feeds):
            feed[key] = array[n, ...]  # [n, ...], not iteration: a scalar input stays a 0-d array
    return feeds


def provider_list(provider, trt_cache=None, trt_fp16=False) -> list:
    """onnxruntime's ``providers=``: the requested one first, then the fallbacks for nodes it cannot take."""
    if provider == "cpu":
        return ["CPUExecutionProvider"]
    if provider == "cuda":
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    trt = {"trt_fp16_enable": bool(trt_fp16)}
    if trt_cache:
        trt.update(trt_engine_cache_enable=True, trt_engine_cache_path=trt_cache)
    # CUDA after TensorRT, as onnxruntime's TensorRT page advises: nodes TensorRT rejects stay on the GPU
    return [("TensorrtExecutionProvider", trt), "CUDAExecutionProvider", "CPUExecutionProvider"]


def check_providers(provider, used) -> None:
    """An AgentError when the session does not use the requested provider (onnxruntime fell back silently)."""
    name = _PROVIDERS[provider]
    if name not in used:
        raise AgentError(f"onnxruntime could not start {name} here (the session fell back to "
                         f"{', '.join(used) or 'nothing'}): check that the CUDA, cuDNN"
                         f"{' and TensorRT' if provider == 'tensorrt' else ''} libraries onnxruntime-gpu needs "
                         f"are installed and match its build, or use --provider cpu")


class OrtRunner:
    runtime = "ort"

    def __init__(self, path, threads, provider, profile_dir=None, trt_cache=None, trt_fp16=False):
        import onnxruntime as ort

        name = _PROVIDERS[provider]
        if name not in ort.get_available_providers():
            raise AgentError(f"onnxruntime here has no {name} (available: {', '.join(ort.get_available_providers())}); "
                             f"for cuda or tensorrt install onnxruntime-gpu (on a Jetson, the onnxruntime-gpu "
                             f"wheel built for its JetPack), or use --provider cpu")
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if profile_dir:
            opts.enable_profiling = True
            opts.profile_file_prefix = os.path.join(profile_dir, "ort")
        self.session = ort.InferenceSession(path, sess_options=opts,
                                            providers=provider_list(provider, trt_cache, trt_fp16))
        self.providers_used = list(self.session.get_providers())
        check_providers(provider, self.providers_used)
        self.provider = provider
        self.version = ort.__version__

    def provider_options(self) -> dict | None:
        """onnxruntime's effective options of the requested GPU provider (device_id, memory limit, ...)."""
        if self.provider == "cpu":
            return None
        try:
            return dict(self.session.get_provider_options().get(_PROVIDERS[self.provider], {})) or None
        except Exception:  # an older onnxruntime without get_provider_options: the options are a detail
            return None

    def specs(self):
        """(key, shape, dtype, (scale, zero_point) or None) per input, in the model's order; a symbolic dim is
        its dim_param name or None."""
        return [(i.name, i.shape, _ORT_DTYPES.get(i.type, np.float32), None) for i in self.session.get_inputs()]

    def names(self):
        return [i.name for i in self.session.get_inputs()]

    def resize(self, shapes):
        """onnxruntime takes any shape that fits at run time: nothing to do."""

    def make_run(self, feed, fixed=False):
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
        """As OrtRunner's, keyed by tensor index; a dynamic dim (shape_signature -1) is -1."""
        specs = []
        for d in self.interp.get_input_details():
            shape, signature = list(d["shape"]), d.get("shape_signature")
            if signature is not None and len(signature) == len(shape):
                shape = [int(s) for s in signature]
            specs.append((d["index"], shape, d["dtype"], d["quantization"] if d["quantization"][0] else None))
        return specs

    def names(self):
        return [d["name"] for d in self.interp.get_input_details()]

    def resize(self, shapes):
        """Give the inputs the shapes fed (only dynamic dims change) and allocate for them."""
        details = self.interp.get_input_details()
        if any(list(d["shape"]) != list(shape) for d, shape in zip(details, shapes)):
            for d, shape in zip(details, shapes):
                self.interp.resize_tensor_input(d["index"], list(shape), strict=True)
            self.interp.allocate_tensors()

    def make_run(self, feed, fixed=False):
        """A no-argument call running one inference on ``feed``.

        ``fixed``: the only feed, so its tensors are set once here and each call is ``invoke()`` alone,
        as TFLite's benchmark_model times it; feeds used in turn are copied in by each call.
        """
        interp = self.interp
        set_tensor, invoke = interp.set_tensor, interp.invoke
        items = list(feed.items())
        if fixed:
            for index, array in items:
                set_tensor(index, array)
            return invoke

        def run():
            for index, array in items:
                set_tensor(index, array)
            invoke()

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
def kernel_times(events) -> list:
    """(node name, op type, microseconds) of each kernel run in an onnxruntime profiler trace, in order.

    The trace is Chrome-trace JSON; each node's kernel is an event of category "Node" named
    "<node>_kernel_time" with its op type in args.op_name. (edgehad.quantize.speed reads traces too.)
    """
    suffix = "_kernel_time"
    return [(str(ev["name"])[: -len(suffix)], ev.get("args", {}).get("op_name", "?"), float(ev.get("dur", 0)))
            for ev in events if ev.get("cat") == "Node" and str(ev.get("name", "")).endswith(suffix)]


def ort_op_profile(path, threads, provider, feed, trt_cache=None, trt_fp16=False):
    """Aggregate onnxruntime's profiler kernel times by op type, per inference."""
    with tempfile.TemporaryDirectory(prefix="edgehad-prof-") as tmp:
        runner = OrtRunner(path, threads, provider, profile_dir=tmp, trt_cache=trt_cache, trt_fp16=trt_fp16)
        run = runner.make_run(feed)
        for _ in range(_PROFILE_RUNS):
            run()
        trace = runner.session.end_profiling()
        with open(trace) as f:
            events = json.load(f)
    by_op = {}
    for node, op, us in kernel_times(events):
        entry = by_op.setdefault(op, {"calls": 0, "us": 0.0, "nodes": set()})
        entry["calls"] += 1
        entry["us"] += us
        entry["nodes"].add(node)
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
    tegrastats_exe = find_tegrastats()
    if args.power and tegrastats_exe is None:
        raise AgentError(f"--power reads the power rails from tegrastats, which only NVIDIA Jetson boards have "
                         f"(none on PATH or at {_TEGRASTATS_FALLBACK}); leave out --power")

    import_runtime(runtime)
    baseline_mb = current_rss_mb()
    nvmap_before = meminfo_mb("NvMapMemUsed")
    trt_cache = trt_cache_dir() if args.provider == "tensorrt" else None

    start = time.perf_counter()
    try:
        runner = (OrtRunner(path, args.threads, args.provider, trt_cache=trt_cache, trt_fp16=args.trt_fp16)
                  if runtime == "ort" else TfliteRunner(path, args.threads))
    except AgentError:
        raise
    except Exception as exc:
        raise AgentError(f"{path}: {runtime} cannot load this model: {' '.join(str(exc).split())}") from None
    init_ms = (time.perf_counter() - start) * 1000

    specs, names = runner.specs(), runner.names()
    if args.inputs:
        feeds = file_feeds(args.inputs, specs)
    else:
        shapes = feed_shapes(names, specs, parse_shapes(args.input_shape))
        feeds = [random_feed(specs, np.random.default_rng(args.seed), shapes)]
    feed = feeds[0]
    runner.resize([np.shape(feed[key]) for key, _, _, _ in specs])
    calls = [runner.make_run(f, fixed=len(feeds) == 1) for f in feeds]
    n_calls = len(calls)
    clock = time.perf_counter

    progress(args, f"loaded in {init_ms:.0f} ms; warm-up {args.warmup} runs")
    tegra = None
    try:  # a try costs nothing until something raises: the timed calls are not slowed by it
        start = clock()
        calls[0]()
        first_ms = (clock() - start) * 1000
        tegra = Tegrastats(tegrastats_exe) if tegrastats_exe else None  # its start-up lands in the warm-up
        if tegra is not None:
            atexit.register(tegra.stop)  # stopped even if a run raises
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
    except Exception as exc:  # the runtime refused the inputs fed: say what they were and what it said
        fed = ", ".join(f"{name}: {np.asarray(feed[key]).dtype.name} "
                        f"{'x'.join(map(str, np.shape(feed[key]))) or 'scalar'}"
                        for name, (key, _, _, _) in zip(names, specs))
        said = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
        source = "the samples given" if args.inputs else f"random inputs (seed {args.seed})"
        raise RunFailed(f"{path}: {runtime} failed running it on {source} ({fed}): "
                        f"{said if len(said) <= 400 else said[:400] + '...'}") from None
    peak_mb = peak_rss_mb()  # before op profiling, which loads a second session
    tegrastats_lines = tegra.stop() if tegra is not None else None
    nvmap_after = meminfo_mb("NvMapMemUsed")
    gpu = gpu_facts(os.getpid()) if args.provider != "cpu" else {"gpu_memory_mb": None, "gpus": None}

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
        "trt_fp16": bool(args.trt_fp16),  # TensorRT built its engine with fp16 kernels allowed
        "inputs": {name: {"shape": list(np.shape(feed[key])), "dtype": np.asarray(feed[key]).dtype.name}
                   for name, (key, _, _, _) in zip(names, specs)},
        "seed": args.seed,
        "input_source": f"{n_calls} sample(s) from {os.path.basename(args.inputs)}" if args.inputs else "random",
        "ops": None,
        "machine": machine(),
        "providers_used": getattr(runner, "providers_used", None),
        "provider_options": runner.provider_options() if runtime == "ort" else None,
        "gpu_memory_mb": gpu["gpu_memory_mb"],
        "gpus": gpu["gpus"],
        "nvmap_mb": ({"before": nvmap_before, "after": nvmap_after}
                     if nvmap_before is not None or nvmap_after is not None else None),
        "tegrastats_lines": tegrastats_lines,
        "tegrastats_interval_ms": TEGRASTATS_INTERVAL_MS if tegra is not None else None,
        "tegrastats_note": tegra.note if tegra is not None else None,
        "power_requested": bool(args.power),
    }
    if args.provider == "tensorrt":
        result["init_note"] = "init_ms includes the TensorRT engine build (no engine cached from an earlier run)"
    if args.op_profile:
        progress(args, "op profile")
        if runtime == "ort":
            result["ops"] = ort_op_profile(path, args.threads, args.provider, feed, trt_cache, args.trt_fp16)
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
    p.add_argument("--trt-fp16", action="store_true")
    p.add_argument("--power", action="store_true")
    p.add_argument("--inputs", default=None)
    p.add_argument("--input-shape", action="append", default=[], metavar="NAME=1x3x640x640")
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
    if args.trt_fp16 and args.provider != "tensorrt":
        raise AgentError("--trt-fp16 sets TensorRT's fp16 mode; use it with --provider tensorrt")
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
    except RunFailed as exc:
        document, code = {"error": str(exc), "error_kind": "run"}, 1
    except Exception as exc:  # a bug here or in the runtime: still one JSON document
        document, code = {"error": f"internal error: {type(exc).__name__}: {' '.join(str(exc).split())}"}, 1
    sys.stdout.flush()
    with os.fdopen(json_fd, "w") as out:
        out.write(json.dumps(document) + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
