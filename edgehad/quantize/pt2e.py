"""int8 static quantization of a torch model with PT2E, calibrated on real inputs."""

from __future__ import annotations

from edgehad.core import stop
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


def fold_gate_affine(gm) -> int:
    """Rewrite ``conv/linear -> hardsigmoid`` as ``conv/linear' -> clamp(0, 1)``, exactly.

    hardsigmoid(y) = clamp(y / 6 + 1/2, 0, 1), and y = W x + b is affine, so the
    scale and shift fold into the layer: W' = W / 6, b' = b / 6 + 1/2. The gate is
    then a clamp whose int8 output range is fixed ([0, 1], scale 1/256): it
    becomes the layer's requantization, and the gate runs int8 in both formats
    instead of as a DEQUANTIZE -> ADD -> MUL -> QUANTIZE float island.
    Only layers whose parameters feed nothing else are folded.
    """
    import torch

    aten = torch.ops.aten
    weighted = (aten.conv2d.default, aten.conv1d.default, aten.linear.default)
    folded = 0
    for gate in list(gm.graph.nodes):
        if gate.op != "call_function" or gate.target not in (aten.hardsigmoid.default, aten.hardsigmoid_.default):
            continue
        layer = gate.args[0]
        if not isinstance(layer, torch.fx.Node) or layer.target not in weighted or len(layer.users) != 1:
            continue
        weight = layer.args[1]
        bias = layer.args[2] if len(layer.args) > 2 else None
        params = [weight] + ([bias] if bias is not None else [])
        if any(not isinstance(p, torch.fx.Node) or p.op != "get_attr" or len(p.users) != 1 for p in params):
            continue
        # New tensors, never in-place: the exported graph shares its parameters with the user's model.
        w = _attr(gm, weight.target).detach() / 6.0
        _set_attr(gm, weight.target, torch.nn.Parameter(w, requires_grad=False))
        if bias is not None:
            b = _attr(gm, bias.target).detach() / 6.0 + 0.5
            _set_attr(gm, bias.target, torch.nn.Parameter(b, requires_grad=False))
        else:
            name = f"_edgehad_gate_bias_{folded}"
            gm.register_buffer(name, torch.full((w.shape[0],), 0.5, dtype=w.dtype))
            with gm.graph.inserting_before(layer):
                new_bias = gm.graph.get_attr(name)
            args = list(layer.args) + [None] * (3 - len(layer.args))
            args[2] = new_bias
            layer.args = tuple(args)
        with gm.graph.inserting_after(gate):
            clamp = gm.graph.call_function(aten.hardtanh.default, (layer, 0.0, 1.0))
        clamp.meta = dict(gate.meta)
        gate.replace_all_uses_with(clamp)
        gm.graph.erase_node(gate)
        folded += 1
    gm.graph.lint()
    gm.recompile()
    return folded


def drop_saturating_gate_clamps(gm) -> int:
    """Remove the clamp(0, 1) of a folded gate once quantized: there it is exactly the identity.

    After ``fold_gate_affine`` and ``convert_pt2e`` a gate reads
    ``layer -> Q/DQ(1/256, -128) -> clamp(0, 1) -> Q/DQ(1/256, -128)``. The first
    dequantize can only give values in [0, 255/256], which the clamp leaves alone
    and the second quantize maps back to the same integers, so the clamp and the
    second pair go. Why it matters: TFLite would keep the clamp as RELU_0_TO_1, an
    op TFLite Micro has no kernel for, and onnxruntime would run a no-op Clip.
    """
    import torch

    qd = torch.ops.quantized_decomposed
    quantize, dequantize = qd.quantize_per_tensor.default, qd.dequantize_per_tensor.default
    hardtanh = (torch.ops.aten.hardtanh.default, torch.ops.aten.hardtanh_.default)

    def gate_range(node, target) -> bool:
        return (isinstance(node, torch.fx.Node) and node.target == target and len(node.args) >= 3
                and abs(float(node.args[1]) - 1.0 / 256.0) < 1e-12 and int(node.args[2]) == -128)

    dropped = 0
    for clamp in list(gm.graph.nodes):
        if clamp.target not in hardtanh or tuple(clamp.args[1:3]) != (0.0, 1.0):
            continue
        source = clamp.args[0]
        requants = list(clamp.users)
        if not gate_range(source, dequantize) or not requants or not all(gate_range(q, quantize) for q in requants):
            continue
        outputs = [d for q in requants for d in q.users]
        if not all(gate_range(d, dequantize) for d in outputs):
            continue
        for d in outputs:
            d.replace_all_uses_with(source)
            gm.graph.erase_node(d)
        for q in requants:
            gm.graph.erase_node(q)
        gm.graph.erase_node(clamp)
        dropped += 1
    if dropped:
        gm.graph.lint()
        gm.recompile()
    return dropped


