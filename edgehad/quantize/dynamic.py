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

from pathlib import Path

from edgehad.core.capture import captured
from edgehad.core.errors import ConversionError, UserInputError
from edgehad.core.files import atomic_path


def tflite_dynamic_int8(float_tflite_path: str | Path, path: str | Path) -> Path:
    """Write a dynamic-range int8 copy of the float .tflite ``float_tflite_path`` (float I/O kept).

    ai-edge-quantizer's ``dynamic_wi8_afp32`` recipe quantizes every op it
    supports (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, BATCH_MATMUL with a
    constant operand, EMBEDDING_LOOKUP, ...).
    """
    from ai_edge_quantizer import recipe

    return apply_tflite_recipe(float_tflite_path, path, recipe.dynamic_wi8_afp32(), "dynamic int8")


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

    return rewrite_file(float_onnx_path, path, quantize, "onnx", "dynamic int8",
                        "ONNX dynamic int8 quantization failed (onnxruntime)")


def apply_tflite_recipe(float_tflite_path: str | Path, path: str | Path, recipe, scheme: str) -> Path:
    """Apply an ai-edge-quantizer ``recipe`` to the float .tflite ``float_tflite_path``, write ``path``.

    Why ai-edge-quantizer on the float file rather than litert-torch's PT2E
    dynamic config or its ``quant_recipes``: it starts from the same float
    flatbuffer edgehad exports and verifies, needs no strict ``torch.export``,
    and the ``quant_recipes`` are documented for Edge Generative API models only.
    On every zoo model the three gave the same ops and the same cosine to the
    float model within 2e-4.
    """
    def quantize(src, dst):
        from ai_edge_quantizer import quantizer

        result = quantizer.Quantizer(str(src), recipe).quantize(enable_progress_report=False)
        Path(dst).write_bytes(bytes(result.quantized_model))

    return rewrite_file(float_tflite_path, path, quantize, "tflite", scheme,
                        f"TFLite {scheme} quantization failed (ai-edge-quantizer)")


def rewrite_file(src_path, path, convert, fmt: str, scheme: str, failed: str) -> Path:
    """Run ``convert(src, tmp)`` (a format's own tool) into a temporary file; keep it only if it applied.

    ``fmt`` is "onnx" or "tflite"; ``failed`` begins the error when the tool raises.
    """
    src = Path(src_path)
    if not src.is_file():
        raise UserInputError(f"{src}: no such {'ONNX' if fmt == 'onnx' else 'TFLite'} file; "
                             "export the float model first")
    path = Path(path)
    with captured(), atomic_path(path) as tmp:
        try:
            convert(src, tmp)
        except Exception as exc:
            raise ConversionError(f"{failed}: {first_line(exc)}") from exc
        check_applied(tmp, fmt, scheme)
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
