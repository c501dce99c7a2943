"""Inspect an ONNX file: inputs/outputs, op histogram, weights, MACs, quantization.

Weights are not loaded (``load_external_data=False``): everything here needs
only tensor shapes and types, which the proto holds even when the data sits in
an external ``.onnx.data`` file (the torch dynamo exporter writes one). MACs
come from the shapes ``onnx.shape_inference`` fills in; the formulas follow
edgehad.cost. A file with symbolic input dims gets them from `input_shape` /
`inputs` (edgehad.inspection.inputs): the stated shapes replace the graph's
input shapes, the shapes stored for every other value are dropped, and shape
inference runs again from there (``at_input_shapes``).
"""

from __future__ import annotations

import math
from collections import Counter

from edgehad.inspection.report import MacTally, check_file, invalid, quantization, summary, tensor_entry

DEFAULT_DOMAINS = ("", "ai.onnx")  # the standard ONNX operator set's names
MS_DOMAIN = "com.microsoft"        # onnxruntime's contrib ops (fused and quantized kernels)

# Ops that mark a quantized graph wherever they sit.
_QUANT_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}
# ops whose arithmetic matters but whose MACs this module does not model.
_UNMODELLED = {"Einsum", "LSTM", "GRU", "RNN", "Attention", "MultiHeadAttention", "GroupQueryAttention",
               "QAttention", "DynamicQuantizeLSTM", "NhwcConv", "ConvTransposeWithDynamicPads"}


def _names():
    """Element-type groups, built lazily (onnx is imported where used)."""
    from onnx import TensorProto as T

    def pick(*names):
        return {getattr(T, n) for n in names if hasattr(T, n)}

    low_bit = pick("INT8", "UINT8", "INT4", "UINT4", "INT2", "UINT2")
    floats = pick("FLOAT", "DOUBLE", "FLOAT16", "BFLOAT16", "FLOAT8E4M3FN", "FLOAT8E4M3FNUZ",
                  "FLOAT8E5M2", "FLOAT8E5M2FNUZ", "FLOAT4E2M1", "FLOAT8E8M0")
    return low_bit, floats | low_bit | pick("INT16", "UINT16")


def dtype_name(elem_type: int) -> str:
    """numpy-style name of an ONNX element type: FLOAT -> float32, INT8 -> int8."""
    from onnx import TensorProto

    try:
        name = TensorProto.DataType.Name(elem_type)
    except ValueError:
        return f"onnx_type_{elem_type}"
    return {"FLOAT": "float32", "DOUBLE": "float64", "UNDEFINED": "undefined"}.get(name, name.lower())


def _op_key(node) -> str:
    return node.op_type if node.domain in DEFAULT_DOMAINS else f"{node.domain}.{node.op_type}"


def _is_quant_op(node) -> bool:
    op = node.op_type
    if op in _QUANT_OPS or op.startswith("QLinear") or op.endswith("Integer"):
        return True
    return node.domain == MS_DOMAIN and (op.startswith("Q") or "Quantize" in op or "NBits" in op or "IntegerTo" in op)


def graphs(graph):
    """The graph and every subgraph (If / Loop / Scan bodies), depth first."""
    from onnx import AttributeProto

    yield graph
    for node in graph.node:
        for a in node.attribute:
            if a.type == AttributeProto.GRAPH:
                yield from graphs(a.g)
            elif a.type == AttributeProto.GRAPHS:
                for g in a.graphs:
                    yield from graphs(g)


def _dims(type_proto):
    """(elem_type, dims) of a tensor type; dims None when the rank is unknown."""
    tt = type_proto.tensor_type
    if not tt.HasField("shape"):
        return tt.elem_type, None
    dims = []
    for d in tt.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            dims.append(d.dim_param)
        else:
            dims.append(None)
    return tt.elem_type, dims


