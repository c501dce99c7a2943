"""Rule ``ffn-to-glu``: a Linear -> activation -> Linear feed-forward -> GLU-family block at equal params.

    MLP:  y = W2 act(W1 x + b1) + b2                 (d -> h -> d: 2·d·h weights)
    GLU:  y = W2' (act(W x + b) ⊙ (V x + c)) + b2'   (d -> h' -> d: 3·d·h' weights, h' = 2h/3)

Shazeer 2020, "GLU Variants Improve Transformer". The activation picks the
variant (GELU -> GEGLU, ReLU -> ReGLU, SiLU -> SwiGLU, sigmoid -> GLU).
Initialisation from the original: W, b and W2' take the h' hidden units of
the MLP with the largest ||W2[:, i]|| · ||W1[i]||, and the value branch starts
as the constant 1 (V = 0, c = 1), so the GLU block starts out as that
truncated MLP; distillation then trains the value branch.

Matched by structure: three consecutive children of an ``nn.Sequential``
(Linear, activation, Linear; a Dropout between is allowed) whose widths go
d -> h -> d (or d -> h -> d_out).
"""

from __future__ import annotations

import torch
from torch import nn

from edgehad.rewrite import Rule, rule

_VARIANT = {nn.GELU: "geglu", nn.ReLU: "reglu", nn.SiLU: "swiglu", nn.Sigmoid: "glu"}


def _variant(act: nn.Module) -> str | None:
    from edgehad.blocks.activations import SiLU

    if isinstance(act, SiLU):
        return "swiglu"
    return next((v for t, v in _VARIANT.items() if isinstance(act, t)), None)


def _ffn_parts(seq: nn.Module):
    """(first Linear, activation, second Linear) when ``seq`` is an MLP feed-forward Sequential."""
    if not isinstance(seq, nn.Sequential):
        return None
    kids = [m for m in seq if not isinstance(m, nn.Dropout)]
    if len(kids) != 3 or not isinstance(kids[0], nn.Linear) or not isinstance(kids[2], nn.Linear):
        return None
    if kids[0].out_features != kids[2].in_features:
        return None
    return kids[0], kids[1], kids[2]


class GLUSequential(nn.Sequential):
    """The GLU block in a Sequential (so code that indexes or iterates the old one still runs)."""


@rule
class FFNToGLU(Rule):
    name = "ffn-to-glu"
    matches = "Linear -> activation -> Linear feed-forward (an nn.Sequential, Dropout allowed)"
    effect = "same parameter count (hidden 2h/3), one extra Hadamard product per hidden unit; usually better accuracy"

    def match(self, model):
        return [(n, m) for n, m in model.named_modules() if n and _ffn_parts(m) is not None]

    def check(self, name, module, model, calls):
        first, act, _ = _ffn_parts(module)
        if _variant(act) is None:
            return f"activation {type(act).__name__} has no GLU variant (GELU, ReLU, SiLU, sigmoid)"
        if first.out_features < 3:
            return f"hidden width {first.out_features} is too small to split"
        return None

    def rewrite(self, name, module, model):
        from edgehad.blocks.glu import GLUFeedForward, glu_hidden_for_mlp

        first, act, second = _ffn_parts(module)
        hidden = glu_hidden_for_mlp(first.out_features)
        glu = GLUFeedForward(first.in_features, hidden, _variant(act), out_dim=second.out_features, bias=True)
        with torch.no_grad():
            importance = second.weight.norm(dim=0) * first.weight.norm(dim=1)
            keep = importance.argsort(descending=True)[:hidden].sort().values
            glu.w.weight.copy_(first.weight[keep])
            glu.w.bias.copy_(first.bias[keep] if first.bias is not None else torch.zeros(hidden))
            glu.v.weight.zero_()
            glu.v.bias.fill_(1.0)
            glu.w2.weight.copy_(second.weight[:, keep])
            glu.w2.bias.copy_(second.bias if second.bias is not None else torch.zeros(second.out_features))
        return GLUSequential(glu)

    def example(self):
        from edgehad.zoo import get_model

        return get_model("transformer_encoder", seq_len=16, dim=32, heads=4, depth=1)
