"""Unstructured (element) pruning: W ⊙ M with M zeroing the smallest weights.

Magnitude pruning of individual weights (Han et al., NeurIPS 2015, "Learning
both Weights and Connections"). The masks are parametrizations like the
channel masks, then baked into the weights. Nothing gets smaller or faster in
a dense runtime: onnxruntime and LiteRT run the same kernels on the zeros.
Only a compressed file shrinks, so the report gives the zipped sizes.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from edgehad.core.errors import UserInputError

_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def prune_elements(model, ratio: float, scope: str = "layer"):
    """A copy of ``model`` with ``ratio`` of each layer's (or, globally, of all) conv/linear weights zeroed."""
    from edgehad.prune import PruneResult
    from edgehad.prune.masks import apply_element_mask, remove_masks

    work = copy.deepcopy(model).eval()
    layers = [(n, m) for n, m in work.named_modules() if isinstance(m, _LAYERS)]
    if not layers:
        raise UserInputError("nothing in this model can be pruned (no conv/linear layers)")
    if scope == "global":
        everything = torch.cat([m.weight.detach().abs().flatten() for _, m in layers])
        k = int(len(everything) * ratio)
        threshold = everything.kthvalue(k).values if k else None
    rows = []
    for name, m in layers:
        w = m.weight.detach().abs()
        if scope == "layer":
            k = int(w.numel() * ratio)
            threshold = w.flatten().kthvalue(k).values if k else None
        mask = (w > threshold).to(w.dtype) if threshold is not None else torch.ones_like(w)
        apply_element_mask(m, mask)
        rows.append({"layer": name, "weights": w.numel(), "zero": int((mask == 0).sum())})
    remove_masks(work, keep_masked=True)  # W ⊙ M into the weights: the zeros are the result
    total = sum(r["weights"] for r in rows)
    zero = sum(r["zero"] for r in rows)
    return PruneResult(work, layers=rows, notes=[
        f"unstructured: {zero:,} of {total:,} conv/linear weights ({zero / total:.1%}) are zero; dense runtimes "
        "run the same kernels, so the files are the same size and speed (see the zipped sizes)"])
