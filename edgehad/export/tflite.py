"""Export to TFLite with litert-torch (torch.export -> StableHLO/TFL -> flatbuffer)."""

from __future__ import annotations

from pathlib import Path

from edgehad.core import stop
from edgehad.core.capture import captured
from edgehad.core.files import atomic_path
from edgehad.export.lowering import export_error


def export_tflite(model, example_inputs: tuple, path: str | Path, quant_config=None, layout: dict | None = None,
                  dynamic_batch: bool = False) -> Path:
    """Write ``model`` to ``path`` as a .tflite flatbuffer (float, or quantized with ``quant_config``).

    ``layout``: a record of edgehad.export.layout (``model_layout``); where it says "nhwc" the file takes
    and returns channels-last tensors. The record is not written into the file here: a file pass may
    follow, so the export stage stamps the final NHWC file (edgehad.export.layout.finish).
    ``dynamic_batch``: dim 0 of every input is dynamic (``shape_signature`` -1, edgehad.export.batch);
    a model that fixes its batch is refused, and the outputs that follow the batch get -1 too
    (edgehad.export.batch.mark_tflite_batch; the export stage marks them again after a file pass).
    """
    from contextlib import nullcontext

    from edgehad.core.imports import require

    require("litert_torch")
    path = Path(path)
    kwargs, tracing = {}, nullcontext()
    if dynamic_batch:
        from edgehad.export.batch import unguarded

        model = unguarded(model)
    # an op that cannot be lowered is looked up in the user's model, not in the channels-last wrapper
    named = (model, tuple(example_inputs))
    if layout is not None and ("nhwc" in layout["inputs"] or "nhwc" in layout["outputs"]):
        from edgehad.export.layout import channels_last

        model, example_inputs = channels_last(model, tuple(example_inputs), layout)
    if dynamic_batch:  # on the inputs as the file takes them (NHWC keeps the batch first)
        from edgehad.export.batch import batch_shapes, size_oblivious

        kwargs["dynamic_shapes"], tracing = batch_shapes(model, tuple(example_inputs)), size_oblivious()
    if quant_config is not None:
        kwargs["quant_config"] = quant_config
    from edgehad.export.prelu import single_layer_prelu

    with captured(), atomic_path(path) as tmp, single_layer_prelu():
        import litert_torch

        try:
            with tracing, stop.held("litert-torch"):  # no KeyboardInterrupt inside its C++ (edgehad.core.stop)
                litert_model = litert_torch.convert(model, tuple(example_inputs), **kwargs)
            litert_model.export(str(tmp))
        except Exception as exc:
            raise export_error("litert-torch", "TFLite", exc, *named, dynamic_batch) from exc
        if dynamic_batch:
            from edgehad.export.batch import mark_tflite_batch

            mark_tflite_batch(tmp)
    return path
