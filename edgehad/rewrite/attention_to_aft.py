"""Rule ``attention-to-aft``: softmax self-attention -> AFT-simple token mixer.

Softmax attention costs O(T^2 d) per layer; AFT-simple (Zhai et al. 2021,
"An Attention Free Transformer")

    Y_t = σ(Q_t) ⊙ Σ_t' softmax_t'(K)_t' ⊙ V_t'

costs O(T d): the T x T attention matrix is never formed. The block keeps the
attention's four projections, initialised from the original weights (Q, K, V
and the output projection), so only the mixing changes; distillation
(``--finetune-epochs``) then recovers the accuracy.

Recognised by structure, not only by class:
- ``torch.nn.MultiheadAttention`` (self-attention calls only: query, key and
  value the same tensor, no attention or padding mask);
- a module with a fused ``qkv`` Linear(d, 3d) and a ``proj`` Linear(d, d)
  (the zoo's ``transformer_encoder``, timm-style ViT attention);
- a module with separate ``query``/``key``/``value`` (or ``q``/``k``/``v``,
  ``q_proj``/``k_proj``/``v_proj``) Linear(d, d) and an optional output
  projection (Hugging Face BERT's ``BertSelfAttention`` keeps its output
  projection in ``BertSelfOutput``, so the AFT block gets none).
A module called with a mask that hides positions (padding, causal) is left
unchanged: AFT-simple has no equivalent, and the reason is reported.
"""

from __future__ import annotations

import torch
from torch import nn

from edgehad.rewrite import Rule, rule

_SEPARATE = (("query", "key", "value"), ("q", "k", "v"), ("q_proj", "k_proj", "v_proj"))
_OUTPUTS = ("proj", "out_proj", "o_proj", "dense")


class AFTAttention(nn.Module):
    """An AFT-simple block behind the call signature of the attention it replaces.

    ``style``: ``"mha"`` (nn.MultiheadAttention: returns ``(out, None)``), ``"tuple"``
    (Hugging Face: ``(out, None)``) or ``"tensor"`` (returns the tensor).
    The attributes below make nn.TransformerEncoderLayer take its regular
    (non-fused) path, which calls this module like any attention.
    """

    in_proj_weight = None
    in_proj_bias = None
    _qkv_same_embed_dim = False

    def __init__(self, aft: nn.Module, style: str, batch_first: bool = True):
        super().__init__()
        self.aft, self.style, self.batch_first = aft, style, batch_first

    def forward(self, x, *args, **kwargs):
        if self.style == "mha" and not self.batch_first:
            return self.aft(x.transpose(0, 1)).transpose(0, 1), None
        out = self.aft(x)
        return (out, None) if self.style in ("mha", "tuple") else out


def _linear(m, d_in=None, d_out=None) -> bool:
    return isinstance(m, nn.Linear) and (d_in is None or m.in_features == d_in) and \
        (d_out is None or m.out_features == d_out)


def _layout(module: nn.Module):
    """(style, q/k/v source, output Linear or None) when ``module`` looks like self-attention, else None."""
    if isinstance(module, nn.MultiheadAttention):
        return "mha", None, module.out_proj
    qkv = getattr(module, "qkv", None)
    if _linear(qkv) and qkv.out_features == 3 * qkv.in_features:
        out = next((getattr(module, n) for n in _OUTPUTS if _linear(getattr(module, n, None))), None)
        return "tensor", "fused", out
    for names in _SEPARATE:
        parts = [getattr(module, n, None) for n in names]
        if all(_linear(p) for p in parts) and len({(p.in_features, p.out_features) for p in parts}) == 1:
            out = next((getattr(module, n) for n in _OUTPUTS if _linear(getattr(module, n, None))), None)
            return "separate", names, out
    return None


