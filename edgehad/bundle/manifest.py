"""``manifest.json``: what an app needs to run the model without reading the model again.

The keys are fixed by ``manifest.schema.json`` (JSON Schema 2020-12, shipped in
this package); every manifest ``bundle`` writes is validated against it before
the folder is put in place, and ``validate_manifest`` checks anyone's.

Quantization follows TFLite's affine scheme, ``real = (q - zero_point) * scale``.
"""

from __future__ import annotations

import functools
import hashlib
import json
from importlib import resources
from pathlib import Path

from edgehad.core.errors import UserInputError

SCHEMA_FILE = "manifest.schema.json"
SCHEMA_VERSION = 1


@functools.cache
def load_schema() -> dict:
    """The manifest's JSON Schema, read from the installed package."""
    return json.loads(resources.files("edgehad.bundle").joinpath(SCHEMA_FILE).read_text(encoding="utf-8"))


def validate_manifest(document, source: str = "manifest.json") -> dict:
    """``document`` (a dict, or the path of a manifest.json) if it follows the schema.

    Else UserInputError naming the first offending key path and what was
    wrong, e.g. ``manifest.json: at inputs/0/shape: 'x' is not of type 'array'``.
    """
    import jsonschema

    from edgehad.core.validation import first_non_finite

    if isinstance(document, (str, Path)):
        source = str(document)
        try:
            document = json.loads(Path(document).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise UserInputError(f"{source} cannot be read as JSON ({e}): check the file") from None
    bad = first_non_finite(document)  # JSON Schema's "number" lets NaN through; a manifest is strict JSON
    if bad is not None:
        raise UserInputError(f"{source} does not follow edgehad's bundle manifest schema: at {bad[0]}: "
                             f"{bad[1]} is not a finite number")
    validator = jsonschema.Draft202012Validator(load_schema())
    error = jsonschema.exceptions.best_match(validator.iter_errors(document))
    if error is not None:
        where = "/".join(map(str, error.absolute_path)) or "the top level"
        raise UserInputError(f"{source} does not follow edgehad's bundle manifest schema: at {where}: "
                             f"{error.message}")
    return document


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tensor_entry(spec: dict) -> dict:
    """One input/output as the schema wants it, from edgehad.inspection's description."""
    quant = spec.get("quantization")
    if quant and quant.get("scale"):
        quant = {"scale": float(quant["scale"]), "zero_point": int(quant["zero_point"])}
    else:
        quant = None
    shape = [d if isinstance(d, (int, str)) or d is None else int(d) for d in spec.get("shape") or []]
    entry = {"name": str(spec["name"]), "shape": shape, "dtype": str(spec["dtype"]), "quantization": quant}
    if spec.get("layout"):  # an image tensor of a .tflite edgehad wrote: "nchw" or "nhwc" (channels-last)
        entry["layout"] = str(spec["layout"])
    return entry


def output_size(spec: dict) -> int | None:
    """Elements per sample of an output: the product of its dimensions after the batch one.

    None when a dimension past the batch is not fixed (e.g. a sequence length).
    """
    shape = list(spec.get("shape") or [])
    size = 1
    for d in shape[1:] if len(shape) > 1 else shape:
        if not isinstance(d, int) or d < 0:
            return None
        size *= d
    return size
