"""--keep-float speed: the one-conv microbenchmarks compute the layer they stand for, and the walk's shape."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from edgehad.quantize.speed import conv_shapes, float_faster_prefix, one_conv_models  # noqa: E402
from edgehad.zoo import get_model  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    return get_model("digits_cnn")


def test_conv_shapes_in_execution_order(digits):
    found = [(name, shape) for name, _, shape in conv_shapes(digits, digits.example_inputs)]
    assert found == [("features.0.0", (1, 1, 8, 8)), ("features.1.0", (1, 32, 8, 8)),
                     ("features.3.0", (1, 32, 4, 4))]


@pytest.mark.parametrize("conv, shape", [
    (dict(in_channels=3, out_channels=16, kernel_size=3, stride=2, padding=1), (1, 3, 32, 32)),
    (dict(in_channels=16, out_channels=16, kernel_size=3, padding=1, groups=16), (1, 16, 20, 20)),  # depthwise
    (dict(in_channels=16, out_channels=24, kernel_size=1), (1, 16, 9, 9)),
])
def test_fp32_and_int8_models_compute_the_same_conv(conv, shape):
    module = torch.nn.Conv2d(**conv)
    fp32, int8 = one_conv_models(module, shape)
    x = np.random.default_rng(3).uniform(-2, 2, shape).astype(np.float32)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    y32 = ort.InferenceSession(fp32, options, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    y8 = ort.InferenceSession(int8, options, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    expected_shape = tuple(module(torch.from_numpy(x)).shape)
    assert y32.shape == y8.shape == expected_shape
    clipped = np.clip(y32, -6.4, 6.35)  # the int8 model's fixed activation range (scale 0.05, zero point 128)
    assert np.abs(y8 - clipped).max() < 0.1 and np.abs(y32).max() > 0.5


def test_prefix_walk_stops_at_the_first_layer_int8_wins(digits):
    decisions = float_faster_prefix(digits, digits.example_inputs)
    names = ["features.0.0", "features.1.0", "features.3.0"]
    assert [d["layer"] for d in decisions] == names[:len(decisions)] and decisions
    assert all(d["kept"] for d in decisions[:-1])
    assert len(decisions) == 3 or not decisions[-1]["kept"]
    for d in decisions:
        assert d["fp32_us"] > 0 and d["int8_us"] > 0
        assert d["kept"] == (d["fp32_us"] < 0.9 * d["int8_us"])
