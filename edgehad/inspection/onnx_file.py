"""Inspect an ONNX file: inputs/outputs, op histogram, weights, MACs, quantization.

Weights are not loaded (``load_external_data=False``): everything here needs
only tensor shapes and types, which the proto holds even when the data sits in
an external ``.onnx.data`` file (the torch dynamo exporter writes one). MACs
come from the shapes shape inference fills in (``prepare``); the formulas follow
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
_UNMODELLED = {"GroupQueryAttention", "QAttention", "NhwcConv", "ConvTransposeWithDynamicPads"}
_ATTENTION = {"Attention", "MultiHeadAttention"}  # ONNX's Attention (opset 23) and onnxruntime's contrib two
_RECURRENT = {"LSTM", "GRU", "RNN", "DynamicQuantizeLSTM"}  # gates per step: 4, 3, 1, 4


def dim_name(d) -> str | None:
    """A ``dim_param`` that names a dim, else None: PaddlePaddle writes "?" for every unknown dim, and "",
    "-1" or "*" name none either; such dims are unknown, never one shared symbol."""
    return d if isinstance(d, str) and any(c.isalpha() or c == "_" for c in d) else None


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
            dims.append(dim_name(d.dim_param))
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
        self.main = model.graph
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
        b = g.shape(ins[3 if op == "QLinearMatMul" else 1]) if op != "MatMulNBits" and len(ins) > 1 else None
        # K is a's last dim, and b's rows too: where inference lost a's (behind a computed Reshape), b has it
        ks = ([a[-2 if trans else -1]] if a else []) + \
             ([b[-2]] if b and len(b) >= 2 and not _attr(node, "transB") else [])
        k = next((d for d in ks if isinstance(d, int) and d >= 0), ks[0] if ks else None)
        tally.add(key, y, tally.numel([k]) if ks else None)
    elif op in _RECURRENT:
        tally.add(key, *_recurrent_factors(node, g, tally))
    elif op == "Einsum":
        tally.add(key, _einsum_macs(node, g, tally))
    elif op in _ATTENTION:
        tally.add(key, _attention_macs(node, g, tally))
    elif op in _UNMODELLED:
        tally.skip(key)


def _recurrent_factors(node, g: Graph, tally: MacTally):
    """MACs of an LSTM / GRU / RNN node as factors: ``steps * batch`` and ``W.numel() + R.numel()``.

    Each step multiplies the input x_t[I] by W[dirs, gates*H, I] and the previous hidden state h[H] by
    R[dirs, gates*H, H] (ONNX operators LSTM, GRU, RNN; gates = 4, 3, 1), so one step of one direction
    costs ``gates * H * (I + H)`` MACs: ``4 * H * (I + H)`` for an LSTM (Hochreiter & Schmidhuber 1997;
    the gate layout is ONNX's iofc). Times sequence length, batch and directions; the element-wise gate
    products, peepholes and biases are not counted (edgehad.cost). X is [seq, batch, I] (``layout`` 1:
    [batch, seq, I]); com.microsoft.DynamicQuantizeLSTM holds W transposed, which keeps its size.
    """
    x, w, r = (g.shape(node.input[i]) if len(node.input) > i else None for i in range(3))
    if not x or len(x) != 3 or w is None or r is None:
        return (None,)
    return tally.numel(x[:2]), tally.numel(w) + tally.numel(r)


def _einsum_macs(node, g: Graph, tally: MacTally) -> int | None:
    """MACs of an Einsum of two or more operands: one multiply-add per point of the index space.

    ``"bhqd,bhkd->bhqk"`` loops over every distinct index once, so it costs the product of all index
    sizes (here b*h*q*k*d), and each operand beyond the second one more multiply per point
    (``(operands - 1) * prod(sizes)``). One operand (a transpose, a trace, a sum) multiplies nothing: 0.
    ``...`` stands for the broadcast of the operands' leading dims. None when an operand's shape is unknown.
    """
    equation = next((a.s.decode() for a in node.attribute if a.name == "equation"), None)
    if equation is None:
        return None
    terms = equation.replace(" ", "").split("->")[0].split(",")
    if len(terms) != len(node.input) or any(not g.shape(name) for name in node.input):
        return None
    if len(terms) < 2:
        return 0
    sizes: dict[str, object] = {}
    broadcasts = []
    for term, name in zip(terms, node.input):
        dims = list(g.shape(name))
        head, _, tail = term.partition("...")
        if "..." in term:
            if len(dims) < len(head) + len(tail):
                return None
            broadcasts.append(dims[len(head):len(dims) - len(tail)])
            dims = dims[:len(head)] + dims[len(dims) - len(tail):]
        if len(dims) != len(head) + len(tail):
            return None
        for letter, d in zip(head + tail, dims):
            if letter not in sizes or (isinstance(d, int) and d > 1):  # a 1 broadcasts against the others
                sizes[letter] = d
    ellipsis = _broadcast(broadcasts)
    points = tally.numel(list(sizes.values()) + ellipsis)
    return None if points is None else (len(terms) - 1) * points


def _broadcast(shapes: list) -> list:
    """The numpy broadcast of ``shapes`` (right-aligned; a 1 gives way; a dynamic dim stays unless a size is known)."""
    rank = max((len(d) for d in shapes), default=0)
    out = []
    for i in range(1, rank + 1):
        column = [d[-i] for d in shapes if len(d) >= i]
        known = [d for d in column if isinstance(d, int) and d != 1]
        out.insert(0, known[0] if known else next((d for d in column if not isinstance(d, int)), 1))
    return out


def _attention_macs(node, g: Graph, tally: MacTally) -> int | None:
    """MACs of the two products of scaled dot-product attention (Vaswani et al. 2017), softmax(QK^T)V.

    Per batch and head: ``S * L * d`` for QK^T and ``S * L * dv`` for the weights times V (S query
    positions, L key positions, d and dv the key and value head sizes), so
    ``batch * S * L * (heads * d + heads * dv)``, which is the same with heads folded into the hidden size.
    ONNX's Attention takes Q, K, V as [B, heads, S, d] or [B, S, heads*d]; onnxruntime's
    MultiHeadAttention takes [B, S, hidden] query and [B, L, hidden] key and value (projections done by
    MatMuls around it, counted there). com.microsoft.Attention also projects its input [B, S, hidden] with
    ``weights`` [hidden, 3*hidden] first: ``B * S * hidden * 3 * hidden`` more, then L = S.
    """
    ins = list(node.input)
    if node.domain == MS_DOMAIN and node.op_type == "Attention":
        x, w = g.shape(ins[0]), g.shape(ins[1]) if len(ins) > 1 else None
        if not x or len(x) != 3 or not w or len(w) != 2:
            return None
        hidden = tally.numel([w[1]])
        qk = tally.numel([x[2]]) if isinstance(x[2], int) else (hidden // 3 if hidden else None)
        if hidden is None or qk is None:
            return None
        v = hidden - 2 * qk if hidden > 2 * qk else qk
        rows = tally.numel(x[:2])
        return rows * tally.numel(x[2:]) * hidden + rows * tally.numel([x[1]]) * (qk + v)
    q, k, v = (g.shape(ins[i]) if len(ins) > i and ins[i] else None for i in range(3))
    if not q or not k or not v or len(q) != len(k) or len(q) not in (3, 4) or len(v) != len(k):
        return None  # packed QKV forms and past-key caches: shapes this model does not follow
    if len(q) == 4:  # [B, heads, S, d]: K and V may have fewer heads (grouped), each shared by several Q heads
        return tally.numel([q[0], q[1], q[2], k[2]]) * (tally.numel([q[3]]) + tally.numel([v[3]]))
    return tally.numel([q[0], q[1], k[1]]) * (tally.numel([q[2]]) + tally.numel([v[2]]))


def _static_dims(vi) -> int:
    """How many dims of a value's shape are known sizes; -1 when the rank is unknown."""
    tt = vi.type.tensor_type
    if not vi.type.HasField("tensor_type") or not tt.HasField("shape"):
        return -1
    return sum(d.HasField("dim_value") for d in tt.shape.dim)


def _symbolic_shapes(model):
    """onnxruntime's symbolic shape inference of ``model``, or None where it is not installed or fails.

    It computes the small integer tensors exporters build shapes from (Shape -> Gather -> Concat ->
    Reshape, pads from Concat / Slice / Transpose) where onnx's data propagation stops, and knows the
    com.microsoft ops. Its driver is called step by step rather than through ``infer_shapes``, which writes
    ``sym_shape_infer_temp.onnx`` into the working folder whenever a shape stays unknown.
    """
    import logging

    ssi = _symbolic_module()
    if ssi is None:
        return None
    model = _concat_axes_positive(model)
    log = logging.getLogger(ssi.__name__)
    level = log.level
    log.setLevel(logging.ERROR)  # its warnings about dims it cannot bound are not the user's business
    infer = None
    try:
        infer = ssi.SymbolicShapeInference(2**31 - 1, False, False, 0)  # int_max, auto_merge, guess_rank, verbose
        infer._preprocess(model)
        while infer.run_:
            infer._infer_impl()
        return infer.out_mp_
    except Exception:  # an op it cannot follow: the shapes it found before it (node order) still stand
        return getattr(infer, "out_mp_", None)
    finally:
        log.setLevel(level)


def _concat_axes_positive(model):
    """A copy of ``model`` whose Concat nodes with a negative axis (over inputs of known rank) count it from 0:
    the symbolic inference asserts axis 0 when it computes a shape tensor (PaddlePaddle writes -1)."""
    import onnx

    g = Graph(model)
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for graph in graphs(fixed.graph):
        for node in graph.node:
            if node.op_type != "Concat" or node.domain not in DEFAULT_DOMAINS or not node.input:
                continue
            rank = len(g.shape(node.input[0]) or [])
            for a in node.attribute:
                if a.name == "axis" and a.i < 0 and rank:
                    a.i += rank
    return fixed


def _symbolic_module():
    """onnxruntime/tools/symbolic_shape_infer.py loaded by its path, once; None if absent or unloadable.

    By path because the package onnxruntime.tools imports torch on the way in (3-5 s here); the module
    itself needs only onnx, numpy and sympy.
    """
    import importlib.util
    import sys
    from pathlib import Path

    name = "_edgehad_ort_symbolic_shape_infer"
    if name in sys.modules:
        return sys.modules[name]
    try:
        ort = importlib.util.find_spec("onnxruntime")
        path = Path(next(iter(ort.submodule_search_locations)), "tools", "symbolic_shape_infer.py")
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except Exception:  # no onnxruntime, a version without the file, no sympy: onnx's inference alone
        return None
    sys.modules[name] = module
    return module


def _all_static(model) -> bool:
    """Whether every node output of every graph has a shape of known sizes."""
    static = {vi.name for g in graphs(model.graph) for vi in (*g.input, *g.output, *g.value_info)
              if _static_dims(vi) == len(vi.type.tensor_type.shape.dim)}
    return all(o in static for g in graphs(model.graph) for n in g.node for o in n.output if o)


def _merge_shapes(model, other) -> None:
    """Give each value of ``model`` the shape ``other`` (the same graph, inferred another way) knows more
    static dims of. Graph outputs keep the file's shapes (inspect shows them): a better one is added as
    a value_info, which Graph reads after the outputs."""
    ours, theirs_all = list(graphs(model.graph)), list(graphs(other.graph))
    if len(ours) != len(theirs_all):
        return
    for mine, theirs in zip(ours, theirs_all):
        known = {vi.name: vi for vi in (*mine.input, *mine.output, *mine.value_info)}
        inferred = {vi.name: vi for vi in (*theirs.output, *theirs.value_info) if vi.type.HasField("tensor_type")}
        for name, vi in inferred.items():
            have = known.get(name)
            if have is not None and _static_dims(vi) <= _static_dims(have):
                continue
            if have is not None and any(v is have for v in mine.value_info):
                have.CopyFrom(vi)
            elif not any(i.name == name for i in mine.input):
                mine.value_info.append(vi)


def prepare(model, notes: list):
    """Inline model-local functions and infer every value's shape (each best effort, noted if not).

    onnx's shape inference (with data propagation) runs first; where every graph input is static, the
    shapes onnxruntime's symbolic shape inference finds are merged in value by value, the one with more
    static dims winning (onnx's alone leaves the dims behind a computed Reshape or Pad unknown, and
    MACs would take them as 1). With a symbolic input the MACs are not computed, so neither is that.
    """
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
    inputs_static = all(_static_dims(vi) == len(vi.type.tensor_type.shape.dim) for vi in model.graph.input
                        if vi.type.HasField("tensor_type"))
    if inputs_static and not _all_static(model):
        inferred = _symbolic_shapes(model)
        if inferred is not None:
            _merge_shapes(model, inferred)
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
    model = prepare(model, [])
    tally = MacTally()
    tally_graph(model.graph, Graph(model), tally)
    return tally.macs


def tally_graph(graph, g: Graph, tally: MacTally) -> None:
    """Count the MACs of ``graph``'s nodes as one inference runs them.

    An ``If`` runs one of its two branches: the larger branch's MACs are counted (an upper bound for
    the inference; which branch runs depends on the inputs) and the If is noted. A ``Loop`` or ``Scan``
    body is counted once (its trip count is data), also noted. Shapes come from ``g``, which holds
    every subgraph's.
    """
    from onnx import AttributeProto

    for node in graph.node:
        bodies = [a.g for a in node.attribute if a.type == AttributeProto.GRAPH]
        if not bodies:
            count_node(node, g, tally)
            continue
        branches = []
        for body in bodies:
            sub = MacTally()
            sub.dynamic = tally.dynamic  # one set of dims taken as 1 for the whole file
            tally_graph(body, g, sub)
            branches.append(sub)
        for sub in branches:  # a node either branch leaves uncounted is one the file has
            tally.no_shape.update(sub.no_shape)
            tally.uncounted.update(sub.uncounted)
            tally.bounded.update(sub.bounded)
        tally.macs += max(sub.macs for sub in branches)
        if node.op_type == "If":
            tally.bounded["If (the larger branch counted)"] += 1
        else:
            tally.bounded[f"{node.op_type} (its body counted once)"] += 1


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
    tally_graph(g.main, g, tally)

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
