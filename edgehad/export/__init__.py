"""Exporters (torch.onnx dynamo, litert-torch) and the runtime parity check."""
