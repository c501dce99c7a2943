"""Magnitude: the L2 norm of each channel's filters (Li et al., ICLR 2017, "Pruning Filters for Efficient ConvNets").

Within a group every producing layer contributes its filter norms, each
divided by that layer's mean filter norm so that no layer dominates by scale:

    s_c = sum_l ||W_l[c]||_2 / mean_c' ||W_l[c']||_2
"""

from __future__ import annotations

import torch

from edgehad.prune.criteria import criterion


def filter_norms(groups) -> dict[str, torch.Tensor]:
    scores = {}
    for g in groups:
        s = torch.zeros(g.size, dtype=torch.float64)
        for m in g.producers:
            w = m.module.weight.detach().double()
            norms = w.flatten(1).norm(dim=1)
            norms = norms / norms.mean().clamp_min(1e-12)
            s.index_add_(0, torch.as_tensor(m.root_idxs), norms[torch.as_tensor(m.idxs)])
        scores[g.name] = s
    return scores


@criterion("magnitude")
def score(groups, model, ctx):
    """L2 norm of each output channel's filters, normalised per layer, summed over the group."""
    return filter_norms(groups)
