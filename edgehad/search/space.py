"""The search space: a recipe whose values may be choices or ranges (TOML), and the recipe of one trial.

    name = "default"
    description = "..."

    [stages.prune]
    ratio = {low = 0.0, high = 0.6, step = 0.1}     # a range: step, or log = true, or neither
    criterion = {choices = ["magnitude", "bn-scale"]}
    latency = false                                  # a fixed value, as in a recipe

    [stages.quantize]
    scheme = {choices = ["none", "int8", "fp16"]}

    [stages.export-onnx]                             # present: the stage runs, as in a recipe

The sections and keys are a recipe's (edgehad.core.recipe): one ``[stages.NAME]`` per stage, each key an
option of that stage. Everything is checked against the stage's own option schema before the first trial:
an unknown stage or key, a fixed value or a choice the stage refuses, an empty or inverted range, a range
end out of the option's range, a range on an option that is not a number. Errors are one line naming
``[stage] key``.

A trial's values make one ordinary recipe (:meth:`Space.recipe`), written beside the trial's files so that
``edgehad convert MODEL --recipe recipe.toml`` makes the same files. Three rules make that recipe the plain
one a person would write:

- ``[prune] ratio = 0`` (and no ``blocks``) prunes nothing: the trial's recipe has no prune stage;
- ``[rewrite] rules = ""`` rewrites nothing: no rewrite stage (so ``rules = {choices = ["", "fold-se"]}``
  searches with and without a rule);
- fine-tuning recovers what pruning or a rewrite cost: a trial that does neither has no finetune stage
  (``edgehad convert`` adds one itself after pruning with data; see edgehad.api.convert).

Optuna's parameter of ``[stage] key`` is named ``stage.key`` (``prune.ratio``).
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from edgehad.core.errors import UserInputError
from edgehad.core.validation import allowed, literal

TOP_LEVEL_KEYS = {"name", "description", "stages"}
CHOICE_KEYS = {"choices"}
RANGE_KEYS = {"low", "high", "step", "log"}
DEFAULT_SPACE = "default"


def spaces_dir() -> Path:
    """The shipped spaces: converters/spaces/ (package data of edgehad.converters, like the recipes)."""
    from edgehad.core.recipe import CONVERTERS_DIR

    return CONVERTERS_DIR / "spaces"


@dataclass(frozen=True)
class Param:
    """One searched option: ``choices``, or a range ``low``..``high`` (``step``, ``log``) of ints or floats."""

    stage: str
    key: str
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    integer: bool = False

    @property
    def name(self) -> str:
        return f"{self.stage}.{self.key}"

    def distribution(self):
        """The Optuna distribution that samples this option."""
        import optuna.distributions as d

        if self.choices is not None:
            return d.CategoricalDistribution(list(self.choices))
        if self.integer:
            return d.IntDistribution(int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return d.FloatDistribution(self.low, self.high, step=self.step, log=self.log)

    def value(self, sampled):
        """A sampled value as the recipe states it: a float on a step grid rounded to the grid's digits."""
        if self.choices is not None or self.integer:
            return sampled
        if self.step is not None:
            k = round((sampled - self.low) / self.step)
            digits = max(_decimals(self.low), _decimals(self.step))
            return round(self.low + k * self.step, digits)
        return float(sampled)

    def as_dict(self) -> dict:
        if self.choices is not None:
            return {"choices": list(self.choices)}
        out = {"low": self.low, "high": self.high}
        if self.step is not None:
            out["step"] = self.step
        if self.log:
            out["log"] = True
        return out


@dataclass
class Space:
    name: str = DEFAULT_SPACE
    description: str = ""
    fixed: dict[str, dict] = field(default_factory=dict)   # stage -> {key: value}, every stage of the space
    params: list[Param] = field(default_factory=list)      # in the file's order
    path: str | None = None

    def distributions(self) -> dict:
        return {p.name: p.distribution() for p in self.params}

    def canonical(self) -> dict:
        """What the space says, as plain JSON (stored with the study: a resume must search the same space)."""
        stages = {stage: dict(opts) for stage, opts in self.fixed.items()}
        for p in self.params:
            stages[p.stage][p.key] = p.as_dict()
        return {"stages": stages}

    def recipe(self, values: dict, data: str, name: str = "trial") -> dict:
        """The recipe (a TOML table) of one trial: the fixed values, then ``values`` by parameter name."""
        stages = {stage: dict(opts) for stage, opts in self.fixed.items()}
        for p in self.params:
            stages[p.stage][p.key] = p.value(values[p.name])
        if "rewrite" in stages and not stages["rewrite"].get("rules"):
            del stages["rewrite"]  # rules "" (a choice of none): no rewrite stage
        prune = stages.get("prune")
        if prune is not None and prune.get("ratio", 0.5) == 0 and not prune.get("blocks", 0):
            del stages["prune"]  # ratio 0 removes nothing: no stage, and nothing for fine-tuning to recover
        if "finetune" in stages and "prune" not in stages and not stages.get("rewrite", {}).get("rules"):
            del stages["finetune"]
        return {"name": name, "description": f"a trial of the search space {self.name}",
                "data": {"spec": data}, "stages": stages}


