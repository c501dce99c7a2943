"""What a model costs: parameters and multiply-accumulates (MACs).

Conventions, the same for torch modules, ONNX files and TFLite files
(``edgehad.inspection`` computes the file side from the graph's tensor shapes):

- One MAC is one multiply-add, ``acc += a * b``; it is half a FLOP count as
  torch's ``FlopCounterMode`` reports it (which counts the multiply and the
  add separately), so ``macs == flops // 2`` exactly.
- Counted: convolutions (grouped, depthwise and transposed included; a conv
  costs ``out.numel() * (C_in / groups) * prod(kernel)``, a transposed conv
  ``in.numel() * (C_out / groups) * prod(kernel)``), fully connected layers /
  ``Linear`` / ``Gemm`` (``M * N * K``), matmul / bmm (``batch * M * N * K``),
  matrix-vector and dot products, the two matmuls inside
  scaled-dot-product attention, and recurrent cells: per step and
  direction an LSTM costs ``4 * H * (I + H)`` (its input and hidden
  matmuls over four gates), a GRU ``3 * H * (I + H)``, a plain RNN
  ``H * (I + H)``, times sequence length and batch.
- Not counted: element-wise ops (the Hadamard product of a gate included),
  bias adds, activations, normalization, pooling, softmax, data movement.
  These are cheap in arithmetic but not always in time: the roofline model
  accounts for them through memory traffic, not through MACs.

``count_params`` counts ``model.parameters()`` (shared parameters once), not
buffers: BatchNorm running statistics are state, not weights. A graph from
PT2E ``convert_pt2e`` keeps its int8 weights as buffers and so counts 0 here;
``edgehad.inspection`` on the exported file counts them.
"""

from __future__ import annotations

import inspect
import math
from collections import Counter
from dataclasses import dataclass, field

from edgehad.core.errors import UserInputError


def count_params(model) -> int:
    """Number of parameter elements of ``model`` (an ``nn.Module``); shared ones once."""
    import torch

    if not isinstance(model, torch.nn.Module):
        raise UserInputError(
            f"count_params needs a torch.nn.Module, got {type(model).__name__}: pass the model itself"
        )
    return sum(p.numel() for p in model.parameters())


def count_macs(model, example_inputs) -> int:
    """MACs of one forward pass of ``model`` on ``example_inputs`` (see the module docstring)."""
    return count_forward(model, example_inputs).macs


@dataclass
class ForwardCount:
    """What one counted forward pass saw."""

    macs: int
    ops: Counter = field(default_factory=Counter)  # aten op name -> calls, e.g. "aten.convolution"
    outputs: list = field(default_factory=list)  # output tensors, pytree-flattened
    inputs: list = field(default_factory=list)  # (name, value) of each example input, in order


def split_inputs(example_inputs) -> tuple[tuple, dict]:
    """Normalize example inputs: a tensor, a tuple/list of them (positional), or a dict (keywords)."""
    import torch

    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,), {}
    if isinstance(example_inputs, (tuple, list)):
        return tuple(example_inputs), {}
    if isinstance(example_inputs, dict):
        return (), dict(example_inputs)
    raise UserInputError(
        f"example inputs must be a tensor, a tuple of tensors or a dict of keyword tensors, "
        f"got {type(example_inputs).__name__}"
    )


