"""What both export stages share: file naming, the quantization scheme, reference outputs."""

from __future__ import annotations

from edgehad.core.artifact import ExportedFile
from edgehad.export.verify import torch_outputs

SUFFIX = {"onnx": ".onnx", "tflite": ".tflite"}


def quant_scheme(artifact) -> str:
    return (artifact.extra.get("quant") or {}).get("scheme", "none")


def add_export(artifact, ctx, fmt: str, stage: str, write):
    path = ctx.workdir / f"model.{artifact.variant}{SUFFIX[fmt]}"
    ctx.progress(f"{stage}: writing {path.name}")
    write(path)
    exported = ExportedFile(format=fmt, variant=artifact.variant, stage=stage, path=path)
    # the torch model this file must match: recorded now, because later stages may change the model
    exported.reference = torch_outputs(artifact.model, artifact.sample_inputs)
    artifact.files.append(exported)
    return artifact
