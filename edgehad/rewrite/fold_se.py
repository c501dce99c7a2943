"""Rule ``fold-se``: squeeze-and-excitation gates become constants, folded into the next conv.

A squeeze-and-excitation block (Hu, Shen, Sun 2018, "Squeeze-and-Excitation
Networks") multiplies a feature map by a gate computed from the map itself:

    y = x ⊙ g(x),   g(x) = gate(W2 act(W1 mean_hw(x) + b1) + b2)      [B, C, 1, 1]

The rule replaces g(x) by its mean over the statistics inputs (real train
samples where the conversion has data, else the example inputs):

    s_c = E_x[g_c(x)],   y ≈ x ⊙ s

What is lost is the gate's variation from one input to the next (the
"attention" SE adds); what is kept is each channel's average weight. When the
next layer is a Conv2d with groups == 1 that reads only this tensor (the next
child of the same ``nn.Sequential``, or the first child of the ``nn.Sequential``
that is the next child: the zoo's MBConv ``_conv_bn(hidden, cout, 1)``), the
product folds exactly into that conv's weights:

    conv(x ⊙ s) = Σ_c W[:, c] * (s_c x_c) + b = conv'(x),   W'[:, c] = s_c W[:, c]

(exact for every padding mode, as padding copies or zeroes values and both
commute with a per-channel scale). The block then leaves no op at all. Where
that cannot be proven, the SE becomes a ``ChannelScale`` (y = x ⊙ s, one
MUL). The report says which, per block (``how``).

The function changes; fine-tuning (the finetune stage, ``finetune_epochs`` > 0)
recovers what the constant gates lose.
"""

from __future__ import annotations

import torch
from torch import nn

from edgehad.rewrite import Rule, rule


class ChannelScale(nn.Module):
    """y = x ⊙ s, with s a constant per-channel scale (buffer [1, C, 1, 1])."""

    def __init__(self, scale: torch.Tensor):
        super().__init__()
        self.register_buffer("scale", scale.detach().reshape(1, -1, 1, 1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


def _is_se(module) -> bool:
    from edgehad.blocks.squeeze_excite import SqueezeExcite

    return isinstance(module, SqueezeExcite)


def _uses(model: nn.Module, module: nn.Module) -> int:
    """How many places of the module tree hold ``module`` (a shared module is more than one)."""
    return sum(m is module for _, m in model.named_modules(remove_duplicate=False))


def _next_conv(name: str, module: nn.Module, model: nn.Module) -> tuple[str | None, str]:
    """(name of the Conv2d the gate folds into, or None; the reason when None)."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    # only a plain Sequential proves that the next child reads this output and nothing else does
    if not isinstance(parent, nn.Sequential) or type(parent).forward is not nn.Sequential.forward:
        return None, "not inside an nn.Sequential"
    keys = list(parent._modules)
    at = keys.index(child)
    if at + 1 == len(keys):
        return None, "last child of its nn.Sequential (what reads its output is unknown)"
    after_name, after = f"{parent_name}.{keys[at + 1]}".lstrip("."), parent[at + 1]
    if isinstance(after, nn.Sequential) and type(after).forward is nn.Sequential.forward and len(after):
        first = next(iter(after._modules))
        after_name, after = f"{after_name}.{first}", after[0]
    if not isinstance(after, nn.Conv2d):
        return None, f"next layer is {type(after).__name__}, not a Conv2d"
    if after.groups != 1:
        return None, f"next Conv2d has groups={after.groups}"
    if _uses(model, after) > 1 or _uses(model, module) > 1:
        return None, "the next Conv2d or the SE is shared (used in more than one place)"
    return after_name, ""


def _mean_gate(stats) -> torch.Tensor:
    total = sum(s for s, _ in stats)
    count = sum(n for _, n in stats)
    return (total / count).float()


@rule
class FoldSE(Rule):
    name = "fold-se"
    matches = "SqueezeExcite blocks (edgehad.blocks)"
    effect = ("per SE block: drops the pool (MEAN), the two 1x1 convs, the squeeze activation, the gate and its "
              "product (up to 7 TFLite ops with SiLU/sigmoid, e.g. EfficientNet; no MEAN on a 1x1 map) and "
              "2·C·S + S + C params; folded into the next 1x1 conv, else one MUL by a constant per channel")

    def match(self, model):
        return [(n, m) for n, m in model.named_modules() if n and _is_se(m)]

    def check(self, name, module, model, calls):
        if len(calls) > 1:
            return f"called {len(calls)} times per forward: one constant gate would stand for several"
        return None

    def measure(self, name, module, args, kwargs):
        """(Σ over the batch of the gate g(x) [C, 1, 1], batch size): the same path as SqueezeExcite.forward."""
        x = args[0] if args else kwargs["x"]
        g = module.gate(module.expand(module.act(module.reduce(x.mean((2, 3), keepdim=True)))))
        return g.double().sum(0), g.shape[0]

    def describe(self, name, module, model):
        target, why = _next_conv(name, module, model)
        if target:
            return f"folded into {target} (W[:, c] *= s_c)"
        return f"ChannelScale (y = x ⊙ s): {why}"

    def rewrite(self, name, module, model, stats=None):
        s = _mean_gate(stats).flatten()
        target, _ = _next_conv(name, module, model)
        if target is None:
            return ChannelScale(s)
        conv = model.get_submodule(target)
        with torch.no_grad():
            conv.weight.mul_(s.to(conv.weight.dtype).view(1, -1, 1, 1))
        return nn.Identity()

    def example(self):
        from edgehad.zoo import get_model

        # digits_cnn's gates sit before a MaxPool2d and at the end of `features`: both become ChannelScale.
        # Two example samples: the constant is their mean gate, which is neither sample's own gate.
        model = get_model("digits_cnn", gate="se", pretrained=False)
        model.example_inputs = (torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0)),)
        return model