def _input_names(model, args: tuple, kwargs: dict) -> list[str]:
    """forward()'s parameter names for the positional inputs (input_0... where unknown)."""
    try:
        params = [
            p.name
            for p in inspect.signature(model.forward).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        params = []
    names = [params[i] if i < len(params) else f"input_{i}" for i in range(len(args))]
    return names + list(kwargs)


def _extra_flop_formulas() -> dict:
    """Formulas (in FLOPs, as FlopCounterMode wants) for ops its registry lacks.

    torch 2.13's registry has no entry for CPU flash attention (what
    ``F.scaled_dot_product_attention`` runs on CPU), matrix-vector or dot
    products, or oneDNN's LSTM layer; without these a transformer on CPU would
    count 0 attention MACs and an ``nn.LSTM`` 0 MACs.
    """
    import torch

    aten = torch.ops.aten

    def sdpa(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
        *batch, s_q, d_qk = query_shape
        s_k, d_v = key_shape[-2], value_shape[-1]
        return 2 * math.prod(batch) * s_q * s_k * (d_qk + d_v)

    def mv(mat_shape, vec_shape, *args, out_shape=None, **kwargs):
        return 2 * mat_shape[0] * mat_shape[1]

    def addmv(self_shape, mat_shape, vec_shape, *args, out_shape=None, **kwargs):
        return 2 * mat_shape[0] * mat_shape[1]

    def dot(a_shape, b_shape, *args, out_shape=None, **kwargs):
        return 2 * a_shape[0]

    def addbmm(self_shape, b1_shape, b2_shape, *args, out_shape=None, **kwargs):
        b, m, k = b1_shape
        return 2 * b * m * k * b2_shape[-1]

    def rnn_layer(input_shape, w_ih_shape, w_hh_shape, *args, out_shape=None, **kwargs):
        # one layer, one direction of nn.LSTM on oneDNN: every step multiplies x_t by W_ih[4H, I] and
        # h_{t-1} by W_hh[4H, H], for each of seq * batch rows of the input (batch_first or not)
        rows = math.prod(input_shape) // input_shape[-1]
        return 2 * rows * (math.prod(w_ih_shape) + math.prod(w_hh_shape))

    formulas = {aten.mv: mv, aten.addmv: addmv, aten.dot: dot, aten.vdot: dot, aten.addbmm: addbmm}
    if hasattr(aten, "mkldnn_rnn_layer"):  # what nn.LSTM runs on CPU; FlopCounterMode counts it as 0
        formulas[aten.mkldnn_rnn_layer] = rnn_layer
    for name in ("_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_fused_attention_overrideable"):
        if hasattr(aten, name):
            formulas[getattr(aten, name)] = sdpa
    return formulas


def count_forward(model, example_inputs) -> ForwardCount:
    """Run ``model`` once on ``example_inputs``, counting MACs and the aten ops it dispatched.

    The model runs in eval mode without autograd (its training flags are
    restored afterwards, so nothing about it changes), with torch's fused
    MultiheadAttention / TransformerEncoderLayer inference fast path turned off
    for the pass: the fused kernel computes the same thing, but is opaque to the
    counter and would count 0.
    """
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves
    from torch.utils.flop_counter import FlopCounterMode

    if isinstance(model, torch.export.ExportedProgram):
        model = model.module()
    if not isinstance(model, torch.nn.Module):
        raise UserInputError(
            f"expected a torch.nn.Module, got {type(model).__name__}: pass the model itself"
        )
    args, kwargs = split_inputs(example_inputs)

    class _OpRecorder(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = Counter()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops[str(func.overloadpacket)] += 1
            return func(*args, **(kwargs or {}))

    training = [(m, m.training) for m in model.modules()]
    fastpath = torch.backends.mha.get_fastpath_enabled()
    flops = FlopCounterMode(display=False, custom_mapping=_extra_flop_formulas())
    recorder = _OpRecorder()
    try:
        try:
            model.train(False)
        except (NotImplementedError, RuntimeError):
            # torch.export's unlifted modules refuse train()/eval(); they carry no mode anyway.
            pass
        torch.backends.mha.set_fastpath_enabled(False)
        # The recorder is entered last so it sees each op first, then passes it on.
        with torch.no_grad(), flops, recorder:
            out = model(*args, **kwargs)
    except UserInputError:
        raise
    except Exception as e:  # a shape or dtype mismatch surfaces as whatever the model raises
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise UserInputError(
            f"the example inputs do not fit the model ({type(e).__name__}: {first}): "
            f"pass inputs shaped and typed as its forward() expects"
        ) from e
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        for m, was_training in training:
            m.training = was_training

    outputs = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
    names = _input_names(model, args, kwargs)
    return ForwardCount(
        macs=flops.get_total_flops() // 2,
        ops=recorder.ops,
        outputs=outputs,
        inputs=list(zip(names, [*args, *kwargs.values()])),
    )

