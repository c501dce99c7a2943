"""Measure one .onnx / .tflite file and print one JSON document on stdout.

This file and edgehad's runtime.py are all it takes (stdlib + numpy + one
runtime, imported lazily): the two are copied to devices where edgehad is not
installed, runtime.py as ``edgehad_runtime.py`` beside this file, and run there
with the device's python. Inside the package the agent loads ``../runtime.py``
by its path, so edgehad itself (and torch) is never imported. Loading the file,
reading its inputs, filling symbolic dims, quantizing float samples for an int8
input and binding the timed call are ``edgehad_runtime.Session``'s (one set of
rules for the profiler, bundles and ``edgehad.runtime``); timing, memory, GPU
providers and Jetson counters are this file's.

    python agent.py MODEL [--runtime auto|ort|tflite] [--threads N] [--warmup N]
                          [--runs N | --seconds S] [--op-profile] [--seed N]
                          [--provider cpu|cuda|tensorrt] [--trt-fp16] [--power]
                          [--input-shape NAME=1x3x640x640 ...] [--inputs NPZ] [--progress]

Method: create the session (``init_ms``), run once (``first_ms``), run
``--warmup`` untimed inferences, then ``--runs`` timed ones (or as many as fit
in ``--seconds``), timing only the runtime's run call with ``time.perf_counter``
on input arrays allocated once beforehand: seeded random ones of each input's
dtype, or the samples of ``--inputs`` (an .npz with one array per input, named
for it or ``arr_0``, ``arr_1``, ... in the model's input order, each holding N
samples along a first axis; float samples for an int8 input are quantized with
the input's own scale and zero point), used in turn. A symbolic input dim (ONNX ``dim_param``, TFLite
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
import importlib.util
import json
import math
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

_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
              "tensorrt": "TensorrtExecutionProvider"}
_PROFILE_RUNS = 20  # inferences in the separate op-profiling session
NOTE_EVERY_S = 0.5  # --progress: the shortest time between two "timed N/M" lines
TEGRASTATS_INTERVAL_MS = 100
_TEGRASTATS_FALLBACK = "/usr/bin/tegrastats"  # where JetPack puts it: found even when PATH is empty or minimal


class AgentError(Exception):
    """Something the user must fix; printed as {"error": ...}, exit 2."""


class RunFailed(Exception):
    """The runtime raised while running the model on the inputs fed; printed with "error_kind": "run", exit 1."""


def load_runtime():
    """edgehad's runtime.py as a module: ``edgehad_runtime.py`` beside this file where both were copied to a
    device, else ``../runtime.py`` inside the edgehad package (loaded by path: the package is not imported)."""
    here = os.path.dirname(os.path.abspath(__file__))
    for path in (os.path.join(here, "edgehad_runtime.py"), os.path.join(os.path.dirname(here), "runtime.py")):
        if os.path.isfile(path):
            spec = importlib.util.spec_from_file_location("edgehad_runtime", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    raise AgentError(f"edgehad_runtime.py is missing beside {os.path.abspath(__file__)}: copy edgehad's runtime.py "
                     f"there under that name")


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


# -- the inputs fed ------------------------------------------------------------
def inputs_error(exc) -> AgentError:
    """The runtime's InputsError in this program's words: its options are flags here."""
    text = str(exc).replace("`input_shape`", "--input-shape").replace("`inputs`", "--inputs")
    return AgentError(text)


def random_array(shape, dtype, rng):
    """Seeded values of ``dtype``: normal floats, the whole range of an 8-bit (quantized, fed raw) input,
    small integers (indices, token ids) otherwise."""
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise AgentError(f"an input of type {dtype} cannot be drawn at random here; give the arrays with "
                         f"--inputs NPZ") from None
    if len(shape) == 0:  # a scalar input (a sample rate, a step count): one value, still a 0-d array
        return np.asarray(random_array([1], dtype, rng)[0])
    if np.issubdtype(dtype, np.floating):
        return rng.standard_normal(shape).astype(dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, shape).astype(np.bool_)
    if dtype in (np.int8, np.uint8):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max + 1, shape, dtype=dtype)
    return rng.integers(0, 10, shape).astype(dtype)


def random_feed(rt, session, seed) -> dict:
    """One seeded random array per input of ``session`` at its shapes (static, or stated with ``--input-shape``);
    an input dim still symbolic is an AgentError naming every such dim: no size is guessed."""
    try:
        shapes, _ = rt.fit_inputs(session.inputs, session.path)
    except rt.InputsError as exc:
        raise inputs_error(exc) from None
    rng = np.random.default_rng(seed)
    return {spec["name"]: random_array(shape, spec["dtype"], rng) for spec, shape in zip(session.inputs, shapes)}


def sample_feeds(rt, session, path) -> list[dict]:
    """One feed per sample of the ``--inputs`` archive: an array per input, named for it (any name it answers
    to) or ``arr_i`` for the i-th input, holding the same number of samples along its first axis."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except Exception as exc:  # not a zip, an object array refused, truncated: all mean "not an .npz of samples"
        raise AgentError(f"{path}: not a readable .npz of input samples ({' '.join(str(exc).split())})") from None
    names = {str(n) for spec in session.inputs for n in (spec["name"], *spec.get("aliases", ()))}
    for key in list(arrays):
        position = key[4:] if key.startswith("arr_") and key not in names else ""
        if position.isdigit() and int(position) < len(session.inputs):
            arrays[session.inputs[int(position)]["name"]] = arrays.pop(key)
    counts = {a.shape[0] if a.ndim else 0 for a in arrays.values()}
    if len(counts) != 1 or 0 in counts:
        raise AgentError(f"{path}: every array needs the same number (>0) of samples along its first axis, got "
                         f"{sorted(counts)}")
    feeds = [{key: a[n, ...] for key, a in arrays.items()} for n in range(counts.pop())]  # a[n, ...]: 0-d stays 0-d
    try:
        rt.fit_inputs(session.inputs, session.path, None, feeds[0], path)  # each sample checked as one feed
    except rt.InputsError as exc:
        raise inputs_error(exc) from None
    return feeds


