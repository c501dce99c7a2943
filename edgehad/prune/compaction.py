"""Compaction: physically remove masked channels, then prove nothing else changed.

After masking (masks.py) the model computes with some channels at exactly 0;
compaction deletes those channels from every layer of their group (output
rows of producers, BatchNorm entries, input columns of readers: torch-pruning
does the surgery) so that the exported file is smaller and faster. The
compacted model must compute what the masked model computed: ``max_abs_error``
compares them on sample inputs. trial.py runs this comparison on a copy before
the real compaction and skips every group that fails it, so
``edgehad.prune.prune_model``'s own check (ConversionError beyond
``EXACT_TOLERANCE`` (1e-5) * max(1, max|y|), unless a group was flagged inexact)
is a guard that a trial-checked run does not reach.
"""

from __future__ import annotations

import torch

from edgehad.core.errors import ConversionError


def compact(groups, keep: dict[str, list[int]]) -> dict[str, int]:
    """Remove every channel not in ``keep[group]`` from its group; returns channels removed per group."""
    removed = {}
    for g in groups:
        kept = set(keep.get(g.name, range(g.size)))
        drop = [i for i in range(g.size) if i not in kept]
        if not drop:
            continue
        # torch-pruning slices a GroupNorm's channels but keeps its group count; with one group per
        # channel (the only GroupNorm groups.py lets through) the count follows the channels
        per_channel = [m.module for m in getattr(g, "channel_params", ()) if isinstance(m.module, torch.nn.GroupNorm)]
        g._group.prune(idxs=drop)
        for norm in per_channel:
            norm.num_groups = norm.num_channels
        removed[g.name] = len(drop)
    return removed


def max_abs_error(a, b) -> float:
    worst = 0.0
    for x, y in zip(flatten_outputs(a), flatten_outputs(b)):
        if x.shape != y.shape:
            raise ConversionError(f"compaction changed an output's shape: {tuple(x.shape)} -> {tuple(y.shape)} "
                                  "(a group reaching the model output was pruned)")
        worst = max(worst, float((x.double() - y.double()).abs().max()) if x.numel() else 0.0)
    return worst


def outputs(model, inputs: list[tuple]) -> list:
    model.eval()
    with torch.no_grad():
        return [model(*[torch.as_tensor(t) for t in args]) for args in inputs]


def flatten_outputs(out) -> list:
    """Every tensor in a model's output (a tensor, or nested tuples/lists/dicts of them: torch's pytree), in order."""
    from torch.utils._pytree import tree_leaves

    return [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
