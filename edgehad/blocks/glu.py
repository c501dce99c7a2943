"""Gated linear unit feed-forward: two projections multiplied element-wise.

    FFN_GLU(x)    = (σ(xW)     ⊙ xV) W2
    FFN_ReGLU(x)  = (relu(xW)  ⊙ xV) W2
    FFN_GEGLU(x)  = (GELU(xW)  ⊙ xV) W2
    FFN_SwiGLU(x) = (SiLU(xW)  ⊙ xV) W2

Shazeer 2020, "GLU Variants Improve Transformer" (after Dauphin et al. 2017,
"Language Modeling with Gated Convolutional Networks"). The paper drops bias
terms; ``bias=True`` adds them (useful in small CNNs).

Two forms over the same formula:
- ``form="linear"``: x is [..., dim], W, V, W2 are ``nn.Linear`` (transformers);
- ``form="channels"``: x is NCHW, W, V, W2 are 1x1 ``nn.Conv2d`` (CNNs).

Both operands of ⊙ have the same shape [..., hidden], so nothing broadcasts
(``broadcast_dims == ()``) and the hidden dim couples W's output unit i, V's
output unit i and W2's input unit i: channel pruning removes all three.

Equal parameter budget: an MLP FFN (dim -> h -> dim, no bias) has 2·dim·h
weights, the GLU FFN 3·dim·hidden, so hidden = 2h/3 matches it
(``glu_hidden_for_mlp``; the paper's d_ff = 3072 -> 2048).
"""

from __future__ import annotations

import torch
from torch import nn

from edgehad.blocks.activations import make_activation
from edgehad.core.errors import UserInputError

# variant -> (activation of the gate branch, element-wise products inside it per unit)
_VARIANTS = {
    "glu": ("sigmoid", 0),
    "reglu": ("relu", 0),
    "geglu": ("gelu", 1),  # GELU(z) = z·Φ(z): one product
    "swiglu": ("silu", 1),  # SiLU(z) = z·σ(z): one product
}
_FORMS = ("linear", "channels")


class GLUFeedForward(nn.Module):
    """y = (act(xW) ⊙ xV) W2 with W, V: dim -> hidden and W2: hidden -> out_dim.

    ``variant``: ``"glu"`` (σ), ``"reglu"``, ``"geglu"``, ``"swiglu"``.
    ``form``: ``"linear"`` (last dim is features) or ``"channels"`` (NCHW, 1x1 convs).
    ``out_dim`` defaults to ``dim``.
    """

    #: both operands of the Hadamard product have the same shape
    broadcast_dims: tuple[int, ...] = ()

    def __init__(
        self,
        dim: int,
        hidden: int,
        variant: str = "glu",
        out_dim: int | None = None,
        bias: bool = False,
        form: str = "linear",
    ):
        super().__init__()
        if variant not in _VARIANTS:
            raise UserInputError(f"unknown GLU variant {variant!r}; expected one of {list(_VARIANTS)}")
        if form not in _FORMS:
            raise UserInputError(f"unknown GLU form {form!r}; expected one of {list(_FORMS)}")
        out_dim = dim if out_dim is None else out_dim
        self.dim, self.hidden, self.out_dim = dim, hidden, out_dim
        self.variant, self.form, self.bias = variant, form, bias
        #: the dim of x, gate and value along which the product is element for element
        self.coupled_dims = (1,) if form == "channels" else (-1,)

        def proj(i: int, o: int) -> nn.Module:
            return nn.Conv2d(i, o, 1, bias=bias) if form == "channels" else nn.Linear(i, o, bias=bias)

        self.w = proj(dim, hidden)
        self.v = proj(dim, hidden)
        self.w2 = proj(hidden, out_dim)
        self.act = make_activation(_VARIANTS[variant][0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(self.act(self.w(x)) * self.v(x))

    def cost(self, tokens: int = 1) -> dict:
        """Params, MACs and element-wise multiplies for ``tokens`` positions (sequence length, or H·W)."""
        return glu_cost(self.dim, self.hidden, self.variant, self.out_dim, self.bias, tokens)


def glu_cost(
    dim: int,
    hidden: int,
    variant: str = "glu",
    out_dim: int | None = None,
    bias: bool = False,
    tokens: int = 1,
) -> dict:
    """Params, MACs and element-wise multiplies of one GLUFeedForward.

    params         = 2·dim·hidden + hidden·out_dim  (+ 2·hidden + out_dim with bias)
    macs           = tokens · (2·dim·hidden + hidden·out_dim)    the three projections
    hadamard_mults = tokens · hidden · (1 + [geglu/swiglu])      the gate product, and
                                                                 z·Φ(z) / z·σ(z) inside GELU / SiLU
    """
    if variant not in _VARIANTS:
        raise UserInputError(f"unknown GLU variant {variant!r}; expected one of {list(_VARIANTS)}")
    out_dim = dim if out_dim is None else out_dim
    params = 2 * dim * hidden + hidden * out_dim + ((2 * hidden + out_dim) if bias else 0)
    macs = tokens * (2 * dim * hidden + hidden * out_dim)
    return {"params": params, "macs": macs, "hadamard_mults": tokens * hidden * (1 + _VARIANTS[variant][1])}


def glu_hidden_for_mlp(mlp_hidden: int, multiple_of: int = 1) -> int:
    """GLU hidden size with the parameter count of an MLP FFN of hidden ``mlp_hidden``.

    MLP: 2·d·h weights; GLU: 3·d·h' weights; h' = 2h/3, rounded to the nearest
    integer and then up to a multiple of ``multiple_of`` (hardware-friendly
    sizes; the match is then approximate). ``glu_hidden_for_mlp(3072) == 2048``.
    """
    if mlp_hidden < 1 or multiple_of < 1:
        raise UserInputError("mlp_hidden and multiple_of must be positive integers")
    h = max(1, round(2 * mlp_hidden / 3))
    return -(-h // multiple_of) * multiple_of


def _example(variant: str, form: str):
    import torch

    from edgehad.blocks.catalogue import block

    act = {"glu": "σ", "reglu": "relu", "geglu": "GELU", "swiglu": "SiLU"}[variant]
    name = f"{variant}-ffn" + ("-conv" if form == "channels" else "")
    shape = (1, 16, 6, 6) if form == "channels" else (1, 8, 16)

    @block(name, "efficient operators", f"y = ({act}(xW) ⊙ xV) W2", "Shazeer 2020, GLU Variants Improve Transformer")
    def example():
        torch.manual_seed(0)
        return GLUFeedForward(16, 24, variant, form=form, bias=True).eval(), (torch.randn(*shape),)


for _variant in _VARIANTS:
    _example(_variant, "linear")
_example("glu", "channels")