def decompose_silu(gm) -> int:
    """Rewrite ``silu(x)`` as ``x * sigmoid(x)`` (the same function) so that it quantizes.

    litert-torch has no int8 annotation for silu; the converter lowers it to
    LOGISTIC + MUL anyway, and left unannotated they run in float between a
    DEQUANTIZE and a QUANTIZE. Split, the sigmoid takes the fixed gate range and
    the product its own observed range: the Hadamard form of the activation.
    """
    import torch

    aten = torch.ops.aten
    count = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target not in (aten.silu.default, aten.silu_.default):
            continue
        x = node.args[0]
        with gm.graph.inserting_before(node):
            gate = gm.graph.call_function(aten.sigmoid.default, (x,))
            product = gm.graph.call_function(aten.mul.Tensor, (x, gate))
        for new in (gate, product):
            new.meta = {k: v for k, v in node.meta.items() if k != "source_fn_stack"}
        node.replace_all_uses_with(product)
        gm.graph.erase_node(node)
        count += 1
    gm.graph.lint()
    gm.recompile()
    return count


def _set_attr(gm, target: str, value) -> None:
    owner, _, name = target.rpartition(".")
    setattr(_attr(gm, owner) if owner else gm, name, value)


def _attr(gm, target: str):
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


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
        with stop.held("torch.export"):  # no KeyboardInterrupt inside its C++ (edgehad.core.stop)
            graph = torch.export.export(model, tuple(example_inputs), strict=True).module()
    except Exception as exc:
        raise UserInputError(
            f"int8 quantization needs a torch.export(strict=True) graph, which failed "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}): "
            "use `quantize` int8-dynamic or fp16, or make the model exportable"
        ) from exc
    strip_eval_dropout(graph)
    fold_gate_affine(graph)
    decompose_silu(graph)
    with stop.held("PT2E prepare"):
        prepared = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for i, args in enumerate(calibration):
            prepared(*[torch.as_tensor(a) for a in args])
            if progress:
                progress(i + 1, len(calibration))
    constant = _constant_activations(prepared)
    with stop.held("PT2E convert"):
        quantized = convert_pt2e(prepared, fold_quantize=False)
    drop_saturating_gate_clamps(quantized)
    quantized.edgehad_degenerate_ranges = constant
    quantized.edgehad_float_activations = list(quantizer.float_activations)
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


def float_activations(quantized) -> list[dict]:
    """The activations the quantizer left float by design (edgehad.quantize.quantizer.float_activations),
    one entry per reason: ``{"reason", "count", "modules"}`` (the module paths, in graph order)."""
    grouped: dict[str, dict] = {}
    for found in getattr(quantized, "edgehad_float_activations", []):
        entry = grouped.setdefault(found["reason"], {"reason": found["reason"], "count": 0, "modules": []})
        entry["count"] += 1
        if found["module"] and found["module"] not in entry["modules"]:
            entry["modules"].append(found["module"])
    return list(grouped.values())


def float_layers(quantized) -> dict[str, str]:
    """``{module path: reason}`` of the weighted layers whose output the quantizer left float by design."""
    return {found["module"]: found["reason"] for found in getattr(quantized, "edgehad_float_activations", [])
            if found.get("layer") and found["module"]}


def degenerate_ranges(quantized) -> list[str]:
    """The constant activations found during calibration (module path and graph node)."""
    return list(getattr(quantized, "edgehad_degenerate_ranges", []))
