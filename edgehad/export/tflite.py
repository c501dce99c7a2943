"""Export to TFLite with litert-torch (torch.export -> StableHLO/TFL -> flatbuffer)."""

from __future__ import annotations

from pathlib import Path

from edgehad.core.capture import captured
from edgehad.core.errors import ConversionError
from edgehad.core.files import atomic_path
from edgehad.export.lowering import unsupported_op_error


def export_tflite(model, example_inputs: tuple, path: str | Path, quant_config=None, layout: dict | None = None) -> Path:
    """Write ``model`` to ``path`` as a .tflite flatbuffer (float, or quantized with ``quant_config``).

    ``layout``: a record of edgehad.export.layout (``model_layout``); where it says "nhwc" the file takes
    and returns channels-last tensors. The record is not written into the file here: a file pass may
    follow, so the export stage stamps the final NHWC file (edgehad.export.layout.finish).
    """
    from edgehad.core.imports import require

    require("litert_torch")
    path = Path(path)
    if layout is not None and ("nhwc" in layout["inputs"] or "nhwc" in layout["outputs"]):
        from edgehad.export.layout import channels_last

        model, example_inputs = channels_last(model, tuple(example_inputs), layout)
    with captured(), atomic_path(path) as tmp:
        import litert_torch

        try:
            kwargs = {"quant_config": quant_config} if quant_config is not None else {}
            litert_model = litert_torch.convert(model, tuple(example_inputs), **kwargs)
            litert_model.export(str(tmp))
        except Exception as exc:
            err = unsupported_op_error("litert-torch", exc, model, example_inputs)
            if err is not None:
                raise err from exc
            first = next((ln for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
            raise ConversionError(f"TFLite export failed: {first[:300]}") from exc
    return path
