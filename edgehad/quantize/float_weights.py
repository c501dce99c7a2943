"""Which weighted layers of an int8 file still compute in float, read from the written file.

PT2E quantizes only what its quantizer annotates. A layer whose activation
input or output was left unannotated (a PReLU after a conv, an LSTM cell) keeps
its weights quantize/dequantize-wrapped in the torch graph, and the exporters
then write a float layer: LiteRT a float CONV_2D / FULLY_CONNECTED on float32
weights, onnxruntime a float Conv on dequantized int8 weights (slower than the
fp32 file: the dequantize runs on every call). The report must say so, so the
file itself is read after it is written:

- TFLite: a weighted op (CONV_2D, DEPTHWISE_CONV_2D, CONV_3D, TRANSPOSE_CONV,
  FULLY_CONNECTED, BATCH_MATMUL with a constant operand) whose output is float
  computes in float; its weights are the constant (or DEQUANTIZE'd constant)
  operands. A GATHER / EMBEDDING_LOOKUP on a float table is a float lookup.
- ONNX: onnxruntime's CPU provider fuses ``DQ -> op -> Q`` groups into int8
  kernels (QLinearConv, QGemm, MatMulIntegerToFloat). Gemm and MatMul need
  DequantizeLinear on both operands (a float output is allowed: QGemm /
  MatMulIntegerToFloat); Conv and ConvTranspose need a QuantizeLinear after the
  output as well. Any other weighted node computes in float. A Gather on a float
  initializer is a float lookup.

``share`` is the float layers' weight bytes over all weight bytes in the file
(edgehad.inspection's ``params`` definition: every constant of a weight type).
"""

from __future__ import annotations

import math

WARN_SHARE = 0.10  # a larger share of the weight bytes in float is worth a warning
BY_DESIGN = "float by design"  # a layer the quantizer keeps float on purpose (quantizer.float_activations)

_TFLITE_WEIGHTED = {"CONV_2D", "DEPTHWISE_CONV_2D", "CONV_3D", "TRANSPOSE_CONV", "CONV_3D_TRANSPOSE",
                    "FULLY_CONNECTED", "BATCH_MATMUL"}
_TFLITE_LOOKUP = {"GATHER", "EMBEDDING_LOOKUP"}
_TFLITE_FLOAT = {"float32", "float16", "bfloat16", "float64"}
_TFLITE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8, "int8": 1, "uint8": 1, "int16": 2,
                 "int32": 4, "int64": 8, "int4": 0.5}
_ONNX_WEIGHTED = {"Conv", "ConvTranspose", "Gemm", "MatMul"}
_ONNX_NEEDS_Q_OUTPUT = {"Conv", "ConvTranspose"}


def torch_layers(graph_module) -> list[tuple[str, tuple]]:
    """``(module path, weight shape)`` of each conv / linear in ``graph_module``'s order: the names a TFLite
    file lost (litert-torch names its tensors by the exporter's wrapper modules)."""
    found = []
    for node in graph_module.graph.nodes:
        if node.op != "call_function" or not any(k in str(node.target) for k in ("conv", "linear")):
            continue
        weight = node.args[1] if len(node.args) > 1 else None
        shape = getattr(getattr(weight, "meta", {}).get("val"), "shape", None)
        stack = node.meta.get("nn_module_stack") or {}
        if shape is not None and stack:
            found.append((list(stack.values())[-1][0], tuple(int(d) for d in shape)))
    return found


