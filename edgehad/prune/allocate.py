"""Latency-aware allocation: how many channels each group keeps so that the model reaches a latency.

``prune_target='latency'``: ``prune`` R is the fraction of latency to remove (as for macs and params,
0.5 removes half), so the pruned model should run in (1 - R) of the original's time on the target.
A uniform ratio wastes that budget: layers differ in latency per channel (resolution, kernel, how
well the int8 kernel uses a width). So each group g keeps its own width w_g, chosen from a grid
(multiples of ``round_to``), to lose the least importance for the latency asked:

    minimise    sum_g I_g(w_g)
    subject to  L(w) = rest + sum_l T_l(c_in,l(w), c_out,l(w)) <= (1 - R) * L(full)

where I_g(w) is the share of group g's importance (the criterion's scores) in the channels it
drops when it keeps its w best (``importance_lost``), T_l is the per-layer latency table
(latency_table.py) and ``rest`` is what the model spends outside the pruned layers (0 in
``latency_counts``, which calibrates the table's ratio on timings of the whole model instead).
When whole residual blocks went first (``prune_blocks``, edgehad.prune.blocks), L(full) is the
original's: the table time of the removed blocks' layers, ``gone``, counts in it and in no L(w), so
the ratio asked is of the model the stage was given and the widths pay only what the blocks did not.

This is the knapsack of HALP (Shen et al., NeurIPS 2022, "Structural Pruning via Latency-Saliency
Knapsack"): each group's latency cost is taken with its neighbours' widths fixed at the current
point, so that it adds across groups,

    L(w) ~ L(w0) + sum_g [ L(w0 with g at w_g) - L(w0) ],

and the knapsack is solved exactly over each group's candidate widths (a Pareto front of
(latency, importance) over the groups, dominated partial choices dropped). A layer that reads one
group and writes another (c_in and c_out both shrink) makes the sum an estimate, so, as HALP does
between its pruning steps, the expansion point moves to the solution and the knapsack is solved
again, a few times, each solution checked on the exact table. Should none meet the budget, the
NetAdapt step (Yang et al., ECCV 2018, "NetAdapt: Platform-Aware Neural Network Adaptation for
Mobile Applications") finishes it: take the group whose next smaller width loses the least
importance per microsecond saved, until the table says the budget holds. Last, a local search on
the exact table widens one group and pays with NetAdapt steps elsewhere while that loses less
importance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

ROUNDS = 4          # knapsack solves around a moving expansion point (HALP re-solves after each step)
FRONT_CAP = 4000    # partial choices kept per group in the knapsack front; beyond it, thinned by latency
CALIBRATIONS = 2    # whole-model timings that calibrate the table (latency_counts)
CLOSE = 0.03        # ... stopping once the measured ratio is within 3% of the asked one
GAMMA_RANGE = (0.3, 3.0)  # the calibration's exponent (r = x^gamma): a fit beyond this is a distorted timing
# The calibration timings take each model's lower decile, not its median: on a shared machine a neighbour
# thrashing the last-level cache slows a large model (weights beyond L2) far more than a pruned one that
# fits, and the median ratio then moved 2x between runs minutes apart (measured: MobileNetV2 int8 0.19 vs
# 0.36 for one pair), while the runs between the thrashing give the machine's own ratio.
CALIBRATION_QUANTILE = 0.1
TIMED_RUNS = 200    # runs per model in each side-by-side timing (a few seconds; the exports cost more)
KEEP_GRID = (1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125)  # candidate kept fractions, then rounded


@dataclass
class LayerUse:
    """A layer the allocation changes: its full widths and the share of each group's channels it reads/writes."""

    name: str
    cin: int
    cout: int
    reads: dict = field(default_factory=dict)    # group -> fraction of the group's channels among its inputs
    writes: dict = field(default_factory=dict)   # group -> fraction among its outputs
    depthwise: int = 0                           # channel multiplier of a depthwise conv (c_in ties to c_out)

    def widths(self, sizes: dict, w: dict) -> tuple[int, int]:
        cout = self.cout - round(sum(share * (sizes[g] - w[g]) for g, share in self.writes.items()))
        if self.depthwise:
            if self.writes:
                return cout // self.depthwise, cout
            cin = self.cin - round(sum(share * (sizes[g] - w[g]) for g, share in self.reads.items()))
            return cin, cin * self.depthwise
        cin = self.cin - round(sum(share * (sizes[g] - w[g]) for g, share in self.reads.items()))
        return cin, cout


