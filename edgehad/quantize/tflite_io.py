"""Float or int8 inputs/outputs for a full-integer TFLite file.

litert-torch's static PT2E conversion folds the boundary quantize/dequantize
into the signature, so its file takes and returns int8. ``add_float_io`` puts a
QUANTIZE before each int8 input and a DEQUANTIZE after each int8 output (float
I/O, the default: the app passes floats, the interior stays int8; measured
cost +0.05 ms on MobileNetV2). ``--int8-io`` keeps the file as converted; the
scale and zero point of each input and output are then in the report and in
``edgehad inspect``.
"""

from __future__ import annotations


def add_float_io(src, dst) -> int:
    """Rewrite ``src`` with float32 I/O into ``dst``; returns the number of tensors wrapped."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(src))
    graph = model.subgraphs[0]
    quantize = _opcode(model, schema, schema.BuiltinOperator.QUANTIZE)
    dequantize = _opcode(model, schema, schema.BuiltinOperator.DEQUANTIZE)
    new_inputs, new_outputs = {}, {}
    for pos, index in enumerate(list(graph.inputs)):
        if graph.tensors[index].type in (schema.TensorType.INT8, schema.TensorType.UINT8):
            twin = _float_twin(model, graph, schema, index)
            op = schema.OperatorT()
            op.opcodeIndex, op.inputs, op.outputs = quantize, [twin], [index]
            graph.operators.insert(0, op)
            graph.inputs[pos] = new_inputs[index] = twin
    for pos, index in enumerate(list(graph.outputs)):
        if graph.tensors[index].type in (schema.TensorType.INT8, schema.TensorType.UINT8):
            twin = _float_twin(model, graph, schema, index)
            op = schema.OperatorT()
            op.opcodeIndex, op.inputs, op.outputs = dequantize, [index], [twin]
            graph.operators.append(op)
            graph.outputs[pos] = new_outputs[index] = twin
    for signature in model.signatureDefs or []:
        for tensor_map in signature.inputs or []:
            tensor_map.tensorIndex = new_inputs.get(tensor_map.tensorIndex, tensor_map.tensorIndex)
        for tensor_map in signature.outputs or []:
            tensor_map.tensorIndex = new_outputs.get(tensor_map.tensorIndex, tensor_map.tensorIndex)
    flatbuffer_utils.write_model(model, str(dst))
    return len(new_inputs) + len(new_outputs)


def _opcode(model, schema, builtin) -> int:
    for i, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            return i
    code = schema.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, min(builtin, 127), 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _float_twin(model, graph, schema, index) -> int:
    original = graph.tensors[index]
    tensor = schema.TensorT()
    tensor.shape, tensor.shapeSignature = list(original.shape), original.shapeSignature
    tensor.type, tensor.name = schema.TensorType.FLOAT32, original.name + b"_float"
    model.buffers.append(schema.BufferT())
    tensor.buffer = len(model.buffers) - 1
    graph.tensors.append(tensor)
    return len(graph.tensors) - 1
