"""``edgehad micro`` on corrupted and mutated .tflite files and absurd flags: exit 2, one ``error:`` line, no hang.

The models are written here with TFLite's own flatbuffer schema (ai_edge_litert.schema_py_generated), so
each mutation changes exactly one field of a model that is otherwise valid and runs under TFLM.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli
from tests.e2e.test_cli_convert import assert_clean_error

LIMIT_S = 180  # each CLI run: a hang fails the test instead of stalling the suite


def _schema():
    import ai_edge_litert.schema_py_generated as schema

    return schema


def _tensor(name, shape, ttype, buf, scale=None, zero_point=None):
    s = _schema()
    t = s.TensorT()
    t.name, t.shape, t.type, t.buffer = name.encode(), list(shape), ttype, buf
    if scale is not None:
        q = s.QuantizationParametersT()
        q.scale, q.zeroPoint, q.quantizedDimension = list(scale), list(zero_point), 0
        t.quantization = q
    return t


def _buffer(array=None):
    b = _schema().BufferT()
    if array is not None:
        b.data = list(np.ascontiguousarray(array).tobytes())
    return b


def _opcode(code: int):
    oc = _schema().OperatorCodeT()
    oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), 1
    return oc


def conv_model():
    """An int8 CONV_2D (4x4x1 -> 4x4x2, per-channel weights), as a converter would write it."""
    s = _schema()
    m = s.ModelT()
    m.version = 3
    m.operatorCodes = [_opcode(s.BuiltinOperator.CONV_2D)]
    w = np.random.default_rng(0).integers(-127, 128, size=(2, 3, 3, 1)).astype(np.int8)
    m.buffers = [_buffer(), _buffer(), _buffer(w), _buffer(np.array([100, -100], np.int32)), _buffer()]
    i8, i32 = s.TensorType.INT8, s.TensorType.INT32
    g = s.SubGraphT()
    g.name = b"main"
    g.tensors = [_tensor("x", [1, 4, 4, 1], i8, 1, [0.1], [0]),
                 _tensor("w", [2, 3, 3, 1], i8, 2, [0.01, 0.02], [0, 0]),
                 _tensor("b", [2], i32, 3, [0.001, 0.002], [0, 0]),
                 _tensor("y", [1, 4, 4, 2], i8, 4, [0.05], [0])]
    op = s.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0, 1, 2], [3]
    opts = s.Conv2DOptionsT()
    opts.padding, opts.strideW, opts.strideH, opts.dilationWFactor, opts.dilationHFactor = s.Padding.SAME, 1, 1, 1, 1
    op.builtinOptionsType, op.builtinOptions = s.BuiltinOptions.Conv2DOptions, opts
    g.operators, g.inputs, g.outputs = [op], [0], [3]
    m.subgraphs = [g]
    return m


def forever_model():
    """y = WHILE(x) whose condition is a constant true: TFLM's (and LiteRT's) invoke never returns."""
    s = _schema()
    m = s.ModelT()
    m.version = 3
    m.operatorCodes = [_opcode(s.BuiltinOperator.WHILE), _opcode(s.BuiltinOperator.ADD)]
    m.buffers = [_buffer(), _buffer(), _buffer(np.array([1], np.uint8)), _buffer(np.zeros(1, np.float32))]
    f32 = s.TensorType.FLOAT32
    main, cond, body = s.SubGraphT(), s.SubGraphT(), s.SubGraphT()
    main.tensors = [_tensor("x", [1], f32, 1), _tensor("y", [1], f32, 1)]
    loop = s.OperatorT()
    loop.opcodeIndex, loop.inputs, loop.outputs = 0, [0], [1]
    options = s.WhileOptionsT()
    options.condSubgraphIndex, options.bodySubgraphIndex = 1, 2
    loop.builtinOptionsType, loop.builtinOptions = s.BuiltinOptions.WhileOptions, options
    main.operators, main.inputs, main.outputs = [loop], [0], [1]
    cond.tensors = [_tensor("x", [1], f32, 1), _tensor("true", [], s.TensorType.BOOL, 2)]
    cond.operators, cond.inputs, cond.outputs = [], [0], [1]
    body.tensors = [_tensor("x", [1], f32, 1), _tensor("zero", [1], f32, 3), _tensor("x1", [1], f32, 1)]
    add = s.OperatorT()
    add.opcodeIndex, add.inputs, add.outputs = 1, [0, 1], [2]
    add.builtinOptionsType, add.builtinOptions = s.BuiltinOptions.AddOptions, s.AddOptionsT()
    body.operators, body.inputs, body.outputs = [add], [0], [2]
    m.subgraphs = [main, cond, body]
    return m


def pack(model) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def write_forever(folder: Path) -> Path:
    path = folder / "forever.tflite"
    path.write_bytes(pack(forever_model()))
    return path


def _mutated(field: str) -> bytes:
    m = conv_model()
    tensors = m.subgraphs[0].tensors
    if field == "opcode":
        m.operatorCodes[0].builtinCode = 100000
    elif field == "bias_zero_point":
        tensors[2].quantization.zeroPoint = [7, 0]
    elif field == "weight_scales":
        tensors[1].quantization.scale, tensors[1].quantization.zeroPoint = [0.01, 0.02, 0.03], [0, 0, 0]
    elif field == "huge_input":
        tensors[0].shape = [1, 1 << 20, 1 << 20, 1]
    return pack(m)


def _flipped_root() -> bytes:
    data = bytearray(pack(conv_model()))
    data[0:4] = b"\xff\xff\xff\x7f"
    return bytes(data)


def _header_then_garbage() -> bytes:
    return b"\x1c\x00\x00\x00TFL3" + bytes(np.random.default_rng(1).integers(0, 256, 2000, dtype=np.uint8))


# (the file's bytes, the message of the one error line); every one exit 2.
FILES = {
    "truncated": (lambda: pack(conv_model())[: len(pack(conv_model())) // 2], "is not a valid TFLite file"),
    "zeroed": (lambda: bytes(len(pack(conv_model()))), "no TFL3 identifier at bytes 4..8"),
    "empty": (lambda: b"", "the file is empty"),
    "not_tflite_renamed": (lambda: b"\x08\x07\x12\x07pytorch" + bytes(200), "no TFL3 identifier at bytes 4..8"),
    "header_then_garbage": (_header_then_garbage, "is not a valid TFLite file"),
    "root_offset_flipped": (_flipped_root, "root table offset points past the end of the file"),
    "unknown_opcode": (lambda: _mutated("opcode"),
                       "is not a valid TFLite model: it uses opcode(s) TFLite does not define (100000)"),
    "bias_zero_point": (lambda: _mutated("bias_zero_point"),
                        "is not a valid TFLite model: TFLM ran it but LiteRT refuses it (litert error"),
    "weight_scale_count": (lambda: _mutated("weight_scales"), "both refuse it; re-export it"),
    "huge_input": (lambda: _mutated("huge_input"), "more than the 262,144 KiB arena cap: no MCU can run it"),
}


def test_the_unmutated_model_passes(tmp_path):
    """The baseline the mutations start from runs under TFLM and matches LiteRT: each failure is the mutation's."""
    path = tmp_path / "conv.tflite"
    path.write_bytes(pack(conv_model()))
    result = run_cli("micro", path, "--samples", "2", "--json", timeout=LIMIT_S)
    assert result.returncode == 0, result.stderr[-3000:]
    r = json.loads(result.stdout)
    assert r["ops"] == ["CONV_2D"] and r["parity"]["passed"] and r["arena"]["works"]