def _constant_tensor(node):
    """(elem_type, dims, TensorProto | None) held by a Constant node, or None."""
    from onnx import TensorProto

    for a in node.attribute:
        if a.name == "value":
            return a.t.data_type, list(a.t.dims), a.t
        if a.name == "sparse_value":
            return a.sparse_tensor.values.data_type, list(a.sparse_tensor.values.dims), None
        if a.name == "value_float":
            return TensorProto.FLOAT, [], None
        if a.name == "value_floats":
            return TensorProto.FLOAT, [len(a.floats)], None
        if a.name == "value_int":
            return TensorProto.INT64, [], None
        if a.name == "value_ints":
            return TensorProto.INT64, [len(a.ints)], None
    return None


class Graph:
    """Flat view over a model's graphs: types, constants, nodes."""

    def __init__(self, model):
        self.types: dict[str, tuple] = {}  # name -> (elem_type, dims)
        self.consts: dict[str, tuple] = {}  # name -> (elem_type, dims, TensorProto | None)
        self.nodes = []
        for g in graphs(model.graph):
            for vi in (*g.input, *g.output, *g.value_info):
                if vi.type.HasField("tensor_type"):
                    self.types[vi.name] = _dims(vi.type)
            for t in g.initializer:
                self.consts[t.name] = (t.data_type, list(t.dims), t)
            for t in g.sparse_initializer:
                self.consts[t.values.name] = (t.values.data_type, list(t.values.dims), None)
            for node in g.node:
                self.nodes.append(node)
                if node.op_type == "Constant" and node.domain in DEFAULT_DOMAINS and node.output:
                    c = _constant_tensor(node)
                    if c is not None:
                        self.consts[node.output[0]] = c
        for name, (elem_type, dims, _) in self.consts.items():
            self.types[name] = (elem_type, dims)

    def shape(self, name: str):
        return self.types.get(name, (0, None))[1] if name else None

    def value(self, name: str):
        """numpy value of a constant whose data is in the proto, else None."""
        from onnx import TensorProto, numpy_helper

        c = self.consts.get(name)
        if c is None or c[2] is None or c[2].data_location == TensorProto.EXTERNAL:
            return None
        try:
            return numpy_helper.to_array(c[2])
        except Exception:  # an odd encoding only costs the quantization detail
            return None


def _attr(node, name, default=0):
    for a in node.attribute:
        if a.name == name:
            return a.i
    return default


def _k(tally: MacTally, dims, axis: int):
    """The reduction length dims[axis] (a dynamic one counts as 1), None if unknown."""
    if not dims or len(dims) < -axis:
        return None
    return tally.numel([dims[axis]])


_COUNTED_ON_OUTPUT = {"Conv", "ConvInteger", "FusedConv", "QLinearConv", "Gemm", "QGemm", "MatMul", "MatMulInteger",
                      "QLinearMatMul", "FusedMatMul", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "MatMulNBits"}


def count_node(node, g: Graph, tally: MacTally) -> None:
    """Add the MACs of one node to ``tally`` (shapes from ``g``) or note it as not modelled; other domains: skipped."""
    op, key, ins = node.op_type, _op_key(node), list(node.input)
    if node.domain not in (*DEFAULT_DOMAINS, MS_DOMAIN):
        return
    out = g.shape(node.output[0]) if node.output else None
    # the output's size, read only for the ops counted: a dynamic dim elsewhere changes no MAC and is not noted
    y = tally.numel(out) if op in _COUNTED_ON_OUTPUT else None
    if op in ("Conv", "ConvInteger", "FusedConv", "QLinearConv"):
        # y[N, M, *spatial] from x[N, C, ...] and w[M, C/groups, *k]: y.numel() * C/groups * prod(k)
        w = g.shape(ins[3 if op == "QLinearConv" else 1]) if len(ins) > 1 else None
        tally.add(key, y, tally.numel(w[1:]) if w else None)
    elif op == "ConvTranspose":
        # w[C, M/groups, *k]: every input element is spread over M/groups * prod(k) outputs
        w = g.shape(ins[1])
        tally.add(key, tally.numel(g.shape(ins[0])), tally.numel(w[1:]) if w else None)
    elif op in ("Gemm", "QGemm"):
        a = g.shape(ins[0])
        tally.add(key, y, _k(tally, a, -2 if _attr(node, "transA") else -1))
    elif op in ("MatMul", "MatMulInteger", "QLinearMatMul", "FusedMatMul", "DynamicQuantizeMatMul",
                "MatMulIntegerToFloat", "MatMulNBits"):
        # y[..., M, N] = a[..., M, K] @ b[..., K, N] with broadcasting: y.numel() * K
        a = g.shape(ins[0])
        trans = _attr(node, "transA") and a is not None and len(a) >= 2
        tally.add(key, y, _k(tally, a, -2 if trans else -1))
    elif op in _UNMODELLED:
        tally.skip(key)


