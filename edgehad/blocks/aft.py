"""Attention Free Transformer token mixers: a sigmoid query gate times a weighted average of values.

    Q = x Wq,  K = x Wk,  V = x Wv                                   x: [B, T, dim]
    AFT-simple  Y_t = σ(Q_t) ⊙ Σ_t' softmax_t'(K)_t' ⊙ V_t'          softmax over t', per channel
    AFT-conv    Y_t = σ(Q_t) ⊙ Σ_t' exp(K_t' + w_{t,t'}) ⊙ V_t' / Σ_t' exp(K_t' + w_{t,t'})
                w_{t,t'} = 0 unless |t' - t| <= r  (a window of 2r + 1 positions)
    output = Y Wo  (``proj``)

Zhai et al. 2021, "An Attention Free Transformer" (AFT-simple, AFT-local and
AFT-conv are its variants of AFT-full). No T x T attention matrix is formed:
AFT-simple is O(T·d), AFT-conv O(T·d·window). The paper's AFT-conv form is
used as written: with E = exp(K) and c = exp(w) - 1 (zero outside the window)

    numerator   = Σ_t' E_t' ⊙ V_t'  +  conv_T(E ⊙ V, c)
    denominator = Σ_t' E_t'         +  conv_T(E, c)

a global sum plus a depthwise convolution along T with kernel exp(w) - 1.
``pos_bias`` [heads, window] holds w: ``pos_bias[h, j]`` is the bias between
query t and key t' = t + j - r for the channels c of head h = c mod heads
(interleaved rather than contiguous heads: see Export; ``heads == dim``: one
kernel per channel; ``heads == 1``: one kernel shared by all channels). It
starts at zero, where AFT-conv equals AFT-simple.

Numerics: E = exp(K - max_t' K) with the max per sample and channel; the
factor exp(-max) cancels between numerator and denominator, and no exp
overflows however large K gets (the key at the max contributes at least
min(1, exp(w)) to the denominator).

Export (both forms keep [B, T, dim] throughout, measured with the catalogue
examples): the normalisation is written out (max over dim 1, exp, sum over
dim 1, divide) instead of ``softmax(dim=1)``, whose TFLite SOFTMAX works on
the last dim only and would bring TRANSPOSE ops. The conv along T runs on the
view [B, T, dim // heads, heads] permuted to NCHW [B, heads, T, dim // heads]
with groups = heads: that view is already TFLite's NHWC layout, so the
converter's permutes cancel, and the kernel is exp(w) - 1 of the parameter
itself, folded to a constant. (A conv1d on x.transpose(1, 2), or a kernel
repeated per channel for contiguous heads, both leave TRANSPOSE ops.)

- AFTSimple: ONNX MatMul, Add, ReduceMax, Sub, Exp, Mul, ReduceSum, Div,
  Sigmoid; TFLite FULLY_CONNECTED x4, REDUCE_MAX, SUB, EXP, MUL x2, SUM x2,
  DIV, LOGISTIC, RESHAPE.
- AFTConv: ONNX the above plus Reshape, Transpose, Conv; TFLite the above
  plus DEPTHWISE_CONV_2D x2, ADD x2 (RESHAPE x4 in all), no TRANSPOSE (heads = 1,
  4 and dim alike).

The q, k, v and proj projections are plain ``nn.Linear(dim, dim)`` with the
names of a softmax attention's projections, so weights copy across.

Cost (convention in ``edgehad.blocks.activations``): the four projections and
the depthwise convolution are MACs; E ⊙ V and σ(Q) ⊙ (num / den) are the
Hadamard products, T·dim each. The exp, the sums and the element-wise
division num / den (T·dim divides for AFT-conv, dim per sample for
AFT-simple) are not products of two tensors in the convention's sense and
are not counted.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgehad.core.errors import UserInputError


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UserInputError(f"{name} must be a positive integer, got {value!r}")


def _check_input(x: torch.Tensor, dim: int, block: str) -> None:
    if x.dim() != 3 or x.shape[-1] != dim:
        raise UserInputError(f"{block} expects input [batch, seq_len, {dim}], got {list(x.shape)}")


def over_tokens(x: torch.Tensor, op: str) -> torch.Tensor:
    """Sum or max of [B, T, d] over T, keeping the dim: [B, 1, d]; in two stages when T factors.

    [B, T, d] -> [B, T/b, b, d], reduce over b, then over T/b (b: the largest
    divisor of T up to sqrt(T)). Same result; but onnxruntime's ReduceSum and
    ReduceMax over the middle axis of one [1, 4096, 256] tensor took 6.6 and
    6.8 ms (1 thread, measured), the two-stage form 0.17 and 0.23 ms. TFLite
    runs both alike, and the reshape adds no TRANSPOSE.
    """
    b, t, d = x.shape
    block = max((n for n in range(1, int(t ** 0.5) + 1) if t % n == 0), default=1)
    if block > 1:
        x = x.reshape(b, t // block, block, d)
        x = x.sum(2) if op == "sum" else x.amax(2)
    return x.sum(1, keepdim=True) if op == "sum" else x.amax(1, keepdim=True)


class _AFTBase(nn.Module):
    #: σ(Q) [B, T, dim] multiplies the context; in AFT-simple the context is
    #: [B, 1, dim], broadcast over the sequence dim
    broadcast_dims: tuple[int, ...] = (1,)
    #: dim along which gate, keys and values are multiplied element for element
    coupled_dims: tuple[int, ...] = (-1,)

    def __init__(self, dim: int, bias: bool):
        super().__init__()
        _check_positive(dim=dim)
        self.dim, self.bias = dim, bias
        self.q = nn.Linear(dim, dim, bias=bias)
        self.k = nn.Linear(dim, dim, bias=bias)
        self.v = nn.Linear(dim, dim, bias=bias)
        self.proj = nn.Linear(dim, dim, bias=bias)

    def _gate_keys_values(self, x: torch.Tensor):
        _check_input(x, self.dim, type(self).__name__)
        k = self.k(x)
        e = torch.exp(k - over_tokens(k, "max").detach())  # the max cancels in num / den
        return torch.sigmoid(self.q(x)), e, self.v(x)


class AFTSimple(_AFTBase):
    """y = (σ(Q) ⊙ Σ_t' softmax_t'(K) ⊙ V) Wo on x [B, T, dim]; every query sees one pooled context."""

    def __init__(self, dim: int, bias: bool = True):
        super().__init__(dim, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, e, v = self._gate_keys_values(x)
        context = over_tokens(e * v, "sum") / over_tokens(e, "sum")  # [B, 1, dim]
        return self.proj(gate * context)

    def cost(self, seq_len: int) -> dict:
        """Params, MACs and element-wise multiplies for one sequence of ``seq_len`` tokens."""
        return aft_simple_cost(self.dim, seq_len, self.bias)


class AFTConv(_AFTBase):
    """AFT-conv: AFT-simple plus learned position biases on a window of ``window`` (odd) keys around t.

    ``heads`` (dividing ``dim``) kernels of ``window`` biases each (``pos_bias``
    [heads, window]), kernel h shared by the channels c with c % heads == h;
    ``heads=dim`` gives one kernel per channel.
    """

    #: the gate σ(Q) and the context num / den both have x's shape [B, T, dim]
    broadcast_dims: tuple[int, ...] = ()

    def __init__(self, dim: int, window: int, heads: int = 1, bias: bool = True):
        super().__init__(dim, bias)
        _check_positive(window=window, heads=heads)
        if window % 2 == 0:
            raise UserInputError(f"window must be odd (centred on the query), got {window}")
        if dim % heads:
            raise UserInputError(f"dim ({dim}) must be divisible by heads ({heads})")
        self.window, self.heads = window, heads
        self.pos_bias = nn.Parameter(torch.zeros(heads, window))

    def _local(self, x: torch.Tensor) -> torch.Tensor:
        """Conv along T with kernel exp(w) - 1, channel c using head c % heads' kernel.

        [B, T, dim] is viewed as [B, T, dim // heads, heads] and permuted to
        NCHW [B, heads, T, dim // heads]: in TFLite's NHWC that is the view
        itself, so the permutes cancel, and the kernel is the parameter alone
        (no per-channel copies to build at run time).
        """
        b, t, d = x.shape
        x = x.reshape(b, t, d // self.heads, self.heads).permute(0, 3, 1, 2)
        kernel = torch.expm1(self.pos_bias)[:, None, :, None]  # [heads, 1, window, 1]
        y = F.conv2d(x, kernel, padding=(self.window // 2, 0), groups=self.heads)
        return y.permute(0, 2, 3, 1).reshape(b, t, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, e, v = self._gate_keys_values(x)
        ev = e * v
        num = over_tokens(ev, "sum") + self._local(ev)
        den = over_tokens(e, "sum") + self._local(e)
        return self.proj(gate * (num / den))

    def cost(self, seq_len: int) -> dict:
        """Params, MACs and element-wise multiplies for one sequence of ``seq_len`` tokens."""
        return aft_conv_cost(self.dim, self.window, seq_len, self.heads, self.bias)


def aft_simple_cost(dim: int, seq_len: int, bias: bool = True) -> dict:
    """Params, MACs and element-wise multiplies of one AFTSimple on one sequence.

    params         = 4·dim² (+ 4·dim with bias)     q, k, v, proj
    macs           = T · 4·dim²                      the four projections
    hadamard_mults = 2 · T · dim                     E ⊙ V and σ(Q) ⊙ context
    """
    _check_positive(dim=dim, seq_len=seq_len)
    return {
        "params": 4 * dim * dim + (4 * dim if bias else 0),
        "macs": seq_len * 4 * dim * dim,
        "hadamard_mults": 2 * seq_len * dim,
    }


def aft_conv_cost(dim: int, window: int, seq_len: int, heads: int = 1, bias: bool = True) -> dict:
    """Params, MACs and element-wise multiplies of one AFTConv on one sequence.

    params         = 4·dim² (+ 4·dim with bias) + heads·window
    macs           = T · 4·dim² + 2 · T · dim · window   projections, and the depthwise conv
                                                         over E ⊙ V and over E
    hadamard_mults = 2 · T · dim                         E ⊙ V and σ(Q) ⊙ (num / den)
    """
    _check_positive(dim=dim, window=window, seq_len=seq_len, heads=heads)
    simple = aft_simple_cost(dim, seq_len, bias)
    return {
        "params": simple["params"] + heads * window,
        "macs": simple["macs"] + 2 * seq_len * dim * window,
        "hadamard_mults": simple["hadamard_mults"],
    }


def _examples():
    from edgehad.blocks.catalogue import block

    @block("aft-simple", "efficient operators", "Y_t = σ(Q_t) ⊙ Σ_t' softmax_t'(K)_t' ⊙ V_t'",
           "Zhai et al. 2021, An Attention Free Transformer")
    def simple():
        torch.manual_seed(0)
        return AFTSimple(32).eval(), (torch.randn(1, 16, 32),)

    @block("aft-conv", "efficient operators",
           "Y_t = σ(Q_t) ⊙ Σ_t' exp(K_t' + w_{t,t'}) ⊙ V_t' / Σ_t' exp(K_t' + w_{t,t'}), w local",
           "Zhai et al. 2021, An Attention Free Transformer (AFT-conv)")
    def conv():
        torch.manual_seed(0)
        module = AFTConv(32, window=5, heads=4)
        with torch.no_grad():
            module.pos_bias.normal_()  # trained-looking biases, so the conv path is exercised
        return module.eval(), (torch.randn(1, 16, 32),)


_examples()