@rule
class AttentionToAFT(Rule):
    name = "attention-to-aft"
    matches = ("softmax self-attention: nn.MultiheadAttention, or a module with q/k/v projections "
               "(fused qkv or separate query/key/value Linear layers)")
    effect = "O(T^2 d) -> O(T d) token mixing; same projections (params unchanged), no T x T matrix"

    def match(self, model):
        return [(n, m) for n, m in model.named_modules() if n and _layout(m) is not None]

    def check(self, name, module, model, calls):
        style, parts, out = _layout(module)
        if isinstance(module, nn.MultiheadAttention):
            if not module._qkv_same_embed_dim or module.bias_k is not None or module.add_zero_attn:
                return "kdim/vdim differ from embed_dim or bias_k/add_zero_attn is set: no AFT equivalent here"
        elif parts == "fused":
            if out is not None and out.in_features != module.qkv.in_features:
                return f"output projection takes {out.in_features} features, not {module.qkv.in_features}"
        else:
            d = getattr(module, parts[0]).in_features
            if getattr(module, parts[0]).out_features != d:
                return f"q/k/v project {d} -> {getattr(module, parts[0]).out_features} features (AFT needs d -> d)"
        if getattr(module, "is_causal", False):
            return "causal attention (is_causal=True): AFT-simple sums over all positions, future included"
        for args, kwargs in calls:
            why = _call_problem(module, args, kwargs)
            if why:
                return why
        return None

    def rewrite(self, name, module, model):
        from edgehad.blocks.aft import AFTSimple

        style, parts, out = _layout(module)
        with torch.no_grad():
            if style == "mha":
                d = module.embed_dim
                aft = AFTSimple(d, bias=module.in_proj_bias is not None)
                for i, lin in enumerate((aft.q, aft.k, aft.v)):
                    lin.weight.copy_(module.in_proj_weight[i * d:(i + 1) * d])
                    if module.in_proj_bias is not None:
                        lin.bias.copy_(module.in_proj_bias[i * d:(i + 1) * d])
                _copy_linear(aft, "proj", out)
                return AFTAttention(aft, "mha", batch_first=module.batch_first)
            if parts == "fused":
                d = module.qkv.in_features
                aft = AFTSimple(d, bias=module.qkv.bias is not None)
                for i, lin in enumerate((aft.q, aft.k, aft.v)):
                    lin.weight.copy_(module.qkv.weight[i * d:(i + 1) * d])
                    if module.qkv.bias is not None:
                        lin.bias.copy_(module.qkv.bias[i * d:(i + 1) * d])
                _copy_linear(aft, "proj", out)
                return AFTAttention(aft, "tensor")
            first = getattr(module, parts[0])
            aft = AFTSimple(first.in_features, bias=first.bias is not None)
            for src, lin in zip(parts, (aft.q, aft.k, aft.v)):
                lin.load_state_dict(getattr(module, src).state_dict())
            _copy_linear(aft, "proj", out)
            return AFTAttention(aft, "tuple")

    def example(self):
        from edgehad.zoo import get_model

        return get_model("transformer_encoder", seq_len=16, dim=32, heads=4, depth=1)


def _copy_linear(aft, attr: str, source) -> None:
    if source is None:  # the output projection lives elsewhere (BERT): none here
        setattr(aft, attr, nn.Identity())
    else:
        getattr(aft, attr).load_state_dict(source.state_dict())


def _call_problem(module, args, kwargs) -> str | None:
    """Why a recorded call cannot be kept by AFT-simple (masks, cross-attention), else None."""
    if isinstance(module, nn.MultiheadAttention):
        q, k, v = (list(args) + [kwargs.get(n) for n in ("query", "key", "value")][len(args):])[:3]
        if not (k is q or k is None) or not (v is q or v is None):
            return "called as cross-attention (key/value differ from query): AFT-simple mixes one sequence"
        for key in ("attn_mask", "key_padding_mask"):
            if kwargs.get(key) is not None:
                return f"called with {key}: AFT-simple cannot hide positions"
        if kwargs.get("is_causal"):
            return "called with is_causal=True: AFT-simple sums over all positions"
        return None
    if len(args) > 1 and isinstance(args[1], torch.Tensor):
        mask = args[1]
    else:
        mask = kwargs.get("attention_mask")
    if isinstance(mask, torch.Tensor) and _hides_positions(mask):
        return "called with an attention mask that hides positions (padding or causal): AFT-simple cannot keep it"
    for key in ("encoder_hidden_states", "past_key_value", "past_key_values", "cache"):
        if kwargs.get(key) is not None:
            return f"called with {key}: only plain self-attention is rewritten"
    return None


def _hides_positions(mask: torch.Tensor) -> bool:
    if mask.dtype == torch.bool:
        return not bool(mask.all())
    return bool((mask < 0).any())  # additive masks: 0 keeps, a large negative number hides
