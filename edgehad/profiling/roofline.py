"""How close a measured latency comes to what the device could do at best: the roofline model.

Roofline (Williams, Waterman & Patterson, "Roofline: an insightful visual
performance model for multicore architectures", CACM 52(4), 2009): a kernel
that does ``W`` operations and moves ``Q`` bytes between the processor and
main memory runs no faster than both its compute roof and its memory roof::

    time >= max(W / P, Q / B)        P: peak operations per second, B: memory bandwidth
    attainable ops/s = min(P, I * B) with I = W / Q, the arithmetic intensity (ops per byte)

Applied here op by op, since a model's layers run one after another:

- ``W = 2 * MACs`` (one multiply-accumulate is two ops, the convention of
  edgehad.cost and of the targets' ``peak`` figures); MACs per op come from
  edgehad.inspection's per-node formulas, so they sum to ``inspect``'s ``macs``.
- ``Q`` = weights read + input activations read + outputs written, each
  tensor's elements times its element size (fp32 4 bytes, int8 1 byte, ...),
  as if every tensor came from main memory once.
- compute_ms = 2 * MACs / (peak_gops * 1e9) * 1e3, memory_ms = bytes / (bandwidth_gbs * 1e9) * 1e3,
  an op's bound_ms = max(compute_ms, memory_ms); the model's ``bound_ms`` is the
  sum over ops: a lower bound on the latency, and
  ``percent_of_roofline = 100 * bound_ms / measured_ms``.

What the runtime does at load time is modelled the way onnxruntime and LiteRT
do it, so the bound stays a lower bound: constant subgraphs are folded; QDQ
pairs are fused into the integer op they wrap (so a QDQ ONNX op reads and
writes int8, not the float tensors the graph spells out); an activation
right after a Conv / Gemm is fused into it (ORT's FusedConv; TFLite stores it
fused already); reshapes and other view ops move no data. Where the model's
tensors stay in cache between ops the real memory traffic is lower than ``Q``,
so small models can run faster than this bound: above 100% means "cache-resident",
not a measuring error.

Peaks: the target's int8 peak if most of the model's MACs run on int8 inputs,
else its fp32 peak; a CPU peak (all cores) is scaled by threads / cores. With a
GPU execution provider (``provider`` "cuda" / "tensorrt") the target's
``[gpu]`` peaks are used instead (its fp16 peak for a float model that TensorRT
runs in fp16, ``fp16=True``). No peak for that precision: no roofline (None).
``peak_source`` says where the peak came from: the ``local`` target's is
"estimate" (from the ISA and clock) or "measured" (``edgehad targets calibrate
local``); None is the target file's own figure. A ``local`` target whose peak
is unknown (no readable clock) raises UserInputError saying how to measure it.

Where the target has no memory bandwidth (``local`` before it is calibrated),
only the compute roof is known: each op's bound is its compute time, still a
lower bound (``max(a, b) >= a``), and ``bandwidth_gbs``, ``ridge_intensity``,
``memory_ms``, ``bound`` and the ops' ``limited_by`` are None.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

from edgehad.inspection.report import numel

GPU_PROVIDERS = ("cuda", "tensorrt", "cudaexecutionprovider", "tensorrtexecutionprovider")
CITATION = "Williams, Waterman & Patterson, CACM 52(4), 2009"

# ONNX ops that move no data in onnxruntime (their output aliases the input) or read only metadata.
_ONNX_VIEWS = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Shape", "Size"}
_ONNX_QDQ = {"QuantizeLinear", "DequantizeLinear"}
_ONNX_CONTROL_FLOW = {"If", "Loop", "Scan"}  # their bodies' nodes are costed themselves
# Activations onnxruntime fuses into the Conv / Gemm before them (FusedConv, GemmActivationFusion).
_ONNX_FUSED_ACTIVATIONS = {"Relu", "Clip", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid"}
_ONNX_FUSES_ACTIVATION = {"Conv", "Gemm", "FusedConv"}
_ONNX_FLOAT_COMPUTE = {"MatMulNBits"}  # packed low-bit weights, float arithmetic
_TFLITE_VIEWS = {"RESHAPE", "SQUEEZE", "EXPAND_DIMS"}

# Bytes per element, by numpy-style dtype name (what edgehad.inspection reports).
_ITEMSIZE = {
    "float64": 8, "double": 8, "float32": 4, "float": 4, "float16": 2, "bfloat16": 2,
    "int64": 8, "uint64": 8, "int32": 4, "uint32": 4, "int16": 2, "uint16": 2,
    "int8": 1, "uint8": 1, "bool": 1, "complex64": 8, "complex128": 16,
    "float8e4m3fn": 1, "float8e4m3fnuz": 1, "float8e5m2": 1, "float8e5m2fnuz": 1, "float8_e4m3fn": 1,
    "float8_e5m2": 1, "float8e8m0": 1, "int4": 0.5, "uint4": 0.5, "float4e2m1": 0.5, "int2": 0.25, "uint2": 0.25,
}


@dataclass
class OpCost:
    """One op as the roofline sees it."""

    name: str
    op: str
    macs: int
    bytes: int
    int8: bool  # its arithmetic runs on 8-bit integer inputs


@dataclass
class _Walk:
    """Per-op costs of a file and what could not be costed."""

    ops: list
    unknown: dict  # op type -> count of ops skipped because a shape or dtype is unknown
    dynamic: set  # names of dynamic dims taken as 1
    notes: list


def _tensor_bytes(dims, itemsize, dynamic: set) -> int | None:
    """Bytes of a tensor: elements x element size; dynamic dims count as 1 (recorded); None if unknown."""
    n = numel(dims, dynamic)
    return None if n is None or itemsize is None else math.ceil(n * itemsize)


def _count(unknown: dict, op: str) -> None:
    unknown[op] = unknown.get(op, 0) + 1


# -- ONNX ------------------------------------------------------------------------------------------
def _onnx_itemsize(elem_type: int):
    from edgehad.inspection.onnx_file import dtype_name

    return _ITEMSIZE.get(dtype_name(elem_type)) if elem_type else None


def _onnx_costs(path: Path, input_shapes: dict | None = None) -> _Walk:
    import onnx

    from edgehad.inspection.onnx_file import (DEFAULT_DOMAINS, MS_DOMAIN, Graph, at_input_shapes, count_node, graphs,
                                              input_specs, prepare)
    from edgehad.inspection.report import MacTally, check_file, invalid

    check_file(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf's DecodeError and friends
        raise invalid(path, "ONNX", f"{type(e).__name__}: {e}") from None
    notes: list[str] = []
    if input_shapes and any(s["shape"] is None or not all(isinstance(d, int) for d in s["shape"])
                            for s in input_specs(model)):
        model = at_input_shapes(model, input_shapes)  # symbolic input dims at the sizes measured
    model = prepare(model, notes)
    g = Graph(model)
    producer, consumers = {}, {}
    for node in g.nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
        for name in node.output:
            producer[name] = node
    graph_outputs = {o.name for sub in graphs(model.graph) for o in sub.output}

    def elem_type(name):
        return g.types.get(name, (0, None))[0]

    def storage(name):
        """Element size the runtime stores ``name`` in: QDQ-fused tensors keep their integer type."""
        p = producer.get(name)
        if p is not None and p.op_type == "DequantizeLinear" and p.input:
            return _onnx_itemsize(elem_type(p.input[0]))
        users = consumers.get(name, [])
        if users and name not in graph_outputs and all(u.op_type == "QuantizeLinear" and u.input[0] == name
                                                       for u in users):
            q = users[0]
            t = elem_type(q.output[0]) or (elem_type(q.input[2]) if len(q.input) > 2 and q.input[2] else 0)
            return _onnx_itemsize(t) if t else 1  # QuantizeLinear's default output type is uint8
        return _onnx_itemsize(elem_type(name))

    # activations fused into the op before them: producer node -> activation node
    fused, absorbed = {}, set()
    for node in g.nodes:
        if node.op_type not in _ONNX_FUSED_ACTIVATIONS or not node.input or not node.input[0]:
            continue
        src = node.input[0]
        p = producer.get(src)
        if (p is not None and p.op_type in _ONNX_FUSES_ACTIVATION and len(consumers.get(src, [])) == 1
                and src not in graph_outputs):
            fused[id(p)] = node
            absorbed.add(id(node))

    walk = _Walk(ops=[], unknown={}, dynamic=set(), notes=notes)
    known = set(g.consts)  # values known at load time: initializers, Constants, and what folds from them
    folded = skipped_domain = 0
    for node in g.nodes:
        op = node.op_type
        inputs = [i for i in node.input if i]
        if id(node) in absorbed or op == "Constant":
            continue
        if inputs and all(i in known for i in inputs):
            known.update(node.output)
            folded += op not in _ONNX_QDQ
            continue
        if op in ("Shape", "Size") and inputs and all(isinstance(d, int) for d in (g.shape(inputs[0]) or [None])):
            known.update(node.output)  # a static shape is a constant: what is computed from it folds too
        if op in _ONNX_QDQ or op in _ONNX_VIEWS or op in _ONNX_CONTROL_FLOW:
            continue
        if node.domain not in (*DEFAULT_DOMAINS, MS_DOMAIN):
            skipped_domain += 1
            continue
        tally = MacTally()
        count_node(node, g, tally)
        act = fused.get(id(node))
        outputs = [act.output[0]] if act is not None else [o for o in node.output if o]
        sizes = [_tensor_bytes(g.shape(n), storage(n), walk.dynamic) for n in inputs + outputs]
        label = f"{op}+{act.op_type}" if act is not None else op
        if tally.no_shape or any(s is None for s in sizes):
            _count(walk.unknown, label)
            continue
        if tally.uncounted:
            notes.append(f"{label} {node.name or outputs[0]}: MACs not modelled, memory traffic only")
        operand_sizes = [storage(n) for n in inputs[:2]]
        walk.ops.append(OpCost(name=node.name or (outputs[0] if outputs else op), op=label, macs=tally.macs,
                               bytes=sum(sizes), int8=op not in _ONNX_FLOAT_COMPUTE and 1 in operand_sizes))
    if folded:
        notes.append(f"{folded} op(s) on constants only left out: runtimes fold them at load time")
    if skipped_domain:
        notes.append(f"{skipped_domain} op(s) of custom domains left out: no cost model for them")
    return walk


# -- TFLite ----------------------------------------------------------------------------------------
def _tflite_costs(path: Path, input_shapes: dict | None = None) -> _Walk:
    from edgehad.inspection.report import MacTally
    from edgehad.inspection.tflite_file import at_input_shapes, count_op, read

    _, _, (_, _, subgraphs, _) = read(path)
    main = subgraphs[0]
    if input_shapes and any(sd < 0 for i in main.inputs if i >= 0 for sd in (main.tensors[i].signature or [])):
        at_input_shapes(path, main, input_shapes)  # dynamic input dims at the sizes measured
    walk = _Walk(ops=[], unknown={}, dynamic=set(), notes=[])
    if len(subgraphs) > 1:
        walk.notes.append(f"{len(subgraphs)} subgraphs, each op counted once (as edgehad inspect does)")
    for sub in subgraphs:
        for op in sub.ops:
            name, ins, outs, _ = op
            if name in _TFLITE_VIEWS:
                continue
            tensors = [sub.tensors[i] for i in ins + outs if i >= 0]
            inputs = [sub.tensors[i] for i in ins if i >= 0]
            if name == "DEQUANTIZE" and inputs and all(t.constant for t in inputs):
                continue  # fp16 / int8 weights unpacked once when the interpreter is built
            tally = MacTally()
            count_op(sub, op, tally)

            def dims(t):
                if t.signature and len(t.signature) == len(t.shape):
                    return [d if sd >= 0 else -1 for d, sd in zip(t.shape, t.signature)]
                return t.shape

            sizes = [_tensor_bytes(dims(t), _ITEMSIZE.get(t.dtype), walk.dynamic) for t in tensors]
            if tally.no_shape or any(s is None for s in sizes):
                _count(walk.unknown, name)
                continue
            out_name = sub.tensors[outs[0]].name if outs and outs[0] >= 0 else name
            if tally.uncounted:
                walk.notes.append(f"{name} {out_name}: MACs not modelled, memory traffic only")
            operand_sizes = [_ITEMSIZE.get(t.dtype) for t in inputs[:2]]
            walk.ops.append(OpCost(name=out_name, op=name, macs=tally.macs, bytes=sum(sizes),
                                   int8=1 in operand_sizes))
    return walk


def op_costs(path, input_shapes: dict | None = None) -> _Walk:
    """Per-op MACs and bytes of an .onnx or .tflite file (see the module docstring); ``input_shapes``
    ({input name: dims}) gives the file's symbolic input dims their sizes (else they count as 1, noted)."""
    from edgehad.core.errors import UserInputError

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return _onnx_costs(path, input_shapes)
    if suffix == ".tflite":
        return _tflite_costs(path, input_shapes)
    raise UserInputError(f"{path}: no roofline for '{suffix or 'no extension'}' files; use .onnx or .tflite")


