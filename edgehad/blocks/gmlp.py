"""gMLP spatial gating: one half of the channels gates a sequence-mixed copy of the other half.

    Z = [Z1, Z2]                   split of Z [B, T, dim] along channels (dim even)
    f(Z2) = W · LayerNorm(Z2) + b  W [T, T] mixes positions, b [T] one bias per position
    s(Z) = Z1 ⊙ f(Z2)              [B, T, dim / 2]

    gMLP block:  y = x + proj_out(s(GELU(proj_in(LayerNorm(x)))))

Liu, Dai, So, Le, NeurIPS 2021, "Pay Attention to MLPs". As in the paper, W
starts near zero (uniform in ±1e-3 / T) and b at one, so s(Z) ≈ Z1 at the start
of training and the block begins as a plain MLP. The spatial projection fixes
the sequence length T: the module takes ``seq_len`` and rejects any other.

Export (measured with the catalogue examples): W · Z2 is a batched matmul of
W expanded to [B, T, T] with Z2 [B, T, dim / 2], which TFLite runs as
BATCH_MATMUL on the [B, T, d] layout with no TRANSPOSE (``torch.matmul(W, Z2)``
or ``einsum`` with the 2-D W lower to FULLY_CONNECTED between two TRANSPOSE
ops instead).

- SpatialGatingUnit: ONNX Split, LayerNormalization, MatMul, Add, Mul;
  TFLite SLICE x2, MEAN x2, SQUARED_DIFFERENCE, RSQRT, SUB, MUL, ADD (LayerNorm),
  RESHAPE, BATCH_MATMUL, ADD, MUL.
- GMLPBlock: adds ONNX MatMul + Add (proj_in / proj_out), LayerNormalization,
  Erf, Div, Mul (GELU); TFLite FULLY_CONNECTED x2, GELU, a second LayerNorm.

Cost (convention in ``edgehad.blocks.activations``): the spatial matmul and the
linear layers are MACs; Z1 ⊙ f(Z2) is the Hadamard product, T·dim/2, plus in
GMLPBlock one product per element inside GELU(z) = z·Φ(z) (as in
``edgehad.blocks.glu``). LayerNorm is normalization and not counted.
"""

from __future__ import annotations

import torch
from torch import nn

from edgehad.core.errors import UserInputError


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UserInputError(f"{name} must be a positive integer, got {value!r}")


def _check_even(name: str, value: int) -> None:
    if value % 2:
        raise UserInputError(f"{name} must be even (split in two halves along channels), got {value}")


def _check_seq_len(seq_len: int | None, expected: int, block: str) -> int:
    if seq_len is not None and seq_len != expected:
        raise UserInputError(f"{block} was built for seq_len {expected}; got {seq_len}")
    return expected


