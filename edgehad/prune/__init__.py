"""Structured pruning with Hadamard masks, ending in physically smaller layers.

    groups   = coupled channel groups (groups.py, torch-pruning's DepGraph + fixes)
    scores   = a criterion per channel (criteria/)
    keep     = how many channels each group keeps (plan.py: scope, target, rounding; allocate.py for
               target latency: per-group widths from a measured per-layer latency table, latency_table.py)
    trial    = mask and compact a copy; skip each group whose compaction is not exact (trial.py)
    masked   = W ⊙ m on every producer of each group (masks.py)
    compact  = remove the masked channels (compaction.py), outputs equal to the masked model's

``prune_model`` runs them in that order on a copy of the model and returns
the compacted copy with a report of exactly what was removed.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from edgehad.core.errors import UserInputError

TARGETS = ("channels", "macs", "params", "latency")
SCOPES = ("global", "layer")
EXACT_TOLERANCE = 1e-5


@dataclass
class PruneSettings:
    ratio: float
    criterion: str = "magnitude"
    scope: str = "layer"
    target: str = "channels"
    round_to: int = 8
    samples: int = 256
    seed: int = 0
    unsafe: str = "skip"          # a group whose removal breaks the model: "skip" it or "stop"
    # target "latency": the per-layer table's format and scheme (the recipe's), and its cache folder
    # (None: edgehad.prune.latency_table.cache_dir())
    latency_format: str = "onnx"
    latency_scheme: str = "fp32"
    latency_cache: str | None = None
    latency_float_prefix: bool = False   # int8 with keep_float "speed": leading convs faster in fp32 stay float
    latency_calibrate: bool = True       # time the whole model to calibrate the table (allocate.latency_counts)

    def check(self) -> None:
        from edgehad.prune.criteria import get_criterion

        if not 0.0 <= self.ratio < 1.0:
            raise UserInputError(f"`prune` {self.ratio}: the ratio must be in [0, 1) (0.5 removes half)")
        if self.scope not in SCOPES:
            raise UserInputError(f"`prune_scope` {self.scope!r}: use one of {', '.join(SCOPES)}")
        if self.target not in TARGETS:
            raise UserInputError(f"`prune_target` {self.target!r}: use one of {', '.join(TARGETS)}")
        if self.target == "latency" and self.latency_scheme not in ("fp32", "int8"):
            raise UserInputError(f"`prune_target='latency'` measures fp32 or int8 layers, not {self.latency_scheme!r}")
        if self.unsafe not in ("skip", "stop"):
            raise UserInputError(f"`prune_unsafe` {self.unsafe!r}: use skip or stop")
        if self.round_to < 1:
            raise UserInputError(f"`prune_round_to` must be >= 1, got {self.round_to}")
        get_criterion(self.criterion)


@dataclass
class PruneResult:
    model: object
    groups: list = field(default_factory=list)       # describe() of every group, with kept/removed
    before: dict = field(default_factory=dict)       # params, macs
    after: dict = field(default_factory=dict)
    layers: list = field(default_factory=list)       # per layer: weight shape before/after, params
    masked_max_abs_error: float = 0.0
    masked_outputs: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    rounds: list = field(default_factory=list)       # gradual schedule: params/MACs/accuracy per round
    latency_plan: dict = field(default_factory=dict)  # target latency: asked, predicted, the table (allocate.py)


def find_groups(model, example_inputs):
    from edgehad.prune.groups import build_graph, channel_groups

    graph = build_graph(model, example_inputs)
    return graph, channel_groups(model, graph)


def prune_model(model, example_inputs, settings: PruneSettings, *, sample_inputs: list, data=None, teacher=None,
                progress=None, reference=None) -> PruneResult:
    """Prune a copy of ``model``; ``model`` itself is left untouched.

    ``reference``: with ``target`` latency, the model the latency ratio counts from when ``model`` is
    already a smaller version of it (whole blocks removed); None: ``model`` itself.
    """
    from edgehad.cost import count_macs, count_params
    from edgehad.prune.compaction import compact, max_abs_error, outputs
    from edgehad.prune.criteria import ScoreContext, get_criterion
    from edgehad.prune.masks import mask_groups, remove_masks
    from edgehad.prune.plan import kept_channels

    progress = progress or (lambda msg: None)
    settings.check()
    crit = get_criterion(settings.criterion)
    if crit.needs_data and data is None:
        raise UserInputError(f"`prune_criterion` {crit.name} needs `data`: it scores channels on real samples")
    work = copy.deepcopy(model).eval()
    _, groups = find_groups(work, example_inputs)
    prunable = [g for g in groups if g.prunable]
    if not prunable:
        reasons = "; ".join(f"{g.name}: {g.reason}" for g in groups[:3]) or "no conv/linear layers found"
        raise UserInputError(f"nothing in this model can be pruned ({reasons})")
    for g in groups:
        if not g.prunable:
            progress(f"prune: not pruning {g.name} ({g.size} channels): {g.reason}")
    ctx = ScoreContext(example_inputs, data=data, teacher=teacher, samples=settings.samples, seed=settings.seed,
                       ratio=settings.ratio, progress=progress)
    scores = crit.score(prunable, work, ctx)
    plan = {}
    for _ in range(3 if settings.target == "latency" else 1):
        # latency: a group the trial skips keeps its full width, so the latency is allocated again over
        # the groups left (its layers' time then counts as fixed) and that allocation tried in turn
        live = [g for g in prunable if g.prunable]
        if settings.target == "latency" and settings.ratio > 0:
            from edgehad.prune.allocate import latency_counts

            counts, plan = latency_counts(work, example_inputs, live, scores, settings, progress,
                                          reference=reference)
        else:
            counts = _counts_for_target(work, example_inputs, live, scores, settings, progress)
        keep = {g.name: kept_channels(scores[g.name], counts[g.name]) for g in live}
        unsafe = _unsafe_groups(work, example_inputs, live, keep, sample_inputs)
        for name, why in unsafe.items():
            group = next(g for g in live if g.name == name)
            group.reason = why
            if settings.unsafe == "stop":
                raise UserInputError(f"group {name} ({group.size} channels, layers "
                                     f"{', '.join(group.describe()['layers'])}) cannot be pruned safely: "
                                     f"{group.reason}; use `prune_unsafe='skip'` to prune the rest")
            readers = ", ".join(sorted({m.name for m in group.consumers})) or "no layer"
            progress(f"warning: prune: skipping {name} ({group.size} channels, read by {readers}): {why}")
            keep[name] = list(range(group.size))
        if not unsafe:
            break
    prunable = [g for g in prunable if g.prunable]
    keep = {g.name: keep.get(g.name, list(range(g.size))) for g in prunable}
    if all(len(keep[g.name]) == g.size for g in prunable):
        raise UserInputError(f"`prune` {settings.ratio} removes no channel here (every group has at most "
                             f"`prune_round_to` {settings.round_to} channels or the ratio is too small): "
                             "lower `prune_round_to` or raise the ratio")

    before = {"params": count_params(work), "macs": count_macs(work, example_inputs)}
    shapes_before = layer_shapes(work)
    mask_groups(prunable, keep)  # the Hadamard form: W ⊙ m, m[c] = 0 for the channels that go
    masked = outputs(work, sample_inputs)
    remove_masks(work)  # back to the original weights; compaction removes the masked channels for real
    compact(prunable, keep)
    err = max_abs_error(masked, outputs(work, sample_inputs))
    inexact = [g for g in prunable if g.inexact and len(keep[g.name]) < g.size]
    if not err <= EXACT_TOLERANCE * max(1.0, _scale(masked)) and not inexact:
        from edgehad.core.errors import ConversionError

        # The trial compacted exactly these groups on these inputs and passed; reaching this means the
        # model does not compute the same thing twice (randomness left on in eval mode, say).
        changed = [g.name for g in prunable if len(keep[g.name]) < g.size]
        raise ConversionError(f"compaction is not exact: max abs error {err:.3g} between the masked and the "
                              f"compacted model (limit {EXACT_TOLERANCE}) although the trial compaction of "
                              f"{len(changed)} groups passed: does the model give the same output twice for "
                              "one input? Prune it with `prune_structure='elements'` (no compaction) or "
                              "leave `prune` out")
    after = {"params": count_params(work), "macs": count_macs(work, example_inputs)}
    described = []
    for g in groups:
        d = g.describe()
        if g.prunable:
            d.update(kept=len(keep[g.name]), removed=g.size - len(keep[g.name]))
        described.append(d)
    notes = [f"group {g.name}: {g.inexact}" for g in inexact]
    return PruneResult(work, described, before, after, layer_table(shapes_before, layer_shapes(work)), err,
                       masked, notes, latency_plan=plan)


def _counts_for_target(model, example_inputs, groups, scores, settings, progress) -> dict[str, int]:
    """Keep counts for the ratio, read as a fraction of channels, MACs or parameters."""
    from edgehad.prune.plan import keep_counts

    if settings.target == "channels" or settings.ratio == 0:
        return keep_counts(groups, scores, settings.ratio, settings.scope, settings.round_to)
    # MACs/params: bisect the channel ratio until that much cost is gone, measured on compacted copies.
    full = _cost(model, example_inputs, groups, scores, {g.name: g.size for g in groups}, settings.target)
    lo, hi, best = 0.0, 0.95, None
    for _ in range(10):
        mid = (lo + hi) / 2
        counts = keep_counts(groups, scores, mid, settings.scope, settings.round_to)
        removed = 1.0 - _cost(model, example_inputs, groups, scores, counts, settings.target) / full
        if removed >= settings.ratio:
            hi, best = mid, counts
        else:
            lo = mid
    if best is None:
        best = keep_counts(groups, scores, 0.95, settings.scope, settings.round_to)
        progress(f"warning: prune: cannot remove {settings.ratio:.0%} of {settings.target}; removing as much as "
                 "channel rounding allows")
    return best


def _unsafe_groups(model, example_inputs, groups, keep, sample_inputs) -> dict[str, str]:
    """Groups that cannot lose their channels exactly, with why: not followed, or failing the trial (trial.py).

    torch-pruning follows channels through reshapes into Linear layers but not
    through every split (q/k/v chunks reshaped into attention heads, say), and
    a layer may turn a masked channel into a constant; the trial compaction of
    a copy finds every such group before the real one.
    """
    from edgehad.prune.trial import unsafe_groups

    changing = [g for g in groups if len(keep[g.name]) < g.size]
    found = {g.name: g.unfollowed for g in changing if g.unfollowed}
    found.update(unsafe_groups(model, example_inputs, [g for g in changing if g.name not in found], keep,
                               sample_inputs))
    return found


def _cost(model, example_inputs, groups, scores, counts, target) -> int:
    from edgehad.cost import count_macs, count_params
    from edgehad.prune.compaction import compact
    from edgehad.prune.plan import kept_channels

    trial = copy.deepcopy(model)
    _, trial_groups = find_groups(trial, example_inputs)
    by_name = {g.name: g for g in trial_groups}
    compact([by_name[g.name] for g in groups if g.name in by_name],
            {g.name: kept_channels(scores[g.name], counts[g.name]) for g in groups})
    return count_params(trial) if target == "params" else count_macs(trial, example_inputs)


def _scale(outs) -> float:
    from edgehad.prune.compaction import flatten_outputs

    return max((float(t.abs().max()) for t in flatten_outputs(outs) if t.numel()), default=1.0)


def layer_shapes(model) -> dict[str, tuple]:
    """``{module name: weight shape}`` of every Conv1d/2d/3d and Linear of ``model`` (what pruning resizes)."""
    from torch import nn

    return {name: tuple(m.weight.shape) for name, m in model.named_modules()
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)) and getattr(m, "weight", None) is not None}


def layer_table(before: dict, after: dict) -> list[dict]:
    """The report's per-layer rows from two ``layer_shapes``: out / in channels and params, before and after."""
    import math

    rows = []
    for name, shape in before.items():
        if name not in after:  # its whole block was removed (edgehad.prune.blocks)
            rows.append({"layer": name, "out": [shape[0], 0], "in": [shape[1], 0],
                         "params": [math.prod(shape), 0], "removed": True})
            continue
        new = after[name]
        rows.append({"layer": name, "out": [shape[0], new[0]], "in": [shape[1], new[1]],
                     "params": [math.prod(shape), math.prod(new)]})
    return rows