def prepare(model, notes: list):
    """Inline model-local functions and run shape inference (each best effort, noted if not)."""
    import onnx

    if len(model.functions):
        try:
            import onnx.inliner

            model = onnx.inliner.inline_local_functions(model)
        except Exception as e:
            notes.append(f"local functions not inlined ({type(e).__name__}): their calls count as ops")
    try:
        model = onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=True)
    except Exception as e:
        notes.append(f"shape inference failed ({type(e).__name__}): MACs use the shapes stored in the file")
    return model


def input_specs(model) -> list[dict]:
    """The graph's inputs (initializers left out) as edgehad.inspection.inputs specs."""
    initializers = {t.name for t in model.graph.initializer}
    specs = []
    for vi in model.graph.input:
        if vi.name in initializers:
            continue
        elem_type, dims = _dims(vi.type) if vi.type.HasField("tensor_type") else (0, None)
        specs.append({"name": vi.name, "shape": dims, "dtype": dtype_name(elem_type)})
    return specs


def at_input_shapes(model, shapes: dict):
    """A copy of ``model`` whose graph inputs have the static ``shapes`` ({name: dims}) and whose other
    stored shapes are dropped, so that shape inference derives every value's shape from them."""
    import onnx

    shaped = onnx.ModelProto()
    shaped.CopyFrom(model)
    graph = shaped.graph
    for vi in graph.input:
        if vi.name in shapes and vi.type.HasField("tensor_type"):
            tt = vi.type.tensor_type
            tt.ClearField("shape")
            tt.shape.SetInParent()  # a scalar keeps an empty shape, not an unknown rank
            for d in shapes[vi.name]:
                tt.shape.dim.add().dim_value = int(d)
    # stored symbolic shapes would be merged with the inferred ones; the exporter's "s0" dims must go
    del graph.value_info[:]
    for vi in graph.output:
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape"):
            for d in vi.type.tensor_type.shape.dim:
                if not d.HasField("dim_value"):
                    d.Clear()
    return shaped


def onnx_macs(model) -> int:
    """MACs of one inference of an ONNX ``ModelProto`` (conventions in edgehad.cost)."""
    g = Graph(prepare(model, []))
    tally = MacTally()
    for node in g.nodes:
        count_node(node, g, tally)
    return tally.macs


