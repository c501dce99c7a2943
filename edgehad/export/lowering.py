"""Turn an exporter's failure into a message that names the op and its module.

Both exporters name the op they could not lower (torch.onnx: "No ONNX function
found for <OpOverload(op='prims.bessel_j0'...)>", litert-torch: "Lowering not
found: aten.special_bessel_j0.default"), but not where it came from in the
user's model. We trace the model with torch.export and look the op up in the
graph: each node's ``nn_module_stack`` gives the module path.
"""

from __future__ import annotations

import re

from edgehad.core import stop
from edgehad.core.errors import ConversionError, UnsupportedOpError

_OP_PATTERNS = [
    re.compile(r"Lowering not found: ([\w.:]+)"),
    re.compile(r"No ONNX function found for <OpOverload\(op='([\w.:]+)'"),
    re.compile(r"target=torch\.ops\.([\w.]+)"),
    re.compile(r"\b((?:aten|prims)\.\w+)"),
]


def failed_op(message: str) -> str | None:
    for pattern in _OP_PATTERNS:
        m = pattern.search(message)
        if m:
            op = m.group(1)
            return re.sub(r"\.(default|Tensor|Scalar|int)$", "", op)
    return None


def module_of_op(model, example_inputs, op: str) -> str | None:
    """The module path (``body.1 (Odd)``) of the first graph node whose op matches ``op``."""
    import torch

    base = op.split(".")[-1].split("::")[-1]
    try:
        with stop.held("torch.export"):  # no KeyboardInterrupt inside its C++ (edgehad.core.stop)
            program = torch.export.export(model, tuple(example_inputs), strict=False)
    except Exception:
        return None
    for node in program.graph.nodes:
        if node.op != "call_function" or base not in str(node.target):
            continue
        stack = node.meta.get("nn_module_stack") or {}
        if not stack:
            return "<top level>"
        path, cls = list(stack.values())[-1]
        cls_name = cls if isinstance(cls, str) else getattr(cls, "__name__", str(cls))
        return f"{path or '<top level>'} ({cls_name.rsplit('.', 1)[-1]})"
    return None


def unsupported_op_error(exporter: str, exc: BaseException, model, example_inputs) -> UnsupportedOpError | None:
    """An UnsupportedOpError if ``exc`` is an exporter's "cannot lower op X", else None."""
    message = str(exc)
    if "Lowering not found" not in message and "No ONNX function found" not in message \
            and "not supported" not in message.lower():
        return None
    op = failed_op(message)
    if op is None:
        return None
    where = module_of_op(model, example_inputs, op)
    place = f" in module {where}" if where else ""
    return UnsupportedOpError(
        f"{exporter} cannot lower op {op}{place}: replace it with supported ops or drop this format with `formats`"
    )


def export_error(exporter: str, fmt: str, exc: BaseException, model, example_inputs,
                 dynamic_batch: bool = False) -> Exception:
    """The one error for an exporter (``exporter``: "torch.onnx", "litert-torch") that raised ``exc``: the
    model fixing its batch when ``dynamic_batch`` was asked for, an op the exporter cannot lower (naming
    the module), else a ConversionError with the exporter's most telling line."""
    if dynamic_batch:
        from edgehad.export.batch import fixed_batch_error, is_specialized

        if is_specialized(exc):
            return fixed_batch_error(fmt)
    unsupported = unsupported_op_error(exporter, exc, model, example_inputs)
    if unsupported is not None:
        return unsupported
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    said = next((ln for ln in lines if "Error" in ln and ":" in ln), lines[0] if lines else type(exc).__name__)
    return ConversionError(f"{fmt} export failed: {said[:300]}")
