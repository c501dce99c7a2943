"""Export to ONNX with the torch.onnx dynamo exporter (torch.export -> ONNX)."""

from __future__ import annotations

from pathlib import Path

from edgehad.core.capture import captured
from edgehad.core.errors import ConversionError
from edgehad.core.files import atomic_path
from edgehad.export.lowering import unsupported_op_error

DEFAULT_OPSET = 18


def export_onnx(model, example_inputs: tuple, path: str | Path, opset: int = DEFAULT_OPSET,
                postprocess=None, output_names: list[str] | None = None) -> Path:
    """Write ``model`` to ``path`` as ONNX; raises UnsupportedOpError naming the op and module.

    ``postprocess(model_proto)`` may rewrite the graph in place before it is
    saved (the int8 path uses it to reach onnxruntime's fused kernels).
    ``output_names`` names the graph outputs (the COSTARR head's ``logits``, ``known_score``).
    """
    import torch

    path = Path(path)
    with captured() as log, atomic_path(path) as tmp:
        try:
            program = torch.onnx.export(model, tuple(example_inputs), dynamo=True, opset_version=opset,
                                        output_names=output_names,
                                        optimize=True, verbose=False)
            if postprocess is None:
                program.save(str(tmp))
            else:
                import onnx

                proto = program.model_proto
                postprocess(proto)
                onnx.save(proto, str(tmp))
        except Exception as exc:
            err = unsupported_op_error("torch.onnx", exc, model, example_inputs)
            if err is not None:
                raise err from exc
            raise ConversionError(f"ONNX export failed: {_summary(exc)}") from exc
    del log
    return path


def _summary(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for ln in lines:
        if "Error" in ln and ":" in ln:
            return ln[:300]
    return (lines[0] if lines else type(exc).__name__)[:300]
