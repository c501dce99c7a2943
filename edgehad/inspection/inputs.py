"""The shapes a file's inputs are taken at: its static dims, `input_shape`, or the arrays of `inputs`.

A file's symbolic dims (ONNX ``dim_param`` or unnamed dims, TFLite ``shape_signature`` -1) are never
guessed: ``inspect`` computes MACs, ``profile`` times and computes the roofline, and ``micro`` runs at
shapes that are static in the file or stated by the user. The rules (what a shape text looks like,
which names an input answers to, when a shape or an array fits, the message listing every dim left)
live in edgehad.runtime, because its Session applies them too on boards where edgehad is not
installed; this module reads a file's inputs without running it and turns the runtime's InputsError
into edgehad's UserInputError (exit 2).

An input's spec: ``{"name", "shape", "dtype", "quantization"?, "aliases"?}``, shape entries an int, a
dim name (str) or None. A TFLite input is named by its tensor, as ``inspect`` shows it, and also
answers to its signature name (``args_0``), as ``edgehad.runtime.Session`` names it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgehad.core.errors import UserInputError


@dataclass
class FileInputs:
    """Every input of one file at the shapes it is taken at; ``arrays`` (input order) when `inputs` gave them."""

    label: str
    specs: list
    shapes: list
    arrays: list | None = None
    source: str | None = None  # the .npz the arrays came from

    def by_name(self) -> dict:
        """``{input name: shape}``, in input order."""
        return {str(s["name"]): list(shape) for s, shape in zip(self.specs, self.shapes)}

    @property
    def dynamic(self) -> bool:
        """Whether any input of the file has a dim that is not static (then the shapes were stated)."""
        return any(s["shape"] is None or not all(isinstance(d, int) for d in s["shape"]) for s in self.specs)


def input_specs(path) -> list[dict]:
    """The inputs of an ``.onnx`` / ``.tflite`` file, read without running it (a bad file: UserInputError)."""
    from edgehad.inspection.report import check_file, invalid

    p = check_file(path)
    suffix = p.suffix.lower()
    if suffix == ".onnx":
        import onnx

        from edgehad.inspection.onnx_file import input_specs as onnx_specs

        try:
            model = onnx.load(str(p), load_external_data=False)
        except Exception as e:  # protobuf's DecodeError and friends: all mean "not an ONNX model"
            raise invalid(path, "ONNX", f"{type(e).__name__}: {e}") from None
        return onnx_specs(model)
    if suffix == ".tflite":
        from edgehad.inspection.tflite_file import input_specs as tflite_specs
        from edgehad.inspection.tflite_file import read

        _, _, (_, _, subgraphs, _) = read(p)
        return tflite_specs(subgraphs[0])
    raise UserInputError(f"{path}: cannot read the inputs of '{suffix or 'no extension'}' files; "
                         f"use .onnx or .tflite")


def resolve(specs: list, label, input_shape=None, inputs=None) -> FileInputs:
    """The shape of every input from ``specs`` (the file's), `input_shape` and `inputs` (an .npz path or a
    dict of arrays by input name); UserInputError naming what does not fit, or every dim left symbolic."""
    from edgehad.runtime import InputsError, fit_inputs, load_inputs, stated_shapes

    label = str(label)
    try:
        arrays, source = load_inputs(inputs) if inputs is not None else (None, None)
        stated = stated_shapes(input_shape, specs, label)
        shapes, feed = fit_inputs(specs, label, stated, arrays, source or "`inputs`")
    except InputsError as exc:
        raise UserInputError(str(exc)) from None
    return FileInputs(label, specs, shapes, feed, source if isinstance(inputs, (str, Path)) else None)


def shapes_for(specs: list, label, input_shape=None, inputs=None, require: bool = True):
    """``(FileInputs, None)``, or without `input_shape` / `inputs` and ``require`` False, ``(None, note)`` for a
    file with symbolic dims: the note says which, and that MACs were not computed (a library caller such
    as bundle reads the rest of the summary)."""
    try:
        return resolve(specs, label, input_shape, inputs), None
    except UserInputError as exc:
        if require or input_shape is not None or inputs is not None:
            raise
        return None, f"MACs not computed: {exc}"


def file_inputs(path, input_shape=None, inputs=None) -> FileInputs:
    """:func:`resolve` for the file at ``path``, named in messages as given."""
    return resolve(input_specs(path), path, input_shape, inputs)


def write_samples(stated: FileInputs, folder: Path) -> Path:
    """The profiling agent's ``--inputs`` archive for the arrays of `inputs`: one array per input, named for it,
    each holding one sample (``[1, *shape]``), the format the agent also reads for `data`."""
    import numpy as np

    path = Path(folder) / "inputs.npz"
    np.savez(path, **{str(spec["name"]): np.asarray(a)[None] for spec, a in zip(stated.specs, stated.arrays)})
    return path
