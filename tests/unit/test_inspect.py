"""inspect_file / inspect_torch: one tiny model exported to ONNX and TFLite, numbers checked by hand."""

import json
import os
import random
import re

import pytest
import torch
from torch import nn

from edgehad.core.errors import UserInputError
from edgehad.cost import count_params
from edgehad.inspection import COMMON_KEYS, inspect_file, inspect_torch


class Tiny(nn.Module):
    """conv 3->8 (3x3, pad 1) -> relu -> depthwise 3x3 stride 2 -> relu -> flatten -> linear 128->10."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8)
        self.fc = nn.Linear(128, 10)

    def forward(self, x):
        x = torch.relu(self.conv(x))
        x = torch.relu(self.dw(x))
        return self.fc(x.flatten(1))


# 1x3x8x8 input. conv: 8*8*8 outputs x 27; depthwise: 8*4*4 outputs x 9; linear: 10 x 128
MACS = 512 * 27 + 128 * 9 + 10 * 128
PARAMS = (8 * 27 + 8) + (8 * 9 + 8) + (128 * 10 + 10)
ONNX_OPS = {"Conv": 2, "Relu": 2, "Gemm": 1, "Reshape": 1}
# litert-torch fuses the relus into the convs, pads explicitly and moves to NHWC and back
TFLITE_OPS = {"TRANSPOSE": 2, "CONV_2D": 1, "DEPTHWISE_CONV_2D": 1, "FULLY_CONNECTED": 1, "PAD": 1, "RESHAPE": 1}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return Tiny().eval(), torch.randn(1, 3, 8, 8)


@pytest.fixture(scope="module")
def files(model, tmp_path_factory):
    import litert_torch
    from onnxruntime.quantization import quantize_dynamic

    m, x = model
    d = tmp_path_factory.mktemp("inspect")
    torch.onnx.export(m, (x,), str(d / "tiny.onnx"), dynamo=True)
    litert_torch.convert(m, (x,)).export(str(d / "tiny.tflite"))
    quantize_dynamic(str(d / "tiny.onnx"), str(d / "tiny_int8.onnx"))
    return d


def test_torch(model):
    m, x = model
    r = inspect_torch(m, x)
    assert list(r) == list(COMMON_KEYS)
    assert r["format"] == "torch" and r["path"] is None
    assert r["inputs"] == [{"name": "x", "shape": [1, 3, 8, 8], "dtype": "float32"}]
    assert r["outputs"] == [{"name": "output_0", "shape": [1, 10], "dtype": "float32"}]
    assert r["ops"] == {"aten.convolution": 2, "aten.relu": 2, "aten.addmm": 1, "aten.t": 1, "aten.view": 1}
    assert r["params"] == PARAMS == count_params(m)
    assert r["macs"] == MACS
    assert r["size_bytes"] == PARAMS * 4
    assert r["quantized"] is False
    assert r["weight_dtypes"] == {"float32": PARAMS}
    assert r["notes"] == []
    assert json.loads(json.dumps(r)) == r  # plain JSON types only: the CLI prints it with --json


def test_onnx(files):
    import onnx

    path = files / "tiny.onnx"
    r = inspect_file(path)
    assert list(r) == [*COMMON_KEYS, "opset", "ir_version", "producer"]
    assert r["format"] == "onnx" and r["path"] == str(path)
    assert r["inputs"] == [{"name": "x", "shape": [1, 3, 8, 8], "dtype": "float32"}]
    assert [(o["shape"], o["dtype"]) for o in r["outputs"]] == [([1, 10], "float32")]
    assert list(r["ops"].items()) == list(ONNX_OPS.items())  # most frequent first, ties by name
    assert r["params"] == PARAMS  # the Reshape's int64 shape constant is not a weight
    assert r["macs"] == MACS
    # the dynamo exporter puts large weights in tiny.onnx.data: both files count
    assert r["size_bytes"] == sum(p.stat().st_size for p in files.glob("tiny.onnx*"))
    assert (files / "tiny.onnx.data").exists()
    assert r["quantized"] is False
    proto = onnx.load(str(path), load_external_data=False)
    assert r["opset"] == next(o.version for o in proto.opset_import if o.domain == "")
    assert r["notes"] == []
    assert json.loads(json.dumps(r)) == r


def test_tflite(files):
    path = files / "tiny.tflite"
    r = inspect_file(str(path))
    assert list(r) == [*COMMON_KEYS, "schema_version", "subgraphs", "signatures", "description"]
    assert r["format"] == "tflite"
    assert [(i["shape"], i["dtype"]) for i in r["inputs"]] == [([1, 3, 8, 8], "float32")]
    assert [(o["shape"], o["dtype"]) for o in r["outputs"]] == [([1, 10], "float32")]
    assert r["ops"] == TFLITE_OPS
    assert r["params"] == PARAMS  # transpose perms and the reshape shape are int32, not weights
    assert r["macs"] == MACS
    assert r["size_bytes"] == path.stat().st_size
    assert r["quantized"] is False
    assert r["schema_version"] == 3
    assert [s["ops"] for s in r["subgraphs"]] == [sum(TFLITE_OPS.values())]
    assert r["signatures"] == [{"key": "serving_default", "subgraph": 0}]
    assert json.loads(json.dumps(r)) == r


def test_onnx_dynamic_quantization(files):
    r = inspect_file(files / "tiny_int8.onnx")
    assert r["quantized"] is True
    assert r["macs"] == MACS  # ConvInteger and MatMulInteger cost what Conv and Gemm did
    assert {k: r["ops"][k] for k in ("ConvInteger", "MatMulInteger", "DynamicQuantizeLinear")} == {
        "ConvInteger": 2,
        "MatMulInteger": 1,
        "DynamicQuantizeLinear": 3,
    }
    # int8 weights plus one float scale and one int8 zero point per quantized layer; float biases
    weights = 8 * 27 + 8 * 9 + 128 * 10
    assert r["weight_dtypes"] == {"int8": weights + 3, "float32": 26 + 3}
    assert r["params"] == PARAMS + 6


def test_tflite_int8(model, tmp_path):
    import litert_torch
    from litert_torch.quantize import pt2e_quantizer, quant_config
    from torchao.quantization.pt2e import quantize_pt2e

    m, x = model
    quantizer = pt2e_quantizer.PT2EQuantizer().set_global(
        pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True)
    )
    g = quantize_pt2e.prepare_pt2e(torch.export.export(m, (x,)).module(), quantizer)
    g(x)
    g = quantize_pt2e.convert_pt2e(g, fold_quantize=False)
    path = tmp_path / "tiny_int8.tflite"
    litert_torch.convert(g, (x,), quant_config=quant_config.QuantConfig(pt2e_quantizer=quantizer)).export(str(path))

    r = inspect_file(path)
    assert r["quantized"] is True
    assert r["ops"] == TFLITE_OPS
    assert r["macs"] == MACS
    assert r["params"] == PARAMS
    assert r["weight_dtypes"] == {"int8": PARAMS - 26, "int32": 26}  # biases are int32
    (inp,) = r["inputs"]
    assert inp["dtype"] == "int8" and inp["shape"] == [1, 3, 8, 8]
    q = inp["quantization"]
    assert isinstance(q["scale"], float) and q["scale"] > 0 and isinstance(q["zero_point"], int)
    assert json.loads(json.dumps(r)) == r

    t = inspect_torch(g, x)  # the PT2E graph itself
    assert t["quantized"] is True and t["macs"] == MACS


def _onnx_model(nodes, inputs, outputs, initializers=()):
    from onnx import helper

    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])


def test_onnx_macs_by_hand(tmp_path):
    import numpy as np
    import onnx
    from onnx import TensorProto as T
    from onnx import helper, numpy_helper

    from edgehad.inspection.onnx_file import onnx_macs

    f32 = np.float32
    model = _onnx_model(
        [
            # grouped conv: 6 x 6 x 6 outputs per sample, each 4 / 2 = 2 channels x 3 x 3
            helper.make_node("Conv", ["x", "w"], ["y"], group=2, pads=[1, 1, 1, 1]),
            # transposed: 2 x 3 x 3 inputs, each spread over 4 x 2 x 2 outputs
            helper.make_node("ConvTranspose", ["t", "wt"], ["u"], strides=[2, 2]),
            # Gemm with A transposed: [5, 4]^T @ [5, 3] -> 4 x 3 outputs, K = 5
            helper.make_node("Gemm", ["a", "b"], ["c"], transA=1),
            # vector @ matrix: 3 outputs, K = 5
            helper.make_node("MatMul", ["v", "b"], ["vb"]),
        ],
        [
            helper.make_tensor_value_info("x", T.FLOAT, ["batch", 4, 6, 6]),
            helper.make_tensor_value_info("t", T.FLOAT, [1, 2, 3, 3]),
            helper.make_tensor_value_info("a", T.FLOAT, [5, 4]),
            helper.make_tensor_value_info("v", T.FLOAT, [5]),
        ],
        [helper.make_tensor_value_info(n, T.FLOAT, None) for n in ("y", "u", "c", "vb")],
        [
            numpy_helper.from_array(np.zeros((6, 2, 3, 3), f32), "w"),
            numpy_helper.from_array(np.zeros((2, 4, 2, 2), f32), "wt"),
            numpy_helper.from_array(np.zeros((5, 3), f32), "b"),
        ],
    )
    hand = 216 * 18 + 18 * 16 + 4 * 3 * 5 + 3 * 5
    assert onnx_macs(model) == hand
    path = tmp_path / "hand.onnx"
    onnx.save(model, str(path))
    # the symbolic batch is never guessed: no MACs without it, the hand count at the batch given
    unstated = inspect_file(path)
    assert unstated["macs"] is None and unstated["input_shapes"] is None
    assert unstated["notes"] == [f"MACs not computed: {path} has symbolic dims: x[0]=batch; give them with "
                                 "`input_shape` (e.g. x=1x4x6x6) or `inputs` (an .npz of arrays by input name)"]
    r = inspect_file(path, input_shape="x=1x4x6x6")
    assert r["macs"] == hand and r["input_shapes"]["x"] == [1, 4, 6, 6]
    assert inspect_file(path, input_shape={"x": (3, 4, 6, 6)})["macs"] == hand + 2 * 216 * 18
    assert r["inputs"][0]["shape"] == ["batch", 4, 6, 6]
    # declared without a shape; shape inference fills it in
    assert r["outputs"][0] == {"name": "y", "shape": ["batch", 6, 6, 6], "dtype": "float32"}
    assert r["notes"] == []
    assert r["params"] == 6 * 18 + 2 * 16 + 15


def test_onnx_quantized_io(tmp_path):
    """A uint8 input read by DequantizeLinear and a uint8 output made by QuantizeLinear report scale and zero point."""
    import numpy as np
    import onnx
    from onnx import TensorProto as T
    from onnx import helper, numpy_helper

    model = _onnx_model(
        [
            helper.make_node("DequantizeLinear", ["x", "xs", "xz"], ["xf"]),
            helper.make_node("MatMul", ["xf", "w"], ["yf"]),
            helper.make_node("QuantizeLinear", ["yf", "ys", "yz"], ["y"]),
        ],
        [helper.make_tensor_value_info("x", T.UINT8, [1, 4])],
        [helper.make_tensor_value_info("y", T.UINT8, [1, 3])],
        [
            numpy_helper.from_array(np.array(0.5, np.float32), "xs"),
            numpy_helper.from_array(np.array(128, np.uint8), "xz"),
            numpy_helper.from_array(np.ones((4, 3), np.float32), "w"),
            numpy_helper.from_array(np.array(0.25, np.float32), "ys"),
            numpy_helper.from_array(np.array(10, np.uint8), "yz"),
        ],
    )
    path = tmp_path / "qio.onnx"
    onnx.save(model, str(path))
    r = inspect_file(path)
    assert r["inputs"] == [
        {"name": "x", "shape": [1, 4], "dtype": "uint8", "quantization": {"scale": 0.5, "zero_point": 128}}
    ]
    assert r["outputs"][0]["quantization"] == {"scale": 0.25, "zero_point": 10}
    assert r["quantized"] is True
    assert r["macs"] == 12
    assert r["params"] == 12 + 4  # weights, two scales, two zero points
    assert r["ops"] == {"DequantizeLinear": 1, "MatMul": 1, "QuantizeLinear": 1}


def _bad(path, data):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("kind, suffix", [("ONNX", "onnx"), ("TFLite", "tflite")])
def test_broken_files(files, tmp_path, kind, suffix):
    good = (files / f"tiny.{suffix}").read_bytes()
    noise = random.Random(0).randbytes(1000)
    cases = {
        "head": good[:100],
        "half": good[: len(good) // 2],
        "noise": noise,
        "empty": b"",
    }
    for label, data in cases.items():
        path = _bad(tmp_path / f"{label}.{suffix}", data)
        pattern = rf"^{re.escape(str(path))} is not a valid {kind} file \(.+\): re-export it$"
        with pytest.raises(UserInputError, match=pattern):
            inspect_file(path)
    with pytest.raises(UserInputError, match=r"\(the file is empty\)"):
        inspect_file(tmp_path / f"empty.{suffix}")


def test_tflite_identifier_checked_first(files, tmp_path):
    path = _bad(tmp_path / "onnx_in_disguise.tflite", (files / "tiny.onnx").read_bytes())
    with pytest.raises(UserInputError, match=r"\(no TFL3 identifier at bytes 4\.\.8\)"):
        inspect_file(path)


@pytest.mark.parametrize("suffix", ["onnx", "tflite"])
def test_any_damage_is_a_user_error(files, tmp_path, suffix):
    """Every prefix and a few hundred byte-flipped copies: a summary or a UserInputError, nothing else."""
    good = (files / f"tiny.{suffix}").read_bytes()
    rnd = random.Random(1)
    cases = [good[:n] for n in range(0, len(good), max(1, len(good) // 150))]
    for _ in range(150):
        b = bytearray(good)
        for _ in range(rnd.randint(1, 8)):
            b[rnd.randrange(len(b))] = rnd.randrange(256)
        cases.append(bytes(b))
    path = tmp_path / f"damaged.{suffix}"
    errors = 0
    for data in cases:
        path.write_bytes(data)
        try:
            assert isinstance(inspect_file(path), dict)
        except UserInputError:
            errors += 1
    assert errors >= 100  # most damage is detected, not just survived


def test_path_errors(tmp_path):
    with pytest.raises(UserInputError, match=r"missing\.onnx: no such file"):
        inspect_file(tmp_path / "missing.onnx")
    (tmp_path / "model.pt").write_bytes(b"x")
    with pytest.raises(UserInputError, match=r"cannot inspect '\.pt' files; supported: \.onnx, \.tflite"):
        inspect_file(tmp_path / "model.pt")
    with pytest.raises(UserInputError, match="no extension"):
        inspect_file(tmp_path / "model")
    os.mkdir(tmp_path / "dir.onnx")
    with pytest.raises(UserInputError, match="is a directory"):
        inspect_file(tmp_path / "dir.onnx")


def test_torch_input_mismatch(model):
    m, _ = model
    with pytest.raises(UserInputError, match="example inputs do not fit the model"):
        inspect_torch(m, torch.randn(1, 4, 8, 8))
