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

    y = tally.numel(dims(0, outs))
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


def inspect_tflite(path) -> dict:
    """Summary of a TFLite file (keys documented in edgehad.inspection.report)."""
    _, data, (version, description, subgraphs, signatures) = read(path)

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

    main = subgraphs[0]
    notes = tally.notes()
    if version != 3:
        notes.append(f"TFLite schema version {version}; this reader knows version 3")
    return summary(
        format="tflite",
        path=path,
        inputs=[_entry(main.tensors[i]) for i in main.inputs if i >= 0],
        outputs=[_entry(main.tensors[i]) for i in main.outputs if i >= 0],
        ops=ops,
        params=params,
        macs=tally.macs,
        size_bytes=len(data),
        quantized=quantized,
        weight_dtypes=weight_dtypes,
        notes=notes,
        schema_version=version,
        subgraphs=[{"name": sub.name, "ops": len(sub.ops), "tensors": len(sub.tensors)} for sub in subgraphs],
        signatures=signatures,
        description=description,
    )
