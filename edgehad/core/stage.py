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

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from edgehad.core.errors import UserInputError
from edgehad.core.registry import import_submodules
from edgehad.core.validation import as_declared, check


@dataclass(frozen=True)
class Option:
    """A stage option: what a recipe may set under ``[stages.NAME]``.

    ``schema`` is a JSON Schema (Draft 2020-12) fragment that every value must
    fit, whether it comes from a recipe, a flag or a Python call: its type and
    range, e.g. ``{"type": "integer", "minimum": 1}`` or ``{"enum": [...]}``.
    All of them together are the recipe schema (edgehad.core.recipe.recipe_schema).
    """

    schema: dict
    default: Any
    help: str


@dataclass
class Context:
    """What every stage may use besides the artifact."""

    workdir: Path                      # the staging folder
    progress: Callable[[str], None] = lambda msg: None
    # what the running stage adds to its report entry (see ``record``); the pipeline empties it per stage
    entry: dict = field(default_factory=dict)

    def record(self, section: str, info: dict) -> None:
        """Put ``info`` under ``section`` in the running stage's report entry (e.g. "pruning")."""
        self.entry[section] = info


class Stage:
    """Base class. Subclasses set ``name``, ``order``, ``options`` and implement ``run``."""

    name: str = ""
    order: int = 0
    summary: str = ""
    options: dict[str, Option] = {}
    needs_data: bool = False
    # the Artifact fields (edgehad.core.artifact) this stage uses and those it may replace or change;
    # the pipeline refuses a stage that replaces a field it did not declare
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()

    def __init__(self, **options):
        self.config = self.resolve(options)

    @classmethod
    def options_schema(cls) -> dict:
        """The JSON Schema of this stage's ``[stages.NAME]`` table: every option, its help and default."""
        return {
            "type": "object",
            "description": cls.summary,
            "properties": {key: {**opt.schema, "description": opt.help, "default": opt.default}
                           for key, opt in cls.options.items()},
            "additionalProperties": False,
        }

    @classmethod
    def resolve(cls, given: dict, source: str = "") -> dict:
        """Every option's value: ``given`` (None means not given) checked against its schema, else the default.

        An unknown option, a value of the wrong type (``true`` is not an integer)
        or out of range, NaN or infinity: UserInputError naming
        ``stages.NAME.KEY``, raised before any model is loaded.
        """
        unknown = sorted(set(given) - set(cls.options))
        if unknown:
            valid = ", ".join(sorted(cls.options)) or "none"
            where = f" (in {source})" if source else ""
            raise UserInputError(f"unknown option {unknown[0]!r} for stage {cls.name!r}: "
                                 f"valid options are {valid}{where}")
        given = {key: value for key, value in given.items() if value is not None}
        # checked where it sits in a recipe, so the error names stages.NAME.KEY
        nested = {"type": "object", "properties": {"stages": {"type": "object",
                                                              "properties": {cls.name: cls.options_schema()}}}}
        check({"stages": {cls.name: given}}, nested, source)
        return {key: as_declared(opt.schema, given.get(key, opt.default)) for key, opt in cls.options.items()}

    @classmethod
    def check_option(cls, key: str, value, label: str) -> None:
        """Check one value of option ``key`` against its schema; an error calls it ``label`` (e.g. a flag)."""
        check({label: value}, {"type": "object", "properties": {label: cls.options[key].schema}})

    def run(self, artifact, ctx: Context):  # pragma: no cover - interface
        raise NotImplementedError


_REGISTRY: dict[str, type[Stage]] = {}


def register(cls: type[Stage]) -> type[Stage]:
    """Class decorator: make a stage known by its ``name``; its reads/writes must be Artifact fields."""
    from edgehad.core.artifact import FIELDS

    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no name")
    unknown = sorted(set(cls.reads + cls.writes) - FIELDS)
    if unknown:
        raise ValueError(f"stage {cls.name!r} declares {unknown}, which are not Artifact fields")
    _REGISTRY[cls.name] = cls
    return cls


def stages() -> dict[str, type[Stage]]:
    """All registered stages, importing every module in ``edgehad/stages`` once."""
    import_submodules("edgehad.stages")
    return dict(sorted(_REGISTRY.items(), key=lambda kv: (kv[1].order, kv[0])))


def get_stage(name: str) -> type[Stage]:
    known = stages()
    if name not in known:
        raise UserInputError(f"unknown stage {name!r}: known stages are {', '.join(known)}")
    return known[name]
