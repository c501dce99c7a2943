"""The model zoo: every registered model builds, the pretrained ones reach their bars."""

import numpy as np
import pytest
import torch

from edgehad import zoo
from edgehad.core.errors import UserInputError
from edgehad.data import load_data

# small but real configurations; (kwargs, output shape)
SMALL = {
    "digits_cnn": ({"pretrained": False}, (1, 10)),
    "digits_transformer": ({"pretrained": False}, (1, 10)),
    "ds_cnn": ({"num_classes": 5}, (1, 5)),
    "efficientnet_b0": ({"width_mult": 0.25, "depth_mult": 0.5, "num_classes": 7, "input_size": 32}, (1, 7)),
    "fc_autoencoder": ({"input_dim": 64}, (1, 64)),
    "mobilenet_v1_025": ({"num_classes": 3, "input_size": 64}, (1, 3)),
    "mobilenet_v2": ({"width_mult": 0.35, "num_classes": 10, "input_size": 64}, (1, 10)),
    "mobilenet_v3_small": ({"width_mult": 0.5, "num_classes": 4, "input_size": 32}, (1, 4)),
    "resnet8": ({"num_classes": 6}, (1, 6)),
    "transformer_encoder": ({"seq_len": 16, "dim": 32, "heads": 4, "depth": 1, "num_classes": 3}, (1, 3)),
}


def test_registry_lists_every_model():
    assert zoo.list_models() == sorted(SMALL)


@pytest.mark.parametrize("name", zoo.list_models())
def test_model_builds_small(name):
    kwargs, out_shape = SMALL[name]
    model = zoo.get_model(name, **kwargs)
    assert not model.training
    assert isinstance(model.example_inputs, tuple) and model.example_inputs
    assert all(isinstance(t, torch.Tensor) and t.shape[0] == 1 for t in model.example_inputs)
    with torch.no_grad():
        y = model(*model.example_inputs)
    assert tuple(y.shape) == out_shape
    assert torch.isfinite(y).all()
    # BatchNorm statistics of a random model come from data, so outputs are not vanishingly small
    assert y.abs().max() > 1e-3
    again = zoo.get_model(name, **kwargs)
    assert all(torch.equal(a, b) for a, b in zip(model.example_inputs, again.example_inputs))


def test_example_input_shapes():
    assert zoo.get_model("ds_cnn").example_inputs[0].shape == (1, 1, 49, 10)
    assert zoo.get_model("resnet8").example_inputs[0].shape == (1, 3, 32, 32)
    assert zoo.get_model("mobilenet_v1_025").example_inputs[0].shape == (1, 3, 96, 96)
    assert zoo.get_model("fc_autoencoder").example_inputs[0].shape == (1, 640)
    assert zoo.get_model("transformer_encoder", depth=1).example_inputs[0].shape == (1, 256, 256)


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "name, kwargs, params",
    [
        # the figures torchvision's implementations of the papers report
        ("mobilenet_v2", {}, 3_504_872),
        ("mobilenet_v3_small", {}, 2_542_856),
        ("efficientnet_b0", {}, 5_288_548),
        # MLPerf Tiny anomaly detection: 640*128+128 + 3*(128*128+128) + 128*8+8
        # + 8*128+128 + 3*(128*128+128) + 128*640+640 weights, plus BN scale/shift 2*(8*128+8)
        ("fc_autoencoder", {}, 267_928),
    ],
)
def test_param_counts(name, kwargs, params):
    assert _params(zoo.get_model(name, **kwargs)) == params


def test_feature_widths():
    m = zoo.get_model("mobilenet_v2", width_mult=0.35, input_size=64)
    assert m.classifier[1].in_features == 1280  # last channel never shrinks below 1280
    assert zoo.get_model("ds_cnn").stem[1].out_channels == 64
    # DS-CNN's stem maps 49x10 to 25x5, as Keras 'same' padding does
    with torch.no_grad():
        assert zoo.get_model("ds_cnn").stem(torch.zeros(1, 1, 49, 10)).shape == (1, 64, 25, 5)


