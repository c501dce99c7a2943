"""Rule ``act-to-hard-gate``: SiLU / Swish / GELU -> hard-swish; sigmoid -> hard-sigmoid.

    silu(x) = x ⊙ σ(x)       ->  hardswish(x)   = x ⊙ relu6(x + 3) / 6
    σ(x)                     ->  hardsigmoid(x) = relu6(x + 3) / 6

Howard et al. 2019, "Searching for MobileNetV3": the piecewise-linear forms
need no exponential and quantize well (int8 kernels exist for HARD_SWISH;
edgehad folds a hard-sigmoid gate into the layer before it and gives it the
fixed [0, 1] range). The functions differ (max |silu - hardswish| is about
0.14, near x = -3 and x = 3), so the rule is followed by distillation.

Matched: activation modules (torch's and edgehad.blocks'); an activation
called as a function inside ``forward`` cannot be replaced and is not seen.
"""

from __future__ import annotations

from torch import nn

from edgehad.rewrite import Rule, rule


def _target(module):
    from edgehad.blocks.activations import HardSigmoid, HardSwish, SiLU

    if isinstance(module, (nn.SiLU, SiLU, nn.GELU)):
        return HardSwish
    if isinstance(module, nn.Sigmoid):
        return HardSigmoid
    return None


@rule
class ActToHardGate(Rule):
    name = "act-to-hard-gate"
    matches = "SiLU/Swish/GELU and sigmoid activation modules"
    effect = "no exponentials; int8-friendly (HARD_SWISH kernels, fixed-range gates); params unchanged"

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
