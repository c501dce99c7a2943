"""Pruning masks as Hadamard products, registered as parametrizations.

Structured (channels): one 0/1 vector m per coupled group, shared by every
layer that produces the group's channels. Each producer's parameters are
reparametrized as

    W' = W ⊙ m[:, None, ...]     (conv / linear weight rows: output channels)
    b' = b ⊙ m                   (their bias)
    γ' = γ ⊙ m,  β' = β ⊙ m      (the BatchNorm after them)
    a' = a ⊙ m                   (per-channel parameters: PReLU slopes, InstanceNorm /
                                  per-channel GroupNorm affines, a bare scale or shift,
                                  along the dim that holds the channels)

so a masked channel leaves the normalisation as exactly 0, and every
activation used here (ReLU, ReLU6, PReLU, hard-swish, SiLU, GELU) maps 0 to 0:
the consumers see zeros, which is what removing the channel does. That is why
the masked model and the compacted one agree to float rounding (compaction.py).
A sigmoid gate on a masked channel gives 0.5, but it multiplies a channel that
is itself zero, so the product is still 0. Where something else does not map
0 to 0 (a sigmoid whose output is read by a conv, say), the trial compaction
(trial.py) finds the difference and the group is skipped.

Unstructured (elements): W' = W ⊙ M with M the weight's shape. It makes a
file smaller only once compressed, not faster: the report says so.

Masks are never applied by editing weights in place: removing the
parametrizations (``remove_masks``) gives back the original weights.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize


class ChannelMask(nn.Module):
    """``W ⊙ m`` along ``dim`` (0: output channels).

    ``mask`` is the group's vector, shared by all its layers (a Parameter when
    a criterion needs its gradient, or a module computing it: learned gates); ``idxs`` are this layer's channels that
    belong to the group and ``root_idxs`` their positions in ``mask`` (they
    differ after a concatenation). Channels outside the group are kept.
    """

    def __init__(self, mask: torch.Tensor, idxs: list[int], root_idxs: list[int], channels: int, dim: int = 0):
        super().__init__()
        self.mask = mask
        self.register_buffer("idxs", torch.as_tensor(idxs, dtype=torch.long), persistent=False)
        self.register_buffer("root_idxs", torch.as_tensor(root_idxs, dtype=torch.long), persistent=False)
        self.channels = channels
        self.dim = dim

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        mask = self.mask() if isinstance(self.mask, nn.Module) else self.mask  # a module: learned gates
        full = torch.ones(self.channels, dtype=w.dtype, device=w.device)
        full = full.index_put((self.idxs,), mask[self.root_idxs].to(w.dtype))
        shape = [1] * w.dim()
        shape[self.dim] = -1
        return w * full.view(shape)


class ElementMask(nn.Module):
    """``W ⊙ M`` elementwise (unstructured)."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * self.mask.to(w.dtype)


def out_channel_params(module: nn.Module) -> list[str]:
    """Which parameters of ``module`` carry its output channels on dim 0."""
    if isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
        return [n for n in ("weight", "bias") if getattr(module, n, None) is not None]
    return []


def apply_channel_mask(members, mask: torch.Tensor) -> None:
    """Reparametrize the output-channel parameters of a group's layers (``groups.Member``) with ``mask``."""
    for m in members:
        params = list(getattr(m, "params", ())) or out_channel_params(m.module)
        if not params:
            continue
        dim = getattr(m, "dim", 0)
        channels = getattr(m.module, params[0]).shape[dim]
        shared = ChannelMask(mask, m.idxs, m.root_idxs, channels, dim)  # one per layer: weight and bias share it
        for name in params:
            parametrize.register_parametrization(m.module, name, shared, unsafe=True)


def mask_groups(groups, keep: dict[str, list[int]]) -> None:
    """The Hadamard form of pruning: m[c] = 1 for the channels in ``keep[group]``, 0 for those that go."""
    for g in groups:
        mask = torch.zeros(g.size)
        mask[keep[g.name]] = 1.0
        apply_channel_mask(g.masked, mask)


def apply_element_mask(module: nn.Module, mask: torch.Tensor) -> None:
    parametrize.register_parametrization(module, "weight", ElementMask(mask), unsafe=True)


def remove_masks(model: nn.Module, keep_masked: bool = False) -> None:
    """Take every mask off. ``keep_masked``: bake W ⊙ M into the weights (unstructured export)."""
    for module in model.modules():
        if parametrize.is_parametrized(module):
            for name in list(module.parametrizations.keys()):
                parametrize.remove_parametrizations(module, name, leave_parametrized=keep_masked)
