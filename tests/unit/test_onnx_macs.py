"""MACs of ONNX files where the shapes are hard to follow or the op is not a plain matmul (issue #15).

Small graphs built with onnx.helper, each run in onnxruntime first (the graph is real, and its shapes are
the ones counted), then counted and checked against the formula by hand: recurrent cells (LSTM, GRU,
RNN), integer matmuls, a Pad whose pads are computed (onnx's shape inference alone loses the dims after
it), a K that only the weight knows, and PaddlePaddle's "?" dims, which name no dim.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgehad import api
from edgehad.core.errors import UserInputError
from edgehad.inspection import inspect_file
from edgehad.inspection.onnx_file import onnx_macs
from edgehad.runtime import Session

RNG = np.random.default_rng(0)


def _model(nodes, inputs, outputs, initializers=(), opset=21, ms=False):
    import onnx
    from onnx import helper

    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    opsets = [helper.make_opsetid("", opset)] + ([helper.make_opsetid("com.microsoft", 1)] if ms else [])
    model = helper.make_model(graph, opset_imports=opsets, ir_version=10)
    if not ms:
        onnx.checker.check_model(model)
    return model


def _run(model, feed):
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feed)


def _w(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def test_recurrent_cells_cost_gates_times_hidden_times_input_plus_hidden():
    """Per step and direction: LSTM 4 * H * (I + H), GRU 3 * H * (I + H), RNN H * (I + H); times seq and batch."""
    from onnx import TensorProto as T
    from onnx import helper, numpy_helper

    seq, batch, i, h = 5, 2, 3, 4
    inits = {"W4": _w(2, 4 * h, i), "R4": _w(2, 4 * h, h),  # bidirectional LSTM
             "W3": _w(1, 3 * h, i), "R3": _w(1, 3 * h, h),  # GRU
             "W1": _w(1, h, i), "R1": _w(1, h, h)}          # RNN
    model = _model(
        [helper.make_node("LSTM", ["x", "W4", "R4"], ["y_lstm"], hidden_size=h, direction="bidirectional"),
         helper.make_node("GRU", ["x", "W3", "R3"], ["y_gru"], hidden_size=h),
         helper.make_node("RNN", ["x", "W1", "R1"], ["y_rnn"], hidden_size=h)],
        [helper.make_tensor_value_info("x", T.FLOAT, [seq, batch, i])],
        [helper.make_tensor_value_info("y_lstm", T.FLOAT, [seq, 2, batch, h]),
         helper.make_tensor_value_info("y_gru", T.FLOAT, [seq, 1, batch, h]),
         helper.make_tensor_value_info("y_rnn", T.FLOAT, [seq, 1, batch, h])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()])
    outs = _run(model, {"x": _w(seq, batch, i)})
    assert [o.shape for o in outs] == [(seq, 2, batch, h), (seq, 1, batch, h), (seq, 1, batch, h)]
    lstm, gru, rnn = (seq * batch * dirs * gates * h * (i + h) for gates, dirs in ((4, 2), (3, 1), (1, 1)))
    assert (lstm, gru, rnn) == (2240, 840, 280)
    assert onnx_macs(model) == lstm + gru + rnn


def test_torch_lstm_counts_like_the_onnx_lstm():
    """nn.LSTM runs oneDNN's rnn layer on CPU, which torch's flop counter leaves at 0."""
    import torch

    from edgehad.cost import count_macs

    lstm = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True)
    # layer 1: 5 * 2 rows x 2 directions x 4 * 4 * (3 + 4); layer 2 reads both directions: I = 8
    assert count_macs(lstm, torch.zeros(5, 2, 3)) == 20 * 16 * 7 + 20 * 16 * 12 == 6080
    assert count_macs(torch.nn.LSTM(3, 4, batch_first=True), torch.zeros(2, 5, 3)) == 10 * 16 * 7


def test_integer_matmuls_count_like_matmul(tmp_path):
    import onnx
    from onnx import TensorProto as T
    from onnx import helper, numpy_helper

    model = _model(
        [helper.make_node("MatMulInteger", ["a", "b"], ["ab"]),  # [2, 5, 8] @ [8, 3]: 2 * 5 * 3 * 8
         helper.make_node("DynamicQuantizeMatMul", ["f", "q", "q_scale"], ["fq"], domain="com.microsoft")],  # 4x8 @ 8x6
        [helper.make_tensor_value_info("a", T.UINT8, [2, 5, 8]), helper.make_tensor_value_info("f", T.FLOAT, [4, 8])],
        [helper.make_tensor_value_info("ab", T.INT32, [2, 5, 3]), helper.make_tensor_value_info("fq", T.FLOAT, [4, 6])],
        [numpy_helper.from_array(RNG.integers(0, 255, (8, 3), dtype=np.uint8), "b"),
         numpy_helper.from_array(RNG.integers(-127, 127, (8, 6), dtype=np.int8), "q"),
         numpy_helper.from_array(np.array([0.02], np.float32), "q_scale")], ms=True)
    outs = _run(model, {"a": RNG.integers(0, 255, (2, 5, 8), dtype=np.uint8), "f": _w(4, 8)})
    assert [o.shape for o in outs] == [(2, 5, 3), (4, 6)]
    onnx.save(model, str(tmp_path / "int.onnx"))
    info = inspect_file(tmp_path / "int.onnx")
    assert info["macs"] == 2 * 5 * 3 * 8 + 4 * 6 * 8 == 432
    assert info["quantized"] is True and info["notes"] == []
    assert info["ops"] == {"MatMulInteger": 1, "com.microsoft.DynamicQuantizeMatMul": 1}


def test_dims_behind_computed_pads_are_followed(tmp_path):
    """pads = flatten(transpose(reshape(concat(shape(x) - shape(x), [1, 3]), [2, 2]))) = [0, 1, 0, 3], built as
    Silero VAD's STFT pads are: onnx's shape inference stops at the Transpose and leaves the padded x [4, 10]
    unknown (N would count as 1); onnxruntime's symbolic inference follows it, once the Concat's axis -1
    (PaddlePaddle writes it) reads 0: it asserts 0 on shape tensors."""
    import onnx
    from onnx import TensorProto as T
    from onnx import helper, numpy_helper

    ints = {"p1": [1, 3], "s22": [2, 2], "flat": [-1]}
    model = _model(
        [helper.make_node("Shape", ["x"], ["sx"]),
         helper.make_node("Sub", ["sx", "sx"], ["zeros"]),
         helper.make_node("Concat", ["zeros", "p1"], ["pc"], axis=-1),
         helper.make_node("Reshape", ["pc", "s22"], ["p2"]),
         helper.make_node("Transpose", ["p2"], ["pt"], perm=[1, 0]),
         helper.make_node("Reshape", ["pt", "flat"], ["pads"]),
         helper.make_node("Pad", ["x", "pads"], ["xp"]),
         helper.make_node("MatMul", ["w", "xp"], ["y"])],  # [5, 4] @ [4, 10]: N only the padding tells
        [helper.make_tensor_value_info("x", T.FLOAT, [4, 6])],
        [helper.make_tensor_value_info("y", T.FLOAT, [5, "n"])],
        [numpy_helper.from_array(np.array(v, np.int64), k) for k, v in ints.items()]
        + [numpy_helper.from_array(_w(5, 4), "w")])
    assert _run(model, {"x": _w(4, 6)})[0].shape == (5, 10)
    onnx.save(model, str(tmp_path / "pads.onnx"))
    info = api.inspect(tmp_path / "pads.onnx")
    assert info["macs"] == 5 * 10 * 4 and info["notes"] == []
    assert info["input_shapes"] == {"x": [4, 6]}
    assert info["outputs"][0]["shape"] == [5, "n"]  # the file's declaration, as inspect shows it


def test_k_only_the_weight_knows():
    """a's last dim is symbolic; b[K, N] states it (MACs are counted at static inputs, so this is a fallback)."""
    from onnx import TensorProto as T
    from onnx import helper, numpy_helper

    model = _model([helper.make_node("MatMul", ["a", "b"], ["y"])],
                   [helper.make_tensor_value_info("a", T.FLOAT, [2, "k"])],
                   [helper.make_tensor_value_info("y", T.FLOAT, [2, 3])], [numpy_helper.from_array(_w(8, 3), "b")])
    assert onnx_macs(model) == 2 * 3 * 8


