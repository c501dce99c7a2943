"""Recovery fine-tuning with knowledge distillation from the original model.

Loss (Hinton, Vinyals, Dean 2015, "Distilling the Knowledge in a Neural Network"):

    L = alpha * T^2 * KL(softmax(z_t / T) || softmax(z_s / T)) + (1 - alpha) * CE(z_s, y)

z_s: the student's (pruned / rewritten) logits, z_t: the original model's.
The T^2 factor keeps the soft-target gradients on the scale of the hard ones.
Without distillation (``distill=False``) the loss is the cross-entropy alone;
for a model whose output is not a classifier's logits (an autoencoder, say) the
distillation term is the mean squared error between the two outputs.

Each epoch ends with a validation pass (top-1 for classifiers, otherwise the
distillation loss); the best epoch's weights are kept, and training stops early
after ``patience`` epochs without improvement. Everything is seeded: the same
seed gives the same weights.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from edgehad.core.errors import UserInputError


@dataclass
class FinetuneResult:
    epochs_run: int
    best_epoch: int                 # 0: no epoch beat the starting point
    metric: str                     # "top1_accuracy" or "distill_loss"
    start: float                    # validation metric before training
    best: float
    history: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"epochs_run": self.epochs_run, "best_epoch": self.best_epoch, "metric": self.metric,
                "start": round(self.start, 6), "best": round(self.best, 6), "history": self.history}


def is_classifier(outputs, labels) -> bool:
    """A [N, C] output with every label below C."""
    return outputs.ndim == 2 and labels is not None and labels.size > 0 and outputs.shape[1] > int(labels.max())


def top1_accuracy(logits, labels) -> float:
    """Fraction of the rows of ``logits`` [N, C] (numpy or a CPU tensor) whose argmax is the row's label."""
    return float(np.mean(np.asarray(logits).argmax(1) == np.asarray(labels)))


def finetune(student, data, teacher=None, *, epochs: int, lr: float = 1e-3, batch_size: int = 64,
             distill: bool = True, temperature: float = 4.0, alpha: float = 0.7, patience: int = 3,
             seed: int = 0, progress=None, extra_loss=None) -> FinetuneResult:
    """Train ``student`` in place on ``data.train``; keep the weights of the best validation epoch.

    ``teacher``: the original model (required when ``distill``); ``extra_loss``:
    a callable returning a penalty added to every step's loss (learned gates' L1).
    """
    import torch
    import torch.nn.functional as F

    if epochs < 1:
        raise UserInputError(f"`finetune_epochs` must be >= 1, got {epochs}")
    if data is None:
        raise UserInputError("fine-tuning needs `data`: it trains on the train split and validates on val")
    if distill and teacher is None:
        raise UserInputError("distillation needs the original model; pass `distill=False` to train on labels only")
    progress = progress or (lambda msg: None)
    x_train, y_train = (np.asarray(a) for a in data.train)
    x_val, y_val = (np.asarray(a) for a in data.val)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    xt, yt = torch.from_numpy(x_train).float(), torch.from_numpy(y_train).long()
    xv, yv = torch.from_numpy(x_val).float(), torch.from_numpy(y_val).long()

    if teacher is not None:
        teacher.eval()
    with torch.no_grad():
        probe = first_output(student.eval()(xv[:2]))
    classifier = is_classifier(probe.numpy(), y_val)
    if not classifier and not distill:
        raise UserInputError("the model's output is not a classifier's logits over the labels of `data`: "
                             "fine-tuning it needs distillation (drop `distill=False`)")

    def loss_fn(out, target_logits, y):
        if not classifier:
            return F.mse_loss(out, target_logits)
        hard = F.cross_entropy(out, y)
        if not distill:
            return hard
        soft = F.kl_div(F.log_softmax(out / temperature, dim=1), F.softmax(target_logits / temperature, dim=1),
                        reduction="batchmean") * temperature ** 2
        return alpha * soft + (1 - alpha) * hard

    def evaluate() -> float:
        student.eval()
        with torch.no_grad():
            outs = torch.cat([first_output(student(xv[i:i + 256])) for i in range(0, len(xv), 256)])
            if classifier:
                return top1_accuracy(outs, y_val)
            ref = torch.cat([first_output(teacher(xv[i:i + 256])) for i in range(0, len(xv), 256)])
            return -float(F.mse_loss(outs, ref))  # higher is better, like accuracy

    metric = "top1_accuracy" if classifier else "distill_loss"
    start = best = evaluate()
    best_state, best_epoch, stale, history = copy.deepcopy(student.state_dict()), 0, 0, []
    optimizer = torch.optim.Adam([p for p in student.parameters() if p.requires_grad], lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    epoch = 0
    for epoch in range(1, epochs + 1):
        student.train()
        order = torch.randperm(len(xt), generator=gen)
        total, steps = 0.0, 0
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            xb, yb = xt[idx], yt[idx]
            target = None
            if distill:
                with torch.no_grad():
                    target = first_output(teacher(xb))
            loss = loss_fn(first_output(student(xb)), target, yb)
            if extra_loss is not None:
                loss = loss + extra_loss()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, steps = total + loss.item(), steps + 1  # item(): no autograd warning for a grad tensor
        scheduler.step()
        score = evaluate()
        history.append({"epoch": epoch, "train_loss": round(total / max(steps, 1), 6), metric: round(score, 6)})
        progress(f"finetune: epoch {epoch}/{epochs} loss {total / max(steps, 1):.4f} val {metric} {abs(score):.4f}")
        if score > best:
            best, best_epoch, stale = score, epoch, 0
            best_state = copy.deepcopy(student.state_dict())
        else:
            stale += 1
            if stale >= patience:
                progress(f"finetune: stopping early, no improvement for {patience} epochs")
                break
    student.load_state_dict(best_state)
    student.eval()
    if not classifier:
        start, best = -start, -best  # report the loss itself
    return FinetuneResult(epoch, best_epoch, metric, start, best, history)


def first_output(out):
    """The first output of a model that may return a tuple or list (the logits of ``(logits, score)``), else ``out``."""
    return out[0] if isinstance(out, (tuple, list)) else out
