"""Partial convolution: a convolution over the valid pixels only, renormalized, with its mask updated.

    s   = sum over the window of m             (a conv of m with a fixed ones kernel)
    out = Wᵀ (x ⊙ m) · sum(1) / s + b          where s > 0
        = 0                                    where s = 0
    m'  = 1 if s > 0 else 0

Liu, Reda, Shih, Wang, Tao, Catanzaro 2018, "Image Inpainting for Irregular
Holes Using Partial Convolutions" (ECCV). x is [B, C, H, W]; the mask m is
[B, 1, H, W] (one mask for every channel, ``mask_channels=1``) or
[B, C, H, W] (``mask_channels=C``); sum(1) is the window size,
mask_channels·kh·kw. ``forward`` returns ``(out, m')``, m' as [B, 1, H', W'],
ready to be the mask of a next partial convolution with ``mask_channels=1``.

Written without data-dependent control flow, so that it exports as plain
ops (Mul, Conv, Clip/Max, Div, Add): for a 0/1 mask, s is a whole number,
so ``m' = clamp(s, 0, 1)`` is exactly [s > 0] and ``sum(1) / clamp(s, min=1)``
is exactly sum(1) / s where s > 0. Where s = 0 every pixel of the window is
masked, so Wᵀ (x ⊙ m) is already 0 and only the bias needs m': out adds
b ⊗ m' (b [C_out] times m' [B, 1, H', W']). A soft (non-binary) mask gives
the same continuous expression.

b ⊗ m' is computed as a 1x1 convolution of m' with b as its [C_out, 1, 1, 1]
kernel (the same numbers as ``b[:, None, None] * m'``), so it counts as conv
MACs, not as a Hadamard product. The reason is TFLite's layout: litert-torch
picks NHWC or NCHW per op by a min cut, and with an element-wise b ⊙ m' the
tail of the block (the ratio product, the bias, the add) ties between NHWC
(transposes on the outputs) and NCHW (one TRANSPOSE inside the graph, after
the conv); a conv in the tail must be NHWC and breaks the tie.

With a one-channel mask the product x ⊙ m broadcasts m over channels
(``broadcast_dims == (1,)``) and couples only the spatial dims; a per-channel
mask couples the channels too (``coupled_dims`` includes 1), so pruning a
channel of x removes that channel of the mask.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair

from edgehad.core.errors import UserInputError


class PartialConv2d(nn.Module):
    """(out, m') = partial convolution of x [B, C, H, W] under mask m [B, mask_channels, H, W].

    ``kernel_size``, ``stride``, ``padding``, ``dilation``: as ``nn.Conv2d``
    (ints or pairs; no string padding). ``mask_channels``: 1 or ``in_channels``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        bias: bool = True,
        mask_channels: int = 1,
    ):
        super().__init__()
        if in_channels < 1 or out_channels < 1:
            raise UserInputError(
                f"PartialConv2d needs positive channels, got in_channels={in_channels}, out_channels={out_channels}"
            )
        if mask_channels not in (1, in_channels):
            raise UserInputError(
                f"mask_channels must be 1 or in_channels ({in_channels}), got {mask_channels}"
            )
        for name, value, least in (("kernel_size", kernel_size, 1), ("stride", stride, 1),
                                   ("padding", padding, 0), ("dilation", dilation, 1)):
            pair = _pair(value)
            if len(pair) != 2 or not all(isinstance(v, int) and v >= least for v in pair):
                raise UserInputError(
                    f"PartialConv2d {name} must be an integer >= {least} or a pair of them, got {value!r}"
                )
        self.in_channels, self.out_channels, self.mask_channels = in_channels, out_channels, mask_channels
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, bias=False)
        kh, kw = self.conv.kernel_size
        self.bias = None
        if bias:  # nn.Conv2d's own initialization of its bias
            bound = 1 / math.sqrt(in_channels * kh * kw)
            self.bias = nn.Parameter(torch.empty(out_channels).uniform_(-bound, bound))
        # sum(1): the number of mask entries under one window; not learned, not saved
        self.window = mask_channels * kh * kw
        self.register_buffer("ones", torch.ones(1, mask_channels, kh, kw), persistent=False)
        #: dims of x over which the mask is broadcast
        self.broadcast_dims: tuple[int, ...] = (1,) if mask_channels == 1 and in_channels > 1 else ()
        #: dims along which x and the mask are multiplied element for element
        self.coupled_dims: tuple[int, ...] = (2, 3) if mask_channels == 1 else (1, 2, 3)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise UserInputError(f"PartialConv2d expects x as [B, {self.in_channels}, H, W], got {list(x.shape)}")
        if mask.dim() != 4 or mask.shape[1] != self.mask_channels or mask.shape[0] != x.shape[0] \
                or mask.shape[2:] != x.shape[2:]:
            raise UserInputError(
                f"PartialConv2d expects the mask as [{x.shape[0]}, {self.mask_channels}, "
                f"{x.shape[2]}, {x.shape[3]}] (x's batch and size), got {list(mask.shape)}"
            )
        c = self.conv
        s = F.conv2d(mask, self.ones, None, c.stride, c.padding, c.dilation)  # [B, 1, H', W']
        new_mask = s.clamp(0, 1)
        out = c(x * mask) * (self.window / s.clamp(min=1))
        if self.bias is not None:
            # b ⊗ m' as a 1x1 conv (see the module docstring: it keeps TFLite free of layout transposes)
            out = out + F.conv2d(new_mask, self.bias[:, None, None, None])
        return out, new_mask

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """(H', W') of the output on a height x width input."""
        c = self.conv
        return _output_size(height, width, c.kernel_size, c.stride, c.padding, c.dilation)

    def cost(self, height: int, width: int) -> dict:
        """Params, MACs and element-wise multiplies of this block on a C x height x width input."""
        c = self.conv
        return partial_conv_cost(self.in_channels, self.out_channels, c.kernel_size, height, width,
                                 c.stride, c.padding, c.dilation, self.bias is not None, self.mask_channels)