@dataclass
class Problem:
    candidates: dict            # group -> candidate widths, the full width first
    lost: dict                  # group -> {width: importance lost keeping that width}
    layers: list                # LayerUse
    latency: Callable           # (layer name, c_in, c_out) -> microseconds
    rest: float = 0.0           # microseconds spent outside these layers
    gone: float = 0.0           # microseconds of layers removed before the allocation (whole blocks)

    @property
    def sizes(self) -> dict:
        return {g: c[0] for g, c in self.candidates.items()}

    def total(self, w: dict) -> float:
        return self.rest + sum(self.latency(layer.name, *layer.widths(self.sizes, w)) for layer in self.layers)

    def touching(self, g) -> list:
        return [layer for layer in self.layers if g in layer.reads or g in layer.writes]


@dataclass
class Allocation:
    widths: dict
    predicted_us: float
    full_us: float
    lost: float
    met: bool                   # the table says the budget holds

    @property
    def predicted_ratio(self) -> float:
        return self.predicted_us / self.full_us if self.full_us else 1.0


def allocate(problem: Problem, keep: float) -> Allocation:
    """Widths that keep at most ``keep`` of the full model's latency (table) at the least importance lost."""
    full = {g: c[0] for g, c in problem.candidates.items()}
    full_us = problem.total(full) + problem.gone
    budget = keep * full_us
    best, point = None, full
    for _ in range(ROUNDS):
        w = _knapsack(problem, point, budget)
        us = problem.total(w)
        if us <= budget and (best is None or _lost(problem, w) < _lost(problem, best)):
            best = w
        if w == point:
            break
        point = w
    if best is None:
        best = _netadapt(problem, point, budget)
    if problem.total(best) <= budget:
        best = _rebalance(problem, best, budget)
    us = problem.total(best)
    return Allocation(best, us, full_us, _lost(problem, best), us <= budget)


def _lost(problem: Problem, w: dict) -> float:
    return sum(problem.lost[g][w[g]] for g in w)


def _knapsack(problem: Problem, point: dict, budget: float) -> dict:
    """Exact over the separable estimate around ``point``: the least importance lost within the budget."""
    sizes, base = problem.sizes, problem.total(point)
    front = [(0.0, 0.0, ())]  # (estimated latency change, importance lost, widths chosen so far)
    groups = list(problem.candidates)
    for g in groups:
        layers = problem.touching(g)
        here = sum(problem.latency(layer.name, *layer.widths(sizes, point)) for layer in layers)
        deltas = {}
        for width in problem.candidates[g]:
            moved = {**point, g: width}
            deltas[width] = sum(problem.latency(layer.name, *layer.widths(sizes, moved)) for layer in layers) - here
        grown = [(d + deltas[width], lost + problem.lost[g][width], chosen + (width,))
                 for d, lost, chosen in front for width in problem.candidates[g]]
        front = _pareto(grown)
    fits = [s for s in front if base + s[0] <= budget]
    pick = min(fits, key=lambda s: (s[1], s[0])) if fits else min(front, key=lambda s: (s[0], s[1]))
    return dict(zip(groups, pick[2]))