def _decimals(x: float) -> int:
    text = repr(float(x))
    if "e" in text:
        mantissa, exp = text.split("e")
        return max(0, len(mantissa.partition(".")[2]) - int(exp))
    return len(text.partition(".")[2])


def find_space(ref: str | Path | None) -> Path:
    """A .toml path, or the name of a shipped space (``default``); None is the default space."""
    ref = DEFAULT_SPACE if ref is None else ref
    path = Path(ref)
    if path.is_file():
        return path
    named = spaces_dir() / f"{str(ref).removesuffix('.toml')}.toml"
    if not path.suffix and named.is_file():
        return named
    known = ", ".join(sorted(p.stem for p in spaces_dir().glob("*.toml"))) or "none"
    raise UserInputError(f"search space {ref} does not exist: give a .toml path or one of: {known}")


def load_space(ref: str | Path | None = None) -> Space:
    path = find_space(ref)
    try:
        raw = tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise UserInputError(f"search space {path} is not UTF-8 text: save it as UTF-8") from None
    except OSError as exc:
        raise UserInputError(f"search space {path} cannot be read ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserInputError(f"search space {path} is not valid TOML ({exc}): fix the syntax") from None
    space = parse_space(raw, source=str(path))
    space.path = str(path)
    return space


def parse_space(raw: dict, source: str = "<space>") -> Space:
    """A Space from a parsed TOML table; every value, choice and range end checked against its stage."""
    from edgehad.core.recipe import FORMAT_STAGES
    from edgehad.core.stage import stages as registered

    where = f"search space {source}"
    unknown = sorted(set(raw) - TOP_LEVEL_KEYS)
    if unknown:
        hint = " (the data is the search's `data`)" if unknown[0] == "data" else ""
        raise UserInputError(f"{where}: unknown key {unknown[0]!r}{hint}: valid keys are "
                             f"{', '.join(sorted(TOP_LEVEL_KEYS))}")
    for key in ("name", "description"):
        if key in raw and not isinstance(raw[key], str):
            raise UserInputError(f"{where}: {key} must be a string, got {literal(raw[key])}")
    stages = raw.get("stages", {})
    if not isinstance(stages, dict) or not stages:
        raise UserInputError(f"{where}: no stages: give one table per stage, like [stages.export-onnx]")
    known = registered()
    fixed: dict[str, dict] = {}
    params: list[Param] = []
    for stage, opts in stages.items():
        if stage not in known:
            raise UserInputError(f"{where}: unknown stage `[{stage}]`: known stages are {', '.join(known)}")
        if not isinstance(opts, dict):
            raise UserInputError(f"{where}: `[{stage}]` must be a table of options, like [stages.{stage}]")
        cls = known[stage]
        fixed[stage] = {}
        for key, value in opts.items():
            if key not in cls.options:
                raise UserInputError(f"{where}: unknown key `[{stage}] {key}`: valid keys are "
                                     f"{', '.join(sorted(cls.options)) or 'none'}")
            if isinstance(value, dict):
                params.append(_param(cls, stage, key, value, where))
            else:
                _check_value(cls, stage, key, value, where, "")
                fixed[stage][key] = value
        if stage == "rewrite" and any(p.stage == stage and p.key == "rules" for p in params):
            continue  # its rules are searched, each choice checked above (one may be none: no stage to build)
        try:  # the fixed values together, as the stage takes them (checks that span keys)
            cls(**fixed[stage])
        except UserInputError as exc:
            raise UserInputError(f"{where}: `[{stage}]`: {exc}") from None
    if not any(s in fixed for s in FORMAT_STAGES.values()):
        raise UserInputError(f"{where}: no export stage: add [stages.export-onnx] and/or [stages.export-tflite]")
    return Space(name=raw.get("name", Path(source).stem), description=raw.get("description", ""),
                 fixed=fixed, params=params)


# `[rewrite] rules = {choices = ["", ...]}`: the choice "" is a trial without a rewrite stage. Only as a
# choice: a fixed rules = "" (or a [rewrite] table without rules) is refused by the stage, as in a recipe.
NO_RULE = ("rewrite", "rules", "")


def _check_value(cls, stage: str, key: str, value, where: str, what: str) -> None:
    """One value against the option's schema, then the stage's own checks (a criterion's registry...)."""
    from edgehad.core.validation import check

    schema = cls.options[key].schema
    label = f"`[{stage}] {key}`{what}"
    try:
        check({"v": value}, {"type": "object", "properties": {"v": schema}})
    except UserInputError:
        raise UserInputError(f"{where}: {label} must be {allowed(schema)}, got {literal(value)}") from None
    try:
        cls(**{key: value})
    except UserInputError as exc:
        raise UserInputError(f"{where}: {label} {literal(value)} is refused by the {stage} stage: {exc}") from None


def _param(cls, stage: str, key: str, spec: dict, where: str) -> Param:
    label = f"`[{stage}] {key}`"
    keys = set(spec)
    schema = cls.options[key].schema
    if keys & CHOICE_KEYS and keys & RANGE_KEYS or not keys or keys - CHOICE_KEYS - RANGE_KEYS:
        raise UserInputError(f"{where}: {label} must be a value, {{choices = [...]}} or "
                             f"{{low = .., high = .., step = ..}} / {{low = .., high = .., log = true}}, "
                             f"got {_toml_inline(spec)}")
    if "choices" in spec:
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise UserInputError(f"{where}: {label} choices must be a non-empty list, got {literal(choices)}")
        for choice in choices:
            if isinstance(choice, (dict, list)):
                raise UserInputError(f"{where}: {label} choice {literal(choice)} must be a single value")
            if (stage, key, choice) == NO_RULE:
                continue  # searched against the rules: that trial has no rewrite stage (Space.recipe)
            _check_value(cls, stage, key, choice, where, " choice")
        if len({json.dumps(c) for c in choices}) != len(choices):
            raise UserInputError(f"{where}: {label} choices name a value twice ({literal(choices)}): give each once")
        return Param(stage, key, choices=tuple(choices))
    kind = schema.get("type")
    if kind not in ("integer", "number"):
        raise UserInputError(f"{where}: {label} is {allowed(schema)}, not a number: give {{choices = [...]}}")
    if "low" not in spec or "high" not in spec:
        raise UserInputError(f"{where}: {label} range needs both low and high, got {_toml_inline(spec)}")
    low, high, step, log = spec["low"], spec["high"], spec.get("step"), spec.get("log", False)
    numbers = [("low", low), ("high", high)] + ([("step", step)] if step is not None else [])
    for name, value in numbers:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise UserInputError(f"{where}: {label} {name} must be a finite number, got {literal(value)}")
        if kind == "integer" and not isinstance(value, int):
            raise UserInputError(f"{where}: {label} is an integer option: {name} must be an integer, "
                                 f"got {literal(value)}")
    if not isinstance(log, bool):
        raise UserInputError(f"{where}: {label} log must be true or false, got {literal(log)}")
    if low >= high:
        which = "empty" if low == high else "inverted"
        raise UserInputError(f"{where}: {label} range is {which}: low {literal(low)} must be below high "
                             f"{literal(high)} (a single value is written {key} = {literal(low)})")
    for name, value in (("low", low), ("high", high)):
        _check_value(cls, stage, key, value, where, f" range {name}")
    if step is not None:
        if log:
            raise UserInputError(f"{where}: {label} takes step or log = true, not both")
        if step <= 0:
            raise UserInputError(f"{where}: {label} step must be > 0, got {literal(step)}")
        steps = (high - low) / step
        if steps < 1 - 1e-9 or abs(steps - round(steps)) > 1e-6:
            raise UserInputError(f"{where}: {label} range {literal(low)}..{literal(high)} is not a whole number "
                                 f"of steps {literal(step)}: make high = low + k * step")
    if log and low <= 0:
        raise UserInputError(f"{where}: {label} log range needs low > 0, got {literal(low)}")
    integer = kind == "integer"
    cast = int if integer else float
    return Param(stage, key, low=cast(low), high=cast(high), step=None if step is None else cast(step),
                 log=log, integer=integer)


def _toml_inline(spec: dict) -> str:
    return "{" + ", ".join(f"{k} = {literal(v)}" for k, v in spec.items()) + "}"


def recipe_toml(recipe: dict) -> str:
    """A recipe table as TOML text (scalars only, as recipes hold): what ``edgehad convert --recipe`` reads."""
    lines = [f"# {recipe.get('description', '')}".rstrip(), f"name = {_scalar(recipe['name'])}",
             f"description = {_scalar(recipe.get('description', ''))}", ""]
    if recipe.get("data"):
        lines.append("[data]")
        lines += [f"{k} = {_scalar(v)}" for k, v in recipe["data"].items()]
        lines.append("")
    for stage, opts in recipe["stages"].items():
        lines.append(f"[stages.{stage}]")
        lines += [f"{k} = {_scalar(v)}" for k, v in opts.items()]
        lines.append("")
    return "\n".join(lines)


def _scalar(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"a recipe holds no NaN or infinity, got {value}")
        return repr(value)
    if isinstance(value, str):
        # JSON's escapes are TOML basic-string escapes; TOML also wants DEL escaped, which JSON leaves
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    raise TypeError(f"a recipe value is a string, number or boolean, not {type(value).__name__}")
