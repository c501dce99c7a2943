"""Learned gates: channel gates trained by distillation with a sparsity penalty.

Each group gets gates g = sigmoid(theta) (one per channel, Hadamard-multiplied
into its layers as W ⊙ g, like the 0/1 masks). Gates and weights are trained
together, as in Louizos et al., ICLR 2018 ("Learning Sparse Neural Networks
through L0 Regularization"; a sigmoid relaxation here instead of their
hard-concrete distribution), to keep the original model's outputs while an
L1 penalty closes gates:

    L = T^2 * KL(softmax(z_orig / T) || softmax(z_gated / T)) + lambda * sum_c g_c

(for a model that is not a classifier the fit term is the mean squared error
between outputs). lambda is steered, not fixed: it grows 2% per step while
fewer than ``ratio`` of the gates are closed (g < 0.5) and shrinks 2% once more
are. Measured on digits_cnn: a fixed lambda closed either almost none of the
gates (0.01) or all of them (0.1); an L1 on only the lowest gates locked in
whichever channels happened to rank lowest at the start.

A channel's score is its gate after training. The trained gates and weights
stay in the model (W ⊙ g folded into the weights), so the kept channels keep
what they learned; the chosen channels are then masked with 0/1 and removed
like any other criterion's. Measured on digits_cnn at --prune 0.5: val top-1
right after pruning 0.92 (magnitude 0.11, taylor 0.34).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgehad.core.errors import UserInputError
from edgehad.prune.criteria import criterion
from edgehad.prune.masks import apply_channel_mask, remove_masks

STEPS = 300
BATCH = 64
PENALTY = 0.01  # starting lambda
TEMPERATURE = 2.0


class Gates(nn.Module):
    """g = sigmoid(theta), starting almost open (sigmoid(3) = 0.95)."""

    def __init__(self, n: int):
        super().__init__()
        self.theta = nn.Parameter(torch.full((n,), 3.0))

    def forward(self) -> torch.Tensor:
        return torch.sigmoid(self.theta)


@criterion("learned", needs_data=True)
def score(groups, model, ctx):
    """Channel gates trained by distillation from the original with an L1 sparsity penalty (needs --data)."""
    from edgehad.finetune import first_output

    if ctx.data is None:
        raise UserInputError("`prune_criterion` learned needs `data`: the gates are trained on it")
    import copy

    teacher = ctx.teacher if ctx.teacher is not None else copy.deepcopy(model).eval()  # before any gate
    x = torch.from_numpy(np.asarray(ctx.data.train[0])).float()
    gates = {g.name: Gates(g.size) for g in groups}
    weights = [p for p in model.parameters() if p.requires_grad]
    for g in groups:
        apply_channel_mask(g.producers + g.norms, gates[g.name])
    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(ctx.seed)
    optimizer = torch.optim.Adam([{"params": [p for gate in gates.values() for p in gate.parameters()], "lr": 0.1},
                                  {"params": weights, "lr": 1e-3}])
    penalty = PENALTY
    try:
        step, order = 0, torch.randperm(len(x), generator=gen)
        while step < STEPS:  # a step budget, not epochs: small data sets still get enough updates
            if len(order) == 0:
                order = torch.randperm(len(x), generator=gen)
            xb, order = x[order[:BATCH]], order[BATCH:]
            with torch.no_grad():
                target = first_output(teacher(xb))
            out = first_output(model(xb))
            if out.ndim == 2:
                fit = F.kl_div(F.log_softmax(out / TEMPERATURE, 1), F.softmax(target / TEMPERATURE, 1),
                               reduction="batchmean") * TEMPERATURE ** 2
            else:
                fit = F.mse_loss(out, target)
            values = torch.cat([gate() for gate in gates.values()])
            sparsity = values.sum()
            loss = fit + penalty * sparsity
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            # The budget controller: lambda grows while fewer than ``ratio`` of the gates are closed
            # (< 0.5), shrinks once more are; a fixed lambda was measured to close none or all of them.
            closed = float((values.detach() < 0.5).float().mean())
            penalty *= 1.02 if closed < ctx.ratio else 0.98
            step += 1
            if step % (STEPS // 4) == 0:
                ctx.progress(f"prune: learned gates, step {step}/{STEPS}: fit {float(fit.detach()):.4f}, "
                             f"{closed:.0%} closed, lambda {penalty:.3g}")
    finally:
        # The gates stay in the weights (W ⊙ g): the kept channels go on computing what the gated model
        # learned, instead of jumping back to their ungated scale when the closed channels are removed.
        remove_masks(model, keep_masked=True)
        model.train(was_training)
    return {name: gate().detach().double() for name, gate in gates.items()}
