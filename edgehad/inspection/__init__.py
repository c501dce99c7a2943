"""Look inside a model: what goes in and out, which ops, how many weights and MACs.

``inspect_file(path)`` reads an ``.onnx`` or ``.tflite`` file without running
it (MACs at its static input shapes, or at those ``input_shape`` / ``inputs``
state for its symbolic dims: edgehad.inspection.inputs);
``inspect_torch(model, example_inputs)`` runs a torch module once. Both
return the same dict; its keys are documented in ``edgehad.inspection.report``:
``format, path, inputs, outputs, ops, params, macs, input_shapes, size_bytes,
quantized, weight_dtypes, notes`` plus a few format-specific extras (ONNX ``opset``,
``ir_version``, ``producer``; TFLite ``schema_version``, ``subgraphs``,
``signatures``, ``description``).

A missing, empty, truncated or corrupt file raises UserInputError with a
one-line message; no input makes this module crash the process.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgehad.core.errors import UserInputError
from edgehad.inspection.report import COMMON_KEYS, check_file

__all__ = ["COMMON_KEYS", "SUPPORTED_SUFFIXES", "inspect_file", "inspect_torch"]

SUPPORTED_SUFFIXES = (".onnx", ".tflite")


def inspect_file(path: str | os.PathLike, *, input_shape=None, inputs=None, require_shapes: bool = False) -> dict:
    """Summary of an ``.onnx`` or ``.tflite`` file.

    ``input_shape`` ("images=1x3x640x640", a bare shape for one input, a list or a dict) and ``inputs`` (an
    .npz or a dict of arrays by input name) fill symbolic dims; with neither, a file that has some gets
    ``macs`` None and a note naming them, or a UserInputError with ``require_shapes`` (the command's way).
    """
    suffix = Path(path).suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise UserInputError(
            f"{path}: cannot inspect '{suffix or 'no extension'}' files; supported: "
            f"{', '.join(SUPPORTED_SUFFIXES)} (for a PyTorch model use inspect_torch(model, example_inputs))"
        )
    check_file(path)
    if suffix == ".onnx":
        from edgehad.inspection.onnx_file import inspect_onnx

        return inspect_onnx(path, input_shape, inputs, require_shapes)
    from edgehad.inspection.tflite_file import inspect_tflite

    return inspect_tflite(path, input_shape, inputs, require_shapes)


def inspect_torch(model, example_inputs) -> dict:
    """Summary of a torch module run once on ``example_inputs`` (a tensor, a tuple, or a dict)."""
    from edgehad.inspection.torch_model import inspect_torch as _inspect_torch

    return _inspect_torch(model, example_inputs)
