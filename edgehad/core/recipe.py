"""Recipes: named conversion pipelines as TOML (``converters/NAME.toml``).

    name = "float"
    description = "Float ONNX + TFLite, verified in both runtimes."

    [data]                     # optional; --data / --normalize override
    spec = "digits"
    normalize = "0.5,0.25"

    [stages.export-onnx]       # one table per stage; keys are the stage's options
    opset = 18
    [stages.export-tflite]
    [stages.verify]

Every value has a declared type and range (each stage's options, see
``recipe_schema()``): a recipe is checked whole against that JSON Schema when
it is read, before any model is loaded. Unknown top-level keys, unknown
stages, unknown stage options, wrong types (``opset = true``), values out of
range (``opset = 17``, ``rtol = -1``) and NaN/infinity are errors that name
the key. The order of tables does not matter: stages run in their declared
order (edgehad.core.stage).
"""

from __future__ import annotations

import tomllib
from importlib import resources
from dataclasses import dataclass, field
from pathlib import Path

from edgehad.core.errors import UserInputError
from edgehad.core.stage import Stage, get_stage, stages as registered_stages
from edgehad.core.validation import check

TOP_LEVEL_KEYS = {"name", "description", "data", "stages"}
DATA_KEYS = {"spec", "normalize"}
# the repository's converters/ folder, shipped in the wheel as the package edgehad.converters
CONVERTERS_DIR = Path(str(resources.files("edgehad.converters")))
FORMAT_STAGES = {"onnx": "export-onnx", "tflite": "export-tflite"}


@dataclass
class Recipe:
    name: str = "float"
    description: str = ""
    data: dict = field(default_factory=dict)
    stages: dict[str, dict] = field(default_factory=dict)   # stage name -> options
    path: str | None = None


def find_recipe(ref: str) -> Path:
    """A path to a .toml file, or the name of one in converters/."""
    path = Path(ref)
    if path.is_file():
        return path
    named = CONVERTERS_DIR / f"{ref.removesuffix('.toml')}.toml"
    if not path.suffix and named.is_file():
        return named
    known = ", ".join(sorted(p.stem for p in CONVERTERS_DIR.glob("*.toml"))) if CONVERTERS_DIR.is_dir() else "none"
    raise UserInputError(f"recipe {ref} does not exist: give a .toml path or one of: {known}")


def recipe_schema() -> dict:
    """The JSON Schema (Draft 2020-12) every recipe fits: one table per registered stage, each option typed."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "edgehad recipe",
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1, "description": "the recipe's name (default: its file name)"},
            "description": {"type": "string"},
            "data": {
                "type": "object",
                "properties": {"spec": {"type": "string", "minLength": 1, "description": "a --data spec"},
                               "normalize": {"type": "string", "minLength": 1, "description": "MEAN,STD"}},
                "additionalProperties": False,
            },
            "stages": {
                "type": "object",
                "properties": {name: cls.options_schema() for name, cls in registered_stages().items()},
                "additionalProperties": False,
            },
        },
        "additionalProperties": False,
    }


def load_recipe(ref: str) -> Recipe:
    path = find_recipe(ref)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserInputError(f"recipe {path} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
                             f"{exc.start}): save it as UTF-8") from None
    except OSError as exc:
        raise UserInputError(f"recipe {path} cannot be read ({exc.strerror or exc}): "
                             "check the path and its permissions") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserInputError(f"recipe {path} is not valid TOML ({exc}): fix the syntax") from exc
    return parse_recipe(raw, source=str(path))


def parse_recipe(raw: dict, source: str = "<recipe>") -> Recipe:
    """A Recipe from a parsed TOML table, checked whole against ``recipe_schema()``; errors name the key."""
    unknown = sorted(set(raw) - TOP_LEVEL_KEYS)
    if unknown:
        raise UserInputError(
            f"unknown recipe key {unknown[0]!r} in {source}: valid keys are {', '.join(sorted(TOP_LEVEL_KEYS))}"
        )
    data = raw.get("data", {})
    if not isinstance(data, dict):
        raise UserInputError(f"'data' in {source} must be a table with keys {', '.join(sorted(DATA_KEYS))}")
    bad = sorted(set(data) - DATA_KEYS)
    if bad:
        raise UserInputError(f"unknown recipe key 'data.{bad[0]}' in {source}: valid keys are {', '.join(sorted(DATA_KEYS))}")
    stages = raw.get("stages", {})
    if not isinstance(stages, dict):
        raise UserInputError(f"'stages' in {source} must be tables like [stages.export-onnx]")
    for name, opts in stages.items():
        cls = get_stage(name)  # unknown stage -> error naming it
        if not isinstance(opts, dict):
            raise UserInputError(f"'stages.{name}' in {source} must be a table of options")
        # an unknown option: resolve's message lists the options the stage does take
        cls.resolve(opts, source=f"recipe {source}")
    check(raw, recipe_schema(), f"recipe {source}")  # the whole recipe: name, description, data too
    return Recipe(name=raw.get("name", Path(source).stem), description=raw.get("description", ""),
                  data=dict(data), stages={k: dict(v) for k, v in stages.items()}, path=source)


def build_stages(recipe: Recipe | None, formats: list[str] | None = None,
                 overrides: dict[str, dict] | None = None) -> list[Stage]:
    """The stage list: the recipe's stages, then flags on top.

    ``formats`` replaces the recipe's export stages; ``overrides`` maps a stage
    name to options given by flags: they win over the recipe's values, and a
    stage named there that the recipe lacks is added. ``verify`` is always
    present: nothing is converted until it ran in its runtime.
    """
    recipe = recipe or default_recipe()
    wanted = {name: dict(opts) for name, opts in recipe.stages.items()}
    if formats is not None:
        bad = [f for f in formats if f not in FORMAT_STAGES]
        if bad or not formats:
            raise UserInputError(f"unknown format {bad[0] if bad else ''!r}: use {', '.join(FORMAT_STAGES)} (comma-separated)")
        for fmt, stage in FORMAT_STAGES.items():
            if fmt in formats:
                wanted.setdefault(stage, {})
            else:
                wanted.pop(stage, None)
    for name, opts in (overrides or {}).items():
        wanted.setdefault(name, {}).update({k: v for k, v in opts.items() if v is not None})
    wanted.setdefault("verify", {})
    built = [get_stage(name)(**opts) for name, opts in wanted.items()]
    return sorted(built, key=lambda s: s.order)


def default_recipe() -> Recipe:
    return load_recipe(str(CONVERTERS_DIR / "float.toml"))
