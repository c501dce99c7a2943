"""Quantization: int8 static (PT2E, quantized once, exported to both formats), int8-dynamic, fp16.

int8 static follows the PT2E flow: ``torch.export`` -> ``prepare_pt2e`` with
litert-torch's quantizer (per-channel symmetric int8 weights, per-tensor int8
activations) -> calibration -> ``convert_pt2e``. The same quantized graph is
exported to TFLite (litert-torch, full integer) and to ONNX (torch.onnx, then
the QDQ layout onnxruntime fuses: ``onnx_qdq``), so both files and the PyTorch
simulation agree.
"""
