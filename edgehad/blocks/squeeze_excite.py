"""Squeeze-and-excitation: a per-channel gate multiplied onto a feature map.

    s = mean_{h,w} x                    squeeze      [B, C, 1, 1]
    g = gate(W2 · act(W1 · s + b1) + b2)  excite     [B, C, 1, 1]
    y = x ⊙ g                           Hadamard product, g broadcast over H and W

Hu, Shen, Sun 2018, "Squeeze-and-Excitation Networks" (gate = sigmoid,
act = ReLU, W1: C -> C/r). MobileNetV3 (Howard et al. 2019, "Searching for
MobileNetV3") uses gate = hard-sigmoid; EfficientNet (Tan & Le 2019) uses
gate = sigmoid, act = SiLU and sizes W1 from the block's input channels.

Which dims couple and which broadcast matters to channel pruning: the
product couples channel c of x with channel c of g (remove one, remove both,
together with the row of W2 that makes it), while g is broadcast over the
spatial dims (2, 3), so those never couple. ``SqueezeExcite.broadcast_dims``
and ``SqueezeExcite.coupled_dims`` record this.

The squeeze is ``x.mean((2, 3), keepdim=True)``: it lowers to ONNX
``ReduceMean`` and TFLite ``MEAN`` (checked, as is ``adaptive_avg_pool2d``).
"""

from __future__ import annotations

import torch
from torch import nn

from edgehad.blocks.activations import make_activation
from edgehad.core.errors import UserInputError

_GATES = ("sigmoid", "hardsigmoid")


class SqueezeExcite(nn.Module):
    """y = x ⊙ gate(expand(act(reduce(mean_hw(x))))), for NCHW input.

    ``channels``: C. The squeeze width is ``squeeze_channels`` when given,
    else ``max(1, channels // reduction)``. ``gate``: ``"sigmoid"`` (SENet,
    EfficientNet) or ``"hardsigmoid"`` (MobileNetV3). ``act``: the activation
    between the two 1x1 convolutions, by name (``"relu"``, ``"silu"``, ...).
    """

    #: dims of x over which the gate [B, C, 1, 1] is broadcast
    broadcast_dims: tuple[int, ...] = (2, 3)
    #: dims along which x and the gate are multiplied element for element
    coupled_dims: tuple[int, ...] = (1,)

    def __init__(
        self,
        channels: int,
        reduction: int = 4,
        squeeze_channels: int | None = None,
        gate: str = "sigmoid",
        act: str = "relu",
    ):
        super().__init__()
        if gate not in _GATES:
            raise UserInputError(f"unknown SE gate {gate!r}; expected one of {list(_GATES)}")
        if squeeze_channels is None:
            squeeze_channels = max(1, channels // reduction)
        self.channels = channels
        self.squeeze_channels = squeeze_channels
        self.reduce = nn.Conv2d(channels, squeeze_channels, 1)
        self.act = make_activation(act)
        self.expand = nn.Conv2d(squeeze_channels, channels, 1)
        self.gate = make_activation(gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        s = self.expand(self.act(self.reduce(s)))
        return x * self.gate(s)

    def cost(self, height: int, width: int) -> dict:
        """Params, MACs and element-wise multiplies of this block on a C x height x width input."""
        return squeeze_excite_cost(self.channels, self.squeeze_channels, height, width)


def squeeze_excite_cost(channels: int, squeeze_channels: int, height: int, width: int) -> dict:
    """Params, MACs and element-wise multiplies of one SqueezeExcite per sample.

    params         = C·S + S + S·C + C   (both 1x1 convs carry a bias)
    macs           = C·S + S·C           (the two 1x1 convs on the pooled [C, 1, 1] vector)
    hadamard_mults = C·H·W               (the product x ⊙ g)
    """
    c, s = channels, squeeze_channels
    return {"params": 2 * c * s + s + c, "macs": 2 * c * s, "hadamard_mults": c * height * width}


def _example(gate: str):
    import torch

    from edgehad.blocks.catalogue import block

    @block(f"squeeze-excite-{gate}", "adaptive modulation and masking",
           "y = x ⊙ " + ("σ" if gate == "sigmoid" else "hardσ") + "(W2 act(W1 mean_hw(x)))",
           "Hu et al. 2018 (SENet); Howard et al. 2019 (MobileNetV3) for the hard-sigmoid gate")
    def example():
        torch.manual_seed(0)
        return SqueezeExcite(16, reduction=4, gate=gate).eval(), (torch.randn(1, 16, 8, 8),)


for _gate in _GATES:
    _example(_gate)
