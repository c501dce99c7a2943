"""Float16 weights, float32 inputs and outputs.

Each float32 weight is rounded to the nearest float16 (IEEE 754 binary16,
round to nearest even; 10 stored mantissa bits):

    w16 = fp16(w),    |w16 - w| <= 2^-11 * |w|   for 6.1e-5 <= |w| <= 65504

so the file is about half the size and each weight moves by at most ~0.05%.
Magnitudes beyond 65504 are clamped to it and those below 6e-8 flush to zero.
No data is needed.

What runs in float16 differs by format:
- TFLite: weights are stored float16 and a DEQUANTIZE op turns them back into
  float32 when the interpreter prepares; the arithmetic is float32 on CPU
  (same latency as fp32), float16 on LiteRT's GPU delegate.
- ONNX: the graph computes in float16 (Cast nodes at the float32 inputs and
  outputs). onnxruntime's CUDA / TensorRT providers run it in float16; its
  CPU provider puts Casts to float32 around ops it has no float16 kernel for.
  So a check on CPU does not show float16 overflow of intermediate values
  (|x| > 65504) that a GPU run would have: verify on the target, too.
"""

from __future__ import annotations

from pathlib import Path

from edgehad.quantize.dynamic import apply_tflite_recipe, rewrite_file


def tflite_fp16(float_tflite_path: str | Path, path: str | Path) -> Path:
    """Write a copy of the float .tflite ``float_tflite_path`` with float16 weights and float32 I/O.

    ai-edge-quantizer's weight-only ``FLOAT_CASTING`` at 16 bits casts the
    weights of every op it supports.
    """
    from ai_edge_quantizer import qtyping, recipe, recipe_manager

    manager = recipe_manager.RecipeManager()
    manager.add_weight_only_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                                   num_bits=16, algorithm_key=recipe.AlgorithmName.FLOAT_CASTING)
    return apply_tflite_recipe(float_tflite_path, path, manager.get_quantization_recipe(), "fp16")


def onnx_fp16(float_onnx_path: str | Path, path: str | Path) -> Path:
    """Write a float16 copy of the float ONNX file ``float_onnx_path`` to ``path`` (float32 I/O kept).

    Uses ``onnxruntime.transformers.float16.convert_float_to_float16`` with
    ``keep_io_types=True``; its default block list keeps ops without float16
    support (TopK, Range, CumSum, Min, Max, ...) in float32 behind Casts.
    """
    def convert(src, dst):
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16

        # a path (not a ModelProto) lets it run shape inference on files over 2 GB
        onnx.save(convert_float_to_float16(str(src), keep_io_types=True), str(dst))

    return rewrite_file(float_onnx_path, path, convert, "onnx", "fp16", "ONNX fp16 conversion failed (onnxruntime)")
