"""Inspect a torch module: one counted forward pass on example inputs (edgehad.cost)."""

from __future__ import annotations

from collections import Counter

from edgehad.cost import count_forward
from edgehad.inspection.report import quantization, summary, tensor_entry

# Op namespaces that only quantized graphs dispatch to: eager quantized modules
# (quantized::conv2d ...) and PT2E's quantize/dequantize ops.
_QUANT_NAMESPACES = ("quantized.", "quantized_decomposed.")


def _dtype(t) -> str:
    return str(t.dtype).removeprefix("torch.")


def _entry(name: str, t) -> dict:
    import torch

    q = None
    if t.is_quantized:
        if t.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
            q = quantization([t.q_scale()], [t.q_zero_point()])
        else:
            q = quantization(t.q_per_channel_scales().tolist(), t.q_per_channel_zero_points().tolist(),
                             t.q_per_channel_axis())
    return tensor_entry(name, [int(d) for d in t.shape], _dtype(t), q)


def inspect_torch(model, example_inputs) -> dict:
    """Summary of a torch module run once on ``example_inputs`` (keys in edgehad.inspection.report).

    ``params`` counts parameters only (not buffers), ``size_bytes`` their bytes;
    ``ops`` are the aten ops the forward pass dispatched; MACs as in edgehad.cost.
    """
    import torch

    if isinstance(model, torch.export.ExportedProgram):
        model = model.module()
    fwd = count_forward(model, example_inputs)

    weight_dtypes, size = Counter(), 0
    for p in model.parameters():
        weight_dtypes[_dtype(p)] += p.numel()
        size += p.numel() * p.element_size()

    low_bit = {torch.int8, torch.uint8, torch.qint8, torch.quint8, torch.quint4x2}
    tensors = [*model.parameters(), *model.buffers()]
    quantized = (
        any(t.is_quantized or t.dtype in low_bit for t in tensors)
        or any(op.startswith(_QUANT_NAMESPACES) for op in fwd.ops)
        or any(_is_quantized_module(m) for m in model.modules())
    )

    return summary(
        format="torch",
        path=None,
        inputs=[_entry(name, t) for name, t in fwd.inputs if isinstance(t, torch.Tensor)],
        outputs=[_entry(f"output_{i}", t) for i, t in enumerate(fwd.outputs)],
        ops=fwd.ops,
        params=sum(weight_dtypes.values()),
        macs=fwd.macs,
        input_shapes={name: [int(d) for d in t.shape] for name, t in fwd.inputs if isinstance(t, torch.Tensor)},
        size_bytes=size,
        quantized=quantized,
        weight_dtypes=weight_dtypes,
        notes=_notes(fwd.ops),
    )


def _is_quantized_module(m) -> bool:
    # FloatFunctional lives among the quantized modules but is the float placeholder.
    cls = type(m)
    return cls.__module__.startswith("torch.ao.nn.quantized") and cls.__name__ != "FloatFunctional"


def _notes(ops) -> list[str]:
    quant_ops = sorted(op for op in ops if op.startswith("quantized."))
    if quant_ops:
        return [f"MACs not modelled for eager quantized ops: {', '.join(quant_ops)}"]
    return []