# -- the roofline ----------------------------------------------------------------------------------
def _precision(ops: list[OpCost]) -> str:
    """int8 when int8 ops carry at least half the MACs (half the ops, for a model without MACs)."""
    total = sum(o.macs for o in ops)
    if total:
        return "int8" if 2 * sum(o.macs for o in ops if o.int8) >= total else "fp32"
    return "int8" if ops and 2 * sum(o.int8 for o in ops) >= len(ops) else "fp32"


def _roof(target: dict, precision: str, threads, provider, fp16: bool = False) -> tuple[float, str, str] | None:
    """(peak Gop/s, processor, how the peak was chosen), or None when the target has no such peak."""
    key = f"{precision}_gops"
    if provider is not None and str(provider).lower() in GPU_PROVIDERS:
        gpu = target.get("gpu") or {}
        if precision == "int8":
            peak = gpu.get("int8_gops")
        else:
            precision = "fp16" if fp16 else precision
            peak = gpu.get("fp16_gflops") if fp16 else gpu.get("fp32_gflops")
        if not peak:
            return None
        return float(peak), "gpu", f"{gpu.get('name', 'GPU')} {precision} peak"
    table = target.get("peak") or {}
    peak = table.get(key)
    cores = (target.get("cpu") or {}).get("cores")
    if not peak and table.get("source") == "unknown":
        from edgehad.core.errors import UserInputError

        raise UserInputError(f"target {target['name']}: {table.get('note') or 'peak unknown'}")
    if not peak or not cores:
        return None
    used = cores if threads is None else max(1, min(int(threads), cores))
    how = f"{precision} peak of {cores} cores x {used}/{cores} threads"
    if threads is not None and int(threads) > cores:
        how += f" ({threads} threads asked, {cores} cores there)"
    if table.get("source") == "estimate":
        how += f"; estimate: {table.get('formula')}"
    elif table.get("source") == "measured":
        how += f"; measured by edgehad targets calibrate {target['name']} on {table.get('date')} with " \
               f"{table.get('threads')} thread(s)"
    return float(peak) * used / cores, "cpu", how