@pytest.mark.parametrize("name", sorted(FILES))
def test_corrupted_file(name, tmp_path):
    make, message = FILES[name]
    path = tmp_path / f"{name}.tflite"
    path.write_bytes(make())
    result = run_cli("micro", path, timeout=LIMIT_S)
    assert_clean_error(result, message)
    assert str(path) in result.stderr and "internal error" not in result.stderr


def test_a_model_that_loops_is_stopped(tmp_path):
    """A WHILE that never ends: an exit-2 answer naming the file and the limit, not a 300 s wait and an arena hint."""
    path = write_forever(tmp_path)
    result = run_cli("micro", path, "--timeout", "2", timeout=LIMIT_S)
    assert_clean_error(result, f"{path}: the model did not finish in 2 s under TFLite Micro: it may loop")
    assert "arena" not in result.stderr.splitlines()[-1]


@pytest.mark.parametrize("args, message", [
    (["--arena-kb", "999999999999"], "--arena-kb must be a number in (0, 262144], got 999999999999 (KiB; 262,144 "
                                     "KiB = 256 MiB, the cap of the arena search, is more RAM than any MCU has)"),
    (["--arena-kb", "inf"], "--arena-kb must be a number in (0, 262144], got Infinity"),
    (["--arena-kb", "nan"], "--arena-kb must be a number in (0, 262144], got NaN"),
    (["--samples", "100000"], "--samples must be an integer in [1, 1000], got 100000"),
    (["--timeout", "0"], "--timeout must be a number in (0, 86400], got 0 (seconds each TFLM or LiteRT run may take)"),
    (["--timeout", "inf"], "--timeout must be a number in (0, 86400], got Infinity"),
])
def test_absurd_flags_are_refused_up_front(args, message, tmp_path):
    path = tmp_path / "conv.tflite"
    path.write_bytes(pack(conv_model()))
    result = run_cli("micro", path, *args, timeout=LIMIT_S)
    assert_clean_error(result, message)
