"""JSON that every reader accepts (RFC 8259): no NaN, no Infinity.

Python's ``json`` writes ``NaN`` and ``Infinity`` by default, which strict
parsers (JavaScript's ``JSON.parse``, jq, Go, Rust's serde) refuse. Inputs
that would bring NaN are refused where they are read (data, targets,
recipes); what remains non-finite is a measurement's own value, e.g. the SQNR
of two identical outputs (+inf dB). Such values are written as ``null``, and
the README's key tables say which keys can be null and why.
"""

from __future__ import annotations

import json
import math
from typing import Any


def finite(value: Any) -> Any:
    """``value`` with every non-finite float (numpy scalars too) replaced by None."""
    if isinstance(value, float) or type(value).__name__ in ("float32", "float64", "float16"):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def dumps(document: Any, **kwargs) -> str:
    """``json.dumps`` that can only produce standard JSON (``allow_nan=False`` after ``finite``)."""
    kwargs.setdefault("default", str)
    return json.dumps(finite(document), allow_nan=False, **kwargs)
