"""Π-net CCP block: a polynomial of degree N in its input, built from Hadamard products.

    x_1 = U_1ᵀ z
    x_n = (U_nᵀ z) ⊙ x_{n-1} + x_{n-1}      n = 2 .. N
    y   = C x_N + β

Chrysos, Moschoglou, Bouritsas, Panagakis, Deng, Zafeiriou 2020, "Π-nets:
Deep Polynomial Neural Networks" (CVPR), the coupled CP decomposition (CCP)
of a degree-N polynomial. Each U_n: d_in -> k and C: k -> d_out; there is no
activation: every product raises the degree by one, so y is a polynomial of
degree N in z (x_n = x_1 ⊙ Π_{m=2..n} (1 + U_mᵀ z)).

Two forms over the same formula (as ``GLUFeedForward``):
- ``form="linear"``: z is [..., d_in], U_n and C are ``nn.Linear``;
- ``form="channels"``: z is NCHW, U_n and C are 1x1 ``nn.Conv2d`` (per pixel).

Both operands of each ⊙ have the shape [..., k], so nothing broadcasts
(``broadcast_dims == ()``); the hidden dim couples unit i of every U_n with
input unit i of C: pruning removes all of them together.
"""

from __future__ import annotations

import torch
from torch import nn

from edgehad.core.errors import UserInputError

_FORMS = ("linear", "channels")


class PolynomialCCP(nn.Module):
    """y = C x_N + β with x_1 = U_1ᵀ z, x_n = (U_nᵀ z) ⊙ x_{n-1} + x_{n-1}.

    ``degree``: N >= 1. ``hidden``: k, the rank of the decomposition.
    ``out_dim`` defaults to ``in_dim``. ``form``: ``"linear"`` or ``"channels"``.
    """

    #: both operands of every Hadamard product have the same shape
    broadcast_dims: tuple[int, ...] = ()

    def __init__(self, in_dim: int, hidden: int, degree: int = 2, out_dim: int | None = None, form: str = "linear"):
        super().__init__()
        if form not in _FORMS:
            raise UserInputError(f"unknown polynomial form {form!r}; expected one of {list(_FORMS)}")
        if not isinstance(degree, int) or degree < 1:
            raise UserInputError(f"the polynomial degree must be an integer >= 1, got {degree!r}")
        out_dim = in_dim if out_dim is None else out_dim
        if min(in_dim, hidden, out_dim) < 1:
            raise UserInputError(
                f"PolynomialCCP needs positive sizes, got in_dim={in_dim}, hidden={hidden}, out_dim={out_dim}"
            )
        self.in_dim, self.hidden, self.out_dim, self.degree, self.form = in_dim, hidden, out_dim, degree, form
        #: the dim of z and of every x_n along which the products are element for element
        self.coupled_dims = (1,) if form == "channels" else (-1,)

        def proj(i: int, o: int, bias: bool) -> nn.Module:
            return nn.Conv2d(i, o, 1, bias=bias) if form == "channels" else nn.Linear(i, o, bias=bias)

        self.u = nn.ModuleList(proj(in_dim, hidden, False) for _ in range(degree))
        self.c = proj(hidden, out_dim, True)  # its bias is β

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.form == "channels" and (z.dim() != 4 or z.shape[1] != self.in_dim):
            raise UserInputError(f"PolynomialCCP (channels) expects z as [B, {self.in_dim}, H, W], got {list(z.shape)}")
        if self.form == "linear" and (z.dim() < 1 or z.shape[-1] != self.in_dim):
            raise UserInputError(f"PolynomialCCP expects z as [..., {self.in_dim}], got {list(z.shape)}")
        x = self.u[0](z)
        for u in self.u[1:]:
            x = u(z) * x + x
        return self.c(x)

    def cost(self, tokens: int = 1) -> dict:
        """Params, MACs and element-wise multiplies for ``tokens`` positions (batch rows, or H·W)."""
        return polynomial_ccp_cost(self.in_dim, self.hidden, self.degree, self.out_dim, tokens)


def polynomial_ccp_cost(in_dim: int, hidden: int, degree: int = 2, out_dim: int | None = None, tokens: int = 1) -> dict:
    """Params, MACs and element-wise multiplies of one PolynomialCCP.

    params         = N·d_in·k + k·d_out + d_out         (U_1..U_N, C, β)
    macs           = tokens · (N·d_in·k + k·d_out)      the N + 1 projections
    hadamard_mults = tokens · (N - 1)·k                 (U_nᵀ z) ⊙ x_{n-1} for n = 2..N
    """
    if not isinstance(degree, int) or degree < 1:
        raise UserInputError(f"the polynomial degree must be an integer >= 1, got {degree!r}")
    out_dim = in_dim if out_dim is None else out_dim
    n, k = degree, hidden
    return {
        "params": n * in_dim * k + k * out_dim + out_dim,
        "macs": tokens * (n * in_dim * k + k * out_dim),
        "hadamard_mults": tokens * (n - 1) * k,
    }


def _example(form: str):
    from edgehad.blocks.catalogue import block

    name = "polynomial-ccp" + ("-conv" if form == "channels" else "")
    shape = (1, 8, 6, 6) if form == "channels" else (2, 8)

    @block(name, "higher-order interactions", "x_n = (U_nᵀ z) ⊙ x_{n-1} + x_{n-1}, y = C x_N + β",
           "Chrysos et al. 2020, Π-nets: Deep Polynomial Neural Networks")
    def example():
        torch.manual_seed(0)
        return PolynomialCCP(8, 16, degree=3, out_dim=6, form=form).eval(), (torch.randn(*shape),)


_example("linear")
_example("channels")