def test_unknown_model_and_option():
    with pytest.raises(UserInputError, match=r"unknown model 'resnet50'; available: digits_cnn, digits_transformer, ds_cnn"):
        zoo.get_model("resnet50")
    with pytest.raises(UserInputError, match=r"'resnet8' takes no option 'width_mult'; its options are: num_classes"):
        zoo.get_model("resnet8", width_mult=0.5)
    with pytest.raises(UserInputError, match="num_classes must be a positive number, got 0"):
        zoo.get_model("mobilenet_v2", num_classes=0)
    with pytest.raises(UserInputError, match=r"dim \(30\) must be divisible by heads \(4\)"):
        zoo.get_model("transformer_encoder", dim=30)
    with pytest.raises(UserInputError, match=r"gate='cbam' is not available; use one of \[None, 'se', 'glu'\]"):
        zoo.get_model("digits_cnn", gate="cbam")


def test_pretrained_options_are_checked():
    with pytest.raises(UserInputError, match=r"pretrained='imagenet' is not available; use None or 'digits'"):
        zoo.get_model("mobilenet_v3_small", pretrained="imagenet")
    expected = r"weights exist for width_mult=0.5, num_classes=10, input_size=32; got width_mult=1.0"
    with pytest.raises(UserInputError, match=expected):
        zoo.get_model("efficientnet_b0", pretrained="digits", width_mult=1.0)


@pytest.fixture(scope="module")
def digits_val():
    return load_data("digits").val


@pytest.fixture(scope="module")
def digits32_val():
    return load_data("digits?size=32&channels=3").val


def _accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        return float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


@pytest.mark.parametrize("gate", [None, "se", "glu"])
@pytest.mark.parametrize("act", ["relu", "silu"])
def test_pretrained_digits_cnn_reaches_97_percent(act, gate, digits_val):
    model = zoo.get_model("digits_cnn", act=act, gate=gate)
    acc = _accuracy(model, *digits_val)
    assert acc >= 0.97, f"digits_cnn act={act} gate={gate}: val accuracy {acc:.4f} < 0.97"
    assert float(model.pretrained_info["val_accuracy"]) == pytest.approx(acc, abs=1e-4)
    random = zoo.get_model("digits_cnn", act=act, gate=gate, pretrained=False)
    assert _accuracy(random, *digits_val) < 0.5  # the weights, not the architecture, do the work


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "efficientnet_b0"])
def test_pretrained_digits_mobile_models_reach_95_percent(name, digits32_val):
    model = zoo.get_model(name, pretrained="digits")
    assert model.example_inputs[0].shape == (1, 3, 32, 32)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # float16 files are cast back
    acc = _accuracy(model, *digits32_val)
    assert acc >= 0.95, f"{name}: val accuracy {acc:.4f} < 0.95"


def test_gated_digits_models_hold_their_blocks():
    from edgehad.blocks import GLUFeedForward, SqueezeExcite

    se = zoo.get_model("digits_cnn", gate="se", pretrained=False)
    assert sum(isinstance(m, SqueezeExcite) for m in se.modules()) == 2
    glu = zoo.get_model("digits_cnn", gate="glu", pretrained=False)
    assert sum(isinstance(m, GLUFeedForward) for m in glu.modules()) == 1
    v3 = zoo.get_model("mobilenet_v3_small", width_mult=0.5, num_classes=10, input_size=32)
    assert sum(isinstance(m, SqueezeExcite) and m.gate.__class__.__name__ == "HardSigmoid" for m in v3.modules()) == 9


def test_pretrained_digits_transformer_reaches_95_percent(digits_val):
    model = zoo.get_model("digits_transformer")
    acc = _accuracy(model, *digits_val)
    assert acc >= 0.95 and float(model.pretrained_info["val_accuracy"]) == pytest.approx(acc, abs=1e-4)
    assert _accuracy(zoo.get_model("digits_transformer", pretrained=False), *digits_val) < 0.5