def partial_conv_cost(
    in_channels: int,
    out_channels: int,
    kernel_size: int | tuple[int, int],
    height: int,
    width: int,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    bias: bool = True,
    mask_channels: int = 1,
) -> dict:
    """Params, MACs and element-wise multiplies of one PartialConv2d per sample.

    With K = kh·kw and an output of H'·W' pixels:
    params         = C_out·C_in·K (+ C_out with bias)       the ones kernel is a buffer, not counted
    macs           = H'·W'·(C_out·C_in·K + mask_channels·K)  the conv of x ⊙ m and the window sum of m
                     (+ C_out·H'·W' with bias)               b ⊗ m', computed as a 1x1 conv
    hadamard_mults = C_in·H·W + C_out·H'·W'                  x ⊙ m, and the conv times sum(1)/s
    """
    kh, kw = _pair(kernel_size)
    out_h, out_w = _output_size(height, width, kernel_size, stride, padding, dilation)
    k, pixels = kh * kw, out_h * out_w
    return {
        "params": out_channels * in_channels * k + (out_channels if bias else 0),
        "macs": pixels * (out_channels * in_channels * k + mask_channels * k + (out_channels if bias else 0)),
        "hadamard_mults": in_channels * height * width + out_channels * pixels,
    }


def _output_size(height, width, kernel_size, stride, padding, dilation) -> tuple[int, int]:
    """(H', W') of a convolution, as nn.Conv2d computes it."""
    return tuple(
        (n + 2 * p - d * (k - 1) - 1) // s + 1
        for n, k, s, p, d in zip((height, width), *map(_pair, (kernel_size, stride, padding, dilation)))
    )


def _example():
    from edgehad.blocks.catalogue import block

    @block("partial-conv", "adaptive modulation and masking",
           "out = Wᵀ (x ⊙ m) · sum(1)/sum(m) + b where sum(m) > 0 else 0; m' = [sum(m) > 0]",
           "Liu et al. 2018, Image Inpainting for Irregular Holes Using Partial Convolutions")
    def example():
        torch.manual_seed(0)
        mask = (torch.rand(1, 1, 8, 8) > 0.5).float()
        return PartialConv2d(4, 8, 3, padding=1).eval(), (torch.randn(1, 4, 8, 8), mask)


_example()
