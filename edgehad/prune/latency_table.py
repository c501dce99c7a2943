"""The per-layer latency table of latency-aware pruning: each layer alone, at candidate widths, cached.

Latency does not follow MACs: onnxruntime's int8 kernels run a 72-channel
depthwise conv slower than an 80-channel one, and a thin layer at high
resolution costs more per MAC than a wide one at low resolution. So, as in
NetAdapt (Yang et al., ECCV 2018) and HALP (Shen et al., NeurIPS 2022), the
latency of a pruned model is predicted from a lookup table measured on the
target:

    T[layer](c_in, c_out) = latency of that layer alone with c_in input and c_out output channels

For each Conv1d / Conv2d / Linear a one-node ONNX model with the layer's exact
kernel, stride, padding, dilation and input shape is built at the asked widths,
in the recipe's scheme: fp32 ``Conv`` / ``Gemm``, or for int8 the QDQ form
edgehad's int8 export has (uint8 activations, per-channel int8 weights, which
onnxruntime fuses into ``QLinearConv`` / ``QGemm``: int8 kernels gain less from
narrowing than MACs say, so an int8 recipe is measured on int8 layers).
onnxruntime's profiler times the layer's kernel alone, the mean of the middle half
of ``RUNS`` runs after ``WARMUP`` (a median that resolves fractions of the
profiler's whole microseconds): the quantize of a lone layer's float input and its layout
reorders would not exist inside the model, so they are not counted (as in
edgehad.quantize.speed). The target is this machine at ``threads`` threads
(local): measuring needs the device, and convert measures where it runs.

The table is cached on disk, one JSON file per machine (CPU model, architecture,
onnxruntime version, threads) in ``$EDGEHAD_LATENCY_CACHE``, else
``$XDG_CACHE_HOME/edgehad/latency``, else ``~/.cache/edgehad/latency``; an entry
is keyed by format, scheme, layer shape and widths, so a second run with the
same shapes measures nothing.

Inside a search (``edgehad search --jobs K``) the conversion runs in a trial's
worker, beside other trials: each measurement holds the search's device lock
(``$EDGEHAD_DEVICE_LOCK``, edgehad.core.device_lock.measuring_lock), the one a
trial's timing holds, so no layer is timed while another trial times or
measures (both would read slower). Widths read from the cache take no lock.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

WARMUP, RUNS = 5, 25
# ops a lone layer's model has that the layer inside the model does not: the quantize of its float input,
# the dequantize of its output, and onnxruntime's NCHWc layout reorders around an fp32 conv
_NOT_THE_LAYER = ("QuantizeLinear", "DequantizeLinear", "ReorderInput", "ReorderOutput", "Transpose")
SCHEMES = ("fp32", "int8")


@dataclass(frozen=True)
class LayerSpec:
    """What decides a layer's latency besides its widths: kind, kernel geometry and input shape (full width)."""

    kind: str                 # "conv1d", "conv2d" or "linear"
    in_shape: tuple           # the input's shape at full width, batch first; channels at dim 1 (conv) or -1 (linear)
    cin: int
    cout: int
    kernel: tuple = ()
    stride: tuple = ()
    padding: tuple = ()
    dilation: tuple = ()
    groups: int = 1
    bias: bool = True

    @property
    def depthwise(self) -> bool:
        return self.kind != "linear" and self.groups == self.cin and self.groups > 1

    def widths_fit(self, cin: int, cout: int) -> bool:
        """A grouped conv (not depthwise) keeps its group count: both widths must split into it."""
        if self.kind == "linear" or self.groups == 1 or self.depthwise:
            return cin >= 1 and cout >= 1
        return cin % self.groups == 0 and cout % self.groups == 0

    def key(self, cin: int, cout: int) -> str:
        shape = "x".join(map(str, self.in_shape))
        geometry = "" if self.kind == "linear" else (
            f"k{_t(self.kernel)}s{_t(self.stride)}p{_t(self.padding)}d{_t(self.dilation)}"
            f"{'dw' if self.depthwise else f'g{self.groups}'}")
        return f"{self.kind}:{shape}:{geometry}:{'b' if self.bias else 'nb'}:{cin}->{cout}"


def _t(values) -> str:
    return ",".join(map(str, values))


