"""Channels-last (NHWC) image I/O for TFLite files, and each file's record of its layout.

PyTorch lays images out as NCHW, ``[N, C, H, W]``; TFLite's kernels (CONV_2D,
DEPTHWISE_CONV_2D, pooling) work in NHWC, ``[N, H, W, C]``. A file exported from
the NCHW graph therefore begins with a TRANSPOSE of its image input (and ends
with one before each image output), and its caller must hand it NCHW, while
camera buffers, Android bitmaps and the TFLite Micro examples are NHWC. With
layout "nhwc" (the export stage's default; "nchw" opts out) the model is wrapped before export so that it takes and returns
channels-last tensors: the wrapper's permute meets the converter's own
NCHW -> NHWC transpose and litert-torch's layout pass cancels the pair, so the
file has no TRANSPOSE at its I/O. A TRANSPOSE the converter leaves before a
reduction (a global average pooling ``x.mean((2, 3))``) is then folded into
the reduction's axes (:func:`fold_reduction_transposes`): on zoo:mobilenet_v2,
int8 and fp32, none is left in the whole file.

Which tensors change: 4-D floating-point inputs (images) and 4-D outputs
(feature maps, masks). Anything else (token ids, ``[N, classes]`` logits, 3-D
sequences) stays as it is. The permutations are

    to the file:    x_nhwc = transpose(x_nchw, (0, 2, 3, 1))
    from the file:  y_nchw = transpose(y_nhwc, (0, 3, 1, 2))

The layout is written into the file itself, as a TFLite metadata entry named
``edgehad`` holding ``{"layout": {"inputs": [...], "outputs": [...]}}``: one
entry per input and per output in order, "nchw", "nhwc", or null for a tensor
that is no image. So ``inspect``, ``bundle`` and an app know it without the
conversion report. It is read by edgehad.runtime (``read_layout``), the one
reader, which needs no schema package and ships to boards with the runtime;
this module writes it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

# the reading side lives in edgehad.runtime (stdlib only, so boards and bundles read it too); one reader
from edgehad.runtime import LAYOUT_ENTRY as METADATA_NAME
from edgehad.runtime import LAYOUTS, TO_NCHW, TO_NHWC, parse_layout, read_layout, tflite_metadata

__all__ = ["LAYOUTS", "METADATA_NAME", "TO_NCHW", "TO_NHWC", "channels_last", "finish", "fold_reduction_transposes",
           "io_layout", "model_layout", "parse_layout", "read_layout", "stamp", "tensor_layouts"]


def _is_image_input(x) -> bool:
    dtype = getattr(x, "dtype", None)
    floating = getattr(dtype, "is_floating_point", None)  # a torch dtype
    if floating is None:
        floating = np.issubdtype(np.dtype(dtype), np.floating) if dtype is not None else False
    return len(getattr(x, "shape", ())) == 4 and bool(floating)


def io_layout(example_inputs, outputs, layout: str) -> dict:
    """The record of a file exported in ``layout`` ("nchw" | "nhwc"): per input and per output (flattened, in
    order), ``layout`` for a 4-D float input or a 4-D output, None for any other tensor."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r}: use one of {', '.join(LAYOUTS)}")
    return {"inputs": [layout if _is_image_input(x) else None for x in example_inputs],
            "outputs": [layout if len(getattr(y, "shape", ())) == 4 else None for y in outputs]}


def model_layout(model, example_inputs, layout: str) -> dict:
    """:func:`io_layout` of ``model``, its outputs found by one forward pass on ``example_inputs``."""
    from edgehad.export.verify import torch_outputs

    return io_layout(example_inputs, torch_outputs(model, [tuple(example_inputs)])[0], layout)


def _indices(record: dict | None, kind: str) -> list[int]:
    return [i for i, lay in enumerate((record or {}).get(kind) or []) if lay == "nhwc"]


