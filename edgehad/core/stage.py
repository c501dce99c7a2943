"""Stages and their registry.

A stage is one step of a conversion: ``run(artifact, ctx) -> artifact``. Each
stage lives in its own file under ``edgehad/stages/``; the registry imports
that folder on first use, so adding a stage is a one-file change.

Order is declared, not hand-kept: every stage has an ``order`` that places it
in the design's sequence

    rewrite (10) -> prune (20) -> finetune (30) -> quantize (40)
        -> export (50) -> verify (60) -> profile (70)

and a pipeline always runs its stages sorted by it.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from edgehad.core.errors import UserInputError


@dataclass(frozen=True)
class Option:
    """A stage option: what a recipe may set under ``[stages.NAME]``."""

    type: type | tuple
    default: Any
    help: str


@dataclass
class Context:
    """What every stage may use besides the artifact."""

    workdir: Path                      # the staging folder
    options: dict = field(default_factory=dict)
    progress: Callable[[str], None] = lambda msg: None
    keep_intermediate: bool = False


class Stage:
    """Base class. Subclasses set ``name``, ``order``, ``options`` and implement ``run``."""

    name: str = ""
    order: int = 0
    summary: str = ""
    options: dict[str, Option] = {}
    needs_data: bool = False

    def __init__(self, **options):
        self.config = self.resolve(options)

    @classmethod
    def resolve(cls, given: dict) -> dict:
        unknown = sorted(set(given) - set(cls.options))
        if unknown:
            valid = ", ".join(sorted(cls.options)) or "none"
            raise UserInputError(f"unknown option {unknown[0]!r} for stage {cls.name!r}: valid options are {valid}")
        config = {}
        for key, opt in cls.options.items():
            value = given.get(key, opt.default)
            if value is not None and not isinstance(value, opt.type):
                raise UserInputError(f"option {key!r} of stage {cls.name!r} must be {_type_name(opt.type)}, got {value!r}")
            config[key] = value
        return config

    def run(self, artifact, ctx: Context):  # pragma: no cover - interface
        raise NotImplementedError


def _type_name(t) -> str:
    if isinstance(t, tuple):
        return " or ".join(x.__name__ for x in t)
    return t.__name__


_REGISTRY: dict[str, type[Stage]] = {}


def register(cls: type[Stage]) -> type[Stage]:
    """Class decorator: make a stage known by its ``name``."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no name")
    _REGISTRY[cls.name] = cls
    return cls


def stages() -> dict[str, type[Stage]]:
    """All registered stages, importing every module in ``edgehad/stages`` once."""
    if not _REGISTRY:
        import edgehad.stages as package

        for info in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package.__name__}.{info.name}")
    return dict(sorted(_REGISTRY.items(), key=lambda kv: (kv[1].order, kv[0])))


def get_stage(name: str) -> type[Stage]:
    known = stages()
    if name not in known:
        raise UserInputError(f"unknown stage {name!r}: known stages are {', '.join(known)}")
    return known[name]
