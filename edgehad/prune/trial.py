"""The trial compaction: which groups can be removed exactly, found before the real compaction.

A group is safe when, on a copy of the model, masking it (W ⊙ m, masks.py) and
then removing the masked channels (compaction.py) gives a model that runs, keeps
every output's shape and computes what the masked copy computed:

    max |y_masked - y_compacted| <= EXACT_TOLERANCE * max(1, max |y_masked|)    (edgehad.prune)

on the sample inputs the real compaction is judged on. Everything torch-pruning
gets wrong shows up here whatever its cause: a reshape it maps badly, a split it
does not follow, a layer that turns a zero channel into a constant.

All groups are tried at once; only when that fails is the set bisected, so that
k culprits among n groups cost about 2k·log2(n) trials and a clean model one.
A group flagged inexact (a reduction over channels reads it) is tried for
running and shapes only, with the exact ones that passed: its masked and
compacted models differ by design.
"""

from __future__ import annotations

import copy


def unsafe_groups(model, example_inputs, groups, keep: dict[str, list[int]], sample_inputs: list) -> dict[str, str]:
    """``{group name: why}`` for each group in ``groups`` whose compaction is not exact (or breaks the model)."""
    from edgehad.prune.compaction import outputs

    samples = sample_inputs or [example_inputs]
    reference = [tuple(t.shape) for t in _leaves(outputs(model, samples))]
    changing = [g for g in groups if len(keep[g.name]) < g.size]

    def check(names, also=()) -> str:
        return _trial(model, example_inputs, set(names) | set(also), keep, samples, reference)

    exact = sorted(g.name for g in changing if not g.inexact)
    found = _culprits(exact, check)
    passed = [n for n in exact if n not in found]
    found.update(_culprits(sorted(g.name for g in changing if g.inexact), lambda names: check(names, passed)))
    return found


def _culprits(names: list[str], check) -> dict[str, str]:
    """Bisect until every name left passes together; returns the names that fail, with why."""
    found: dict[str, str] = {}
    left = list(names)
    while left:
        why = check(left)
        if not why:
            break
        new = _split(left, why, check)
        found.update(new)
        left = [n for n in left if n not in new]
    return found


def _split(names: list[str], why: str, check) -> dict[str, str]:
    if len(names) == 1:
        return {names[0]: why}
    half = len(names) // 2
    found = {}
    for part in (names[:half], names[half:]):
        part_why = check(part)
        if part_why:
            found.update(_split(part, part_why, check))
    # each half passes alone and only both together fail: none of them can be told apart, all go
    return found or {n: f"{why}, together with {', '.join(m for m in names if m != n)}" for n in names}


def _trial(model, example_inputs, names: set[str], keep, samples, reference) -> str:
    from edgehad.prune import EXACT_TOLERANCE, find_groups
    from edgehad.prune.compaction import compact, max_abs_error, outputs
    from edgehad.prune.masks import mask_groups, remove_masks

    work = copy.deepcopy(model)
    _, groups = find_groups(work, example_inputs)
    chosen = [g for g in groups if g.name in names]
    compare = all(not g.inexact for g in chosen)
    try:
        if compare:
            mask_groups(chosen, keep)
            masked = outputs(work, samples)
            remove_masks(work)
        compact(chosen, {g.name: keep[g.name] for g in chosen})
        got = outputs(work, samples)
    except Exception as exc:  # any failure of the surgery means: not safe
        first = str(exc).splitlines()[0] if str(exc) else ""
        return f"removing its channels breaks the model ({type(exc).__name__}: {first})"[:240]
    if [tuple(t.shape) for t in _leaves(got)] != reference:
        return "removing its channels breaks the model (the output shape changes)"
    if compare:
        err = max_abs_error(masked, got)
        scale = max((float(t.abs().max()) for t in _leaves(masked) if t.numel()), default=1.0)
        if not err <= EXACT_TOLERANCE * max(1.0, scale):  # `not <=`: a NaN fails too
            return (f"removing its channels changes what the model computes (max abs error {err:.3g} between "
                    f"the masked and the compacted model)")
    return ""


def _leaves(outs) -> list:
    from edgehad.prune.compaction import flatten_outputs

    return [t for out in outs for t in flatten_outputs(out)]