def channels_last(model, example_inputs: tuple, record: dict):
    """``(wrapped model, its example inputs)``: the model taking and returning NHWC where ``record`` says
    "nhwc" (``model(x)`` == ``wrapped(x.permute(0, 2, 3, 1))`` with those outputs permuted back).

    litert-torch ships the same idea (``litert_torch.to_channel_last_io``), but it permutes only a bare
    tensor or a flat tuple of outputs; edgehad counts outputs as pytree leaves (edgehad.export.verify), so
    the wrapper here permutes leaves, and a dict or nested output keeps its structure.
    """
    import torch
    from torch.utils._pytree import tree_flatten, tree_unflatten

    ins, outs = set(_indices(record, "inputs")), set(_indices(record, "outputs"))

    class ChannelsLastIO(torch.nn.Module):
        def __init__(self, wrapped):
            super().__init__()
            self.wrapped = wrapped

        def forward(self, *args):
            args = [a.permute(*TO_NCHW) if i in ins else a for i, a in enumerate(args)]
            leaves, spec = tree_flatten(self.wrapped(*args))
            return tree_unflatten([y.permute(*TO_NHWC) if i in outs else y for i, y in enumerate(leaves)], spec)

    inputs = tuple(x.permute(*TO_NHWC).contiguous() if i in ins else x for i, x in enumerate(example_inputs))
    wrapper = ChannelsLastIO(model)
    # the wrapper alone to eval mode: .eval() recurses, and a PT2E graph (int8) refuses train() / eval()
    wrapper.training = False
    return wrapper, inputs


def finish(path: str | Path, record: dict) -> int:
    """The last touches of an NHWC .tflite at ``path``, in one rewrite: the transposes left before
    reductions folded into them (:func:`fold_reduction_transposes`) and ``record`` stamped (:func:`stamp`).
    Returns the number of TRANSPOSE ops folded away.

    A file with no NHWC tensor is left exactly as litert-torch wrote it: no entry means PyTorch's own
    layout (readers report no layout), and an NCHW export, or a model without image I/O, costs no extra
    rewrite."""
    nhwc = "nhwc" in record["inputs"] or "nhwc" in record["outputs"]
    return _rewrite(path, record, fold=True) if nhwc else 0


def stamp(path: str | Path, record: dict) -> None:
    """Write ``record`` into the .tflite at ``path`` as its ``edgehad`` metadata entry (replacing one there)."""
    _rewrite(path, record, fold=False)


# reductions whose axes a TRANSPOSE in front of them can be folded into
_REDUCTIONS = ("MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD", "REDUCE_ANY", "REDUCE_ALL")


def fold_reduction_transposes(model, schema) -> int:
    """Fold ``TRANSPOSE(perm) -> reduction(axes, keep_dims=False)`` into ``reduction(perm[axes])``; in place.

    Why: litert-torch's layout pass keeps a reduction whose result is no longer 4-D in NCHW, so the global
    average pooling ``x.mean((2, 3))`` of an NHWC graph (zoo:mobilenet_v2 at 224 px) gets a TRANSPOSE of
    its [1, 7, 7, 1280] input back to NCHW. Reducing ``transpose(x, P)`` over axes ``A`` is reducing ``x``
    over ``{P[a] : a in A}``, and the result is the same array when the dims kept appear in ``P`` in
    increasing order (``P = (0, 3, 1, 2)``, ``A = (2, 3)``: MEAN of the NHWC tensor over (1, 2), the
    global average pooling XNNPACK and TFLM run as such). The TRANSPOSE goes when nothing else reads its
    output.
    """
    builtin = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    names = [builtin.get(max(c.builtinCode, c.deprecatedBuiltinCode)) for c in model.operatorCodes]
    folded = 0
    for graph in model.subgraphs:
        readers: dict[int, list] = {}
        for op in graph.operators:
            for t in op.inputs if op.inputs is not None else []:
                readers.setdefault(int(t), []).append(op)
        gone = []
        for op in graph.operators:
            if names[op.opcodeIndex] != "TRANSPOSE" or len(op.inputs) != 2:
                continue
            perm, out = _constant(model, graph, op.inputs[1]), int(op.outputs[0])
            users = readers.get(out, [])
            if perm is None or not users or out in list(graph.outputs):
                continue
            new_axes = [_folded_axes(model, graph, names, user, perm) for user in users]
            if any(a is None for a in new_axes):
                continue
            for user, axes in zip(users, new_axes):
                user.inputs = [int(op.inputs[0]), _int32_constant(model, graph, schema, axes), *user.inputs[2:]]
            gone.append(op)
            folded += 1
        graph.operators = [op for op in graph.operators if all(op is not g for g in gone)]
    return folded


