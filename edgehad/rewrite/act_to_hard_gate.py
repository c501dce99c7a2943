"""Rule ``act-to-hard-gate``: SiLU / Swish / GELU -> hard-swish; sigmoid -> hard-sigmoid.

    silu(x) = x ⊙ σ(x)       ->  hardswish(x)   = x ⊙ relu6(x + 3) / 6
    σ(x)                     ->  hardsigmoid(x) = relu6(x + 3) / 6

Howard et al. 2019, "Searching for MobileNetV3": the piecewise-linear forms
need no exponential. The functions differ (max |silu - hardswish| is about
0.14, near x = -3 and x = 3), so the rule is followed by distillation.

The hard-swish is written as its gate, ``x * hardsigmoid(x)`` (HardSwishGate),
not as torch's ``hardswish``, because of how int8 TFLite runs the two: LiteRT's
XNNPACK delegate takes HARD_SWISH in float only, so an int8 HARD_SWISH runs in
TFLite's own kernel and cuts the delegated graph at every activation. Measured
(x86 with AVX-512 VNNI, 1 thread, interleaved medians of 1200 invokes after
100 warm-up): efficientnet_b0(pretrained="digits") int8 with SiLU 0.296 ms
(1 XNNPACK partition), rewritten to HARD_SWISH 0.795 ms (49 HARD_SWISH ops,
50 partitions), rewritten to the gate 0.294 ms (1 partition). One conv -> act
-> conv at 48x16x16: ReLU 0.021, SiLU 0.023, HARD_SWISH 0.102, gate 0.025 ms;
without XNNPACK, TFLite's own int8 HARD_SWISH is slower than LOGISTIC + MUL too.

The gate's hard sigmoid gets the fixed [0, 1) range of a gate
(edgehad.quantize.quantizer); int8 TFLite computes it as DEQUANTIZE, ADD, MUL,
QUANTIZE, then an int8 MUL, all inside XNNPACK (and TFLite Micro runs them).
Float TFLite fuses the product back into one HARD_SWISH; onnxruntime fuses
either form into the conv in fp32 and runs them alike in int8 (HARD_SWISH
0.057, gate 0.059 ms). In float the gate is the hard-swish up to rounding (torch
computes both as x * relu6(x + 3) / 6; at most 5e-7 apart on [-8, 8]).

Matched: activation modules (torch's and edgehad.blocks'); an activation
called as a function inside ``forward`` cannot be replaced and is not seen.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from edgehad.blocks.activations import HardSwish
from edgehad.rewrite import Rule, rule


class HardSwishGate(HardSwish):
    """hardswish(x) = x ⊙ hardsigmoid(x), computed as that product: int8 TFLite then runs it inside XNNPACK
    (see the module docstring). A HardSwish still, for every rule and cost that asks."""

    def forward(self, x):
        return x * F.hardsigmoid(x)


def _target(module):
    from edgehad.blocks.activations import HardSigmoid, SiLU

    if isinstance(module, (nn.SiLU, SiLU, nn.GELU)):
        return HardSwishGate
    if isinstance(module, nn.Sigmoid):
        return HardSigmoid
    return None


@rule
class ActToHardGate(Rule):
    name = "act-to-hard-gate"
    matches = "SiLU/Swish/GELU and sigmoid activation modules"
    effect = ("no exponentials; int8 TFLite as fast as SiLU (hard-swish written x*hardsigmoid(x), which XNNPACK "
              "runs, its hard sigmoid in float: not int8 end to end; XNNPACK does not run an int8 HARD_SWISH); "
              "gates in the fixed [0, 1] range; params unchanged")

    def match(self, model):
        return [(n, m) for n, m in model.named_modules() if n and _target(m) is not None]

    def check(self, name, module, model, calls):
        if isinstance(module, nn.GELU) and module.approximate not in ("none", "tanh"):
            return f"GELU(approximate={module.approximate!r}) is not a known form"
        return None

    def rewrite(self, name, module, model):
        return _target(module)()

    def example(self):
        from edgehad.zoo import get_model

        return get_model("digits_cnn", act="silu", gate="se", pretrained=False)