def _paddle_like(path):
    """A conv net whose input is [?, 3, ?, ?]: PaddlePaddle's exporter writes "?" for every unknown dim."""
    import onnx
    from onnx import TensorProto as T
    from onnx import helper, numpy_helper

    model = _model([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])],
                   [helper.make_tensor_value_info("x", T.FLOAT, ["?", 3, "?", "?"])],
                   [helper.make_tensor_value_info("y", T.FLOAT, ["?", 8, "?", "?"])],
                   [numpy_helper.from_array(_w(8, 3, 3, 3), "w")], opset=18)
    onnx.save(model, str(path))
    return path


def test_question_mark_dims_are_not_one_shared_name(tmp_path):
    path = _paddle_like(tmp_path / "cls.onnx")
    info = api.inspect(path, input_shape="x=1x3x48x192")
    assert info["input_shapes"] == {"x": [1, 3, 48, 192]}
    assert info["macs"] == 48 * 192 * 8 * 27 and info["notes"] == []
    assert info["inputs"][0]["shape"] == [None, 3, None, None]  # unknown, not named "?"
    sess = Session(str(path), threads=1, input_shape="x=1x3x48x192")
    assert sess.inputs[0]["shape"] == [1, 3, 48, 192]
    assert sess.run([np.zeros((1, 3, 48, 192), np.float32)])[0].shape == (1, 8, 48, 192)
    with pytest.raises(UserInputError) as err:
        api.inspect(path)
    assert str(err.value) == (f"{path} has symbolic dims: x[0], x[2], x[3]; give them with `input_shape` "
                              f"(e.g. x=1x3x16x16) or `inputs` (an .npz of arrays by input name)")