def tflite_float_layers(path, names=()) -> dict:
    """``{"layers": [...], "params", "bytes", "share"}`` for the TFLite file at ``path`` (see the module doc).

    ``names``: ``torch_layers`` of the graph the file was exported from; a float layer takes the first
    unused name whose weight has the same dims (in any order: TFLite keeps convs as [O, kh, kw, I]),
    else the file's tensor name."""
    unused = list(names)

    def named(tensor) -> str:
        for i, (name, shape) in enumerate(unused):
            if sorted(shape) == sorted(tensor.shape):
                return unused.pop(i)[0]
        return tensor.name

    from edgehad.inspection.tflite_file import _WEIGHT_TYPES, read

    _, _, (_, _, subgraphs, _) = read(path)
    layers, total = [], 0.0
    for sub in subgraphs:
        producer = {o: op for op in sub.ops for o in op[2]}

        def stored(index):
            """The constant behind tensor ``index`` (itself, or the input of the DEQUANTIZE making it), or None."""
            t = sub.tensors[index]
            if t.constant:
                return t
            op = producer.get(index)
            if op is not None and op[0] == "DEQUANTIZE" and sub.tensors[op[1][0]].constant:
                return sub.tensors[op[1][0]]
            return None

        for t in sub.tensors:
            if t.constant and t.dtype in _WEIGHT_TYPES:
                total += math.prod(t.shape) * _TFLITE_BYTES.get(t.dtype, 4)
        for name, ins, outs, _ in sub.ops:
            if not outs or outs[0] < 0:
                continue
            if name in _TFLITE_WEIGHTED:
                consts = [stored(i) for i in ins if i >= 0]
                consts = [c for c in consts if c is not None and c.dtype in _WEIGHT_TYPES and len(c.shape) >= 1]
            elif name in _TFLITE_LOOKUP and ins and stored(ins[0]) is not None:
                consts = [stored(ins[0])]
            else:
                continue
            weights = [c for c in consts if len(c.shape) >= 2]
            if not weights:
                continue  # a product of two activations (attention scores): no weights
            layer = named(weights[0])  # every weighted op takes its name, in order, float or not
            if sub.tensors[outs[0]].dtype not in _TFLITE_FLOAT:
                continue
            layers.append(_layer(layer, name, consts,
                                 lambda c: (math.prod(c.shape), math.prod(c.shape) * _TFLITE_BYTES.get(c.dtype, 4))))
    return _summary(layers, total)


def onnx_float_layers(model) -> dict:
    """The same for an ONNX ModelProto (its initializers may hold no data: only shapes and types are read)."""
    from onnx import TensorProto, helper

    from edgehad.inspection.onnx_file import _names

    _, weight_types = _names()
    inits = {t.name: t for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    consumers = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def size(t) -> tuple[int, float]:
        n = math.prod(t.dims)
        return n, n * helper.tensor_dtype_to_np_dtype(t.data_type).itemsize

    def behind(name):
        """(initializer, via DequantizeLinear?) behind value ``name``, or (None, dequantized?)."""
        if name in inits:
            return inits[name], False
        node = producer.get(name)
        if node is not None and node.op_type == "DequantizeLinear":
            return inits.get(node.input[0]), True
        return None, False

    total = sum(size(t)[1] for t in inits.values() if t.data_type in weight_types)
    floats = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16}
    layers = []
    for node in model.graph.node:
        if node.op_type in _ONNX_WEIGHTED and len(node.input) >= 2:
            weight, weight_dq = behind(node.input[1])
            if weight is None or len(weight.dims) < 2:
                continue  # a product of two activations (attention scores): no weights
            _, x_dq = behind(node.input[0])
            q_out = all(c.op_type == "QuantizeLinear" for c in consumers.get(node.output[0], [None]) if c)
            int8 = weight_dq and x_dq and (q_out or node.op_type not in _ONNX_NEEDS_Q_OUTPUT)
            if int8:
                continue
            consts = [t for t in (behind(i)[0] for i in node.input[1:]) if t is not None]
        elif node.op_type == "Gather" and node.input and node.input[0] in inits \
                and inits[node.input[0]].data_type in floats:
            consts = [inits[node.input[0]]]
        else:
            continue
        layers.append(_layer(consts[0].name, node.op_type, consts, size))
    return _summary(layers, total)


