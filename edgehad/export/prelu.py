"""PReLU for the TFLite exporter: one weighted layer, not two.

PReLU (He et al., "Delving Deep into Rectifiers", ICCV 2015) is
``prelu(x) = max(0, x) + a * min(0, x)``, with a learned slope ``a`` per channel.

litert-torch decomposes ``aten._prelu_kernel`` as ``relu(x) - a * relu(-x)``
(its backend/lowerings/_decomp_registry.py, chosen because GREATER + SELECT
are not GPU-delegate ops). After a Linear, the TFLite converter folds that
``-x`` into the layer: a second FULLY_CONNECTED holding ``-W`` and ``-b``. The
file then stores the layer twice and runs it twice (MTCNN's ONet: 684,209 params
in the float TFLite file against 389,040 in the model, 2.75 MB against 1.58 MB).
The form ``max(0, x) + a * min(0, x)`` does not help either: the converter
fuses the ``max`` into the layer as its RELU activation and runs the layer
twice, once with and once without it (measured: two FULLY_CONNECTED).

Here it is ``x + c * (x - |x|)`` with ``c = (a - 1) / 2``: ``x - |x|`` is 0
where ``x >= 0`` (so the output is ``x`` exactly) and ``2x`` where ``x < 0``
(so it is ``x + (a - 1) x = a x``). The layer's output feeds ABS, SUB and ADD,
none of which the converter folds into the layer, so the layer is stored and
run once; ``c`` is constant-folded into one vector the size of ``a``, so the
file holds exactly the model's parameters (``x + (a - 1) * min(x, 0)`` would
add a scalar 0 constant), and ABS / SUB / MUL / ADD are GPU-delegate ops.
The rounding differs from ``a * x`` by about one float32 ulp of ``|x|``.

onnxruntime (1.2x, CPU) needs the same form for another reason: its PRelu kernel is slow. On a
[1, 32, 46, 46] tensor, 1 thread, it takes 350 us, and ABS, SUB, MUL, ADD in this form 44 us (measured);
in MTCNN's ONet the first PRelu was 293 of 731 us. onnxruntime has no int8 PRelu either: its CPU QDQ
fusions (qdq_selector_action_transformer.cc) cover AveragePool, LeakyRelu, GlobalAveragePool, Sigmoid,
Softmax, Add, Mul, Concat, Conv, MatMul, Gemm and Where, and no QLinearPRelu kernel exists. The int8
form it could fuse, ``Where(x > 0, x, a * x)`` as QLinearMul + Greater + QLinearWhere, measured 983 us
against 385 us for ``DequantizeLinear -> PRelu -> QuantizeLinear``. So every ONNX file edgehad writes
has PReLU in this form (``onnx_prelu_once``, run by edgehad.export.onnx.export_onnx): float files, and
int8 files between their int8 tensors.
"""

from __future__ import annotations

from contextlib import contextmanager


def prelu_once(x, weight):
    """``x + (weight - 1) / 2 * (x - |x|)``: PReLU, ``weight`` already broadcastable to ``x`` (``_prelu_kernel``)."""
    import torch

    return x + (weight - 1) / 2 * (x - torch.abs(x))


@contextmanager
def single_layer_prelu():
    """While inside, litert-torch decomposes PReLU with ``prelu_once`` instead of its ``relu(x) - a relu(-x)``.

    litert-torch keeps its decompositions in module-level tables; the entry is swapped
    only for the conversion and put back after it, so nothing else sees the change.
    """
    import torch
    from litert_torch import fx_infra

    op = torch.ops.aten._prelu_kernel.default
    tables = [t for t in (getattr(fx_infra.decomp, "_pre_convert_decomp", None),
                          getattr(fx_infra.decomp, "_pre_lower_decomp", None)) if isinstance(t, dict)]
    saved = [(t, op in t, t.get(op)) for t in tables]
    for t in tables:
        t[op] = prelu_once
    try:
        yield
    finally:
        for t, had, old in saved:
            if had:
                t[op] = old
            else:
                t.pop(op, None)


def onnx_prelu_once(model) -> int:
    """Rewrite every ``PRelu(x, slope)`` of an ONNX ModelProto whose slope is a constant as
    ``x + c * (x - Abs(x))``, ``c = (slope - 1) / 2`` (the same function; see the module docstring);
    returns how many. The output keeps its name, so the graph around it is unchanged."""
    import numpy as np
    from onnx import helper, numpy_helper

    graph = model.graph
    slopes = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    nodes, rewritten = [], 0
    for node in graph.node:
        slope = slopes.get(node.input[1]) if node.op_type == "PRelu" and len(node.input) == 2 else None
        if slope is None or not np.issubdtype(slope.dtype, np.floating):
            nodes.append(node)
            continue
        x, y, tag = node.input[0], node.output[0], f"{node.name or node.output[0]}_once"
        c = f"{tag}_c"
        graph.initializer.append(numpy_helper.from_array(((slope - 1) / 2).astype(slope.dtype), c))
        nodes += [helper.make_node("Abs", [x], [f"{tag}_abs"], name=f"{tag}_abs"),
                  helper.make_node("Sub", [x, f"{tag}_abs"], [f"{tag}_neg2"], name=f"{tag}_sub"),
                  helper.make_node("Mul", [f"{tag}_neg2", c], [f"{tag}_scaled"], name=f"{tag}_mul"),
                  helper.make_node("Add", [x, f"{tag}_scaled"], [y], name=f"{tag}_add")]
        rewritten += 1
    if rewritten:
        del graph.node[:]
        graph.node.extend(nodes)
        used = {name for n in graph.node for name in n.input}
        kept = [i for i in graph.initializer if i.name in used]
        del graph.initializer[:]
        graph.initializer.extend(kept)
    return rewritten
