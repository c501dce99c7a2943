"""What a search optimizes and what it must not exceed: objectives, the budget, and its constraints.

An objective names a metric of a trial and the way it should go:

    accuracy  top-1 on the val split, measured from the exported file   maximize
    latency   p50 latency_ms on the target (measured, emulated or estimate)  minimize
    size      size_kb of the exported file                                minimize
    ram       ram_kb: TFLite Micro's tensor arena for the file (MCU targets)  minimize
    flash     flash_kb: the file as an MCU's flash holds it (MCU targets)     minimize

``ram_kb`` and ``flash_kb`` are what ``edgehad micro --find-arena --target T`` checks against a
microcontroller's RAM and flash: the recommended arena (the smallest that works, bisected under TFLM,
plus 10%, in whole KiB) and the .tflite file's size. They are measured for an MCU target (a target
description with ``flash_kb``: a board without a file system), from the trial's int8 .tflite file.

The budget bounds metrics: ``latency_ms=5,size_kb=300,ram_kb=256,flash_kb=1024`` (most) and
``accuracy=0.95`` (least). Each bound
is one constraint in Optuna's convention, ``c <= 0`` feasible (Deb et al., "A fast and elitist multiobjective
genetic algorithm: NSGA-II", IEEE TEVC 6(2), 2002, constrained domination): ``c = value - limit`` for a
most, ``c = limit - value`` for a least. A trial over budget is still a finished trial: its metrics guide
the sampler, and it is never on the front.
"""

from __future__ import annotations

import math

from edgehad.core.errors import UserInputError

# objective -> (metric key, direction)
OBJECTIVES = {"accuracy": ("accuracy", "maximize"), "latency": ("latency_ms", "minimize"),
              "size": ("size_kb", "minimize"), "ram": ("ram_kb", "minimize"), "flash": ("flash_kb", "minimize")}
# budget key -> "most" (value <= limit) or "least" (value >= limit)
BUDGET_KEYS = {"latency_ms": "most", "size_kb": "most", "ram_kb": "most", "flash_kb": "most", "accuracy": "least"}
# what TFLite Micro measures (edgehad.api.micro): only an MCU target has them
MICRO_KEYS = ("ram_kb", "flash_kb")
DEFAULT_OBJECTIVES = ("accuracy", "latency", "size")


def parse_objectives(objectives) -> tuple[str, ...]:
    """``"accuracy,latency"`` or a sequence of names -> a tuple of known, distinct objective names."""
    names = [n.strip() for n in objectives.split(",")] if isinstance(objectives, str) else list(objectives or ())
    names = [n for n in names if n]
    if not names:
        raise UserInputError(f"`objectives` is empty: give one or more of {', '.join(OBJECTIVES)}")
    for name in names:
        if name not in OBJECTIVES:
            raise UserInputError(f"unknown objective {name!r} in `objectives`: use {', '.join(OBJECTIVES)}")
    if len(set(names)) != len(names):
        raise UserInputError(f"`objectives` names an objective twice ({','.join(names)}): give each once")
    return tuple(names)


def parse_budget(budget) -> dict[str, float]:
    """``"latency_ms=5,size_kb=300"`` or a dict -> ``{key: limit}``, every key known and every limit finite."""
    if budget is None:
        return {}
    if isinstance(budget, str):
        pairs = {}
        for part in (p.strip() for p in budget.split(",")):
            if not part:
                continue
            key, sep, value = part.partition("=")
            if not sep:
                raise UserInputError(f"`budget` part {part!r} is not KEY=VALUE: e.g. latency_ms=5,size_kb=300")
            key = key.strip()
            if key in pairs:
                raise UserInputError(f"`budget` names {key} twice: give each bound once")
            try:
                pairs[key] = float(value)
            except ValueError:
                raise UserInputError(f"`budget` {key}={value.strip()}: the limit must be a number") from None
        budget = pairs
    if not isinstance(budget, dict):
        raise UserInputError("`budget` must be KEY=VALUE,... (e.g. latency_ms=5,size_kb=300) or a dict")
    out = {}
    for key, value in budget.items():
        if key not in BUDGET_KEYS:
            raise UserInputError(f"unknown `budget` key {key!r}: use {', '.join(BUDGET_KEYS)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise UserInputError(f"`budget` {key} must be a finite number, got {value!r}")
        if value < 0 or (key == "accuracy" and value > 1):
            span = "in [0, 1] (a fraction: 0.95 is 95%)" if key == "accuracy" else ">= 0"
            raise UserInputError(f"`budget` {key} must be {span}, got {value:g}")
        out[key] = float(value)
    return out


def needs_latency(objectives, budget: dict) -> bool:
    """Whether trials must time their file: profiling costs device time, so only when something reads it."""
    return "latency" in objectives or "latency_ms" in budget


def needs_micro(objectives, budget: dict) -> list[str]:
    """The objectives and budget keys that read TFLite Micro's figures (``ram``, ``flash_kb``...), as named."""
    return [n for n in objectives if OBJECTIVES[n][0] in MICRO_KEYS] + [k for k in budget if k in MICRO_KEYS]


def is_mcu(target: dict) -> bool:
    """A microcontroller: a target description that states its flash (boards with a file system have none)."""
    return bool(target.get("flash_kb"))


def values(metrics: dict, objectives) -> list[float] | None:
    """The objective values of one trial in Optuna's order, or None when a metric is missing."""
    out = []
    for name in objectives:
        value = metrics.get(OBJECTIVES[name][0])
        if value is None or not math.isfinite(value):
            return None
        out.append(float(value))
    return out


def constraints(metrics: dict, budget: dict) -> dict[str, float]:
    """``{key: c}`` with ``c <= 0`` where the bound holds (Optuna's convention)."""
    out = {}
    for key, limit in budget.items():
        value = metrics[key]
        out[key] = value - limit if BUDGET_KEYS[key] == "most" else limit - value
    return out


def broken_bounds(metrics: dict, budget: dict) -> list[str]:
    """The bounds a trial breaks, in words: ``["latency_ms 7.12 > 5"]``."""
    said = []
    for key, c in constraints(metrics, budget).items():
        if c > 0:
            sign = ">" if BUDGET_KEYS[key] == "most" else "<"
            said.append(f"{key} {metrics[key]:.4g} {sign} {budget[key]:g}")
    return said