class SpatialGatingUnit(nn.Module):
    """s(Z) = Z1 ⊙ (W · LayerNorm(Z2) + b) on Z [B, seq_len, dim]; output [B, seq_len, dim // 2].

    ``spatial`` is W [seq_len, seq_len] (row t mixes all positions into t),
    ``spatial_bias`` is b [seq_len], ``norm`` the LayerNorm over Z2's channels.
    """

    #: Z1 and f(Z2) have the same shape [B, T, dim / 2]
    broadcast_dims: tuple[int, ...] = ()
    #: channel i of Z1 multiplies channel i of f(Z2), i.e. channels i and i + dim/2 of Z
    coupled_dims: tuple[int, ...] = (-1,)

    def __init__(self, dim: int, seq_len: int):
        super().__init__()
        _check_positive(dim=dim, seq_len=seq_len)
        _check_even("dim", dim)
        self.dim, self.seq_len = dim, seq_len
        self.norm = nn.LayerNorm(dim // 2)
        eps = 1e-3 / seq_len
        self.spatial = nn.Parameter(torch.empty(seq_len, seq_len).uniform_(-eps, eps))
        self.spatial_bias = nn.Parameter(torch.ones(seq_len))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() != 3 or z.shape[1] != self.seq_len or z.shape[2] != self.dim:
            raise UserInputError(
                f"SpatialGatingUnit expects input [batch, {self.seq_len}, {self.dim}], got {list(z.shape)}"
            )
        z1, z2 = z.chunk(2, dim=-1)
        z2 = self.norm(z2)
        w = self.spatial.expand(z.shape[0], -1, -1)  # [B, T, T]: BATCH_MATMUL, no TRANSPOSE
        return z1 * (torch.bmm(w, z2) + self.spatial_bias[:, None])

    def cost(self, seq_len: int | None = None) -> dict:
        """Params, MACs and element-wise multiplies for one sequence (of the built ``seq_len``)."""
        return spatial_gating_cost(self.dim, _check_seq_len(seq_len, self.seq_len, "SpatialGatingUnit"))


class GMLPBlock(nn.Module):
    """y = x + proj_out(SGU(GELU(proj_in(LayerNorm(x))))) on x [B, seq_len, dim].

    proj_in: dim -> hidden, SGU on hidden channels (hidden even) giving
    hidden / 2, proj_out: hidden / 2 -> dim. The paper uses hidden = 6·dim.
    """

    broadcast_dims: tuple[int, ...] = ()

    def __init__(self, dim: int, hidden: int, seq_len: int):
        super().__init__()
        _check_positive(dim=dim, hidden=hidden, seq_len=seq_len)
        _check_even("hidden", hidden)
        self.dim, self.hidden, self.seq_len = dim, hidden, seq_len
        self.norm = nn.LayerNorm(dim)
        self.proj_in = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.sgu = SpatialGatingUnit(hidden, seq_len)
        self.proj_out = nn.Linear(hidden // 2, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.proj_out(self.sgu(self.act(self.proj_in(self.norm(x)))))

    def cost(self, seq_len: int | None = None) -> dict:
        """Params, MACs and element-wise multiplies for one sequence (of the built ``seq_len``)."""
        return gmlp_block_cost(self.dim, self.hidden, _check_seq_len(seq_len, self.seq_len, "GMLPBlock"))


def spatial_gating_cost(dim: int, seq_len: int) -> dict:
    """Params, MACs and element-wise multiplies of one SpatialGatingUnit on one sequence.

    params         = dim + T² + T          LayerNorm(dim/2) weight and bias, W, b
    macs           = T² · dim/2            W · Z2
    hadamard_mults = T · dim/2             Z1 ⊙ f(Z2)
    """
    _check_positive(dim=dim, seq_len=seq_len)
    _check_even("dim", dim)
    t, half = seq_len, dim // 2
    return {"params": dim + t * t + t, "macs": t * t * half, "hadamard_mults": t * half}


def gmlp_block_cost(dim: int, hidden: int, seq_len: int) -> dict:
    """Params, MACs and element-wise multiplies of one GMLPBlock on one sequence.

    params         = 2·dim + (dim·hidden + hidden) + SGU(hidden) + (hidden/2·dim + dim)
    macs           = T·dim·hidden + T²·hidden/2 + T·hidden/2·dim
    hadamard_mults = T·hidden (z·Φ(z) in GELU) + T·hidden/2 (the gate)
    """
    _check_positive(dim=dim, hidden=hidden, seq_len=seq_len)
    sgu = spatial_gating_cost(hidden, seq_len)
    t, half = seq_len, hidden // 2
    return {
        "params": 2 * dim + dim * hidden + hidden + sgu["params"] + half * dim + dim,
        "macs": t * dim * hidden + sgu["macs"] + t * half * dim,
        "hadamard_mults": t * hidden + sgu["hadamard_mults"],
    }


def _examples():
    from edgehad.blocks.catalogue import block

    paper = "Liu et al. 2021, Pay Attention to MLPs"

    @block("gmlp-spatial-gating", "efficient operators", "s(Z) = Z1 ⊙ (W · LayerNorm(Z2) + b), W [T, T]", paper)
    def sgu():
        torch.manual_seed(0)
        module = SpatialGatingUnit(32, 16)
        with torch.no_grad():
            module.spatial.normal_(std=0.3)  # trained-looking W, so the spatial path matters
        return module.eval(), (torch.randn(1, 16, 32),)

    @block("gmlp-block", "efficient operators", "y = x + W_out s(GELU(W_in LayerNorm(x)))", paper)
    def gmlp():
        torch.manual_seed(0)
        module = GMLPBlock(32, 64, 16)
        with torch.no_grad():
            module.sgu.spatial.normal_(std=0.3)
        return module.eval(), (torch.randn(1, 16, 32),)


_examples()