def _io_quantization(g: Graph, name: str, consumers, producer):
    """Scale / zero point of a graph input read by a DequantizeLinear, or an output made by a QuantizeLinear."""
    node = next((n for n in consumers.get(name, ()) if n.op_type == "DequantizeLinear" and n.input[0] == name), None)
    if node is None and producer.get(name) is not None and producer[name].op_type == "QuantizeLinear":
        node = producer[name]
    if node is None or len(node.input) < 2:
        return None
    scale = g.value(node.input[1])
    zero = g.value(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if scale is None:
        return None
    return quantization(scale.reshape(-1), [] if zero is None else zero.reshape(-1), _attr(node, "axis", 1))


def inspect_onnx(path, input_shape=None, inputs=None, require_shapes: bool = False) -> dict:
    """Summary of an ONNX file (keys documented in edgehad.inspection.report); MACs at the input shapes
    static in the file or given by ``input_shape`` / ``inputs`` (see edgehad.inspection.inputs).

    A symbolic dim nothing fills: UserInputError with ``require_shapes``, else ``macs`` None and a note.
    """
    p = check_file(path)
    if p.stat().st_size == 0:
        raise invalid(path, "ONNX", "the file is empty")
    import onnx

    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as e:  # protobuf's DecodeError and friends: all mean "not an ONNX model"
        raise invalid(path, "ONNX", f"{type(e).__name__}: {e}") from None
    if model.ir_version <= 0 or not model.HasField("graph") or not model.graph.output or not model.opset_import:
        # An empty file parses as an empty ModelProto, and so can a file cut at a field boundary.
        raise invalid(path, "ONNX", "no ir_version, graph or opset_import in it")
    from edgehad.inspection.inputs import shapes_for

    stated, note = shapes_for(input_specs(model), path, input_shape, inputs, require_shapes)
    try:
        return _summarize(p, path, model, stated, note)
    except Exception as e:
        # protobuf parses some corrupt files "successfully": with upb, a string
        # field holding invalid UTF-8 comes back as bytes, and a graph can
        # refer to values or attributes that are not there. Reading such a
        # graph fails somewhere in the walk; it is the file, not the user's code.
        raise invalid(path, "ONNX", f"unreadable graph: {type(e).__name__}: {e}") from None


def _summarize(p, path, model, stated, note) -> dict:
    from onnx import TensorProto

    notes: list[str] = []
    if stated is not None and stated.dynamic:  # counted on a copy; inputs and outputs show the file's shapes
        g = Graph(prepare(at_input_shapes(model, stated.by_name()), notes))
        model = prepare(model, [])
        io = Graph(model)
    else:
        model = prepare(model, notes)
        g = io = Graph(model)

    ops, tally = Counter(), MacTally()
    quantized = False
    for node in g.nodes:
        ops[_op_key(node)] += 1
        quantized = quantized or _is_quant_op(node)
        count_node(node, g, tally)

    quant_weights, weight_types = _names()
    dq_inputs = {n.input[0] for n in g.nodes if n.op_type == "DequantizeLinear" and n.input}
    params, weight_dtypes = 0, Counter()
    for name, (elem_type, dims, _) in g.consts.items():
        if elem_type in weight_types or name in dq_inputs:
            n = math.prod(dims)
            params += n
            weight_dtypes[dtype_name(elem_type)] += n
        quantized = quantized or elem_type in quant_weights

    main = model.graph
    consumers, producer = {}, {}
    for node in main.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)
        for o in node.output:
            producer[o] = node

    def entries(values):
        out = []
        for vi in values:
            elem_type, dims = _dims(vi.type) if vi.type.HasField("tensor_type") else (0, None)
            q = _io_quantization(io, vi.name, consumers, producer)
            out.append(tensor_entry(vi.name, dims, dtype_name(elem_type), q))
        return out

    initializers = {t.name for t in main.initializer}
    size = p.stat().st_size
    seen = set()
    for t in (t for graph in graphs(main) for t in graph.initializer):
        if t.data_location != TensorProto.EXTERNAL:
            continue
        loc = next((e.value for e in t.external_data if e.key == "location"), None)
        if loc is None or loc in seen:
            continue
        seen.add(loc)
        data = p.parent / loc
        if data.is_file():
            size += data.stat().st_size
        else:
            notes.append(f"external data file {loc} is missing: the model will not load without it")

    return summary(
        format="onnx",
        path=path,
        inputs=entries(vi for vi in main.input if vi.name not in initializers),
        outputs=entries(main.output),
        ops=ops,
        params=params,
        macs=None if stated is None else tally.macs,
        input_shapes=None if stated is None else stated.by_name(),
        size_bytes=size,
        quantized=quantized,
        weight_dtypes=weight_dtypes,
        notes=([note] if note else tally.notes()) + notes,
        opset=next((o.version for o in model.opset_import if o.domain in DEFAULT_DOMAINS), None),
        ir_version=int(model.ir_version),
        producer=f"{model.producer_name} {model.producer_version}".strip(),
    )