def test_einsum_costs_one_multiply_add_per_point_of_its_index_space():
    """QK^T as an Einsum (b*h*q*k*d), a batched matmul with ``...`` broadcast, and a one-operand sum (0)."""
    from onnx import TensorProto as T
    from onnx import helper

    q, k = _w(1, 2, 5, 8), _w(1, 2, 7, 8)
    a, b = _w(3, 1, 4, 6), _w(1, 2, 6, 5)
    model = _model(
        [helper.make_node("Einsum", ["q", "k"], ["s"], equation="bhqd,bhkd->bhqk"),
         helper.make_node("Einsum", ["a", "b"], ["m"], equation="...ij,...jk->...ik"),
         helper.make_node("Einsum", ["a"], ["t"], equation="...ij->...")],
        [helper.make_tensor_value_info(n, T.FLOAT, list(v.shape)) for n, v in (("q", q), ("k", k), ("a", a), ("b", b))],
        [helper.make_tensor_value_info("s", T.FLOAT, [1, 2, 5, 7]), helper.make_tensor_value_info("m", T.FLOAT, [3, 2, 4, 5]),
         helper.make_tensor_value_info("t", T.FLOAT, [3, 1])])
    s, m, _ = _run(model, {"q": q, "k": k, "a": a, "b": b})
    np.testing.assert_allclose(s, q @ k.transpose(0, 1, 3, 2), rtol=1e-4, atol=1e-5)
    assert m.shape == (3, 2, 4, 5)  # ... broadcast to [3, 2]
    assert onnx_macs(model) == 1 * 2 * 5 * 7 * 8 + (3 * 2) * 4 * 6 * 5 + 0


