"""How many channels each group keeps, and which.

Scopes (``--prune-scope``):
- ``layer``: every group loses the same fraction ``ratio`` of its channels;
- ``global``: scores are divided by their group's mean (so groups compare),
  all prunable channels are ranked together and the lowest ``ratio`` of them go.

Either way a group keeps a multiple of ``round_to`` channels (at least
``round_to``; a group with no more than ``round_to`` channels is not pruned),
because int8 and SIMD kernels run in blocks of 4, 8 or 16 channels and an odd
count wastes the remainder of a block.
"""

from __future__ import annotations

import torch


def rounded_keep(size: int, keep: float, round_to: int) -> int:
    if size <= round_to:
        return size
    n = int(keep / round_to + 0.5) * round_to
    return min(size, max(round_to, n))


def keep_counts(groups, scores: dict, ratio: float, scope: str, round_to: int) -> dict[str, int]:
    if scope == "layer":
        return {g.name: rounded_keep(g.size, g.size * (1.0 - ratio), round_to) for g in groups}
    pooled = torch.cat([scores[g.name] / scores[g.name].mean().clamp_min(1e-12) for g in groups])
    removed = int(len(pooled) * ratio)
    if removed == 0:
        return {g.name: g.size for g in groups}
    threshold = pooled.sort().values[removed - 1]
    counts = {}
    for g in groups:
        s = scores[g.name] / scores[g.name].mean().clamp_min(1e-12)
        counts[g.name] = rounded_keep(g.size, float((s > threshold).sum()), round_to)
    return counts


def kept_channels(score: torch.Tensor, keep: int) -> list[int]:
    """The ``keep`` best channels by score, in their original order (ties: the lower index)."""
    order = sorted(range(len(score)), key=lambda i: (-float(score[i]), i))
    return sorted(order[:keep])