def _layer(name: str, op: str, consts, size) -> dict:
    params = sum(size(c)[0] for c in consts)
    nbytes = sum(size(c)[1] for c in consts)
    lookup = op in _TFLITE_LOOKUP or op == "Gather"
    reason = ("a float table: static int8 quantizes no embedding lookup" if lookup else
              "computes in float: the activation next to it has no int8 pattern in the PT2E quantizer, so its "
              "input or output stayed float")
    return {"layer": name.removesuffix("_int8").removesuffix(".weight"), "op": op, "params": int(params),
            "bytes": int(nbytes), "reason": reason}


def _summary(layers: list, total_bytes: float) -> dict:
    nbytes = sum(layer["bytes"] for layer in layers)
    return {"layers": layers, "params": sum(layer["params"] for layer in layers), "bytes": nbytes,
            "share": round(nbytes / total_bytes, 4) if total_bytes else 0.0}


def warning(fmt: str, found: dict) -> str | None:
    """The console line for a file whose float share is above WARN_SHARE, saying what to do; else None."""
    if found["share"] <= WARN_SHARE:
        return None
    ops = sorted({layer["op"] for layer in found["layers"]})
    designed = [layer for layer in found["layers"] if layer["reason"].startswith(BY_DESIGN)]
    if designed and all(layer in designed or layer["op"] in _TFLITE_LOOKUP or layer["op"] == "Gather"
                        for layer in found["layers"]):
        return (f"warning: int8 {fmt}: {found['share']:.0%} of the weight bytes stay float by design "
                f"({len(found['layers'])} {', '.join(ops)}: embedding tables, and the layers feeding transformer "
                "residual sums, which this format cannot give a float output from int8); see the report's "
                "quantization.float_activations and float_weights")
    if all(layer["op"] in _TFLITE_LOOKUP or layer["op"] == "Gather" for layer in found["layers"]):
        return (f"warning: int8 {fmt}: {found['share']:.0%} of the weight bytes are float embedding tables "
                f"({len(found['layers'])} {', '.join(ops)}): static int8 leaves lookups float, so the file is "
                "not 4x smaller; see the report's quantization.float_weights")
    return (f"warning: int8 {fmt}: {len(found['layers'])} weighted layers ({', '.join(ops)}; "
            f"{found['share']:.0%} of the weight bytes) still compute in float: the quantizer has no int8 "
            "pattern for the op next to them, so this file may be no faster than fp32; see the report's "
            "quantization.float_weights, or try `quantize` int8-dynamic")


class FileProbe:
    """The int8 plan's file steps that also measure: each written file's float layers go into ``found``
    (the quantize stage's ``float_weights`` report entry, by format), and a warning to ``progress`` when
    their share is above WARN_SHARE. The quantize stage decides the plan, but only the exporters write the
    files, so the measurement rides on the plan's own steps."""

    def __init__(self, found: dict, progress, names=(), int8_io: bool = False, by_design=None):
        self.found, self.progress, self.names, self.int8_io = found, progress, list(names), int8_io
        self.by_design = dict(by_design or {})  # module path -> why the quantizer left its output float

    def onnx(self, model) -> None:
        """``onnx_postprocess``: the int8 layout (edgehad.quantize.onnx_qdq), then the measurement."""
        from edgehad.quantize.onnx_qdq import int8_layout

        int8_layout(model)
        self._record("onnx", onnx_float_layers(model))

    def tflite(self, src, dst) -> None:
        """``tflite_file_pass``: float I/O (edgehad.quantize.tflite_io) unless int8 I/O, then the measurement."""
        import shutil

        from edgehad.quantize.tflite_io import add_float_io

        if self.int8_io:
            shutil.copyfile(src, dst)
        else:
            add_float_io(src, dst)
        self._record("tflite", tflite_float_layers(dst, self.names))

    def _record(self, fmt: str, found: dict) -> None:
        for layer in found["layers"]:
            if layer["layer"] in self.by_design:
                layer["reason"] = f"{BY_DESIGN}: {self.by_design[layer['layer']]}"
        self.found[fmt] = found
        said = warning(fmt, found)
        if said:
            self.progress(said)
