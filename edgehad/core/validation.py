"""One way to check user-given settings: JSON Schema (Draft 2020-12) via jsonschema.

Recipes, targets, hosts and manifests are all plain dicts once parsed (TOML or
JSON), so one schema language and one library check them all. Two things
JSON Schema does not say are added here:

- a non-finite float (TOML accepts ``nan`` and ``inf``; ``"type": "number"``
  lets them through) is refused everywhere: no setting means NaN, and a NaN
  or infinity would end as non-standard JSON in a report;
- the error is one line that names the key (``stages.verify.rtol``), what is
  allowed and the value given (``stages.verify.rtol must be >= 0, got -1``),
  so the user knows what to change. Values are written as TOML/JSON literals
  (``true``, ``"17"``), the way the user typed them, not as Python reprs.
"""

from __future__ import annotations

import json
import math
from typing import Any

from edgehad.core.errors import UserInputError

# keywords whose failure is described by what the schema allows, in words
_RANGE = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
_VALUE = ("type", "enum", "const", "minLength", *_RANGE)
_TYPE_WORDS = {"integer": "an integer", "number": "a number", "string": "a string", "boolean": "true or false",
               "object": "a table", "array": "a list", "null": "null"}


def check(instance: Any, schema: dict, source: str = "") -> None:
    """Raise ``UserInputError`` naming the first offending key unless ``instance`` fits ``schema``.

    The message is ``SOURCE: KEY must be ALLOWED, got VALUE`` (no prefix when ``source`` is empty).
    """
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    prefix = f"{source}: " if source else ""
    bad = first_non_finite(instance)
    if bad is not None:
        where, value = bad
        raise UserInputError(f"{prefix}{where or 'the value'} must be a finite number, got {value}")
    error = best_match(Draft202012Validator(schema).iter_errors(instance))
    if error is not None:
        raise UserInputError(f"{prefix}{describe(error)}")


def check_setting(label: str, value: Any, schema: dict, note: str = "") -> None:
    """One setting (a flag, an API argument) against its schema fragment.

    Any refusal, NaN and infinity included, reads ``LABEL must be ALLOWED, got VALUE`` with the
    whole allowed range (plus `` (NOTE)``, why the range ends there), so the user sees what to give.
    """
    try:
        check({label: value}, {"type": "object", "properties": {label: schema}})
    except UserInputError:
        suffix = f" ({note})" if note else ""
        raise UserInputError(f"{label} must be {allowed(schema)}, got {literal(value)}{suffix}") from None


def as_declared(schema: dict, value: Any) -> Any:
    """``value`` as the Python type its schema names, once it fits the schema.

    JSON Schema calls 18.0 an integer and 1 a number; code that does arithmetic or
    passes the value on to a library wants an int (range, opset) or a float.
    """
    if schema.get("type") == "integer" and isinstance(value, float):
        return int(value)
    if schema.get("type") == "number" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def describe(error) -> str:
    """One line for one jsonschema error: the key path, what is allowed, the value given."""
    where = key_path(error.absolute_path)
    if error.validator in _VALUE and isinstance(error.schema, dict):
        return f"{where or 'the value'} must be {allowed(error.schema, range_only=error.validator in _RANGE)}, " \
               f"got {literal(error.instance)}"
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = sorted(error.schema.get("properties", {}))
        extra = sorted(k for k in error.instance if k not in known)
        if extra:
            key = f"{where}.{extra[0]}" if where else str(extra[0])
            return f"unknown key {key!r}: valid keys are {', '.join(known) or 'none'}"
    message = " ".join(str(error.message).split())
    if len(message) > 200:
        message = message[:197] + "..."
    return f"{where}: {message}" if where else message


def allowed(schema: dict, range_only: bool = False) -> str:
    """What ``schema`` accepts, in words: ``an integer in [18, 25]``, ``one of "int8", "fp16"``, ``>= 1``.

    ``range_only``: the value has the right type and only its range is wrong, so say just the range.
    """
    if "enum" in schema:
        return "one of " + ", ".join(literal(v) for v in schema["enum"])
    if "const" in schema:
        return literal(schema["const"])
    span = _range(schema)
    if range_only and span:
        return span
    types = schema.get("type")
    words = " or ".join(_TYPE_WORDS.get(t, t) for t in ([types] if isinstance(types, str) else types or []))
    if types == "string" and schema.get("minLength") == 1:
        words = "a non-empty string"
    return " ".join(w for w in (words or "a valid value", span) if w)


def _range(schema: dict) -> str:
    low, high = schema.get("minimum"), schema.get("maximum")
    xlow, xhigh = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    lo = (xlow, "(") if xlow is not None else (low, "[") if low is not None else None
    hi = (xhigh, ")") if xhigh is not None else (high, "]") if high is not None else None
    if lo and hi:
        return f"in {lo[1]}{lo[0]}, {hi[0]}{hi[1]}"
    if lo:
        return f"{'>' if lo[1] == '(' else '>='} {lo[0]}"
    if hi:
        return f"{'<' if hi[1] == ')' else '<='} {hi[0]}"
    return ""


def literal(value: Any) -> str:
    """``value`` as the user wrote it in TOML or JSON (``true``, ``"17"``, ``-5``), cut to 80 characters."""
    try:
        text = json.dumps(value, allow_nan=True)
    except (TypeError, ValueError):  # a TOML date or time: as TOML writes it
        text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def key_path(parts) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def first_non_finite(value: Any, where: str = "") -> tuple[str, float] | None:
    """The key path and value of the first NaN or infinity in a nested dict/list, else None."""
    if isinstance(value, float) and not math.isfinite(value):
        return where, value
    if isinstance(value, dict):
        items = ((f"{where}.{k}" if where else str(k), v) for k, v in value.items())
    elif isinstance(value, (list, tuple)):
        items = ((f"{where}[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    for path, item in items:
        found = first_non_finite(item, path)
        if found is not None:
            return found
    return None