def test_attention_costs_its_two_products():
    """ONNX Attention (opset 23) with 4-D Q, K, V and grouped K/V heads: B * Hq * S * L * (d + dv)."""
    from onnx import TensorProto as T
    from onnx import helper

    q, k, v = _w(2, 4, 5, 8), _w(2, 2, 7, 8), _w(2, 2, 7, 6)
    model = _model([helper.make_node("Attention", ["q", "k", "v"], ["y"])],
                   [helper.make_tensor_value_info(n, T.FLOAT, list(x.shape)) for n, x in (("q", q), ("k", k), ("v", v))],
                   [helper.make_tensor_value_info("y", T.FLOAT, [2, 4, 5, 6])], opset=23)
    (y,) = _run(model, {"q": q, "k": k, "v": v})
    assert y.shape == (2, 4, 5, 6)
    assert onnx_macs(model) == 2 * 4 * 5 * 7 * (8 + 6)
    assert not any("not modelled" in n for n in inspect_file_notes(model))


def test_contrib_attention_adds_its_qkv_projection():
    """com.microsoft.Attention on x[B, S, hidden] with weights [hidden, 3*hidden]: the projection, then the two
    products with L = S: B*S*hidden*3*hidden + B*S*S*(hidden + hidden)."""
    from onnx import TensorProto as T
    from onnx import helper, numpy_helper

    batch, seq, hidden, heads = 2, 6, 8, 2
    x = _w(batch, seq, hidden)
    w, bias = numpy_helper.from_array(_w(hidden, 3 * hidden), "w"), numpy_helper.from_array(_w(3 * hidden), "bias")
    model = _model([helper.make_node("Attention", ["x", "w", "bias"], ["y"], domain="com.microsoft", num_heads=heads)],
                   [helper.make_tensor_value_info("x", T.FLOAT, [batch, seq, hidden])],
                   [helper.make_tensor_value_info("y", T.FLOAT, [batch, seq, hidden])], initializers=[w, bias], ms=True)
    (y,) = _run(model, {"x": x})
    assert y.shape == (batch, seq, hidden)
    assert onnx_macs(model) == batch * seq * hidden * 3 * hidden + batch * seq * seq * 2 * hidden


def inspect_file_notes(model) -> list[str]:
    import tempfile
    from pathlib import Path

    import onnx

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        onnx.save(model, path)
        return inspect_file(str(path))["notes"]


def test_if_counts_its_larger_branch_and_says_so():
    """One inference runs one branch of an If: then x@W1 (1*4*8 = 32), else (x@W2)@W3 (64 + 128 = 192)."""
    from onnx import TensorProto as T
    from onnx import helper, numpy_helper

    w = {"w1": _w(4, 8), "w2": _w(4, 16), "w3": _w(16, 8)}
    out = lambda name: helper.make_tensor_value_info(name, T.FLOAT, [1, 8])  # noqa: E731
    then = helper.make_graph([helper.make_node("MatMul", ["x", "w1"], ["a"])], "then", [], [out("a")])
    other = helper.make_graph([helper.make_node("MatMul", ["x", "w2"], ["h"]),
                               helper.make_node("MatMul", ["h", "w3"], ["b"])], "else", [], [out("b")])
    model = _model([helper.make_node("If", ["flag"], ["y"], then_branch=then, else_branch=other)],
                   [helper.make_tensor_value_info("x", T.FLOAT, [1, 4]), helper.make_tensor_value_info("flag", T.BOOL, [])],
                   [out("y")], initializers=[numpy_helper.from_array(v, k) for k, v in w.items()])
    x = _w(1, 4)
    (y,) = _run(model, {"x": x, "flag": np.array(False)})
    np.testing.assert_allclose(y, x @ w["w2"] @ w["w3"], rtol=1e-4, atol=1e-5)
    assert onnx_macs(model) == 192
    assert "MACs depend on the inputs: If (the larger branch counted) x1" in inspect_file_notes(model)
