"""The summary dict every inspector returns, and helpers the inspectors share.

Keys (stable; the CLI's ``inspect --json`` prints this dict):

- ``format``: "onnx", "tflite" or "torch"
- ``path``: the file inspected (None for a torch module)
- ``inputs``, ``outputs``: lists of ``{"name", "shape", "dtype"}``, plus
  ``"quantization": {"scale", "zero_point"}`` for quantized tensors (floats and
  ints per tensor; lists and an ``"axis"`` per channel). A shape is a list
  whose entries are ints, a string for a named dynamic dim (ONNX ``dim_param``)
  or None for an unknown one; the whole shape is None when the rank is unknown.
  dtypes are numpy-style names: "float32", "int8", "uint8", "int64"...
- ``ops``: ``{op: count}``, most frequent first (ties by name). ONNX: the
  node's op_type, prefixed with its domain outside the default one
  ("com.microsoft.FusedConv"); TFLite: the builtin operator's name
  ("CONV_2D"), "CUSTOM:<code>" for custom ops; torch: the aten ops one forward
  pass dispatched ("aten.convolution").
- ``params``: number of weight elements. Files: elements of constant tensors
  (ONNX initializers and Constant nodes, TFLite tensors with a data buffer)
  that hold floats or low-bit integers, or that carry quantization
  parameters (int32 biases of quantized models); integer shape / axis /
  index constants are not weights and are left out. Quantization scales and
  zero points count. torch: ``model.parameters()`` only (see edgehad.cost).
- ``macs``: multiply-accumulates of one inference (conventions in
  edgehad.cost) at ``input_shapes``. A file's symbolic input dims are never
  guessed: they come from `input_shape` / `inputs` (edgehad.inspection.inputs);
  without them ``macs`` is None and ``notes`` names each dim (the ``inspect``
  command refuses such a file instead, exit 2). Intermediate dims no shape
  inference can derive (data-dependent) count as 1, noted.
- ``input_shapes``: ``{input name: shape}`` the MACs were computed at: the
  file's static shapes, the stated ones, or the example inputs' (torch); None
  when MACs were not computed.
- ``size_bytes``: bytes on disk (ONNX: the file plus its external data files);
  torch: bytes of the parameters.
- ``quantized``: True if the model holds integer-quantized weights or ops
  (int8/uint8/int4 constants; QuantizeLinear, DequantizeLinear, QLinear*,
  *Integer ops; TFLite tensors with quantization parameters). fp16 weights
  alone do not make a model quantized: ``weight_dtypes`` shows them.
- ``weight_dtypes``: ``{dtype: elements}`` over the weights counted in ``params``.
- ``notes``: list of strings, caveats about the numbers above (dynamic dims,
  ops whose MACs are not modelled, missing external data).

Format-specific extras: ONNX ``opset``, ``ir_version``, ``producer``;
TFLite ``schema_version``, ``subgraphs``, ``signatures``, ``description``.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from pathlib import Path

from edgehad.core.errors import UserInputError

COMMON_KEYS = (
    "format",
    "path",
    "inputs",
    "outputs",
    "ops",
    "params",
    "macs",
    "input_shapes",
    "size_bytes",
    "quantized",
    "weight_dtypes",
    "notes",
)


def histogram(counts) -> dict:
    """``{name: count}`` most frequent first, ties by name (so output is deterministic)."""
    return {k: int(v) for k, v in sorted(Counter(counts).items(), key=lambda kv: (-kv[1], kv[0]))}


def quantization(scale, zero_point, axis=None) -> dict:
    """Quantization entry of a tensor: scalars per tensor, lists (and the axis) per channel."""
    scale = [float(s) for s in scale]
    zero_point = [int(z) for z in zero_point] or [0] * len(scale)
    if len(scale) == 1:
        return {"scale": scale[0], "zero_point": zero_point[0]}
    q = {"scale": scale, "zero_point": zero_point}
    if axis is not None:
        q["axis"] = int(axis)
    return q


def tensor_entry(name: str, shape, dtype: str, quant: dict | None = None) -> dict:
    entry = {"name": name, "shape": None if shape is None else list(shape), "dtype": dtype}
    if quant:
        entry["quantization"] = quant
    return entry


def numel(dims, dynamic: set) -> int | None:
    """Product of ``dims``; dynamic dims (str / None / negative) count as 1 and are added to ``dynamic``
    (a name, or "?"); None if the rank is unknown."""
    if dims is None:
        return None
    n = 1
    for d in dims:
        if isinstance(d, int) and d >= 0:
            n *= d
        else:
            dynamic.add(str(d) if isinstance(d, str) else "?")
    return n


class MacTally:
    """Adds up MACs node by node and remembers what it could not count exactly."""

    def __init__(self):
        self.macs = 0
        self.dynamic: set[str] = set()
        self.no_shape: Counter = Counter()
        self.uncounted: Counter = Counter()
        self.bounded: Counter = Counter()  # control flow whose MACs depend on the inputs (If, Loop)

    def numel(self, dims) -> int | None:
        """Product of ``dims``; dynamic dims (str / None / negative) count as 1; None if rank unknown."""
        return numel(dims, self.dynamic)

    def add(self, op: str, *factors) -> None:
        """Add ``prod(factors)`` for one ``op`` node; a None factor means its shapes are unknown."""
        if any(f is None for f in factors):
            self.no_shape[op] += 1
        else:
            self.macs += math.prod(factors)

    def skip(self, op: str) -> None:
        """An op that does arithmetic worth counting but has no cost model here."""
        self.uncounted[op] += 1

    def notes(self) -> list[str]:
        notes = []
        if self.dynamic:
            # the inputs are static or stated by then: these dims are ones shape inference could not follow
            notes.append(f"dims unknown after shape inference taken as 1 for MACs: {', '.join(sorted(self.dynamic))}")
        if self.no_shape:
            notes.append("MACs not counted, shapes unknown: " + _listing(self.no_shape))
        if self.uncounted:
            notes.append("MACs not modelled for: " + _listing(self.uncounted))
        if self.bounded:
            notes.append("MACs depend on the inputs: " + _listing(self.bounded))
        return notes


def _listing(counts: Counter) -> str:
    return ", ".join(f"{k} x{v}" for k, v in histogram(counts).items())


def check_file(path: str | os.PathLike) -> Path:
    """The path as a Path if it names a readable, existing file; else UserInputError."""
    p = Path(path)
    if not p.exists():
        raise UserInputError(f"{path}: no such file: check the path")
    if p.is_dir():
        raise UserInputError(f"{path} is a directory: pass a model file")
    return p


def invalid(path, kind: str, reason: str) -> UserInputError:
    """The one error for a file that is not a readable model of its kind."""
    reason = " ".join(str(reason).split())[:200] or "unreadable"
    return UserInputError(f"{path} is not a valid {kind} file ({reason}): re-export it")


def summary(
    *,
    format: str,
    path,
    inputs: list,
    outputs: list,
    ops,
    params: int,
    macs: int | None,
    size_bytes: int,
    quantized: bool,
    weight_dtypes,
    notes: list,
    input_shapes: dict | None = None,
    **extra,
) -> dict:
    """Assemble the summary dict with its keys in the documented order."""
    out = {
        "format": format,
        "path": None if path is None else str(path),
        "inputs": inputs,
        "outputs": outputs,
        "ops": histogram(ops),
        "params": int(params),
        "macs": None if macs is None else int(macs),
        "input_shapes": input_shapes,
        "size_bytes": int(size_bytes),
        "quantized": bool(quantized),
        "weight_dtypes": histogram(weight_dtypes),
        "notes": list(notes),
    }
    out.update(extra)
    return out
