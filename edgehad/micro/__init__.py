"""TFLite Micro: which kernels a model needs, does it run under TFLM, and how big an arena it takes.

    import edgehad.micro
    result = edgehad.micro.check("model.tflite", find_arena=True)
    result["arena"]["recommended_bytes"], result["resolver"], result["parity"]["passed"]

Modules: ``ops`` (op list and MicroMutableOpResolver entries), ``probe`` (one
TFLM run in a child process), ``arena`` (probing and the bisection for the
smallest arena), ``samples`` (inputs and the LiteRT reference), ``checker`` (all
of it together). Importing this package imports nothing heavy: ``probe`` runs
as ``python -m edgehad.micro.probe`` and must start fast, and torch is never
needed here.
"""

from __future__ import annotations

__all__ = ["check"]


def check(path, arena_kb=None, find_arena=False, target=None, samples=8, progress=None) -> dict:
    """Run ``path`` under TFLite Micro; see :func:`edgehad.micro.checker.check` for the keys.

    ``progress``: called with a line of text per step (arena probes included), e.g. ``print``.
    """
    from edgehad.micro.checker import check as _check

    return _check(path, arena_kb=arena_kb, find_arena=find_arena, target=target, samples=samples,
                  progress=progress)
