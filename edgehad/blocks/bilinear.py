"""Low-rank bilinear pooling (MLB): two modalities fused by a Hadamard product.

    f = Pᵀ (tanh(Uᵀ x) ⊙ tanh(Vᵀ y)) + b

x [..., dx] and y [..., dy] are the two inputs (an image feature and a
question embedding in the paper), U: dx -> d and V: dy -> d project both to a
shared rank d, and P: d -> o reads the product out. A full bilinear map
xᵀ W_k y needs dx·dy weights per output; factoring W_k = U diag(P_k) Vᵀ
makes it (dx + dy + o)·d in all.

Kim, On, Lim, Kim, Ha, Zhang 2017, "Hadamard Product for Low-rank Bilinear
Pooling" (ICLR; arXiv 1610.04325, 2016). The paper's eq. (4) has no biases on
U and V and uses tanh on both sides; it is what this module computes.

Both operands of ⊙ have the shape [..., d], so nothing broadcasts
(``broadcast_dims == ()``), and the rank dim couples U's output unit i, V's
output unit i and P's input unit i: pruning removes all three.
"""

from __future__ import annotations

import torch
from torch import nn

from edgehad.core.errors import UserInputError


class LowRankBilinearPooling(nn.Module):
    """f = Pᵀ (tanh(Uᵀ x) ⊙ tanh(Vᵀ y)) + b with U: x_dim -> rank, V: y_dim -> rank, P: rank -> out_dim."""

    #: both operands of the Hadamard product have the same shape
    broadcast_dims: tuple[int, ...] = ()
    #: the rank dim, along which tanh(Uᵀ x) and tanh(Vᵀ y) multiply element for element
    coupled_dims: tuple[int, ...] = (-1,)

    def __init__(self, x_dim: int, y_dim: int, rank: int, out_dim: int):
        super().__init__()
        if min(x_dim, y_dim, rank, out_dim) < 1:
            raise UserInputError(
                f"LowRankBilinearPooling needs positive sizes, got x_dim={x_dim}, y_dim={y_dim}, "
                f"rank={rank}, out_dim={out_dim}"
            )
        self.x_dim, self.y_dim, self.rank, self.out_dim = x_dim, y_dim, rank, out_dim
        self.u = nn.Linear(x_dim, rank, bias=False)
        self.v = nn.Linear(y_dim, rank, bias=False)
        self.p = nn.Linear(rank, out_dim)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.x_dim or y.shape[-1] != self.y_dim:
            raise UserInputError(
                f"LowRankBilinearPooling expects x [..., {self.x_dim}] and y [..., {self.y_dim}], "
                f"got {list(x.shape)} and {list(y.shape)}"
            )
        if x.shape[:-1] != y.shape[:-1]:
            raise UserInputError(
                f"LowRankBilinearPooling needs x and y with the same leading dims, "
                f"got {list(x.shape)} and {list(y.shape)}"
            )
        return self.p(torch.tanh(self.u(x)) * torch.tanh(self.v(y)))

    def cost(self, tokens: int = 1) -> dict:
        """Params, MACs and element-wise multiplies for ``tokens`` (x, y) pairs."""
        return low_rank_bilinear_cost(self.x_dim, self.y_dim, self.rank, self.out_dim, tokens)


def low_rank_bilinear_cost(x_dim: int, y_dim: int, rank: int, out_dim: int, tokens: int = 1) -> dict:
    """Params, MACs and element-wise multiplies of one LowRankBilinearPooling.

    params         = (dx + dy)·d + d·o + o          (U, V, P and b)
    macs           = tokens · ((dx + dy)·d + d·o)   the three projections
    hadamard_mults = tokens · d                     tanh(Uᵀ x) ⊙ tanh(Vᵀ y)
    """
    d = rank
    return {
        "params": (x_dim + y_dim) * d + d * out_dim + out_dim,
        "macs": tokens * ((x_dim + y_dim) * d + d * out_dim),
        "hadamard_mults": tokens * d,
    }


def _example():
    from edgehad.blocks.catalogue import block

    @block("low-rank-bilinear-pooling", "multimodal fusion", "f = Pᵀ (tanh(Uᵀ x) ⊙ tanh(Vᵀ y)) + b",
           "Kim et al. 2017 (arXiv 2016), Hadamard Product for Low-rank Bilinear Pooling")
    def example():
        torch.manual_seed(0)
        return LowRankBilinearPooling(12, 8, 16, 6).eval(), (torch.randn(2, 12), torch.randn(2, 8))


_example()
