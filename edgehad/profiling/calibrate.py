"""Measured peaks of this machine: ``edgehad targets calibrate local``.

The ``local`` target's peaks are otherwise estimated from the ISA and clock (edgehad.machine);
this measures what the runtimes reach here, on every usable CPU, and keeps it in a file of the
user's (``$XDG_CONFIG_HOME/edgehad/local-calibration.json``, else
``~/.config/edgehad/local-calibration.json``), written atomically. The file records which machine
it measured (edgehad.machine.Machine.fingerprint); on any other machine it is not used.

Each figure is the median of ``RUNS`` timed runs after ``WARMUP`` untimed ones, timed with
``time.perf_counter`` (a run of a small size repeats the operation to last ``MIN_TIMED_S``);
``n`` is the matrix side (``size``, default ``DEFAULT_SIZE``):

- fp32: ``torch.mm`` of two n x n float32 matrices (torch's CPU GEMM), ``2 n^3`` ops a run;
- int8: onnxruntime ``MatMulInteger`` of uint8 [n, n] activations and constant int8 [n, n] weights
  into int32 (MLAS's u8s8 GEMM, the kernel onnxruntime runs for quantized MatMul / Conv, with its
  VNNI, AMX or dot-product code where the CPU has them), ``2 n^3`` ops a run;
- memory bandwidth: ``Tensor.copy_`` of an n x n x 64 float32 tensor (256 n^2 bytes, 256 MiB at
  n = 1024, at most an eighth of the RAM), counted as read + write, ``2 x`` its bytes: STREAM's
  "copy" (McCalpin, "Memory bandwidth and machine balance", IEEE TCCA newsletter, 1995). A buffer
  that fits in the last-level cache (a small ``size``) measures the cache, not main memory.

At the default size this takes a few seconds, most of it importing torch and onnxruntime.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import statistics
import time
from pathlib import Path

from edgehad.core.errors import UserInputError

FILE_NAME = "local-calibration.json"
DEFAULT_SIZE = 1024
MIN_SIZE, MAX_SIZE = 16, 16384
WARMUP, RUNS = 2, 5
MIN_TIMED_S = 0.02  # a timed run shorter than this is mostly timer and thread wake-up: repeat the op within it

# What a calibration file holds; checked on every read (edgehad.core.validation), so a hand-edited or
# truncated file is an error that names it rather than a roofline built on nonsense.
RECORD_SCHEMA = {
    "type": "object",
    "required": ["machine", "date", "threads", "size", "runs", "fp32_gops", "int8_gops", "memory_bandwidth_gbs"],
    "properties": {
        "machine": {"type": "object"},
        "date": {"type": "string", "minLength": 1},
        "threads": {"type": "integer", "minimum": 1},
        "size": {"type": "integer", "minimum": MIN_SIZE},
        "runs": {"type": "integer", "minimum": 1},
        "fp32_gops": {"type": "number", "exclusiveMinimum": 0},
        "int8_gops": {"type": "number", "exclusiveMinimum": 0},
        "memory_bandwidth_gbs": {"type": "number", "exclusiveMinimum": 0},
        "method": {"type": "string"},
    },
}


def calibration_file() -> Path:
    """$XDG_CONFIG_HOME/edgehad/local-calibration.json, else ~/.config/edgehad/local-calibration.json."""
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(config) / "edgehad" / FILE_NAME


def load_calibration(fingerprint: dict) -> tuple[dict | None, str]:
    """(the stored record, "") when it measured the machine ``fingerprint`` describes; else (None, why not).

    No file: (None, ""). A file that is not a calibration edgehad wrote: UserInputError naming it.
    """
    from edgehad.core.validation import check

    path = calibration_file()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, ""
    except (OSError, UnicodeDecodeError) as e:
        raise UserInputError(f"{path} cannot be read ({e}): delete it or run `edgehad targets calibrate local` "
                             f"again") from None
    try:
        record = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserInputError(f"{path} is not valid JSON ({e}): delete it or run `edgehad targets calibrate local` "
                             f"again") from None
    check(record, RECORD_SCHEMA, str(path))
    if record["machine"] != fingerprint:
        seen = record["machine"]
        return None, (f"the calibration in {path} measured another machine ({seen.get('model')}, "
                      f"{seen.get('cores')} cores) and is not used here: run `edgehad targets calibrate local`")
    return record, ""


def _median_seconds(run, warmup: int = WARMUP, runs: int = RUNS) -> float:
    """Median seconds of one ``run()``; a timed run repeats it until it lasts MIN_TIMED_S (small sizes)."""
    for _ in range(warmup):
        start = time.perf_counter()
        run()
        once = time.perf_counter() - start
    repeat = max(1, min(10_000, int(MIN_TIMED_S / max(once, 1e-9)) + 1)) if once < MIN_TIMED_S else 1
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(repeat):
            run()
        times.append((time.perf_counter() - start) / repeat)
    return statistics.median(times)


def _figure(value: float) -> float:
    """4 significant digits: enough for a roof, and never rounded down to 0."""
    return float(f"{value:.4g}")


def _int8_gops(n: int, threads: int) -> float:
    """onnxruntime MatMulInteger, uint8 x int8 -> int32, constant weights: 2 n^3 / median seconds / 1e9."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = numpy_helper.from_array(rng.integers(-128, 128, (n, n), dtype=np.int8), "b")
    graph = helper.make_graph([helper.make_node("MatMulInteger", ["a", "b"], ["y"])], "calibrate_int8",
                              [helper.make_tensor_value_info("a", TensorProto.UINT8, [n, n])],
                              [helper.make_tensor_value_info("y", TensorProto.INT32, [n, n])], [weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feed = {"a": rng.integers(0, 256, (n, n), dtype=np.uint8)}
    seconds = _median_seconds(lambda: session.run(None, feed))
    del session  # its thread pool ends here, before torch's runs start
    return 2 * n**3 / seconds / 1e9


def _torch_figures(n: int, threads: int, ram_kb: int | None) -> tuple[float, float]:
    """(fp32 Gop/s of torch.mm, memory GB/s of Tensor.copy_), both on ``threads`` threads."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        gen = torch.Generator().manual_seed(0)
        a, b = torch.rand(n, n, generator=gen), torch.rand(n, n, generator=gen)
        out = torch.empty(n, n)
        fp32 = 2 * n**3 / _median_seconds(lambda: torch.mm(a, b, out=out)) / 1e9
        del a, b, out
        elements = 64 * n * n
        if ram_kb:
            elements = min(elements, ram_kb * 1024 // 8 // 4)
        src, dst = torch.ones(elements), torch.empty(elements)
        moved = 2 * src.numel() * src.element_size()  # read + write
        bandwidth = moved / _median_seconds(lambda: dst.copy_(src)) / 1e9
    finally:
        torch.set_num_threads(before)
    return fp32, bandwidth


def calibrate(size: int | None = None, progress=None) -> dict:
    """Measure this machine (see the module docstring), store the result, and return it with ``file``."""
    from edgehad.core.files import check_writable, write_text
    from edgehad.core.validation import check_setting
    from edgehad.machine import this_machine, usable_cpus

    n = DEFAULT_SIZE if size is None else size
    check_setting("`size`", n, {"type": "integer", "minimum": MIN_SIZE, "maximum": MAX_SIZE},
                  "the side of the square matrices; smaller is quicker and less exact")
    n = int(n)
    path = check_writable(calibration_file(), "calibration file", folder=False)
    say = progress or (lambda message: None)
    machine = this_machine()
    threads = len(usable_cpus())
    say(f"calibrate: int8 onnxruntime MatMulInteger {n}x{n}, {threads} thread(s)")
    int8 = _int8_gops(n, threads)
    say(f"calibrate: fp32 torch.mm {n}x{n} and memory copy, {threads} thread(s)")
    fp32, bandwidth = _torch_figures(n, threads, machine.ram_kb)
    record = {
        "machine": machine.fingerprint(),
        "date": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "threads": threads, "size": n, "runs": RUNS,
        "fp32_gops": _figure(fp32), "int8_gops": _figure(int8), "memory_bandwidth_gbs": _figure(bandwidth),
        "method": (f"median of {RUNS} runs after {WARMUP} warm-up, {threads} thread(s): fp32 torch.mm {n}x{n}, "
                   f"int8 onnxruntime MatMulInteger {n}x{n} (uint8 x int8), memory Tensor.copy_ (read + write)"),
    }
    write_text(path, json.dumps(record, indent=2) + "\n")
    return {**record, "file": str(path)}
