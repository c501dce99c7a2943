"""Inspect a TFLite file: inputs/outputs, op histogram, weights, MACs, quantization.

How the file is read: with the flatbuffer accessors that ai-edge-litert ships
(``ai_edge_litert.schema_py_generated``, generated from TFLite's schema.fbs),
not with the Interpreter. Three reasons: the interpreter's C++ loader can
crash the whole process on a malformed file, while these pure-Python
accessors can only raise (an out-of-range read is a ``struct.error`` or a
numpy ``ValueError``), which we turn into a UserInputError; the interpreter
does not expose which tensors are constants, op options or a file's
subgraphs; and reading needs no runtime, so inspection stays fast. Before any
accessor runs we check the "TFL3" identifier at bytes 4..8 and the root
offset, and every vector length against the file size, so a garbage length
cannot make us loop over billions of entries.

What counts, when a model has several subgraphs (control flow bodies,
decompositions of composite ops, extra signatures): ops and MACs are summed
over all of them; inputs and outputs are those of subgraph 0.

Dynamic dims (``shape_signature`` -1) are never guessed: MACs need them from
`input_shape` / `inputs` (edgehad.inspection.inputs). TFLite files carry no
shape inference a reader could rerun, so ``at_input_shapes`` asks LiteRT
itself, on the file already validated here: resize the inputs, allocate (no
delegate, no inference run), read back every tensor's shape in subgraph 0.

A file edgehad wrote carries an ``edgehad`` metadata entry: each input and
output entry then has a ``layout``, "nchw", "nhwc" (channels-last) or None
for a tensor that is no image (edgehad.export.layout).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from edgehad.inspection.report import MacTally, check_file, invalid, quantization, summary, tensor_entry

_IDENTIFIER = b"TFL3"
# Types that, held as constants, are weights; integers outside this set are shapes, axes, indices.
_WEIGHT_TYPES = {"float32", "float16", "bfloat16", "float64", "float8_e4m3fn", "float8_e5m2",
                 "int8", "uint8", "int4", "uint4", "int2", "int16", "uint16"}
_QUANT_WEIGHT_TYPES = {"int8", "uint8", "int4", "uint4", "int2"}
# ops whose arithmetic matters but whose MACs this module does not model.
_UNMODELLED = {"LSTM", "UNIDIRECTIONAL_SEQUENCE_LSTM", "BIDIRECTIONAL_SEQUENCE_LSTM", "RNN",
               "UNIDIRECTIONAL_SEQUENCE_RNN", "BIDIRECTIONAL_SEQUENCE_RNN", "SVDF",
               "STABLEHLO_CONVOLUTION", "STABLEHLO_DOT_GENERAL", "DELEGATE"}


_COUNTED_ON_OUTPUT = {"CONV_2D", "DEPTHWISE_CONV_2D", "CONV_3D", "FULLY_CONNECTED", "BATCH_MATMUL"}


class _Broken(Exception):
    """The flatbuffer is structurally wrong; the message says how."""


@dataclass
class _Tensor:
    name: str
    shape: list
    signature: list | None  # shape_signature: -1 marks a dynamic dim
    dtype: str
    buffer: int
    constant: bool
    quant: dict | None
    is_variable: bool


@dataclass
class _Subgraph:
    name: str
    tensors: list = field(default_factory=list)
    ops: list = field(default_factory=list)  # (op name, inputs, outputs, BatchMatMul adj_x)
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    signature_inputs: dict = field(default_factory=dict)  # tensor index -> its signature name ("args_0")


def _schema():
    import ai_edge_litert.schema_py_generated as schema

    return schema


def _enum_names(cls) -> dict:
    return {v: k for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int)}


def _bounded(n: int, elem_bytes: int, size: int, what: str) -> int:
    if n * elem_bytes > size:
        raise _Broken(f"{what} count {n} does not fit in a {size}-byte file")
    return n


def _indices(vec, n_tensors: int, what: str) -> list:
    vals = [int(v) for v in (vec if not isinstance(vec, int) else [])]
    for v in vals:
        if v < -1 or v >= n_tensors:
            raise _Broken(f"{what} refers to tensor {v} of {n_tensors}")
    return vals


def _parse(data: bytes):
    """Everything inspect needs, as plain Python values; raises _Broken or any accessor error."""
    s = _schema()
    size = len(data)
    root = int.from_bytes(data[0:4], "little")
    if root + 4 > size:
        raise _Broken("root table offset points past the end of the file")
    model = s.Model.GetRootAs(data, 0)
    builtin_names = _enum_names(s.BuiltinOperator)
    type_names = _enum_names(s.TensorType)

    opcodes = []
    for i in range(_bounded(model.OperatorCodesLength(), 4, size, "operator code")):
        oc = model.OperatorCodes(i)
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())  # the schema's rule for the two fields
        if code == s.BuiltinOperator.CUSTOM:
            opcodes.append("CUSTOM:" + (oc.CustomCode() or b"").decode("utf-8", "replace"))
        else:
            opcodes.append(builtin_names.get(code, f"BUILTIN_{code}"))

    has_data = []
    for i in range(_bounded(model.BuffersLength(), 4, size, "buffer")):
        b = model.Buffers(i)
        n = b.DataLength()
        if n:
            b.DataAsNumpy()  # a view; raises if the vector runs past the end of the file
        offset, length = b.Offset(), b.Size()
        if offset > 1 and offset + length > size:
            raise _Broken(f"buffer {i} points past the end of the file")
        has_data.append(n > 0 or offset > 1)

    subgraphs = []
    for si in range(_bounded(model.SubgraphsLength(), 4, size, "subgraph")):
        sg = model.Subgraphs(si)
        sub = _Subgraph(name=(sg.Name() or b"").decode("utf-8", "replace"))
        n_tensors = _bounded(sg.TensorsLength(), 4, size, "tensor")
        for ti in range(n_tensors):
            t = sg.Tensors(ti)
            buf = t.Buffer()
            if buf >= len(has_data):
                raise _Broken(f"tensor {ti} refers to buffer {buf} of {len(has_data)}")
            q = t.Quantization()
            quant = None
            if q is not None and q.ScaleLength():
                zp = q.ZeroPointAsNumpy() if q.ZeroPointLength() else []
                quant = quantization(q.ScaleAsNumpy(), zp, q.QuantizedDimension())
            shape = [int(d) for d in t.ShapeAsNumpy()] if t.ShapeLength() else []
            sig = [int(d) for d in t.ShapeSignatureAsNumpy()] if t.ShapeSignatureLength() else None
            sub.tensors.append(_Tensor(
                name=(t.Name() or b"").decode("utf-8", "replace"),
                shape=shape,
                signature=sig,
                dtype=type_names.get(t.Type(), f"tflite_type_{t.Type()}").lower(),
                buffer=buf,
                constant=(buf > 0 and has_data[buf]) or t.ExternalBuffer() > 0,
                quant=quant,
                is_variable=bool(t.IsVariable()),
            ))
        for oi in range(_bounded(sg.OperatorsLength(), 4, size, "operator")):
            op = sg.Operators(oi)
            if op.OpcodeIndex() >= len(opcodes):
                raise _Broken(f"operator {oi} uses opcode {op.OpcodeIndex()} of {len(opcodes)}")
            name = opcodes[op.OpcodeIndex()]
            adj_x = False
            if name == "BATCH_MATMUL" and op.BuiltinOptionsType() == s.BuiltinOptions.BatchMatMulOptions:
                table = op.BuiltinOptions()
                opts = s.BatchMatMulOptions()
                opts.Init(table.Bytes, table.Pos)
                adj_x = bool(opts.AdjX())
            sub.ops.append((name, _indices(op.InputsAsNumpy(), n_tensors, f"operator {oi} input"),
                            _indices(op.OutputsAsNumpy(), n_tensors, f"operator {oi} output"), adj_x))
        sub.inputs = _indices(sg.InputsAsNumpy(), n_tensors, "subgraph input")
        sub.outputs = _indices(sg.OutputsAsNumpy(), n_tensors, "subgraph output")
        subgraphs.append(sub)
    if not subgraphs:
        raise _Broken("no subgraph in it")

    signatures = []
    for i in range(_bounded(model.SignatureDefsLength(), 4, size, "signature")):
        sd = model.SignatureDefs(i)
        signatures.append({"key": (sd.SignatureKey() or b"").decode("utf-8", "replace"),
                           "subgraph": int(sd.SubgraphIndex())})
        if 0 <= sd.SubgraphIndex() < len(subgraphs):  # the names Session and the signature runner use
            sub = subgraphs[sd.SubgraphIndex()]
            for j in range(_bounded(sd.InputsLength(), 4, size, "signature input")):
                tm = sd.Inputs(j)
                index = _indices([tm.TensorIndex()], len(sub.tensors), "signature input")[0]
                sub.signature_inputs.setdefault(index, (tm.Name() or b"").decode("utf-8", "replace"))
    description = (model.Description() or b"").decode("utf-8", "replace")
    return int(model.Version()), description, subgraphs, signatures


def read(path):
    """Validate and parse the file: ``(path, bytes, (version, description, subgraphs, signatures))``.

    Every failure (not a file, not TFLite, a corrupt flatbuffer) becomes the one UserInputError.
    """
    p = check_file(path)
    data = p.read_bytes()
    if not data:
        raise invalid(path, "TFLite", "the file is empty")
    if len(data) < 8 or data[4:8] != _IDENTIFIER:
        raise invalid(path, "TFLite", "no TFL3 identifier at bytes 4..8")
    try:
        return p, data, _parse(data)
    except _Broken as e:
        raise invalid(path, "TFLite", str(e)) from None
    except Exception as e:  # an accessor read out of range: a truncated or corrupt flatbuffer
        raise invalid(path, "TFLite", f"truncated or corrupt flatbuffer: {type(e).__name__}: {e}") from None


def count_op(sub: _Subgraph, op, tally: MacTally) -> None:
    """Add the MACs of one op of ``sub`` (an entry of ``sub.ops``) to ``tally``, or record it as not modelled."""
    name, ins, outs, adj_x = op

    def shape(k, seq):
        return sub.tensors[seq[k]].shape if len(seq) > k and seq[k] >= 0 else None

    def dims(k, seq):
        """Shape with dims that are dynamic in the signature marked -1 (counted as 1 by the tally)."""
        if len(seq) <= k or seq[k] < 0:
            return None
        t = sub.tensors[seq[k]]
        if t.signature and len(t.signature) == len(t.shape):
            return [d if sd >= 0 else -1 for d, sd in zip(t.shape, t.signature)]
        return t.shape

    # the output's size, read only for the ops counted: a dynamic dim elsewhere changes no MAC and is not noted
    y = tally.numel(dims(0, outs)) if name in _COUNTED_ON_OUTPUT else None
    if name == "CONV_2D":  # filter [O, kh, kw, I/groups]
        w = shape(1, ins)
        tally.add(name, y, math.prod(w[1:]) if w else None)
    elif name == "DEPTHWISE_CONV_2D":  # filter [1, kh, kw, O]
        w = shape(1, ins)
        tally.add(name, y, math.prod(w[1:3]) if w else None)
    elif name == "CONV_3D":  # filter [kd, kh, kw, I, O]
        w = shape(1, ins)
        tally.add(name, y, math.prod(w[:-1]) if w else None)
    elif name == "TRANSPOSE_CONV":  # inputs: output_shape, filter [O, kh, kw, I], input
        w = shape(1, ins)
        tally.add(name, tally.numel(dims(2, ins)), math.prod(w[:3]) if w else None)
    elif name == "CONV_3D_TRANSPOSE":  # inputs: output_shape, filter [kd, kh, kw, O, I], input
        w = shape(1, ins)
        tally.add(name, tally.numel(dims(2, ins)), math.prod(w[:4]) if w else None)
    elif name == "FULLY_CONNECTED":  # weights [units, K]
        w = shape(1, ins)
        tally.add(name, y, w[-1] if w else None)
    elif name == "BATCH_MATMUL":  # y[..., M, N] = x[..., M, K] @ w[..., K, N] (x transposed if adj_x)
        x = dims(0, ins)
        k = None if not x or len(x) < 2 else tally.numel([x[-2] if adj_x else x[-1]])
        tally.add(name, y, k)
    elif name in _UNMODELLED or name.startswith("CUSTOM:"):
        tally.skip(name)


def _entry(t: _Tensor) -> dict:
    shape = t.signature if t.signature and len(t.signature) == len(t.shape) else t.shape
    return tensor_entry(t.name, [d if d >= 0 else None for d in shape], t.dtype, t.quant)


def input_specs(sub: _Subgraph) -> list[dict]:
    """Subgraph ``sub``'s inputs as edgehad.inspection.inputs specs: named by tensor (as inspect shows them),
    also answering to their signature names; dynamic dims None."""
    specs = []
    for i in sub.inputs:
        if i < 0:
            continue
        spec = _entry(sub.tensors[i])
        alias = sub.signature_inputs.get(i)
        if alias and alias != spec["name"]:
            spec["aliases"] = [alias]
        specs.append(spec)
    return specs


def at_input_shapes(path, sub: _Subgraph, shapes: dict) -> None:
    """Give subgraph 0 (``sub``, as ``read`` parsed it) the tensor shapes LiteRT derives from the input
    ``shapes`` ({tensor name: dims}), in place; a shape LiteRT cannot take is a UserInputError."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from edgehad.core.errors import UserInputError

    try:
        interp = Interpreter(model_path=str(path), num_threads=1,
                             experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        for i in sub.inputs:
            t = sub.tensors[i]
            if i >= 0 and t.name in shapes and list(shapes[t.name]) != list(t.shape):
                interp.resize_tensor_input(i, list(shapes[t.name]), strict=True)
        interp.allocate_tensors()
        details = {d["index"]: d for d in interp.get_tensor_details()}
    except (RuntimeError, ValueError) as exc:
        said = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
        stated = ", ".join(f"{k}={'x'.join(map(str, v)) or 'scalar'}" for k, v in shapes.items())
        raise UserInputError(f"{path}: LiteRT cannot take the input shapes {stated}: {said}") from None
    for index, t in enumerate(sub.tensors):
        d = details.get(index)
        if d is not None and len(d["shape"]) == len(t.shape):
            t.shape, t.signature = [int(x) for x in d["shape"]], None


def _add_layouts(data: bytes, main: _Subgraph, io: tuple) -> None:
    """Give each I/O entry the ``layout`` ("nchw", "nhwc", or None for no image) stamped in an edgehad file's
    ``edgehad`` metadata (edgehad.export.layout); a file without that record gets no ``layout`` key."""
    from edgehad.export.layout import tensor_layouts

    try:
        layouts = tensor_layouts(data)
    except Exception:  # the metadata only informs: a damaged entry is as good as none
        layouts = None
    if layouts is None:
        return
    for entries, indices, kind in ((io[0], main.inputs, "inputs"), (io[1], main.outputs, "outputs")):
        for entry, index in zip(entries, [i for i in indices if i >= 0]):
            entry["layout"] = layouts[kind].get(index)


def inspect_tflite(path, input_shape=None, inputs=None, require_shapes: bool = False) -> dict:
    """Summary of a TFLite file (keys documented in edgehad.inspection.report); MACs at the input shapes
    static in the file or given by ``input_shape`` / ``inputs`` (see edgehad.inspection.inputs).

    A dynamic dim nothing fills: UserInputError with ``require_shapes``, else ``macs`` None and a note.
    """
    from edgehad.inspection.inputs import shapes_for

    _, data, (version, description, subgraphs, signatures) = read(path)
    main = subgraphs[0]
    io = ([_entry(main.tensors[i]) for i in main.inputs if i >= 0],
          [_entry(main.tensors[i]) for i in main.outputs if i >= 0])  # as the file declares them
    _add_layouts(data, main, io)
    stated, note = shapes_for(input_specs(main), path, input_shape, inputs, require_shapes)
    if stated is not None and stated.dynamic:
        at_input_shapes(path, main, stated.by_name())

    ops, tally = Counter(), MacTally()
    params, weight_dtypes = 0, Counter()
    quantized = False
    seen_buffers = set()  # buffers belong to the model, shared by all subgraphs
    for sub in subgraphs:
        for op in sub.ops:
            ops[op[0]] += 1
            count_op(sub, op, tally)
        for t in sub.tensors:
            quantized = quantized or t.quant is not None
            if not t.constant or t.is_variable:
                continue
            quantized = quantized or t.dtype in _QUANT_WEIGHT_TYPES
            if t.dtype not in _WEIGHT_TYPES and t.quant is None:
                continue
            if t.buffer > 0:  # tensors sharing one buffer share one copy of the weights
                if t.buffer in seen_buffers:
                    continue
                seen_buffers.add(t.buffer)
            n = math.prod(t.shape)
            params += n
            weight_dtypes[t.dtype] += n

    notes = [note] if note else tally.notes()
    if version != 3:
        notes.append(f"TFLite schema version {version}; this reader knows version 3")
    return summary(
        format="tflite",
        path=path,
        inputs=io[0],
        outputs=io[1],
        ops=ops,
        params=params,
        macs=None if stated is None else tally.macs,
        input_shapes=None if stated is None else stated.by_name(),
        size_bytes=len(data),
        quantized=quantized,
        weight_dtypes=weight_dtypes,
        notes=notes,
        schema_version=version,
        subgraphs=[{"name": sub.name, "ops": len(sub.ops), "tensors": len(sub.tensors)} for sub in subgraphs],
        signatures=signatures,
        description=description,
    )
