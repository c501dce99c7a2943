"""FiLM: a feature map scaled and shifted per channel by a conditioning vector.

    γ = W_γ z + b_γ                     [B, C]   linear map of the conditioning z [B, cond_dim]
    β = W_β z + b_β                     [B, C]
    y = γ ⊙ x + β                       Hadamard product, γ and β broadcast over H and W

Perez, Strub, de Vries, Dumoulin, Courville 2018, "FiLM: Visual Reasoning
with a General Conditioning Layer" (AAAI). The paper's FiLM generator predicts
(γ, β) from a question embedding; here it is the pair of linear maps, and z is
whatever the caller conditions on (a text embedding, a task or speaker code).

The product couples channel c of x with channel c of γ (and of β): pruning a
channel of x removes row c of W_γ and of W_β. γ is broadcast over the spatial
dims (2, 3), which never couple. ``FiLM.broadcast_dims`` and
``FiLM.coupled_dims`` record this.
"""

from __future__ import annotations

import torch
from torch import nn

from edgehad.core.errors import UserInputError


class FiLM(nn.Module):
    """y = γ(z) ⊙ x + β(z) for x [B, C, H, W] and z [B, cond_dim]; γ, β: cond_dim -> C."""

    #: dims of x over which γ(z) and β(z), shaped [B, C, 1, 1], are broadcast
    broadcast_dims: tuple[int, ...] = (2, 3)
    #: dims along which x and γ(z) are multiplied element for element
    coupled_dims: tuple[int, ...] = (1,)

    def __init__(self, channels: int, cond_dim: int):
        super().__init__()
        if channels < 1 or cond_dim < 1:
            raise UserInputError(f"FiLM needs positive channels and cond_dim, got {channels} and {cond_dim}")
        self.channels, self.cond_dim = channels, cond_dim
        self.gamma = nn.Linear(cond_dim, channels)
        self.beta = nn.Linear(cond_dim, channels)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise UserInputError(
                f"FiLM expects x as [B, {self.channels}, H, W], got {list(x.shape)}"
            )
        if z.dim() != 2 or z.shape[1] != self.cond_dim or z.shape[0] != x.shape[0]:
            raise UserInputError(
                f"FiLM expects z as [B, {self.cond_dim}] with x's batch {x.shape[0]}, got {list(z.shape)}"
            )
        gamma = self.gamma(z)[:, :, None, None]
        beta = self.beta(z)[:, :, None, None]
        return gamma * x + beta

    def cost(self, height: int, width: int) -> dict:
        """Params, MACs and element-wise multiplies of this block on a C x height x width input."""
        return film_cost(self.channels, self.cond_dim, height, width)


def film_cost(channels: int, cond_dim: int, height: int, width: int) -> dict:
    """Params, MACs and element-wise multiplies of one FiLM per sample.

    params         = 2·(cond_dim·C + C)   (W_γ, b_γ, W_β, b_β)
    macs           = 2·cond_dim·C         (the two linear maps of z)
    hadamard_mults = C·H·W                (the product γ ⊙ x)
    """
    c, k = channels, cond_dim
    return {"params": 2 * (k * c + c), "macs": 2 * k * c, "hadamard_mults": c * height * width}


def _example():
    from edgehad.blocks.catalogue import block

    @block("film", "adaptive modulation and masking", "y = γ(z) ⊙ x + β(z)",
           "Perez et al. 2018, FiLM: Visual Reasoning with a General Conditioning Layer")
    def example():
        torch.manual_seed(0)
        return FiLM(16, 8).eval(), (torch.randn(1, 16, 6, 6), torch.randn(1, 8))


_example()
