"""Reference models, built here from plain torch.nn and ``edgehad.blocks``.

``get_model(name, **kwargs)`` builds one by name; ``list_models()`` lists them.
Every model comes back in eval mode with ``model.example_inputs``, a tuple of
batch-1 tensors in the layout the model expects, and exports to ONNX and to
TFLite with builtin ops only (each was checked against onnxruntime and LiteRT
at max|y - y'| <= 1e-4 * max(1, max|y|)).

Models output logits (the MLPerf Tiny Keras references end in a softmax; it is
left to the caller, as is usual in PyTorch). Global average pooling is written
``x.mean((2, 3))``: it lowers to ONNX ``ReduceMean`` and TFLite ``MEAN``.

Pretrained weights live in ``edgehad/weights/*.safetensors`` and are written by
``examples/train_digits.py``; files over ~2 MB are stored as float16 and cast
back to float32 on load.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from edgehad.blocks import GLUFeedForward, SqueezeExcite, make_activation
from edgehad.core.errors import UserInputError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a model builder under its function name.

    The builder runs with the global RNG seeded to 0 (and restored after), so a
    random-weight zoo model is the same in every process and test order: files
    exported in two runs can be compared, and parity results do not depend on
    what ran before.
    """
    if fn.__name__ in _REGISTRY:
        raise ValueError(f"model {fn.__name__!r} is registered twice")

    @functools.wraps(fn)
    def seeded(*args, **kwargs):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return fn(*args, **kwargs)

    _REGISTRY[fn.__name__] = seeded
    return seeded


def list_models() -> list[str]:
    """Names of the registered models, sorted."""
    return sorted(_REGISTRY)


def get_model(name: str, **kwargs) -> nn.Module:
    """Build the registered model ``name`` with ``kwargs`` (eval mode, ``example_inputs`` set)."""
    if name not in _REGISTRY:
        raise UserInputError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    fn = _REGISTRY[name]
    params = inspect.signature(fn).parameters
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise UserInputError(
            f"model {name!r} takes no option {', '.join(map(repr, unknown))}; "
            f"its options are: {', '.join(params) or '(none)'}"
        )
    return fn(**kwargs)


# --- helpers -----------------------------------------------------------------


def _finish(model: nn.Module, *shapes: tuple[int, ...], kind: str = "image", trained: bool = False) -> nn.Module:
    """Set ``example_inputs`` (seeded, so runs agree) and switch to eval mode.

    ``kind``: ``"image"`` draws uniform [0, 1) pixels, anything else standard
    normal values. An untrained model also gets its BatchNorm statistics from
    one batch of such inputs (see ``_calibrate_batchnorm``).
    """
    g = torch.Generator().manual_seed(0)
    draw = torch.rand if kind == "image" else torch.randn
    model.example_inputs = tuple(draw(*s, generator=g) for s in shapes)
    if not trained:
        batch = tuple(draw(8, *s[1:], generator=g) for s in shapes)
        _calibrate_batchnorm(model, batch)
    return model.eval()


