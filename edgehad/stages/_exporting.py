"""What both export stages share: file naming, carrying out the quantization plan, reference outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from edgehad.core.artifact import ExportedFile
from edgehad.export.verify import torch_outputs

SUFFIX = {"onnx": ".onnx", "tflite": ".tflite"}


def add_export(artifact, ctx, fmt: str, stage: str, export: Callable[[Path], object],
               file_pass: Callable[[Path, Path], object] | None = None):
    """Write ``model.<variant>.<fmt>`` with ``export(path)``, then ``file_pass(exported, path)`` when given.

    The file pass is the quantize stage's tool for this format (its plan): the
    exported file goes to a hidden name beside the destination (the staging
    folder, not /tmp: a large model may not fit there) and is removed after.
    """
    path = ctx.workdir / f"model.{artifact.variant}{SUFFIX[fmt]}"
    ctx.progress(f"{stage}: writing {path.name}")
    if file_pass is None:
        export(path)
    else:
        exported = path.with_name(f".{path.stem}.exported{path.suffix}")
        try:
            export(exported)
            file_pass(exported, path)
        finally:
            exported.unlink(missing_ok=True)
    file = ExportedFile(format=fmt, variant=artifact.variant, stage=stage, path=path)
    # the torch model this file must match: recorded now, because later stages may change the model
    file.reference = torch_outputs(artifact.model, artifact.sample_inputs)
    artifact.files.append(file)
    return artifact
