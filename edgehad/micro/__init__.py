"""TFLite Micro: which kernels a model needs, does it run under TFLM, and how big an arena it takes.

    import edgehad.micro
    result = edgehad.micro.check("model.tflite", find_arena=True)
    result["arena"]["recommended_bytes"], result["resolver"], result["parity"]["passed"]

Modules: ``ops`` (op list and MicroMutableOpResolver entries), ``probe`` (one
TFLM run in a child process), ``reference`` (LiteRT's outputs, in a child
process), ``arena`` (probing and the bisection for the smallest arena),
``samples`` (inputs, LiteRT's outputs, the comparison), ``checker`` (all of it
together). Every child has a time limit and dies with edgehad
(edgehad.core.children). Importing this package imports nothing heavy:
``probe`` runs as ``python -m edgehad.micro.probe`` and must start fast, and
torch is never needed here.
"""

from __future__ import annotations

__all__ = ["check"]


def check(path, arena_kb=None, find_arena=False, target=None, samples=8, progress=None, timeout=None,
          input_shape=None, inputs=None) -> dict:
    """Run ``path`` under TFLite Micro; see :func:`edgehad.micro.checker.check` for the keys.

    ``progress``: called with a line of text per step (arena probes included), e.g. ``print``.
    ``timeout``: seconds each TFLM or LiteRT child run may take (None: edgehad.micro.arena.PROBE_TIMEOUT_S).
    ``input_shape`` / ``inputs``: a file's symbolic input dims, or arrays by input name to compare on, as
    the file takes them (an NHWC .tflite's images channels-last: TFLM has no layout to apply, nothing is
    transposed).
    """
    from edgehad.core.imports import require
    from edgehad.micro.arena import PROBE_TIMEOUT_S
    from edgehad.micro.checker import check as _check

    require("tflite_micro")  # here, in edgehad's process: the probes that import it run as children

    return _check(path, arena_kb=arena_kb, find_arena=find_arena, target=target, samples=samples,
                  progress=progress, timeout=PROBE_TIMEOUT_S if timeout is None else timeout,
                  input_shape=input_shape, inputs=inputs)
