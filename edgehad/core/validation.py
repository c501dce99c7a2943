"""One way to check user-given settings: JSON Schema (Draft 2020-12) via jsonschema.

Recipes, targets, hosts and manifests are all plain dicts once parsed (TOML or
JSON), so one schema language and one library check them all. Two things
JSON Schema does not say are added here:

- a non-finite float (TOML accepts ``nan`` and ``inf``; ``"type": "number"``
  lets them through) is refused everywhere: no setting means NaN, and a NaN
  or infinity would end as non-standard JSON in a report;
- the error is one line that names the key (``stages.verify.rtol``), the
  value, and what is allowed, so the user knows what to change.
"""

from __future__ import annotations

import math
from typing import Any

from edgehad.core.errors import UserInputError


def check(instance: Any, schema: dict, source: str) -> None:
    """Raise ``UserInputError`` naming the first offending key unless ``instance`` fits ``schema``."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    bad = first_non_finite(instance)
    if bad is not None:
        where, value = bad
        raise UserInputError(f"{source}: {where or 'value'} is {value}: give a finite number")
    error = best_match(Draft202012Validator(schema).iter_errors(instance))
    if error is not None:
        raise UserInputError(f"{source}: {describe(error)}")


def describe(error) -> str:
    """``key.path: message`` for one jsonschema error, kept to a line."""
    where = key_path(error.absolute_path)
    message = " ".join(str(error.message).split())
    if len(message) > 200:
        message = message[:197] + "..."
    return f"{where}: {message}" if where else message


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
