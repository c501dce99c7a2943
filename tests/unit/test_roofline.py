"""Roofline: per-op MACs and bytes against hand-computed numbers, the peaks chosen, the edge cases."""

import math

import pytest

from edgehad.core.errors import UserInputError
from edgehad.inspection import inspect_file
from edgehad.profiling.roofline import OP_KEYS, ROOFLINE_KEYS, roofline
from edgehad.targets import load_target, validate_target

# A made-up board with round numbers: 2 cores, 8 Gop/s fp32 and 32 Gop/s int8 for both, 4 GB/s.
BOARD = validate_target({
    "name": "board", "description": "test board", "runtime": "ort", "memory_bandwidth_gbs": 4.0, "ram_kb": 1024,
    "cpu": {"cores": 2, "clock_ghz": 1.0, "isa": ["neon"]},
    "peak": {"fp32_gops": 8.0, "int8_gops": 32.0},
    "gpu": {"name": "toy GPU", "fp32_gflops": 100.0},
})


def _tiny_onnx(path, x_shape=(2, 64), unknown=False):
    """X[2,64] @ W[64,32] -> Relu -> Reshape [64] -> out; plus a Constant-only Add that folds.

    MatMul: MACs 2*32*64 = 4096; bytes X 2*64*4 + W 64*32*4 + Y 2*32*4 = 512 + 8192 + 256 = 8960.
    Relu (not fused: MatMul is no Conv/Gemm): 256 read + 256 written = 512. Reshape: a view, 0.
    With ``unknown``, a second branch Relu(U) reads an input of unknown rank and is skipped.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    import numpy as np

    w = numpy_helper.from_array(np.ones((64, 32), np.float32), "W")
    shape = numpy_helper.from_array(np.array([64], np.int64), "shape")
    one = numpy_helper.from_array(np.ones(4, np.float32), "one")
    nodes = [
        helper.make_node("MatMul", ["X", "W"], ["Y"], name="mm"),
        helper.make_node("Relu", ["Y"], ["R"], name="relu"),
        helper.make_node("Reshape", ["R", "shape"], ["OUT"], name="flat"),
        helper.make_node("Add", ["one", "one"], ["TWO"], name="folded"),
    ]
    inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, list(x_shape))]
    outputs = [helper.make_tensor_value_info("OUT", TensorProto.FLOAT, None),
               helper.make_tensor_value_info("TWO", TensorProto.FLOAT, [4])]
    if unknown:
        nodes.append(helper.make_node("Relu", ["U"], ["V"], name="blind"))
        inputs.append(helper.make_tensor_value_info("U", TensorProto.FLOAT, None))
        outputs.append(helper.make_tensor_value_info("V", TensorProto.FLOAT, None))
    graph = helper.make_graph(nodes, "tiny", inputs, outputs, initializer=[w, shape, one])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


def test_tiny_onnx_by_hand(tmp_path):
    r = roofline(_tiny_onnx(tmp_path / "tiny.onnx"), BOARD, measured_ms=0.004736, threads=1)
    assert tuple(r) == ROOFLINE_KEYS
    assert [(o["name"], o["op"], o["macs"], o["bytes"]) for o in r["ops"]] == [
        ("mm", "MatMul", 4096, 8960), ("relu", "Relu", 0, 512)]
    assert all(tuple(o) == OP_KEYS for o in r["ops"])
    # 1 of 2 threads: 8 * 1/2 = 4 Gop/s
    assert (r["precision"], r["processor"], r["peak_gops"], r["bandwidth_gbs"]) == ("fp32", "cpu", 4.0, 4.0)
    mm, relu = r["ops"]
    assert mm["compute_ms"] == pytest.approx(2 * 4096 / 4e9 * 1e3)  # 0.002048
    assert mm["memory_ms"] == pytest.approx(8960 / 4e9 * 1e3)  # 0.00224
    assert (mm["bound_ms"], mm["limited_by"]) == (pytest.approx(0.00224), "memory")
    assert mm["intensity"] == pytest.approx(8192 / 8960)
    assert (relu["bound_ms"], relu["limited_by"], relu["intensity"]) == (pytest.approx(512 / 4e6), "memory", 0.0)
    assert (r["macs"], r["bytes"]) == (4096, 9472)
    assert r["bound_ms"] == pytest.approx(0.00224 + 0.000128)
    assert r["percent_of_roofline"] == pytest.approx(50.0)
    assert r["bound"] == "memory" and r["ridge_intensity"] == pytest.approx(1.0)
    assert "Williams" in r["note"] and "1 op(s) on constants only left out" in r["note"]
    assert r["skipped_ops"] == 0


def test_threads_scale_the_cpu_peak(tmp_path):
    path = _tiny_onnx(tmp_path / "tiny.onnx")
    assert roofline(path, BOARD, None, threads=2)["peak_gops"] == 8.0
    many = roofline(path, BOARD, None, threads=16)
    assert many["peak_gops"] == 8.0 and "16 threads asked, 2 cores there" in many["note"]
    assert roofline(path, BOARD, None, threads=None)["peak_gops"] == 8.0


def test_without_a_measurement_there_is_no_percentage(tmp_path):
    path = _tiny_onnx(tmp_path / "tiny.onnx")
    assert roofline(path, BOARD, None, 1)["percent_of_roofline"] is None
    assert roofline(path, BOARD, 0.0, 1)["percent_of_roofline"] is None


def test_unknown_shapes_are_skipped_and_counted(tmp_path):
    r = roofline(_tiny_onnx(tmp_path / "u.onnx", unknown=True), BOARD, 1.0, 1)
    assert [o["name"] for o in r["ops"]] == ["mm", "relu"]
    assert r["skipped_ops"] == 1
    assert "1 op(s) skipped, shapes or types unknown: Relu x1" in r["note"]


def test_dynamic_dims_count_as_one(tmp_path):
    r = roofline(_tiny_onnx(tmp_path / "d.onnx", x_shape=("N", 64)), BOARD, None, 1)
    mm = r["ops"][0]
    assert (mm["macs"], mm["bytes"]) == (32 * 64, 64 * 4 + 8192 + 32 * 4)
    assert "dynamic dims taken as 1: N" in r["note"]


def test_gpu_provider_uses_the_gpu_peaks(tmp_path):
    path = _tiny_onnx(tmp_path / "tiny.onnx")
    r = roofline(path, BOARD, None, threads=1, provider="cuda")
    assert (r["processor"], r["peak_gops"]) == ("gpu", 100.0)
    nano = roofline(path, load_target("jetson-nano"), None, threads=1, provider="cuda")
    assert (nano["processor"], nano["peak_gops"], nano["bandwidth_gbs"]) == ("gpu", 235.9, 25.6)
    no_gpu = dict(BOARD)
    del no_gpu["gpu"]
    assert roofline(path, no_gpu, None, 1, provider="tensorrt") is None


def test_bad_files(tmp_path):
    with pytest.raises(UserInputError, match=r"no roofline for '\.pt' files"):
        roofline(tmp_path / "m.pt", BOARD, None, 1)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(UserInputError, match=r"is not a valid ONNX file"):
        roofline(broken, BOARD, None, 1)
    with pytest.raises(UserInputError, match=r"no such file"):
        roofline(tmp_path / "absent.tflite", BOARD, None, 1)


# -- a real exported model: the zoo's digits CNN, fp32 and int8, ONNX and TFLite ----------------------
# Hand count (input 1x1x8x8; conv 3x3 'same' padding; every Conv fused with its Relu):
#   conv0 1->32 on 8x8: MACs 32*64*9 = 18432;  fp32 bytes 64*4 + 288*4 + 32*4 + 2048*4 = 9728
#   conv1 32->32 on 8x8: MACs 2048*288 = 589824; bytes 2048*4 + 9216*4 + 32*4 + 2048*4 = 53376
#   maxpool 2x2: bytes 2048*4 + 512*4 = 10240
#   conv2 32->64 on 4x4: MACs 1024*288 = 294912; bytes 512*4 + 18432*4 + 64*4 + 1024*4 = 80128
#   linear 64->10: MACs 640; bytes 64*4 + 640*4 + 10*4 + 10*4 = 2896
# int8 (activations uint8/int8, weights int8, biases 4-byte): conv bytes 2528, 13440, 20224; maxpool 2560.
CONV_MACS = [18432, 589824, 294912]
FP32_BYTES = {"conv": [9728, 53376, 80128], "pool": 10240, "linear": 2896}
INT8_BYTES = {"conv": [2528, 13440, 20224], "pool": 2560, "linear": 64 + 640 + 40 + 10}


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    import edgehad

    root = tmp_path_factory.mktemp("digits")
    edgehad.convert("zoo:digits_cnn", out=root / "fp32")
    edgehad.convert("zoo:digits_cnn", out=root / "int8", quantize="int8", data="digits")
    return root


def _by_kind(ops):
    convs = [o for o in ops if "CONV" in o["op"].upper()]
    pool = next(o for o in ops if "POOL" in o["op"].upper())
    linear = next(o for o in ops if o["op"] in ("Gemm", "FULLY_CONNECTED"))
    return convs, pool, linear


@pytest.mark.parametrize("precision", ["fp32", "int8"])
@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_digits_cnn_by_hand(digits, fmt, precision):
    path = digits / precision / f"model.{fmt}"
    rpi4 = load_target("rpi4")
    r = roofline(path, rpi4, measured_ms=1.0, threads=2)
    want = FP32_BYTES if precision == "fp32" else INT8_BYTES
    convs, pool, linear = _by_kind(r["ops"])
    assert [c["macs"] for c in convs] == CONV_MACS
    assert [c["bytes"] for c in convs] == want["conv"]
    assert (pool["bytes"], linear["macs"], linear["bytes"]) == (want["pool"], 640, want["linear"])
    assert r["macs"] == inspect_file(path)["macs"] == 903808
    assert r["precision"] == precision
    full = rpi4["peak"][f"{precision}_gops"]  # 57.6 fp32, 115.2 int8 for 4 cores
    assert r["peak_gops"] == pytest.approx(full * 2 / 4)
    conv1 = convs[1]
    assert conv1["compute_ms"] == pytest.approx(2 * 589824 / (full / 2 * 1e9) * 1e3)
    assert conv1["memory_ms"] == pytest.approx(want["conv"][1] / 5.5e9 * 1e3)
    assert conv1["limited_by"] == "compute"
    assert r["bound_ms"] == pytest.approx(sum(o["bound_ms"] for o in r["ops"]))
    assert r["bound_ms"] >= max(r["compute_ms"], r["memory_ms"])
    assert r["percent_of_roofline"] == pytest.approx(100 * r["bound_ms"])
    assert r["skipped_ops"] == 0
    assert not any(o["op"] in ("QuantizeLinear", "DequantizeLinear", "RESHAPE") for o in r["ops"])


def test_int8_model_gets_the_int8_roof_and_a_shorter_bound(digits):
    rpi5 = load_target("rpi5")
    fp32 = roofline(digits / "fp32" / "model.tflite", rpi5, None, 4)
    int8 = roofline(digits / "int8" / "model.tflite", rpi5, None, 4)
    assert (fp32["peak_gops"], int8["peak_gops"]) == (153.6, 614.4)
    assert int8["bytes"] < fp32["bytes"] / 3
    assert int8["bound_ms"] < fp32["bound_ms"]
    assert math.isclose(int8["compute_ms"] * 4, fp32["compute_ms"])


def test_int8_model_on_a_gpu_without_int8_has_no_roofline(digits):
    nano = load_target("jetson-nano")
    assert roofline(digits / "int8" / "model.onnx", nano, 1.0, 1, provider="cuda") is None
    assert roofline(digits / "fp32" / "model.onnx", nano, 1.0, 1, provider="cuda")["processor"] == "gpu"
