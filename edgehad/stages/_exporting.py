"""What both export stages share: file naming, carrying out the quantization plan, reference outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from edgehad.core.artifact import ExportedFile
from edgehad.export.verify import torch_outputs

SUFFIX = {"onnx": ".onnx", "tflite": ".tflite"}


def add_export(artifact, ctx, fmt: str, stage: str, export: Callable[[Path], object],
               file_pass: Callable[[Path, Path], object] | None = None, dynamic_batch: bool = False):
    """Write ``model.<variant>.<fmt>`` with ``export(path)``, then ``file_pass(exported, path)`` when given.

    The file pass is the quantize stage's tool for this format (its plan): the
    exported file goes to a hidden name beside the destination (the staging
    folder, not /tmp: a large model may not fit there) and is removed after.
    ``dynamic_batch``: the file takes any batch, so the torch outputs at batch BATCH are recorded too
    (edgehad.export.batch), for verification to compare it at both batch sizes.
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
    if dynamic_batch:
        file.batch_reference = batch_reference(artifact.model, artifact.sample_inputs)
    artifact.files.append(file)
    return artifact


def batch_reference(model, sample_inputs: list[tuple]) -> list:
    """The torch outputs of ``model`` on the first BATCH samples as one batch (edgehad.export.batch)."""
    from edgehad.core.errors import UserInputError
    from edgehad.export.batch import BATCH, batched, unguarded

    try:
        return torch_outputs(unguarded(model), [batched(sample_inputs)])
    except Exception as exc:  # the file took the batch; the torch model itself does not
        said = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
        raise UserInputError(f"`dynamic_batch`: the torch model fails at batch {BATCH} ({said[:200]}), so no "
                             "file of it can be verified there: make it batch-agnostic, or drop "
                             "`dynamic_batch`") from exc
