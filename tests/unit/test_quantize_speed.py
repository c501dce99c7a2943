"""--keep-float speed: the one-conv microbenchmarks compute the layer they stand for, and the walk's shape."""

import numpy as np
import onnxruntime as ort
import pytest
import torch

from edgehad.quantize import speed
from edgehad.quantize.speed import MARGIN, conv_kernel_us, conv_shapes, float_faster_prefix, one_conv_models
from edgehad.zoo import get_model


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


def timings(fp32_by_shape: dict, int8_us: float = 100.0):
    """A conv_kernel_us that returns timings set by the test: int8 (the QDQ model) always ``int8_us``."""
    def timed(model_bytes, shape, threads):
        return int8_us if b"QuantizeLinear" in model_bytes else fp32_by_shape[tuple(shape)]
    return timed


SHAPES = [(1, 1, 8, 8), (1, 32, 8, 8), (1, 32, 4, 4)]  # digits_cnn's three convs, in execution order


@pytest.mark.parametrize("fp32, kept", [
    ([50.0, 80.0, 95.0], ["features.0.0", "features.1.0"]),        # the third is within the margin: int8 wins
    ([50.0, 150.0, 10.0], ["features.0.0"]),                        # the walk stops at the first int8 win
    ([95.0, 10.0, 10.0], []),                                       # fp32 only 5% faster: not enough
    ([10.0, 10.0, 10.0], ["features.0.0", "features.1.0", "features.3.0"]),  # every conv: no int8 win to stop at
])
def test_prefix_walk_keeps_layers_fp32_wins_by_the_margin(digits, monkeypatch, fp32, kept):
    monkeypatch.setattr(speed, "conv_kernel_us", timings(dict(zip(SHAPES, fp32))))
    decisions = float_faster_prefix(digits, digits.example_inputs)
    assert [d["layer"] for d in decisions if d["kept"]] == kept
    # every decision up to and including the first loss is reported, with its timings, and none after it
    assert [d["layer"] for d in decisions] == ["features.0.0", "features.1.0", "features.3.0"][:min(3, len(kept) + 1)]
    assert [d["fp32_us"] for d in decisions] == fp32[:len(decisions)]
    assert all(d["int8_us"] == 100.0 for d in decisions)


def test_margin_boundary(digits, monkeypatch):
    just_in, just_out = 100.0 * (1 - MARGIN) - 0.5, 100.0 * (1 - MARGIN) + 0.5
    monkeypatch.setattr(speed, "conv_kernel_us", timings(dict(zip(SHAPES, [just_in, just_out, 1.0]))))
    assert [d["kept"] for d in float_faster_prefix(digits, digits.example_inputs)] == [True, False]


def test_kernel_timer_measures_each_form():
    """The real profiler path: both one-conv models give a finite, positive kernel time."""
    module = torch.nn.Conv2d(8, 8, 3, padding=1)
    fp32, int8 = one_conv_models(module, (1, 8, 8, 8))
    for model in (fp32, int8):
        us = conv_kernel_us(model, (1, 8, 8, 8), threads=1)
        assert 0 < us < 1e6, us