def layer_specs(model, example_inputs) -> dict:
    """``{module name: LayerSpec}`` of every Conv1d / Conv2d / Linear the forward pass runs, at its first call.

    A conv with string padding ("same") is left out: the one-node model states pads as numbers.
    """
    import torch
    from torch import nn

    specs, hooks = {}, []

    def hook(name):
        def record(module, args, out):
            if name in specs or not args or not isinstance(args[0], torch.Tensor):
                return
            shape = tuple(args[0].shape)
            if isinstance(module, nn.Linear):
                specs[name] = LayerSpec("linear", shape, module.in_features, module.out_features,
                                        bias=module.bias is not None)
            elif not isinstance(module.padding, str):
                specs[name] = LayerSpec(f"conv{len(module.kernel_size)}d", shape, module.in_channels,
                                        module.out_channels, tuple(module.kernel_size), tuple(module.stride),
                                        tuple(module.padding), tuple(module.dilation), module.groups,
                                        module.bias is not None)
        return record

    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            hooks.append(module.register_forward_hook(hook(name)))
    try:
        with torch.no_grad():
            model.eval()(*example_inputs)
    finally:
        for h in hooks:
            h.remove()
    return specs


def one_layer_onnx(spec: LayerSpec, cin: int, cout: int, scheme: str) -> tuple[bytes, dict]:
    """The serialized one-node ONNX model of ``spec`` at widths ``cin -> cout`` in ``scheme``, and its feed."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if spec.kind == "linear":
        in_shape = (*spec.in_shape[:-1], cin)
        weight = rng.standard_normal((cout, cin)).astype(np.float32) * 0.1
        axis = 0
    else:
        in_shape = (spec.in_shape[0], cin, *spec.in_shape[2:])
        groups = cin if spec.depthwise else spec.groups
        weight = rng.standard_normal((cout, cin // groups, *spec.kernel)).astype(np.float32) * 0.1
        axis = 0
    bias = np.zeros(cout, np.float32)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)

    def layer(inp: str, w: str, b: str | None, out: str):
        if spec.kind == "linear":
            if len(in_shape) == 2:
                return [helper.make_node("Gemm", [inp, w] + ([b] if b else []), [out], transB=1)]
            # more than 2-D: MatMul on the transposed weight, as torch.onnx writes a Linear on [N, T, C]
            return [helper.make_node("Transpose", [w], [w + "_t"], perm=[1, 0]),
                    helper.make_node("MatMul", [inp, w + "_t"], [out + "_mm" if b else out])] + (
                [helper.make_node("Add", [out + "_mm", b], [out])] if b else [])
        pads = list(spec.padding) * 2
        return [helper.make_node("Conv", [inp, w] + ([b] if b else []), [out], strides=list(spec.stride), pads=pads,
                                 dilations=list(spec.dilation), group=cin if spec.depthwise else spec.groups,
                                 kernel_shape=list(spec.kernel))]

    def model(nodes, inits) -> bytes:
        graph = helper.make_graph(nodes, "one_layer", [x], [y], inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString()

    feed = {"x": rng.standard_normal(in_shape).astype(np.float32)}
    b = "b" if spec.bias else None
    if scheme == "fp32":
        inits = [numpy_helper.from_array(weight, "w")] + ([numpy_helper.from_array(bias, "b")] if b else [])
        return model(layer("x", "w", b, "y"), inits), feed
    if spec.kind == "linear" and len(in_shape) > 2:
        weight_t = np.ascontiguousarray(weight.T)  # per output channel: axis 1 of the [in, out] MatMul weight
        w_scale = (np.abs(weight_t).max(axis=0) / 127).astype(np.float32)
        w_int8 = np.round(weight_t / w_scale).astype(np.int8)
        axis = 1
    else:
        w_scale = (np.abs(weight).reshape(cout, -1).max(axis=1) / 127).astype(np.float32)
        w_int8 = np.round(weight / w_scale.reshape(-1, *[1] * (weight.ndim - 1))).astype(np.int8)
    a_scale, a_zero = np.array(0.05, np.float32), np.array(128, np.uint8)
    inits = [numpy_helper.from_array(w_int8, "wq"), numpy_helper.from_array(w_scale, "ws"),
             numpy_helper.from_array(np.zeros(cout, np.int8), "wz"), numpy_helper.from_array(a_scale, "as"),
             numpy_helper.from_array(a_zero, "az")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "as", "az"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "as", "az"], ["xd"]),
             helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], axis=axis)]
    if b:
        inits += [numpy_helper.from_array(np.zeros(cout, np.int32), "bq"),
                  numpy_helper.from_array((a_scale * w_scale).astype(np.float32), "bs"),
                  numpy_helper.from_array(np.zeros(cout, np.int32), "bz")]
        nodes.append(helper.make_node("DequantizeLinear", ["bq", "bs", "bz"], ["bd"], axis=0))
    if spec.kind == "linear" and len(in_shape) > 2:
        nodes += [helper.make_node("MatMul", ["xd", "wd"], ["c" if not b else "mm"])]
        nodes += [helper.make_node("Add", ["mm", "bd"], ["c"])] if b else []
    else:
        nodes += layer("xd", "wd", "bd" if b else None, "c")
    nodes += [helper.make_node("QuantizeLinear", ["c", "as", "az"], ["cq"]),
              helper.make_node("DequantizeLinear", ["cq", "as", "az"], ["y"])]
    return model(nodes, inits), feed


def layer_us(model_bytes: bytes, feed: dict, threads: int, warmup: int = WARMUP, runs: int = RUNS) -> float:
    """Median microseconds per run of the layer's own kernels (onnxruntime's profiler), at ``threads`` threads."""
    import onnxruntime as ort

    from edgehad.profiling.agent import kernel_times

    with tempfile.TemporaryDirectory(prefix="edgehad-layer-") as tmp:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        opts.log_severity_level = 3
        opts.enable_profiling = True
        opts.profile_file_prefix = os.path.join(tmp, "layer")
        session = ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
        for _ in range(warmup + runs):
            session.run(None, feed)
        with open(session.end_profiling()) as f:
            events = json.load(f)
    kernels = [us for _, op, us in kernel_times(events) if op not in _NOT_THE_LAYER]
    per_run = len(kernels) // (warmup + runs)
    if per_run == 0:
        return 0.0
    totals = sorted(sum(kernels[i * per_run:(i + 1) * per_run]) for i in range(warmup, warmup + runs))
    # the profiler counts whole microseconds: the mean of the middle half keeps the median's robustness to a
    # preempted run and resolves a small layer's fraction of a microsecond
    middle = totals[len(totals) // 4: len(totals) - len(totals) // 4]
    return float(statistics.fmean(middle))


def machine(threads: int) -> dict:
    """What a latency measured here depends on: CPU model and architecture, onnxruntime's version, threads."""
    import onnxruntime as ort

    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith(("model name", "Model"))), cpu)
    except OSError:
        pass
    return {"target": "local", "cpu": cpu or "unknown", "arch": platform.machine(),
            "runtime": f"onnxruntime {ort.__version__}", "threads": threads}