def _folded_axes(model, graph, names, user, perm: list) -> list | None:
    """The axes ``user`` reduces once the TRANSPOSE by ``perm`` before it is gone, or None if it cannot go."""
    options = user.builtinOptions  # ReducerOptions; absent means keep_dims False
    if names[user.opcodeIndex] not in _REDUCTIONS or len(user.inputs) < 2 or (options and options.keepDims):
        return None
    axes = _constant(model, graph, user.inputs[1])
    if axes is None:
        return None
    axes = sorted({a % len(perm) for a in axes})
    kept = [p for i, p in enumerate(perm) if i not in axes]
    return [perm[a] for a in axes] if kept == sorted(kept) else None


def _constant(model, graph, index) -> list | None:
    """The values of an int32 / int64 constant tensor, or None for anything else."""
    tensor = graph.tensors[int(index)]
    dtype = {2: np.int32, 4: np.int64}.get(tensor.type)  # TensorType INT32, INT64
    data = model.buffers[tensor.buffer].data if tensor.buffer < len(model.buffers) else None
    if dtype is None or data is None or len(data) == 0:
        return None
    return [int(v) for v in np.frombuffer(bytes(data), dtype=dtype)]


def _int32_constant(model, graph, schema, values: list) -> int:
    """A new int32 constant tensor holding ``values``; its index (the old axes tensor may be shared)."""
    buffer = schema.BufferT()
    buffer.data = np.asarray(values, dtype="<i4").view(np.uint8)
    model.buffers.append(buffer)
    tensor = schema.TensorT()
    tensor.shape, tensor.type, tensor.buffer = [len(values)], schema.TensorType.INT32, len(model.buffers) - 1
    tensor.name = b"edgehad_folded_axes"
    graph.tensors.append(tensor)
    return len(graph.tensors) - 1


def _rewrite(path: str | Path, record: dict, fold: bool) -> int:
    """Rewrite the .tflite at ``path`` with ai-edge-litert's flatbuffer object API (the tool
    edgehad.quantize.tflite_io uses too), to a temporary name beside it, renamed into place."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    from edgehad.core.files import atomic_path

    model = flatbuffer_utils.read_model(str(path))
    folded = fold_reduction_transposes(model, schema) if fold else 0
    data = np.frombuffer(json.dumps({"layout": record}, separators=(",", ":")).encode(), dtype=np.uint8)
    entry = next((m for m in model.metadata or [] if m.name in (METADATA_NAME, METADATA_NAME.encode())), None)
    if entry is None:
        entry = schema.MetadataT()
        entry.name = METADATA_NAME
        model.metadata = list(model.metadata or []) + [entry]
        buffer = schema.BufferT()
        model.buffers.append(buffer)
        entry.buffer = len(model.buffers) - 1
    model.buffers[entry.buffer].data = data
    with atomic_path(path) as tmp:
        flatbuffer_utils.write_model(model, str(tmp))
    return folded


def tensor_layouts(data: bytes) -> dict | None:
    """``{"inputs": {tensor index: layout}, "outputs": {...}}`` of subgraph 0 of the .tflite ``data``, or None
    without a record.

    The record lists the I/O in torch's order, which is the order of the file's signature names (``args_0``,
    ``args_1``, ..., sorted as edgehad.runtime.Session sorts them), not necessarily the tensor order.
    """
    import re

    from ai_edge_litert import schema_py_generated as schema

    record = parse_layout(tflite_metadata(data, METADATA_NAME))
    if record is None:
        return None
    model = schema.Model.GetRootAs(data, 0)

    def natural(name: bytes):
        return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", (name or b"").decode("utf-8", "replace"))]

    sigs = [model.SignatureDefs(i) for i in range(model.SignatureDefsLength())]
    sigs = [sd for sd in sigs if sd.SubgraphIndex() == 0]
    sig = next((sd for sd in sigs if sd.SignatureKey() == b"serving_default"), sigs[0] if sigs else None)
    sub = model.Subgraphs(0)
    if sig is not None:
        ins = [m.TensorIndex() for m in sorted((sig.Inputs(j) for j in range(sig.InputsLength())),
                                               key=lambda m: natural(m.Name()))]
        outs = [m.TensorIndex() for m in sorted((sig.Outputs(j) for j in range(sig.OutputsLength())),
                                                key=lambda m: natural(m.Name()))]
    else:
        ins, outs = [int(i) for i in sub.InputsAsNumpy()], [int(i) for i in sub.OutputsAsNumpy()]
    return {"inputs": dict(zip(ins, record["inputs"])), "outputs": dict(zip(outs, record["outputs"]))}
