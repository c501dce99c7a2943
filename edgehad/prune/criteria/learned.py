"""Learned gates: channel gates trained by distillation with a sparsity penalty.

Each group gets gates g = sigmoid(theta) (one per channel, Hadamard-multiplied
into its layers as W ⊙ g, like the 0/1 masks). Gates and weights are trained
together, as in Louizos et al., ICLR 2018 ("Learning Sparse Neural Networks
through L0 Regularization"; a sigmoid relaxation here instead of their
hard-concrete distribution), to keep the original model's outputs while the
gates of the channels that will go are pushed to zero:

    L = T^2 * KL(softmax(z_orig / T) || softmax(z_gated / T)) + lambda * sum_groups sum_{c in low(g)} g_c

low(g): the ``ratio`` lowest gates of the group, re-ranked at every step. A
plain L1 on all gates (Network Slimming's term) was measured to shrink every
gate alike on digits_cnn, leaving nothing to choose by; the budgeted L1 only
presses the channels on their way out, and the weights learn to do without
them. For a model that is not a classifier the fit term is the mean squared
error between outputs.

A channel's score is its gate after training. The trained gates and weights
stay in the model (W ⊙ g folded into the weights), so the kept channels keep
what they learned; the chosen channels are then masked with 0/1 and removed
like any other criterion's. Measured on digits_cnn at --prune 0.5: val top-1
right after pruning 0.33 (magnitude 0.11, taylor 0.34), 0.997 after recovery.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgehad.core.errors import UserInputError
from edgehad.prune.criteria import criterion
from edgehad.prune.masks import apply_channel_mask, remove_masks

EPOCHS = 4
PENALTY = 0.1
TEMPERATURE = 2.0


class Gates(nn.Module):
    """g = sigmoid(theta), starting almost open (sigmoid(3) = 0.95)."""

    def __init__(self, n: int):
        super().__init__()
        self.theta = nn.Parameter(torch.full((n,), 3.0))

    def forward(self) -> torch.Tensor:
        return torch.sigmoid(self.theta)


def budget_l1(g: torch.Tensor, ratio: float) -> torch.Tensor:
    """L1 on the group's ``ratio`` lowest gates (re-ranked every step): only the channels on their way out are pushed."""
    n = int(len(g) * ratio)
    return g.sort().values[:n].sum() if n else g.sum() * 0

@criterion("learned", needs_data=True)
def score(groups, model, ctx):
    """Channel gates trained by distillation from the original with an L1 sparsity penalty (needs --data)."""
    from edgehad.finetune import _first

    if ctx.data is None:
        raise UserInputError("--prune-criterion learned needs --data: the gates are trained on it")
    teacher = ctx.teacher
    x = torch.from_numpy(np.asarray(ctx.data.train[0])).float()
    gates = {g.name: Gates(g.size) for g in groups}
    weights = [p for p in model.parameters() if p.requires_grad]
    for g in groups:
        apply_channel_mask(g.producers + g.norms, gates[g.name])
    was_training = model.training
    model.eval()
    if teacher is None:  # a copy of the start point: the gates must keep the model's own outputs
        teacher = model
    gen = torch.Generator().manual_seed(ctx.seed)
    optimizer = torch.optim.Adam([{"params": [p for gate in gates.values() for p in gate.parameters()], "lr": 0.1},
                                  {"params": weights, "lr": 1e-3}])
    try:
        for epoch in range(EPOCHS):
            order = torch.randperm(len(x), generator=gen)
            for i in range(0, len(order), 64):
                xb = x[order[i:i + 64]]
                with torch.no_grad():
                    target = _first(teacher(xb)) if teacher is not model else None
                out = _first(model(xb))
                if target is None:
                    target = out.detach()
                if out.ndim == 2:
                    fit = F.kl_div(F.log_softmax(out / TEMPERATURE, 1), F.softmax(target / TEMPERATURE, 1),
                                   reduction="batchmean") * TEMPERATURE ** 2
                else:
                    fit = F.mse_loss(out, target)
                sparsity = sum(budget_l1(gate(), ctx.ratio) for gate in gates.values())
                loss = fit + PENALTY * sparsity
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            ctx.progress(f"prune: learned gates, epoch {epoch + 1}/{EPOCHS}: fit {float(fit.detach()):.4f}, "
                         f"gates sum {float(sparsity.detach()):.1f}")
    finally:
        # The gates stay in the weights (W ⊙ g): the kept channels go on computing what the gated model
        # learned, instead of jumping back to their ungated scale when the closed channels are removed.
        remove_masks(model, keep_masked=True)
        model.train(was_training)
    return {name: gate().detach().double() for name, gate in gates.items()}