def shown_name(spec) -> str:
    """An input's name as edgehad's inspect shows it: a TFLite input by its tensor, not its signature name."""
    return str((spec.get("aliases") or [spec["name"]])[0])


# -- onnxruntime's execution providers ----------------------------------------
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


def open_session(rt, args, runtime, trt_cache=None, profile_prefix=None):
    """The file as an ``edgehad_runtime.Session`` at the stated shapes; AgentError for what the user must fix."""
    path, providers = args.model, None
    if runtime == "ort":
        ort, _ = rt.import_backend("ort")
        name = _PROVIDERS[args.provider]
        if name not in ort.get_available_providers():
            raise AgentError(f"onnxruntime here has no {name} (available: {', '.join(ort.get_available_providers())}); "
                             f"for cuda or tensorrt install onnxruntime-gpu (on a Jetson, the onnxruntime-gpu "
                             f"wheel built for its JetPack), or use --provider cpu")
        providers = provider_list(args.provider, trt_cache, args.trt_fp16)
    try:
        session = rt.Session(path, args.threads, runtime, providers, input_shape=args.input_shape or None,
                             profile_prefix=profile_prefix)
    except rt.InputsError as exc:
        raise inputs_error(exc) from None
    except Exception as exc:
        raise AgentError(f"{path}: {runtime} cannot load this model: {' '.join(str(exc).split())}") from None
    if runtime == "ort":
        check_providers(args.provider, session.backend.get_providers())
    return session


def provider_options(session, provider) -> dict | None:
    """onnxruntime's effective options of the requested GPU provider (device_id, memory limit, ...)."""
    if provider == "cpu":
        return None
    try:
        return dict(session.backend.get_provider_options().get(_PROVIDERS[provider], {})) or None
    except Exception:  # an older onnxruntime without get_provider_options: the options are a detail
        return None


