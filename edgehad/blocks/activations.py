"""Self-gating activations: an input multiplied element-wise by a gate of itself.

    SiLU (Swish)   y = x ⊙ σ(x)                  Elfwing et al. 2018; Ramachandran et al. 2017
    HardSigmoid    g(x) = relu6(x + 3) / 6       Howard et al. 2019, "Searching for MobileNetV3"
    HardSwish      y = x ⊙ relu6(x + 3) / 6      Howard et al. 2019

HardSigmoid is the piecewise-linear stand-in for σ that MobileNetV3 uses in
its squeeze-excite gates; HardSwish is x times it. Both avoid the exponential,
which is what makes them cheap on integer hardware.

The modules call torch.nn.functional; each was checked to export with builtin
ops only: ONNX ``HardSwish`` / ``HardSigmoid`` / ``Sigmoid``+``Mul`` and TFLite
``HARD_SWISH`` / ``MUL``+``ADD`` / ``LOGISTIC``+``MUL``.

Cost convention (shared by every block in this package, and the same as
``edgehad.cost``): ``params`` counts learned scalars; ``macs`` counts the
multiply-adds of convolutions, linear layers and matmuls only, so a block's
``macs`` equals ``edgehad.cost.count_macs`` on it. Element-wise products are
reported apart, as ``hadamard_mults``: one per element of every product of two
tensors (a gate times its input, or x·σ(x) inside SiLU / hard-swish).
Additions, pooling sums, scaling by a constant and σ itself are not counted.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from edgehad.core.errors import UserInputError


class HardSigmoid(nn.Module):
    """g(x) = relu6(x + 3) / 6, i.e. clamp(x/6 + 1/2, 0, 1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.hardsigmoid(x)


class HardSwish(nn.Module):
    """y = x ⊙ relu6(x + 3) / 6: the input gated by its own hard sigmoid."""

    broadcast_dims: tuple[int, ...] = ()  # both operands of ⊙ have x's shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.hardswish(x)


class SiLU(nn.Module):
    """y = x ⊙ σ(x) (also called Swish-1): the input gated by its own sigmoid."""

    broadcast_dims: tuple[int, ...] = ()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(x)


def activation_cost(shape: tuple[int, ...] | torch.Size, kind: str = "hardswish") -> dict:
    """Cost of one activation over a tensor of ``shape``.

    ``hardswish`` and ``silu`` are a Hadamard product (x times its gate): one
    multiply per element. ``hardsigmoid``, ``sigmoid``, ``relu`` and ``relu6``
    form no product of two tensors: zero. No activation has MACs.
    """
    kinds = {"hardswish": 1, "silu": 1, "hardsigmoid": 0, "sigmoid": 0, "relu": 0, "relu6": 0}
    if kind not in kinds:
        raise UserInputError(f"unknown activation {kind!r}; expected one of {sorted(kinds)}")
    return {"params": 0, "macs": 0, "hadamard_mults": kinds[kind] * math.prod(shape)}


_BY_NAME = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "silu": SiLU,
    "swish": SiLU,
    "hardswish": HardSwish,
    "sigmoid": nn.Sigmoid,
    "hardsigmoid": HardSigmoid,
    "gelu": nn.GELU,
}


def make_activation(name: str) -> nn.Module:
    """A fresh activation module by name (``relu``, ``relu6``, ``silu``, ``hardswish``, ...)."""
    try:
        return _BY_NAME[name]()
    except KeyError:
        raise UserInputError(f"unknown activation {name!r}; expected one of {sorted(_BY_NAME)}") from None


def _example(name: str, formula: str, paper: str):
    from edgehad.blocks.catalogue import block

    @block(name, "adaptive modulation and masking", formula, paper)
    def example():
        torch.manual_seed(0)
        return make_activation(name.split("-")[0]).eval(), (torch.randn(1, 8, 6, 6) * 4,)


_example("silu-activation", "y = x ⊙ σ(x)", "Elfwing et al. 2018; Ramachandran et al. 2017")
_example("hardswish-activation", "y = x ⊙ relu6(x + 3) / 6", "Howard et al. 2019, Searching for MobileNetV3")