def _pareto(states: list) -> list:
    """The states no other is at least as fast and as cheap as; thinned to FRONT_CAP by latency buckets."""
    states.sort(key=lambda s: (s[0], s[1]))
    front, best = [], float("inf")
    for s in states:
        if s[1] < best:
            front.append(s)
            best = s[1]
    if len(front) > FRONT_CAP:
        lo, hi = front[0][0], front[-1][0]
        step = (hi - lo) / FRONT_CAP or 1.0
        thinned, bucket = [], None
        for s in front:  # within a bucket, the front's first state is its fastest; keep the cheapest instead
            b = int((s[0] - lo) / step)
            if b != bucket:
                thinned.append(s)
                bucket = b
            elif s[1] < thinned[-1][1]:
                thinned[-1] = s
        front = thinned
    return front


def _rebalance(problem: Problem, w: dict, budget: float) -> dict:
    """Widen one group and pay for it with NetAdapt steps elsewhere, while that loses less importance.

    The knapsack's costs are estimates where layers couple two groups; this local search on the exact
    table recovers what the estimate gave away (ROUNDS passes over the groups at most).
    """
    for _ in range(ROUNDS):
        improved = False
        for g, cands in problem.candidates.items():
            for wider in sorted(c for c in cands if c > w[g]):
                trial = _netadapt(problem, {**w, g: wider}, budget, frozen=g)
                if problem.total(trial) <= budget and _lost(problem, trial) < _lost(problem, w) - 1e-12:
                    w, improved = trial, True
                    break
        if not improved:
            break
    return w


def _netadapt(problem: Problem, w: dict, budget: float, frozen=None) -> dict:
    """Step the group losing the least importance per microsecond saved down one width, until in budget."""
    w = dict(w)
    us = problem.total(w)
    while us > budget:
        best = None
        for g, cands in problem.candidates.items():
            if g == frozen:
                continue
            smaller = [c for c in cands if c < w[g]]
            if not smaller:
                continue
            step = {**w, g: max(smaller)}
            saved = us - problem.total(step)
            if saved <= 0:
                continue
            cost = (problem.lost[g][step[g]] - problem.lost[g][w[g]]) / saved
            if best is None or cost < best[0]:
                best = (cost, step)
        if best is None:
            break  # nothing left to narrow: the budget cannot be met
        w = best[1]
        us = problem.total(w)
    return w


# ---- the glue: a model's groups and layers -> a Problem on the measured table -------------------------------

def candidate_widths(size: int, round_to: int) -> list[int]:
    """The full width, then the KEEP_GRID fractions rounded to multiples of ``round_to`` (plan.rounded_keep)."""
    from edgehad.prune.plan import rounded_keep

    widths = {rounded_keep(size, size * f, round_to) for f in KEEP_GRID}
    return sorted(widths | {size}, reverse=True)


def importance_lost(score, widths: list[int]) -> dict[int, float]:
    """{width: the share of the group's importance its lowest (size - width) scores hold}.

    I_g(w) = sum of the lowest (n - w) scores / sum of all n. A share, not a sum of scores divided by
    their mean (one unit per channel, as the global scope ranks): with units, taking a 160-channel
    residual stream down to 16 cost no more than 144 of a 960-channel expansion's channels, and the
    knapsack thinned the streams every block reads (measured, MobileNetV2 int8 at a table ratio of 0.35:
    MACs kept 0.14x with units, 0.20x with shares).
    """
    s = sorted(float(v) for v in score)
    total = sum(s) or 1.0
    return {w: float(sum(s[:len(s) - w])) / total for w in widths}