@torch.no_grad()
def _calibrate_batchnorm(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> None:
    """Set every BatchNorm's running mean/var to the statistics of one input batch.

    Why: with fresh running stats (mean 0, var 1) and the usual init, a random
    MobileNet in eval mode shrinks its activations layer by layer (depthwise
    convs sum only 9 inputs) and outputs ~1e-10, which would make every parity
    check against a 1e-4 tolerance pass vacuously. Data-dependent BN stats keep
    activations O(1), as they are in a trained network.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    model.eval()
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average: after one batch, exactly its statistics
        bn.train()
    model(*batch)
    for bn, momentum in zip(bns, saved):
        bn.momentum = momentum
        # A channel that is nearly constant over a small batch (late 1x1 feature maps) would get a
        # variance near 0 and amplify float rounding by 1/sqrt(var + eps) ~ 300x: an ill-conditioned
        # network no trained model resembles. Floor it at 1% of the layer's median variance.
        bn.running_var.clamp_(min=float(bn.running_var.median()) * 1e-2)
    model.eval()


def _positive(**values) -> None:
    for key, v in values.items():
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0:
            raise UserInputError(f"{key} must be a positive number, got {v!r}")


def _make_divisible(v: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of ``divisor``, never down by more than 10%.

    The rounding rule of the MobileNet papers' reference code: hardware prefers
    multiples of 8, and a 10% cap keeps small width multipliers from losing capacity.
    """
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _conv_bn(cin, cout, k=3, stride=1, groups=1, act: str | None = "relu", bias=False, eps=1e-5):
    """conv (same padding for odd k) -> BatchNorm -> activation (``act=None``: none)."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=bias),
        nn.BatchNorm2d(cout, eps=eps),
    ]
    if act is not None:
        layers.append(make_activation(act))
    return nn.Sequential(*layers)


def _load_weights(model: nn.Module, filename: str) -> nn.Module:
    """Load committed safetensors weights into ``model`` (strict keys; float16 -> float32)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = WEIGHTS_DIR / filename
    if not path.is_file():
        raise UserInputError(
            f"pretrained weights {path} are missing; run examples/train_digits.py to create them, "
            "or pass pretrained=False"
        )
    state = load_file(str(path))
    state = {k: (t.float() if t.is_floating_point() else t) for k, t in state.items()}
    model.load_state_dict(state, strict=True)
    with safe_open(str(path), framework="pt") as f:
        model.pretrained_info = dict(f.metadata() or {})
    return model


class _Residual(nn.Module):
    """y = x + f(x)."""

    def __init__(self, fn: nn.Module):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return x + self.fn(x)


# --- MobileNetV2 ---------------------------------------------------------------


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand (ReLU6) -> 3x3 depthwise (ReLU6) -> 1x1 linear project."""

    def __init__(self, cin: int, cout: int, stride: int, expand: float):
        super().__init__()
        hidden = int(round(cin * expand))
        layers = [] if expand == 1 else [_conv_bn(cin, hidden, 1, act="relu6")]
        layers += [
            _conv_bn(hidden, hidden, 3, stride, groups=hidden, act="relu6"),
            _conv_bn(hidden, cout, 1, act=None),
        ]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.block(x) if self.residual else self.block(x)


class MobileNetV2(nn.Module):
    # (expansion t, channels c, repeats n, first stride s), Table 2 of the paper
    SETTINGS = [
        (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)
    ]

    def __init__(self, width_mult: float = 1.0, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        cin = _make_divisible(32 * width_mult)
        last = _make_divisible(1280 * max(1.0, width_mult))
        layers: list[nn.Module] = [_conv_bn(3, cin, 3, 2, act="relu6")]
        for t, c, n, s in self.SETTINGS:
            cout = _make_divisible(c * width_mult)
            for i in range(n):
                layers.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        layers.append(_conv_bn(cin, last, 1, act="relu6"))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last, num_classes))
        _init_imagenet_style(self)

    def forward(self, x):
        return self.classifier(self.features(x).mean((2, 3)))


def _init_imagenet_style(model: nn.Module) -> None:
    """Kaiming-normal convs, unit BN, small normal linear layers (the MobileNet papers' init)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


@register
def mobilenet_v2(width_mult: float = 1.0, num_classes: int = 1000, input_size: int = 224) -> nn.Module:
    """MobileNetV2 (Sandler et al. 2018, "MobileNetV2: Inverted Residuals and Linear Bottlenecks").

    Input [1, 3, input_size, input_size]. width_mult=1.0, 1000 classes: 3,504,872 params.
    """
    _positive(width_mult=width_mult, num_classes=num_classes, input_size=input_size)
    return _finish(MobileNetV2(width_mult, num_classes), (1, 3, input_size, input_size))


# --- MLPerf Tiny reference models ----------------------------------------------
# Mirrors of the Keras reference models of MLPerf Tiny (Banbury et al. 2021,
# "MLPerf Tiny Benchmark"). Keras convolutions carry a bias even before a
# BatchNorm; we keep it so parameter counts match the references. Keras pads
# 'same' asymmetrically (bottom/right) for stride 2 and even inputs, PyTorch
# symmetrically: shapes and counts agree, weights are not interchangeable
# without a one-pixel shift.


class _BasicBlock(nn.Module):
    """ResNet v1 block: relu(shortcut(x) + BN(conv(relu(BN(conv(x)))))); shortcut is a
    strided 1x1 conv without BN where the shape changes (as in the MLPerf reference)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            _conv_bn(cin, cout, 3, stride, bias=True), _conv_bn(cout, cout, 3, 1, act=None, bias=True)
        )
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Conv2d(cin, cout, 1, stride)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.shortcut(x) + self.body(x))


class ResNet8(nn.Module):
    def __init__(self, num_classes: int = 10, filters: int = 16):
        super().__init__()
        f = filters
        self.stem = _conv_bn(3, f, 3, bias=True)
        self.stages = nn.Sequential(_BasicBlock(f, f, 1), _BasicBlock(f, 2 * f, 2), _BasicBlock(2 * f, 4 * f, 2))
        self.fc = nn.Linear(4 * f, num_classes)

    def forward(self, x):
        return self.fc(self.stages(self.stem(x)).mean((2, 3)))


@register
def resnet8(num_classes: int = 10) -> nn.Module:
    """ResNet-8, MLPerf Tiny image classification (CIFAR-10), input [1, 3, 32, 32].

    Three ResNet v1 stacks of 16/32/64 filters (He et al. 2016). 78,186 params with 10 classes.
    """
    _positive(num_classes=num_classes)
    return _finish(ResNet8(num_classes), (1, 3, 32, 32))


class DSCNN(nn.Module):
    def __init__(self, num_classes: int = 12, filters: int = 64):
        super().__init__()
        # Keras 'same' padding for the 10x4 stride-2 conv on 49x10 is (top 4, bottom 5,
        # left 1, right 1); pad explicitly so the output is 25x5 as in the reference.
        self.stem = nn.Sequential(
            nn.ZeroPad2d((1, 1, 4, 5)),
            nn.Conv2d(1, filters, (10, 4), 2),
            nn.BatchNorm2d(filters),
            nn.ReLU(),
            nn.Dropout(0.2),
        )
        blocks = []
        for _ in range(4):
            blocks += [
                _conv_bn(filters, filters, 3, groups=filters, bias=True),
                _conv_bn(filters, filters, 1, bias=True),
            ]
        self.blocks = nn.Sequential(*blocks, nn.Dropout(0.4))
        # The reference pools with pool_size (int(49/2), int(10/2)) = (24, 5) over the
        # 25x5 map, i.e. it averages the first 24 rows and drops the last; kept as is.
        self.pool = nn.AvgPool2d((24, 5))
        self.fc = nn.Linear(filters, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.blocks(self.stem(x))).flatten(1))


@register
def ds_cnn(num_classes: int = 12) -> nn.Module:
    """DS-CNN, MLPerf Tiny keyword spotting (Speech Commands, 12 classes), input MFCC [1, 1, 49, 10].

    Zhang et al. 2017, "Hello Edge: Keyword Spotting on Microcontrollers": a 10x4
    stride-2 conv and four depthwise-separable layers of 64 channels.
    """
    _positive(num_classes=num_classes)
    return _finish(DSCNN(num_classes), (1, 1, 49, 10), kind="normal")


class MobileNetV1(nn.Module):
    # (output channels at width 1.0, stride) of the 13 depthwise-separable layers
    LAYERS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]

    def __init__(self, width_mult: float = 0.25, num_classes: int = 2):
        super().__init__()
        cin = int(32 * width_mult)
        layers = [_conv_bn(3, cin, 3, 2, bias=True)]
        for c, s in self.LAYERS:
            cout = int(c * width_mult)
            layers += [_conv_bn(cin, cin, 3, s, groups=cin, bias=True), _conv_bn(cin, cout, 1, bias=True)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))


@register
def mobilenet_v1_025(num_classes: int = 2, input_size: int = 96) -> nn.Module:
    """MobileNetV1 at width 0.25, MLPerf Tiny visual wake words (person / no person).

    Howard et al. 2017, "MobileNets: Efficient Convolutional Neural Networks for
    Mobile Vision Applications". Input [1, 3, input_size, input_size], 96 in the benchmark.
    """
    _positive(num_classes=num_classes, input_size=input_size)
    return _finish(MobileNetV1(0.25, num_classes), (1, 3, input_size, input_size))


class FCAutoencoder(nn.Module):
    def __init__(self, input_dim: int = 640, hidden: int = 128, bottleneck: int = 8):
        super().__init__()

        def dense(i, o):
            return [nn.Linear(i, o), nn.BatchNorm1d(o), nn.ReLU()]

        dims = [input_dim] + [hidden] * 4 + [bottleneck] + [hidden] * 4
        layers = [layer for i, o in zip(dims, dims[1:]) for layer in dense(i, o)]
        self.net = nn.Sequential(*layers, nn.Linear(hidden, input_dim))

    def forward(self, x):
        return self.net(x)


@register
def fc_autoencoder(input_dim: int = 640) -> nn.Module:
    """Fully connected autoencoder, MLPerf Tiny anomaly detection (ToyADMOS / DCASE 2020 task 2).

    640 -> 128 x4 -> 8 -> 128 x4 -> 640, each hidden Dense followed by BN + ReLU;
    input [1, input_dim] (5 frames x 128 log-mel bins). 267,928 params at 640.
    """
    _positive(input_dim=input_dim)
    return _finish(FCAutoencoder(input_dim), (1, input_dim), kind="normal")


# --- MobileNetV3-Small and EfficientNet-B0 (SE blocks from edgehad.blocks) -------


class MBConv(nn.Module):
    """Inverted residual with optional squeeze-excite (MobileNetV3, EfficientNet):

    1x1 expand (act) -> kxk depthwise (act) -> [x ⊙ SE gate] -> 1x1 linear project (+ x).
    """

    def __init__(self, cin, k, hidden, cout, stride, act: str, se: SqueezeExcite | None, eps: float):
        super().__init__()
        layers = [] if hidden == cin else [_conv_bn(cin, hidden, 1, act=act, eps=eps)]
        layers.append(_conv_bn(hidden, hidden, k, stride, groups=hidden, act=act, eps=eps))
        if se is not None:
            layers.append(se)
        layers.append(_conv_bn(hidden, cout, 1, act=None, eps=eps))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.block(x) if self.residual else self.block(x)


class MobileNetV3Small(nn.Module):
    # kernel, expanded, out, SE, activation, stride (Table 2 of the paper)
    CONFIG = [
        (3, 16, 16, True, "relu", 2),
        (3, 72, 24, False, "relu", 2),
        (3, 88, 24, False, "relu", 1),
        (5, 96, 40, True, "hardswish", 2),
        (5, 240, 40, True, "hardswish", 1),
        (5, 240, 40, True, "hardswish", 1),
        (5, 120, 48, True, "hardswish", 1),
        (5, 144, 48, True, "hardswish", 1),
        (5, 288, 96, True, "hardswish", 2),
        (5, 576, 96, True, "hardswish", 1),
        (5, 576, 96, True, "hardswish", 1),
    ]

    def __init__(self, width_mult: float = 1.0, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        eps = 1e-3

        def adj(c):
            return _make_divisible(c * width_mult)

        cin = adj(16)
        layers: list[nn.Module] = [_conv_bn(3, cin, 3, 2, act="hardswish", eps=eps)]
        for k, exp, out, use_se, act, s in self.CONFIG:
            hidden, cout = adj(exp), adj(out)
            se = None
            if use_se:
                se = SqueezeExcite(hidden, squeeze_channels=_make_divisible(hidden // 4), gate="hardsigmoid")
            layers.append(MBConv(cin, k, hidden, cout, s, act, se, eps))
            cin = cout
        layers.append(_conv_bn(cin, 6 * cin, 1, act="hardswish", eps=eps))
        self.features = nn.Sequential(*layers)
        last = adj(1024)
        self.classifier = nn.Sequential(
            nn.Linear(6 * cin, last), make_activation("hardswish"), nn.Dropout(dropout), nn.Linear(last, num_classes)
        )
        _init_imagenet_style(self)

    def forward(self, x):
        return self.classifier(self.features(x).mean((2, 3)))


class EfficientNet(nn.Module):
    # expand ratio, kernel, stride, in, out, repeats (Table 1 of the paper, B0)
    STAGES = [
        (1, 3, 1, 32, 16, 1),
        (6, 3, 2, 16, 24, 2),
        (6, 5, 2, 24, 40, 2),
        (6, 3, 2, 40, 80, 3),
        (6, 5, 1, 80, 112, 3),
        (6, 5, 2, 112, 192, 4),
        (6, 3, 1, 192, 320, 1),
    ]

    def __init__(self, width_mult=1.0, depth_mult=1.0, num_classes=1000, dropout=0.2):
        super().__init__()

        def adj(c):
            return _make_divisible(c * width_mult)

        cin = adj(32)
        layers: list[nn.Module] = [_conv_bn(3, cin, 3, 2, act="silu")]
        for t, k, s, _, c, n in self.STAGES:
            cout = adj(c)
            for i in range(int(math.ceil(n * depth_mult))):
                hidden = _make_divisible(cin * t)
                # EfficientNet sizes the squeeze from the block's input channels
                se = SqueezeExcite(hidden, squeeze_channels=max(1, cin // 4), gate="sigmoid", act="silu")
                layers.append(MBConv(cin, k, hidden, cout, s if i == 0 else 1, "silu", se, 1e-5))
                cin = cout
        last = 4 * cin
        layers.append(_conv_bn(cin, last, 1, act="silu"))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last, num_classes))
        _init_imagenet_style(self)

    def forward(self, x):
        return self.classifier(self.features(x).mean((2, 3)))


# Pretrained "digits" variants: trained by examples/train_digits.py on
# digits?size=32&channels=3 (10 classes, pixels scaled to [0, 1], no normalization).
_DIGITS_CONFIG = {"width_mult": 0.5, "num_classes": 10, "input_size": 32}


def _digits_config(model: str, pretrained, **given) -> dict:
    """Fill defaults; with pretrained='digits' the defaults are the trained configuration."""
    if pretrained not in (None, "digits"):
        raise UserInputError(f"{model}: pretrained={pretrained!r} is not available; use None or 'digits'")
    defaults = _DIGITS_CONFIG if pretrained == "digits" else {"width_mult": 1.0, "num_classes": 1000, "input_size": 224}
    cfg = {k: defaults[k] if v is None else v for k, v in given.items()}
    if pretrained == "digits":
        clash = {k: v for k, v in cfg.items() if k in _DIGITS_CONFIG and v != _DIGITS_CONFIG[k]}
        if clash:
            raise UserInputError(
                f"{model}: pretrained='digits' weights exist for "
                f"{', '.join(f'{k}={v}' for k, v in _DIGITS_CONFIG.items())}; got "
                f"{', '.join(f'{k}={v}' for k, v in clash.items())}"
            )
    _positive(**{k: v for k, v in cfg.items()})
    return cfg


@register
def mobilenet_v3_small(
    width_mult: float | None = None,
    num_classes: int | None = None,
    input_size: int | None = None,
    pretrained: str | None = None,
) -> nn.Module:
    """MobileNetV3-Small (Howard et al. 2019, "Searching for MobileNetV3").

    SE gates use hard-sigmoid, activations hard-swish (``edgehad.blocks``).
    Defaults: width_mult 1.0, 1000 classes, input 224 (2,542,856 params).
    ``pretrained='digits'``: weights trained on ``digits?size=32&channels=3``;
    defaults then become width 0.5, 10 classes, input 32 (other values: error).
    """
    cfg = _digits_config(
        "mobilenet_v3_small", pretrained, width_mult=width_mult, num_classes=num_classes, input_size=input_size
    )
    model = MobileNetV3Small(cfg["width_mult"], cfg["num_classes"])
    if pretrained == "digits":
        _load_weights(model, "mobilenet_v3_small-digits.safetensors")
    return _finish(model, (1, 3, cfg["input_size"], cfg["input_size"]), trained=pretrained is not None)


@register
def efficientnet_b0(
    width_mult: float | None = None,
    depth_mult: float = 1.0,
    num_classes: int | None = None,
    input_size: int | None = None,
    pretrained: str | None = None,
) -> nn.Module:
    """EfficientNet-B0 (Tan & Le 2019, "EfficientNet: Rethinking Model Scaling for CNNs").

    MBConv blocks with SE (sigmoid gate, SiLU), SiLU activations (``edgehad.blocks``).
    Defaults: width_mult 1.0, depth_mult 1.0, 1000 classes, input 224 (5,288,548
    params). Stochastic depth is a training-time regularizer and is omitted.
    ``pretrained='digits'``: weights trained on ``digits?size=32&channels=3``;
    defaults then become width 0.5, 10 classes, input 32 (other values: error).
    """
    cfg = _digits_config(
        "efficientnet_b0", pretrained, width_mult=width_mult, num_classes=num_classes, input_size=input_size
    )
    _positive(depth_mult=depth_mult)
    if pretrained == "digits" and depth_mult != 1.0:
        raise UserInputError("efficientnet_b0: pretrained='digits' weights exist for depth_mult=1.0")
    model = EfficientNet(cfg["width_mult"], depth_mult, cfg["num_classes"])
    if pretrained == "digits":
        _load_weights(model, "efficientnet_b0-digits.safetensors")
    return _finish(model, (1, 3, cfg["input_size"], cfg["input_size"]), trained=pretrained is not None)


# --- Transformer encoder ---------------------------------------------------------


class SelfAttention(nn.Module):
    """softmax(Q K^T / sqrt(d_head)) V over ``heads`` heads (Vaswani et al. 2017).

    Written by hand rather than with nn.MultiheadAttention, whose fused kernel
    exports poorly; every tensor stays 4-D so TFLite's TRANSPOSE handles it.
    """

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = (
            t.reshape(b, n, self.heads, self.head_dim).transpose(1, 2) for t in self.qkv(x).chunk(3, dim=-1)
        )
        attn = torch.softmax((q * self.scale) @ k.transpose(-2, -1), dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, d))


class EncoderBlock(nn.Module):
    """Pre-norm: x + Attn(LN(x)), then x + MLP(LN(x)) with MLP = Linear -> GELU -> Linear."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 4):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TransformerEncoder(nn.Module):
    def __init__(self, dim: int, heads: int, depth: int, num_classes: int):
        super().__init__()
        self.blocks = nn.Sequential(*[EncoderBlock(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        return self.head(self.norm(self.blocks(x)).mean(1))


@register
def transformer_encoder(
    seq_len: int = 256, dim: int = 256, heads: int = 4, depth: int = 4, num_classes: int = 10
) -> nn.Module:
    """Pre-norm transformer encoder classifier (Vaswani et al. 2017; pre-norm as in Xiong et al. 2020).

    Input: embeddings [1, seq_len, dim] (position information already added);
    ``depth`` blocks of softmax multi-head self-attention and a 4x MLP; mean over
    tokens, LayerNorm, Linear head.
    """
    _positive(seq_len=seq_len, dim=dim, heads=heads, depth=depth, num_classes=num_classes)
    if dim % heads:
        raise UserInputError(f"dim ({dim}) must be divisible by heads ({heads})")
    return _finish(TransformerEncoder(dim, heads, depth, num_classes), (1, seq_len, dim), kind="normal")


class DigitsTransformer(nn.Module):
    """The 8x8 digit read as a sequence of its 8 rows: tokens [B, 8, 8] -> embed -> encoder blocks -> mean -> Linear."""

    def __init__(self, dim: int, heads: int, depth: int, num_classes: int):
        super().__init__()
        self.embed = nn.Linear(8, dim)
        self.pos = nn.Parameter(torch.zeros(1, 8, dim))
        self.blocks = nn.Sequential(*[EncoderBlock(dim, heads, mlp_ratio=2) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        tokens = self.embed(x.reshape(x.shape[0], 8, 8)) + self.pos
        return self.head(self.norm(self.blocks(tokens)).mean(1))


@register
def digits_transformer(pretrained: bool = True) -> nn.Module:
    """A softmax-attention transformer for the 8x8 digits, each image read as 8 row tokens.

    Input [1, 1, 8, 8] (pixels/16, like ``digits_cnn``); dim 32, 4 heads, 2 pre-norm
    blocks (MLP 2x), mean over tokens, 10 classes. ``pretrained=True`` loads the
    weights trained by examples/train_digits.py. The model the ``attention-to-aft``
    rule is measured on (examples/bench_rewrite.py).
    """
    model = DigitsTransformer(32, 4, 2, 10)
    if pretrained:
        _load_weights(model, "digits_transformer.safetensors")
    return _finish(model, (1, 1, 8, 8), trained=bool(pretrained))


# --- digits CNN -------------------------------------------------------------------

_DIGITS_ACTS = ("relu", "silu")
_DIGITS_GATES = (None, "se", "glu")


class DigitsCNN(nn.Module):
    """8x8 -> conv32 -> conv32 [SE] -> maxpool -> conv64 [SE] [+GLU] -> mean -> Linear(10)."""

    def __init__(self, act: str = "relu", gate: str | None = None, num_classes: int = 10):
        super().__init__()

        def se(c):
            return [SqueezeExcite(c, reduction=4, gate="sigmoid", act="relu")] if gate == "se" else []

        self.features = nn.Sequential(
            _conv_bn(1, 32, 3, act=act),
            _conv_bn(32, 32, 3, act=act),
            *se(32),
            nn.MaxPool2d(2),
            _conv_bn(32, 64, 3, act=act),
            *se(64),
        )
        # gate='glu': a residual channel-mixing GLU, x + (σ(W x) ⊙ V x) W2, with 1x1 convs
        self.mixer = (
            _Residual(GLUFeedForward(64, 64, "glu", bias=True, form="channels")) if gate == "glu" else nn.Identity()
        )
        self.classifier = nn.Sequential(nn.Dropout(0.1), nn.Linear(64, num_classes))

    def forward(self, x):
        return self.classifier(self.mixer(self.features(x)).mean((2, 3)))


@register
def digits_cnn(act: str = "relu", gate: str | None = None, pretrained: bool = True) -> nn.Module:
    """A small CNN for scikit-learn's 8x8 handwritten digits: input [1, 1, 8, 8] in [0, 1], 10 classes.

    ``act``: ``"relu"`` or ``"silu"``. ``gate``: ``None``, ``"se"`` (squeeze-excite
    after each conv stage, Hu et al. 2018) or ``"glu"`` (a residual 1x1-conv GLU
    after the last stage, Shazeer 2020). ``pretrained=True`` loads the weights
    trained by examples/train_digits.py (``digits`` val split accuracy >= 97%,
    recorded in ``model.pretrained_info``); the input is pixels/16, no normalization.
    """
    if act not in _DIGITS_ACTS:
        raise UserInputError(f"digits_cnn: act={act!r} is not available; use one of {list(_DIGITS_ACTS)}")
    if gate not in _DIGITS_GATES:
        raise UserInputError(f"digits_cnn: gate={gate!r} is not available; use one of {list(_DIGITS_GATES)}")
    model = DigitsCNN(act, gate)
    if pretrained:
        _load_weights(model, f"digits_cnn-{act}-{gate}.safetensors")
    return _finish(model, (1, 1, 8, 8), trained=bool(pretrained))