def _entry(o: OpCost, peak: float, bandwidth: float | None) -> dict:
    compute_ms = 2 * o.macs / (peak * 1e6)  # 2 ops per MAC / (Gop/s * 1e9) in seconds, * 1e3 for ms
    memory_ms = None if bandwidth is None else o.bytes / (bandwidth * 1e6)
    return {
        "name": o.name,
        "op": o.op,
        "macs": o.macs,
        "bytes": o.bytes,
        "intensity": 2 * o.macs / o.bytes if o.bytes else None,
        "compute_ms": compute_ms,
        "memory_ms": memory_ms,
        "bound_ms": compute_ms if memory_ms is None else max(compute_ms, memory_ms),
        "limited_by": None if memory_ms is None else "compute" if compute_ms >= memory_ms else "memory",
        "precision": "int8" if o.int8 else "fp32",
    }


def roofline(path, target: dict, measured_ms: float | None, threads: int | None,
             provider: str | None = None, fp16: bool = False, input_shapes: dict | None = None) -> dict | None:
    """The roofline of the model file ``path`` on ``target`` (a loaded target description).

    ``measured_ms``: the measured latency to compare with (the profiler passes the
    median), or None; ``threads``: threads the runtime used (None: all cores);
    ``provider``: the execution provider ("cpu", "cuda", "tensorrt"; None is cpu);
    ``fp16``: TensorRT ran the float ops in fp16 (the GPU's fp16 peak applies, and their
    tensors move half the bytes); ``input_shapes``: ``{input name: dims}`` fed (the profiler passes the
    shapes measured), which a file's symbolic dims take. Returns None when the target has no peak for the
    model's precision on that processor. Keys: see ROOFLINE_KEYS and the module docstring.
    """
    walk = op_costs(path, input_shapes)
    precision = _precision(walk.ops)
    roof = _roof(target, precision, threads, provider, fp16)
    if roof is None:
        return None
    peak, processor, how = roof
    half = processor == "gpu" and fp16 and precision != "int8"
    if half:  # TensorRT's fp16 mode stores float tensors in 16 bits; fewer bytes keep the bound a lower bound
        walk.ops = [o if o.int8 else replace(o, bytes=o.bytes // 2) for o in walk.ops]
        walk.notes.append("TensorRT fp16: the GPU's fp16 peak, and the float ops' bytes halved")
    peak_source = (target.get("peak") or {}).get("source") if processor == "cpu" else None
    bandwidth = target.get("memory_bandwidth_gbs")
    bandwidth = None if bandwidth is None else float(bandwidth)
    ops = [_entry(o, peak, bandwidth) for o in walk.ops]
    macs = sum(o.macs for o in walk.ops)
    nbytes = sum(o.bytes for o in walk.ops)
    compute_ms = sum(e["compute_ms"] for e in ops)
    memory_ms = None if bandwidth is None else sum(e["memory_ms"] for e in ops)
    bound_ms = sum(e["bound_ms"] for e in ops)

    where = "this machine (edgehad targets show local)" if target["name"] == "local" else \
        f"targets/{target['name']}.toml"
    notes = [
        f"roofline ({CITATION}): per op, time >= max(2*MACs / peak, bytes / bandwidth); bound_ms sums the ops",
        f"peak {peak:g} Gop/s ({how}), bandwidth "
        + (f"{bandwidth:g} GB/s" if bandwidth is not None else "unknown") + f", both from {where}",
        "bytes = weights + inputs read + outputs written, each from main memory once (cache-resident "
        "tensors make real ops faster, so over 100% is possible); QDQ, activations and views fused as runtimes do",
    ]
    if bandwidth is None:
        notes.append(f"memory bandwidth of {target['name']} unknown (edgehad targets calibrate {target['name']} "
                     f"measures it): compute roof only, a lower bound that leaves memory traffic out")
    mixed = [e for e in ops if e["macs"] and e["precision"] != precision]
    if mixed:
        notes.append(f"{len(mixed)} op(s) with MACs run in the other precision, costed at the {precision} peak")
    if walk.unknown:
        listing = ", ".join(f"{k} x{v}" for k, v in sorted(walk.unknown.items()))
        notes.append(f"{sum(walk.unknown.values())} op(s) skipped, shapes or types unknown: {listing}")
    if walk.dynamic:
        notes.append(f"dynamic dims taken as 1: {', '.join(sorted(walk.dynamic))}")
    notes.extend(walk.notes)
    if measured_ms is not None and measured_ms <= 0:
        measured_ms = None
    return {
        "target": target["name"],
        "processor": processor,
        "precision": "fp16" if half else precision,
        "peak_gops": peak,
        "peak_source": peak_source,
        "bandwidth_gbs": bandwidth,
        "ridge_intensity": None if bandwidth is None else peak / bandwidth,  # ops/byte where the two roofs meet
        "threads": threads,
        "macs": macs,
        "bytes": nbytes,
        "intensity": 2 * macs / nbytes if nbytes else None,
        "compute_ms": compute_ms,
        "memory_ms": memory_ms,
        "bound_ms": bound_ms,
        "measured_ms": measured_ms,
        "percent_of_roofline": None if measured_ms is None else 100.0 * bound_ms / measured_ms,
        "bound": None if memory_ms is None else "compute" if compute_ms >= memory_ms else "memory",
        "skipped_ops": sum(walk.unknown.values()),
        "ops": ops,
        "note": "; ".join(notes),
    }


ROOFLINE_KEYS = ("target", "processor", "precision", "peak_gops", "peak_source", "bandwidth_gbs", "ridge_intensity",
                 "threads", "macs", "bytes", "intensity", "compute_ms", "memory_ms", "bound_ms", "measured_ms",
                 "percent_of_roofline", "bound", "skipped_ops", "ops", "note")
OP_KEYS = ("name", "op", "macs", "bytes", "intensity", "compute_ms", "memory_ms", "bound_ms", "limited_by",
           "precision")
