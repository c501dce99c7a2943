"""Rule ``insert-se``: add a squeeze-and-excitation gate after conv blocks.

    y = x ⊙ hardσ(W2 relu(W1 mean_hw(x)) + b2)       (Hu et al. 2018; hard gate as in MobileNetV3)

An accuracy lever (a channel gate learned per input) whose gates also rank
channels for pruning. The gate starts as exactly 1 (W2 = 0, b2 = 3, and
hardσ(3) = 1), so the rewritten model computes what the original did until
fine-tuning trains it.

Matched: a Conv2d -> BatchNorm2d -> activation run of three consecutive
children of an nn.Sequential, with at least 16 output channels, not already
followed by a gate; depthwise convs excepted (SE belongs after the block's
expansion, not inside it).
"""

from __future__ import annotations

import torch
from torch import nn

from edgehad.rewrite import Rule, rule

MIN_CHANNELS = 16
_ACTS = (nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish, nn.GELU)


def _conv_block(seq):
    from edgehad.blocks.activations import HardSwish, SiLU

    if not isinstance(seq, nn.Sequential) or len(seq) != 3:
        return None
    conv, bn, act = seq
    if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and isinstance(act, (*_ACTS, SiLU, HardSwish)):
        return conv
    return None


class GatedAct(nn.Sequential):
    """activation, then the inserted SE gate."""


@rule
class InsertSE(Rule):
    name = "insert-se"
    matches = f"Conv2d -> BatchNorm2d -> activation blocks (nn.Sequential) with >= {MIN_CHANNELS} channels"
    effect = "+2·C·C/4 params and a C·H·W Hadamard product per block; starts as the identity"
    changes_function = False  # the gate starts at exactly 1: no fine-tuning is forced

    def match(self, model):
        return [(n, m) for n, m in model.named_modules() if n and _conv_block(m) is not None]

    def check(self, name, module, model, calls):
        conv = _conv_block(module)
        if conv.groups > 1 and conv.groups == conv.out_channels:
            return "depthwise conv: the gate goes after the block's 1x1 convs"
        if conv.out_channels < MIN_CHANNELS:
            return f"{conv.out_channels} channels (< {MIN_CHANNELS}): too few to gate"
        if isinstance(module[2], GatedAct):
            return "already gated"
        return None

    def rewrite(self, name, module, model):
        from edgehad.blocks.squeeze_excite import SqueezeExcite

        conv = _conv_block(module)
        se = SqueezeExcite(conv.out_channels, reduction=4, gate="hardsigmoid")
        with torch.no_grad():
            se.expand.weight.zero_()
            se.expand.bias.fill_(3.0)  # hardsigmoid(3) = 1: the gate starts fully open
        new = nn.Sequential(module[0], module[1], GatedAct(module[2], se))
        return new

    def example(self):
        from edgehad.zoo import get_model

        return get_model("digits_cnn", pretrained=False)