def cache_dir() -> Path:
    """``$EDGEHAD_LATENCY_CACHE``, else ``$XDG_CACHE_HOME/edgehad/latency``, else ``~/.cache/edgehad/latency``."""
    override = os.environ.get("EDGEHAD_LATENCY_CACHE")
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "edgehad" / "latency"


class LatencyTable:
    """``table.us(spec, cin, cout)``: a layer's latency on this machine, measured once, then read from the cache.

    ``measured`` counts the entries this table measured (0 on a second run with the same shapes);
    ``save()`` writes what was measured (merged with what another process wrote meanwhile).
    """

    def __init__(self, fmt: str = "onnx", scheme: str = "fp32", threads: int = 1, folder: str | Path | None = None,
                 progress=None):
        from edgehad.core.errors import UserInputError

        if fmt != "onnx":
            raise UserInputError(f"a per-layer latency table is measured in onnxruntime, not {fmt!r}")
        if scheme not in SCHEMES:
            raise UserInputError(f"a per-layer latency table is measured in {' or '.join(SCHEMES)}, not {scheme!r}")
        self.fmt, self.scheme, self.threads = fmt, scheme, threads
        self.machine = machine(threads)
        digest = hashlib.sha256(json.dumps(self.machine, sort_keys=True).encode()).hexdigest()[:12]
        self.path = Path(folder).expanduser() if folder else cache_dir()
        self.path = self.path / f"{self.machine['target']}-{self.machine['arch']}-{digest}.json"
        self.entries = self._read()
        self.measured = 0
        self.progress = progress or (lambda msg: None)
        self._new: dict[str, float] = {}

    def _read(self) -> dict:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return {k: float(v) for k, v in data.get("entries", {}).items()} if isinstance(data, dict) else {}

    def key(self, spec: LayerSpec, cin: int, cout: int) -> str:
        return f"{self.fmt}:{self.scheme}:{spec.key(cin, cout)}"

    def us(self, spec: LayerSpec, cin: int, cout: int) -> float:
        key = self.key(spec, cin, cout)
        if key not in self.entries:
            from edgehad.core.device_lock import measuring_lock

            model, feed = one_layer_onnx(spec, cin, cout, self.scheme)
            with measuring_lock():  # inside a search worker: the device is the search's, one measurement at a time
                us = layer_us(model, feed, self.threads)
            self.entries[key] = self._new[key] = round(us, 3)
            self.measured += 1
            if self.measured % 50 == 0:
                self.progress(f"prune: latency table: {self.measured} layer widths measured")
                self.save()  # an interrupted run keeps what it measured
        return self.entries[key]

    def save(self) -> None:
        if not self._new:
            return
        from edgehad.core.files import write_text

        merged = {**self._read(), **self._new}
        write_text(self.path, json.dumps({"machine": self.machine, "entries": dict(sorted(merged.items()))},
                                         indent=0) + "\n")
        self._new = {}
