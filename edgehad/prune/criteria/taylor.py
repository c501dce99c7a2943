"""First-order Taylor: how much the loss moves when a channel's mask goes from 1 to 0.

Molchanov et al., CVPR 2019, "Importance Estimation for Neural Network
Pruning". With the group's mask m in the model (W ⊙ m, all ones), the
first-order change of the loss L on removing channel c is -dL/dm_c, and

    I_c = E_batches[ (dL/dm_c)^2 ]     (dL/dm_c = sum over the channel's weights of g ⊙ w)

The loss is the cross-entropy against the labels for a classifier, otherwise
the mean squared error against the original model's outputs. BatchNorm runs in
eval mode: the function being scored is the one that will be deployed.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from edgehad.core.errors import UserInputError
from edgehad.prune.criteria import criterion
from edgehad.prune.masks import apply_channel_mask, remove_masks


@criterion("taylor", needs_data=True)
def score(groups, model, ctx):
    """First-order Taylor estimate of the loss change when the channel is removed (needs --data)."""
    from edgehad.finetune import first_output, is_classifier

    if ctx.data is None:
        raise UserInputError("`prune_criterion` taylor needs `data`: it measures the loss on real samples")
    x, y = (np.asarray(a) for a in ctx.data.train)
    rng = np.random.default_rng(ctx.seed)
    pick = rng.permutation(len(x))[: ctx.samples]
    x, y = torch.from_numpy(x[pick]).float(), torch.from_numpy(y[pick]).long()
    masks = {g.name: torch.nn.Parameter(torch.ones(g.size)) for g in groups}
    for g in groups:
        apply_channel_mask(g.producers + g.norms, masks[g.name])
    was_training = model.training
    model.eval()
    totals = {name: torch.zeros(m.shape, dtype=torch.float64) for name, m in masks.items()}
    try:
        with torch.no_grad():
            classifier = is_classifier(first_output(model(x[:2])).numpy(), y.numpy())
        if not classifier and ctx.teacher is None:
            raise UserInputError("taylor on a model that is not a classifier needs the original model's outputs")
        batches = 0
        for i in range(0, len(x), 32):
            xb, yb = x[i:i + 32], y[i:i + 32]
            out = first_output(model(xb))
            if classifier:
                loss = F.cross_entropy(out, yb)
            else:
                with torch.no_grad():
                    target = first_output(ctx.teacher(xb))
                loss = F.mse_loss(out, target)
            grads = torch.autograd.grad(loss, list(masks.values()), allow_unused=True)
            for name, grad in zip(masks, grads):
                if grad is not None:
                    totals[name] += grad.detach().double() ** 2
            batches += 1
    finally:
        remove_masks(model)
        model.train(was_training)
    ctx.progress(f"prune: taylor scores from {len(x)} train samples")
    return {name: t / max(batches, 1) for name, t in totals.items()}