def layer_uses(groups, specs: dict) -> tuple[list[LayerUse], list[str]]:
    """The LayerUse of every timed layer a group reads or writes; the names of those that cannot be timed."""
    uses: dict[str, LayerUse] = {}
    untimed = set()
    for g in groups:
        for role, members in (("writes", g.producers), ("reads", g.consumers)):
            for m in members:
                spec = specs.get(m.name)
                if spec is None:
                    untimed.add(m.name)
                    continue
                use = uses.setdefault(m.name, LayerUse(m.name, spec.cin, spec.cout,
                                                       depthwise=spec.cout // spec.cin if spec.depthwise else 0))
                getattr(use, role)[g.name] = len(set(m.idxs)) / g.size
    for use in uses.values():
        if use.depthwise and use.writes:
            use.reads = {}  # its input channels are its output channels' (one filter per channel)
    return list(uses.values()), sorted(untimed)


def latency_counts(model, example_inputs, groups, scores, settings, progress,
                   reference=None) -> tuple[dict[str, int], dict]:
    """Keep counts for ``settings.ratio`` of latency removed, and the plan: asked, predicted, table, machine.

    The table's layers are not the whole model: session overhead, additions and the quantize of the
    input do not shrink with the widths, and a layer timed alone keeps its weights in cache while
    inside a large model it does not (measured on MobileNetV2 int8: the original's convs ran 1.45x
    their table entries, a pruned model's that fits in cache 1.02x). So the table's ratio
    x(w) = sum_l T_l(w) / sum_l T_l(full) is calibrated on the model itself: the original and the
    allocated model are timed side by side (edgehad.prune.latency, interleaved) and the measured ratio
    r fits a power law through (1, 1), r = x^gamma (``calibrated``); the latency is then allocated
    again for the x the fit says gives the asked ratio, up to CALIBRATIONS timings, stopping once one
    is within CLOSE of the asked ratio. With ``settings.latency_calibrate`` off (``[stages.prune] latency =
    false``) the table's ratio is the prediction, and a run repeats exactly what the cache holds.

    ``reference``: the model the ratio counts from when it is not ``model`` (``model`` is ``reference``
    with whole residual blocks removed, edgehad.prune.blocks): the removed layers' table time joins the
    full model's (``Problem.gone``) and the calibration times the pruned model against ``reference``.
    """
    from edgehad.core.errors import UserInputError
    from edgehad.prune.latency_table import LatencyTable, layer_specs

    specs = layer_specs(model, example_inputs)
    table = LatencyTable(settings.latency_format, settings.latency_scheme, threads=1,
                         folder=settings.latency_cache, progress=progress)
    uses, untimed = layer_uses(groups, specs)
    if not uses:
        raise UserInputError("`prune_target='latency'` times the pruned layers alone, and none of this model's "
                             "conv/linear layers can be timed so: use `prune_target='macs'`")
    progress(f"prune: latency table of {len(uses)} layers ({table.scheme} {table.fmt}, 1 thread, this machine; "
             f"cache {table.path})")
    candidates = {g.name: candidate_widths(g.size, settings.round_to) for g in groups}
    prefix = FloatPrefix(specs, uses, table, settings.latency_float_prefix and table.scheme == "int8")
    gone = removed_layers(reference, specs, example_inputs) if reference is not None else {}
    problem = Problem(candidates, {g.name: importance_lost(scores[g.name], candidates[g.name]) for g in groups},
                      uses, prefix.latency, gone=sum(_layer_us(table, spec, spec.cin, spec.cout)
                                                     for spec in gone.values()))
    share = problem.gone / (problem.total(problem.sizes) + problem.gone)
    if problem.gone and share >= settings.ratio:
        raise UserInputError(f"`prune_blocks` alone removes {share:.0%} of the latency (per-layer table), already the "
                             f"`prune` {settings.ratio} asked: raise `prune` above {share:.2f}, or drop it to "
                             "remove blocks only")
    keep, points, goal, original = 1.0 - settings.ratio, [], 1.0 - settings.ratio, {}
    try:
        calibrations = CALIBRATIONS if settings.latency_calibrate else 0
        for attempt in range(calibrations + 1):
            plan = allocate(problem, goal)
            x = plan.predicted_ratio
            if attempt == calibrations or x >= 0.999:
                break
            progress(f"prune: timing the allocation (table {x:.3f}x) against the original to calibrate the table")
            measured = _measured_ratio(model, reference or model, example_inputs, groups, scores, plan.widths,
                                       table, original, prefix.counts(problem, plan.widths))
            if measured is None:
                break
            points.append((x, measured))
            if abs(measured - keep) <= CLOSE * keep:
                break
            goal = calibrated(points, keep, inverse=True)
    finally:
        table.save()
        prefix.save()
    predicted = calibrated(points, plan.predicted_ratio)
    if predicted > keep * (1 + CLOSE):
        progress(f"warning: prune: cannot remove {settings.ratio:.0%} of the latency: the table predicts "
                 f"{predicted:.3f}x at best (narrower widths save no more, or `prune_round_to` "
                 f"{settings.round_to} stops them)")
    info = {"asked": round(keep, 4), "predicted": round(predicted, 4), "table_ratio": round(plan.predicted_ratio, 4),
            "calibration": [{"table": round(x, 4), "measured": r} for x, r in points],
            "format": table.fmt, "scheme": table.scheme, "threads": table.threads, "machine": table.machine,
            "table": {"layers": len(uses), "entries_used": len(_used(problem, plan.widths)),
                      "measured_now": table.measured, "cache": str(table.path)},
            **({"removed_blocks": {"layers": len(gone), "table_us": round(problem.gone, 1),
                                   "share": round(problem.gone / plan.full_us, 4)}} if gone else {}),
            "method": "HALP knapsack over per-group widths on a per-layer latency table (NetAdapt steps where "
                      "it falls short), calibrated on the whole model"}
    if prefix.on:
        info["float_prefix"] = prefix.counts(problem, plan.widths)
    if untimed:
        info["untimed_layers"] = untimed
    return dict(plan.widths), info


class FloatPrefix:
    """keep_float "speed" (edgehad.quantize.speed): the leading Conv2d layers stay float while fp32 beats int8
    by MARGIN there, so a layer of that prefix costs its faster scheme's table entry."""

    def __init__(self, specs: dict, uses: list, table, on: bool):
        from edgehad.prune.latency_table import LatencyTable
        from edgehad.quantize.speed import MARGIN, MAX_LAYERS

        self.specs, self.table, self.on, self.margin = specs, table, on, MARGIN
        self.layers = [n for n, spec in specs.items() if spec.kind == "conv2d"][:MAX_LAYERS] if on else []
        self.fp32 = LatencyTable(table.fmt, "fp32", table.threads, table.path.parent,
                                 table.progress) if on else None
        self.uses = {u.name: u for u in uses}

    def _float(self, name: str, cin: int, cout: int) -> tuple[bool, float]:
        int8 = _layer_us(self.table, self.specs[name], cin, cout)
        if name not in self.layers:
            return False, int8
        fp32 = _layer_us(self.fp32, self.specs[name], cin, cout)
        return fp32 < int8 * (1 - self.margin), min(fp32, int8) if fp32 < int8 * (1 - self.margin) else int8

    def latency(self, name: str, cin: int, cout: int) -> float:
        return self._float(name, cin, cout)[1]

    def counts(self, problem: Problem, widths: dict) -> dict | None:
        """{"original": k, "pruned": k'}: how many leading convs stay float at full width and at ``widths``."""
        if not self.on:
            return None
        full = {g: c[0] for g, c in problem.candidates.items()}
        return {"original": self._length(problem, full), "pruned": self._length(problem, widths)}

    def _length(self, problem: Problem, widths: dict) -> int:
        k = 0
        for name in self.layers:  # the walk stops at the first layer int8 wins, as speed.float_faster_prefix
            use = self.uses.get(name)
            spec = self.specs[name]
            cin, cout = use.widths(problem.sizes, widths) if use else (spec.cin, spec.cout)
            if not self._float(name, cin, cout)[0]:
                break
            k += 1
        return k

    def save(self) -> None:
        if self.fp32 is not None:
            self.fp32.save()


def calibrated(points: list, value: float, inverse: bool = False) -> float:
    """The measured ratio the fit predicts for table ratio ``value`` (``inverse``: the table ratio for a measured one).

    ``points`` are (table ratio x, measured ratio r) pairs; the fit is r = x^gamma, through (1, 1) (no
    pruning, no change) and least squares in log-log over every point, so that one timing a busy
    machine distorted moves it less: gamma = sum(log x log r) / sum(log x ^ 2). No point: r = x.
    """
    usable = [(math.log(x), math.log(r)) for x, r in points if 0 < x < 0.999 and 0 < r]
    if not usable:
        return value
    gamma = sum(lx * lr for lx, lr in usable) / sum(lx * lx for lx, _ in usable)
    gamma = min(max(gamma, GAMMA_RANGE[0]), GAMMA_RANGE[1])
    if inverse:
        return min(1.0, max(value, 1e-9) ** (1.0 / gamma))
    return max(value, 1e-9) ** gamma


def block_latency(model, example_inputs, blocks: list[str], settings, progress) -> dict[str, float]:
    """{block: table microseconds of its timed layers at full width}, in the recipe's format and scheme.

    What removing the block saves in the table's terms (edgehad.prune.blocks ranks by influence per
    microsecond with a latency target). The block's additions are not in the table, nor is a float
    prefix: blocks sit after the stem the prefix covers.
    """
    from edgehad.prune.latency_table import LatencyTable, layer_specs

    specs = layer_specs(model, example_inputs)
    table = LatencyTable(settings.latency_format, settings.latency_scheme, threads=1,
                         folder=settings.latency_cache, progress=progress)
    try:
        return {b: sum(_layer_us(table, spec, spec.cin, spec.cout) for name, spec in specs.items()
                       if name.startswith(b + ".")) for b in blocks}
    finally:
        table.save()


def removed_layers(reference, specs: dict, example_inputs) -> dict:
    """``{name: LayerSpec}`` of the timed layers ``reference`` runs and the model of ``specs`` does not."""
    from edgehad.prune.latency_table import layer_specs

    return {name: spec for name, spec in layer_specs(reference, example_inputs).items() if name not in specs}


def _measured_ratio(model, reference, example_inputs, groups, scores, widths: dict, table, original: dict,
                    float_prefix: dict | None) -> float | None:
    """Latency of a compacted copy of ``model`` at ``widths`` over ``reference``'s, timed side by side; None if
    the copy cannot be built."""
    import copy
    import tempfile
    from pathlib import Path

    from edgehad.prune import find_groups
    from edgehad.prune.compaction import compact
    from edgehad.prune.latency import compare_latency
    from edgehad.prune.plan import kept_channels

    trial = copy.deepcopy(model)
    try:
        _, trial_groups = find_groups(trial, example_inputs)
        by_name = {g.name: g for g in trial_groups}
        compact([by_name[g.name] for g in groups if g.name in by_name],
                {g.name: kept_channels(scores[g.name], widths[g.name]) for g in groups})
        from edgehad.core.device_lock import measuring_lock

        # inside a search worker the whole-model timings are the device's too: one measurement at a time
        with measuring_lock(), tempfile.TemporaryDirectory(prefix="edgehad-prune-calibrate-") as tmp:
            timed = compare_latency(reference, trial, example_inputs, Path(tmp), formats=(table.fmt,),
                                    scheme=table.scheme, runs=TIMED_RUNS, reuse=original,
                                    float_prefix=float_prefix, quantile=CALIBRATION_QUANTILE)
    except Exception:  # a group the trial would skip breaks this copy: the table stays uncalibrated
        return None
    return timed[table.fmt]["ratio"]


def _used(problem: Problem, w: dict) -> list:
    return [(layer.name, *layer.widths(problem.sizes, w)) for layer in problem.layers]


def _layer_us(table, spec, cin: int, cout: int) -> float:
    if not spec.widths_fit(cin, cout):  # a grouped conv's widths off its group count: as the next widths that fit
        g = spec.groups
        cin, cout = max(g, cin // g * g), max(g, cout // g * g)
    return table.us(spec, max(1, cin), max(1, cout))
