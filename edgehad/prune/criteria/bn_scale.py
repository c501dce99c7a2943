"""BN scale: |gamma| of the BatchNorm on each channel (Liu et al., ICCV 2017, "Network Slimming").

A channel whose BatchNorm scale is near zero contributes almost only its
constant shift. Groups with several BatchNorms (residual streams) sum their
|gamma|; a group with none falls back to the magnitude criterion.
"""

from __future__ import annotations

import torch

from edgehad.prune.criteria import criterion
from edgehad.prune.criteria.magnitude import filter_norms


@criterion("bn-scale")
def score(groups, model, ctx):
    """|gamma| of the BatchNorm after each channel (magnitude where a group has no BatchNorm)."""
    fallback = [g for g in groups if not _scaled(g)]
    scores = filter_norms(fallback) if fallback else {}
    for g in groups:
        if not _scaled(g):
            continue
        s = torch.zeros(g.size, dtype=torch.float64)
        for m in _scaled(g):
            gamma = m.module.weight.detach().double().abs()
            s.index_add_(0, torch.as_tensor(m.root_idxs), gamma[torch.as_tensor(m.idxs)])
        scores[g.name] = s
    if fallback:
        ctx.progress(f"prune: bn-scale: {len(fallback)} group(s) have no BatchNorm, scored by magnitude")
    return scores


def _scaled(group):
    return [m for m in group.norms if getattr(m.module, "weight", None) is not None]  # affine BatchNorms
