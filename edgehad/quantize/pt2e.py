"""int8 static quantization of a torch model with PT2E, calibrated on real inputs."""

from __future__ import annotations

from edgehad.core.errors import UserInputError


def strip_eval_dropout(gm) -> int:
    """Remove ``aten.dropout(x, p, train=False)`` (an identity) from a strictly exported graph.

    Left in, it splits PT2E's observer sharing (mean -> dropout -> linear gets
    a second observer, a requantize the LiteRT converter drops), so TFLite would
    stop matching the PT2E graph.
    """
    import torch

    removed = 0
    for node in list(gm.graph.nodes):
        if node.op == "call_function" and node.target == torch.ops.aten.dropout.default and not node.args[2]:
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)
            removed += 1
    gm.graph.lint()
    gm.recompile()
    return removed


def quantize_int8(model, example_inputs: tuple, calibration: list[tuple], progress=None, keep_float=(), only=None):
    """Quantize ``model`` once: returns ``(quantized GraphModule, quantizer)``.

    ``keep_float`` names modules to leave in float; ``only`` quantizes one module alone.

    Strict ``torch.export`` is used: the non-strict default leaves the
    ``source_fn_stack`` metadata empty and litert-torch's add/mul/cat
    annotators then match nothing (residual adds would stay float).
    """
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from edgehad.quantize.quantizer import make_quantizer

    quantizer = make_quantizer(keep_float=tuple(keep_float), only=only)
    try:
        graph = torch.export.export(model, tuple(example_inputs), strict=True).module()
    except Exception as exc:
        raise UserInputError(
            f"int8 quantization needs a torch.export(strict=True) graph, which failed "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}): "
            "use --quantize int8-dynamic or fp16, or make the model exportable"
        ) from exc
    strip_eval_dropout(graph)
    prepared = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for i, args in enumerate(calibration):
            prepared(*[torch.as_tensor(a) for a in args])
            if progress:
                progress(i + 1, len(calibration))
    constant = _constant_activations(prepared)
    quantized = convert_pt2e(prepared, fold_quantize=False)
    quantized.edgehad_degenerate_ranges = constant
    return quantized, quantizer


def _constant_activations(prepared) -> list[str]:
    """Where an observer saw one value only (min == max): a constant activation, whose scale is clamped to eps."""
    found = []
    modules = dict(prepared.named_modules())
    for node in prepared.graph.nodes:
        if node.op != "call_module":
            continue
        observer = modules.get(node.target)
        lo, hi = getattr(observer, "min_val", None), getattr(observer, "max_val", None)
        if lo is None or hi is None or lo.numel() != 1 or not bool(hi == lo):
            continue
        src = node.args[0]
        stack = src.meta.get("nn_module_stack") if hasattr(src, "meta") else None
        where = list(stack.values())[-1][0] if stack else ""
        found.append(f"{where or '<top level>'} ({getattr(src, 'name', src)})")
    return found


def degenerate_ranges(quantized) -> list[str]:
    """The constant activations found during calibration (module path and graph node)."""
    return list(getattr(quantized, "edgehad_degenerate_ranges", []))
