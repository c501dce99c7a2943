"""Dynamic-range int8: int8 weights, activations quantized at run time.

Weights of Conv, Linear and MatMul-with-a-constant are stored as int8, one
scale per output channel c, symmetric (zero point 0):

    s_c = max|w_c| / 127,    w_q = round(w / s_c)  in [-127, 127]

Activations stay float in the file. At every inference the kernel computes the
scale of the tensor it receives from that tensor itself (ONNX
``DynamicQuantizeLinear``: uint8 over the whole tensor,
``s_x = (max(x, 0) - min(x, 0)) / 255``; LiteRT's dynamic-range kernels: int8
per row of the input), quantizes it, and computes

    y = s_x * s_c * sum_k (x_q - z_x) * w_q + b

in integers with a float rescale. No calibration data is needed (Jacob et al.
2018 for the integer arithmetic; TFLite "dynamic range quantization").

When it pays: models whose time goes into Linear / MatMul layers (transformers,
MLPs, RNNs). Measured on this machine class (1 thread): a 4-block transformer
encoder (seq 256, dim 256) runs 2.4x faster in LiteRT and 2.1x in onnxruntime
than fp32. On convnets it is slower than fp32 (MobileNetV2 224: LiteRT 2x,
onnxruntime's ``ConvInteger`` 7.6x): use static int8 there.

Per-channel caveat, ONNX: onnxruntime's dynamic quantizer gives MatMul / Gemm
weights one scale per output column but Conv weights (``ConvInteger``) one
scale per tensor.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from edgehad.core.capture import captured
from edgehad.core.errors import ConversionError, UserInputError
from edgehad.core.files import atomic_path


def tflite_dynamic_int8(model, example_inputs: tuple, path: str | Path) -> Path:
    """Write ``model`` as a dynamic-range int8 .tflite (int8 per-channel weights, float I/O).

    The model is converted to float TFLite with litert-torch, then
    ai-edge-quantizer's ``dynamic_wi8_afp32`` recipe quantizes every op it
    supports (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, BATCH_MATMUL with a
    constant operand, EMBEDDING_LOOKUP, ...).
    """
    from ai_edge_quantizer import recipe

    return apply_tflite_recipe(model, example_inputs, path, recipe.dynamic_wi8_afp32(), "dynamic int8")


def onnx_dynamic_int8(float_onnx_path: str | Path, path: str | Path) -> Path:
    """Write a dynamic int8 copy of the float ONNX file ``float_onnx_path`` to ``path``.

    onnxruntime's ``quantize_dynamic`` with int8 symmetric weights, per channel
    where it supports it (MatMul / Gemm; Conv is per tensor). Only MatMuls with a
    constant weight are quantized (``MatMulConstBOnly``, its default): attention's
    activation x activation products stay float.
    """
    def quantize(src, dst):
        from onnxruntime.quantization import QuantType, quantize_dynamic

        # No quant_pre_process: the dynamo exporter's graph is already optimized, and the
        # pre-processing's onnxruntime fusions would put com.microsoft ops into a portable file.
        quantize_dynamic(src, dst, weight_type=QuantType.QInt8, per_channel=True)

    return rewrite_onnx_file(float_onnx_path, path, quantize, "dynamic int8", "ONNX dynamic int8 quantization")


def rewrite_onnx_file(float_onnx_path, path, convert, scheme: str, what: str) -> Path:
    """Run ``convert(src, tmp)`` (an onnxruntime tool) into a temporary file; keep it only if it applied."""
    src = Path(float_onnx_path)
    if not src.is_file():
        raise UserInputError(f"{src}: no such ONNX file; export the float model first")
    path = Path(path)
    with captured(), atomic_path(path) as tmp:
        try:
            convert(src, tmp)
        except Exception as exc:
            raise ConversionError(f"{what} failed (onnxruntime): {first_line(exc)}") from exc
        check_applied(tmp, "onnx", scheme)
    return path


def apply_tflite_recipe(model, example_inputs: tuple, path: str | Path, recipe, scheme: str) -> Path:
    """Convert ``model`` to float TFLite, apply an ai-edge-quantizer ``recipe``, write ``path``.

    Why ai-edge-quantizer on the float file rather than litert-torch's PT2E
    dynamic config or its ``quant_recipes``: it starts from the same float
    flatbuffer edgehad exports and verifies, needs no strict ``torch.export``,
    and the ``quant_recipes`` are documented for Edge Generative API models only.
    On every zoo model the three gave the same ops and the same cosine to the
    float model within 2e-4.
    """
    from edgehad.export.tflite import export_tflite

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the float file goes beside the destination, not to /tmp: a large model may not fit there
    with tempfile.TemporaryDirectory(prefix=f".{path.name}.", dir=path.parent) as work:
        float_file = export_tflite(model, example_inputs, Path(work) / "float.tflite")
        with captured(), atomic_path(path) as tmp:
            from ai_edge_quantizer import quantizer

            try:
                result = quantizer.Quantizer(str(float_file), recipe).quantize(enable_progress_report=False)
            except Exception as exc:
                raise ConversionError(
                    f"TFLite {scheme} quantization failed (ai-edge-quantizer): {first_line(exc)}") from exc
            tmp.write_bytes(bytes(result.quantized_model))
            check_applied(tmp, "tflite", scheme)
    return path


def check_applied(file: Path, fmt: str, scheme: str) -> None:
    """Fail when the tool wrote the model back unchanged (it had no weight the scheme covers).

    ``fmt`` is "onnx" or "tflite" (``file`` is a temporary name without the suffix);
    ``scheme`` "fp16" needs float16 weights, any other scheme quantized ones.
    """
    if fmt == "onnx":
        from edgehad.inspection.onnx_file import inspect_onnx as inspect
    else:
        from edgehad.inspection.tflite_file import inspect_tflite as inspect
    info = inspect(file)
    ok = "float16" in info["weight_dtypes"] if scheme == "fp16" else info["quantized"]
    if not ok:
        raise ConversionError(
            f"{scheme}: the model has no weights this scheme applies to (ops: "
            f"{', '.join(info['ops']) or 'none'}); nothing would change, so no file was written. "
            "Use the float export for this model."
        )


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (a tool's multi-page error, in short)."""
    return next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)[:300]
