"""Channel-importance criteria, one file each, registered by name.

A criterion maps every prunable group to a score per channel (higher = more
important, in the group's numbering). Adding one is a one-file change: define
``score(groups, model, ctx)`` in a new module here and decorate it with
``@criterion("name", needs_data=...)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from edgehad.core.errors import UserInputError
from edgehad.core.registry import import_submodules


@dataclass(frozen=True)
class Criterion:
    name: str
    needs_data: bool
    summary: str
    score: Callable


@dataclass
class ScoreContext:
    """What a criterion may use besides the groups and the model."""

    example_inputs: tuple
    data: object = None          # edgehad.data.DataSplits or None
    teacher: object = None       # the original model
    samples: int = 256           # data samples a data-driven criterion may use
    ratio: float = 0.5           # the fraction of channels that will go
    seed: int = 0
    progress: Callable = lambda msg: None


_CRITERIA: dict[str, Criterion] = {}


def criterion(name: str, needs_data: bool = False):
    def wrap(fn):
        _CRITERIA[name] = Criterion(name, needs_data, (fn.__doc__ or "").strip().splitlines()[0], fn)
        return fn
    return wrap


def criteria() -> dict[str, Criterion]:
    import_submodules(__name__)
    return dict(sorted(_CRITERIA.items()))


def get_criterion(name: str) -> Criterion:
    known = criteria()
    if name not in known:
        raise UserInputError(f"unknown pruning criterion {name!r}: use one of {', '.join(known)}")
    return known[name]