def tflite_op_counts(session) -> list:
    counts = {}
    for op in session.backend._get_ops_details():  # the Python interpreter's only listing of its ops
        counts[op["op_name"]] = counts.get(op["op_name"], 0) + 1
    return [{"op": op, "calls": n, "ms": None, "share": None}
            for op, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


# -- op profiling -------------------------------------------------------------
def kernel_times(events) -> list:
    """(node name, op type, microseconds) of each kernel run in an onnxruntime profiler trace, in order.

    The trace is Chrome-trace JSON; each node's kernel is an event of category "Node" named
    "<node>_kernel_time" with its op type in args.op_name. (edgehad.quantize.speed reads traces too.)
    """
    suffix = "_kernel_time"
    return [(str(ev["name"])[: -len(suffix)], ev.get("args", {}).get("op_name", "?"), float(ev.get("dur", 0)))
            for ev in events if ev.get("cat") == "Node" and str(ev.get("name", "")).endswith(suffix)]


def ort_op_profile(rt, args, feed, trt_cache=None):
    """Aggregate onnxruntime's profiler kernel times by op type, per inference, on a second session."""
    with tempfile.TemporaryDirectory(prefix="edgehad-prof-") as tmp:
        session = open_session(rt, args, "ort", trt_cache, profile_prefix=os.path.join(tmp, "ort"))
        run = session.bind(feed)
        for _ in range(_PROFILE_RUNS):
            run()
        trace = session.backend.end_profiling()
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

    rt = load_runtime()
    try:
        rt.import_backend(runtime)
    except ImportError as exc:
        raise AgentError(str(exc)) from None
    baseline_mb = current_rss_mb()
    nvmap_before = meminfo_mb("NvMapMemUsed")
    trt_cache = trt_cache_dir() if args.provider == "tensorrt" else None

    start = time.perf_counter()
    session = open_session(rt, args, runtime, trt_cache)
    init_ms = (time.perf_counter() - start) * 1000

    feeds = sample_feeds(rt, session, args.inputs) if args.inputs else [random_feed(rt, session, args.seed)]
    feed = feeds[0]
    source = "the samples given" if args.inputs else f"random inputs (seed {args.seed})"
    try:
        calls = [session.bind(f, fixed=len(feeds) == 1, source=source) for f in feeds]
    except rt.RunError as exc:
        raise RunFailed(str(exc)) from None
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
        # "timed 40/100 runs" (or "timed 1.5/3 s") lines for the caller's bar, at most every NOTE_EVERY_S and
        # between timed runs: the clock read that decides it is one the loop makes anyway
        next_note = clock() + NOTE_EVERY_S if args.progress else math.inf
        times = []
        i = 0
        if args.seconds is not None:
            budget_start = clock()
            budget_end = budget_start + args.seconds
            while not times or clock() < budget_end:
                run = calls[i % n_calls]
                start = clock()
                run()
                end = clock()
                times.append(end - start)
                i += 1
                if end >= next_note:
                    progress(args, f"timed {min(end - budget_start, args.seconds):.1f}/{args.seconds:g} s")
                    next_note = clock() + NOTE_EVERY_S
        else:
            for i in range(args.runs):
                run = calls[i % n_calls]
                start = clock()
                run()
                end = clock()
                times.append(end - start)
                if end >= next_note:
                    progress(args, f"timed {i + 1}/{args.runs} runs")
                    next_note = clock() + NOTE_EVERY_S
    except Exception as exc:  # the runtime refused the inputs fed: say what they were and what it said
        raise RunFailed(str(session.run_error(exc, feed, source))) from None
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
        "runtime_version": session.version,
        "provider": args.provider,
        "trt_fp16": bool(args.trt_fp16),  # TensorRT built its engine with fp16 kernels allowed
        "inputs": {shown_name(spec): {"shape": list(np.shape(a)), "dtype": a.dtype.name}
                   for spec, a in zip(session.inputs, session.prepare(feed))},
        "seed": args.seed,
        "input_source": f"{n_calls} sample(s) from {os.path.basename(args.inputs)}" if args.inputs else "random",
        "ops": None,
        "machine": machine(),
        "providers_used": list(session.backend.get_providers()) if runtime == "ort" else None,
        "provider_options": provider_options(session, args.provider) if runtime == "ort" else None,
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
            result["ops"] = ort_op_profile(rt, args, feed, trt_cache)
            result["ops_note"] = (f"onnxruntime profiler, kernel time by op type, mean per inference over "
                                  f"{_PROFILE_RUNS} runs of a separate session after the timed runs")
        else:
            result["ops"] = tflite_op_counts(session)
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
