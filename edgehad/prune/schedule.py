"""Schedules: one-shot, or gradual (iterative) pruning with recovery between steps.

Gradual pruning (Zhu & Gupta 2017, "To prune, or not to prune"; iterative
pruning as in Han et al. 2015) removes the channels in ``steps`` rounds and
lets the network adapt in between: each round removes the same fraction of
what is left, q = 1 - (1 - ratio)^(1/steps), so that after all rounds the
model keeps (1 - ratio) of its channels (or MACs or params), and each round is
followed by ``step_epochs`` of distillation fine-tuning on --data. Rounds before
the last keep exact channel counts; the last one rounds to ``round_to``.
"""

from __future__ import annotations

import dataclasses


def prune_gradually(model, example_inputs, settings, *, steps: int, step_epochs: int, sample_inputs: list,
                    data=None, teacher=None, progress=None, reference=None):
    """Prune in ``steps`` rounds; returns the last round's PruneResult with the whole run's before/after."""
    from edgehad.finetune import finetune
    from edgehad.prune import prune_model

    progress = progress or (lambda msg: None)
    if steps <= 1:
        return prune_model(model, example_inputs, settings, sample_inputs=sample_inputs, data=data,
                           teacher=teacher, progress=progress, reference=reference)
    per_step = 1.0 - (1.0 - settings.ratio) ** (1.0 / steps)
    current, first, history = model, None, []
    for step in range(1, steps + 1):
        round_to = settings.round_to if step == steps else 1
        step_settings = dataclasses.replace(settings, ratio=per_step, round_to=round_to)
        progress(f"prune: round {step}/{steps}, removing {per_step:.1%} of what is left")
        result = prune_model(current, example_inputs, step_settings, sample_inputs=sample_inputs, data=data,
                             teacher=teacher, progress=progress)
        first = first or result
        current = result.model
        entry = {"round": step, "params": result.after["params"], "macs": result.after["macs"]}
        if data is not None and step < steps and step_epochs > 0:
            tuned = finetune(current, data, teacher, epochs=step_epochs, distill=teacher is not None,
                             progress=progress)
            entry[f"val_{tuned.metric}"] = round(tuned.best, 6)
        history.append(entry)
    from edgehad.prune import layer_shapes, layer_table

    result.before = first.before
    result.layers = layer_table(layer_shapes(model), layer_shapes(current))  # the whole run, not the last round
    result.rounds = history
    return result
