"""A dynamic batch (``dynamic_batch``): the first dim of every input is one symbol, ``batch``.

The exporters trace the model with its batch-1 example inputs and ``torch.export.Dim("batch", min=1)``
on dim 0 of every input (the same symbol for all of them: one batch). ONNX writes it as
``dim_param "batch"`` on the inputs and on every output that follows it; TFLite as ``shape_signature``
-1, and the runtime resizes the inputs to the arrays it is given. A file written so is verified at
batch 1 on every sample, and at batch :data:`BATCH` on the first of them as one batch
(edgehad.stages.verify).

A model that fixes its batch (``x.view(1, -1)``) cannot have one: torch.export specializes the symbol
to 1. torch.onnx then quietly writes a static file, litert-torch raises; both end in
:func:`fixed_batch_error`'s one line, checked on the written file, not on the exporter's word.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgehad.core.errors import UserInputError

BATCH = 4  # the second batch size a dynamic-batch file is verified at (the first is 1)
DIM_NAME = "batch"


def batch_shapes(model, example_inputs: tuple):
    """``dynamic_shapes`` for torch.export of ``model(*example_inputs)``: dim 0 of every input is the one
    symbol ``batch``, laid out as ``model.forward``'s signature wants it (by tensor, through
    torch.export.ShapesCollection: a ``forward(*args)`` such as the NHWC wrapper's takes them nested)."""
    from torch.export import Dim, ShapesCollection

    scalars = [i for i, t in enumerate(example_inputs) if len(t.shape) == 0]
    if scalars:
        raise UserInputError(f"`dynamic_batch` makes the first dim of every input the batch, but input "
                             f"{scalars[0]} is a scalar (0-d): drop `dynamic_batch`, or give that input a "
                             "batch dim")
    batch, shapes = Dim(DIM_NAME, min=1), ShapesCollection()
    for t in example_inputs:
        shapes[t] = {0: batch}
    return shapes.dynamic_shapes(model, tuple(example_inputs))


def size_oblivious():
    """A context in which torch.export keeps a size-1 example dim symbolic.

    torch.export specializes every dim whose example size is 0 or 1 ("0/1 specialization"), and the
    examples are at batch 1; ``backed_size_oblivious`` traces such a dim as a general size instead.
    torch.onnx's exporter sets the same flag for its own ``dynamic_shapes``; litert-torch does not.
    """
    import torch.fx.experimental._config as fx_config

    return fx_config.patch(backed_size_oblivious=True)


def unguarded(model):
    """``model``, or for a graph from ``ExportedProgram.module()`` (a PT2E int8 graph, a .pt2 file) the same
    graph without its ``_guards_fn`` call, sharing its parameters.

    That call asserts the shapes the graph was traced at (batch 1) on every run, so the graph could
    neither be exported with a symbolic batch nor run at batch 4 for the reference. Dropping it is
    safe: an op that really baked batch 1 in (a view to [1, 64]) specializes the symbol again when the
    graph is exported, and any other difference shows in the verification at batch 4.
    """
    import copy

    import torch

    if not isinstance(model, torch.fx.GraphModule):
        return model
    guards = [n for n in model.graph.nodes if n.op == "call_module" and n.target == "_guards_fn"]
    if not guards:
        return model
    graph = copy.deepcopy(model.graph)
    for node in [n for n in graph.nodes if n.op == "call_module" and n.target == "_guards_fn"]:
        graph.erase_node(node)
    free = torch.fx.GraphModule(model, graph)
    free.training = model.training  # not .train()/.eval(): a PT2E graph refuses them
    return free


def batched(sample_inputs: list[tuple], size: int = BATCH) -> tuple:
    """One input tuple of ``size`` rows: the first ``size`` samples (batch-1 tuples) stacked in order,
    the samples repeated when there are fewer."""
    rows = [sample_inputs[i % len(sample_inputs)] for i in range(size)]
    return tuple(np.concatenate([np.asarray(r[k]) for r in rows], axis=0) for k in range(len(rows[0])))


def fixed_batch_error(fmt: str, detail: str = "") -> UserInputError:
    """The one line for a model whose batch the exporter could not keep symbolic."""
    said = f" ({detail})" if detail else ""
    return UserInputError(
        f"`dynamic_batch`: the model fixes its batch size to 1, so the {fmt} file cannot take another "
        f"batch{said}: make it batch-agnostic (e.g. x.flatten(1) or x.view(x.shape[0], -1) instead of "
        "x.view(1, -1)), or drop `dynamic_batch`")


def is_specialized(exc: BaseException) -> bool:
    """Whether ``exc`` (from torch.export, under an exporter) says the symbolic batch was fixed to a constant."""
    text = str(exc)
    return "Constraints violated" in text or ("specialized" in text and DIM_NAME in text)


def check_onnx_batch(proto) -> None:
    """Refuse an ONNX model whose inputs' dim 0 is not the symbol ``batch`` (torch.onnx falls back to a
    static export without a word when the model fixes its batch)."""
    fixed = []
    for value in proto.graph.input:
        dims = value.type.tensor_type.shape.dim
        if not dims or dims[0].dim_param != DIM_NAME:
            fixed.append(f"{value.name}[0]={dims[0].dim_value if dims else 'scalar'}")
    if fixed:
        raise fixed_batch_error("ONNX", f"torch.export kept {', '.join(fixed)}")


def mark_tflite_batch(path: str | Path) -> list[int]:
    """Check that every input of the .tflite at ``path`` has ``shape_signature`` -1 on dim 0, and give the
    same -1 to dim 0 of each output that follows it. Returns the outputs' tensor indices so marked.

    litert-torch writes the inputs' -1 but every output's signature static ([1, 10]), though the
    runtime resizes them with the batch: inspect and apps reading the signature would see batch 1.
    Which outputs follow is measured, not guessed: the file is allocated at batch 2 and an output
    whose dim 0 went from 1 to 2 follows it.
    """
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_litert.tools import flatbuffer_utils

    from edgehad.core.capture import captured
    from edgehad.core.files import atomic_path

    path = Path(path)
    with captured():
        interp = Interpreter(model_path=str(path))
        inputs = interp.get_input_details()
        fixed = [f"{d['name']}[0]={int(d['shape'][0]) if len(d['shape']) else 'scalar'}" for d in inputs
                 if not len(d["shape_signature"]) or int(d["shape_signature"][0]) != -1]
        if fixed:
            raise fixed_batch_error("TFLite", f"its input signature keeps {', '.join(fixed)}")
        outputs = interp.get_output_details()
        for d in inputs:
            interp.resize_tensor_input(d["index"], [2, *[int(s) for s in d["shape"][1:]]], strict=True)
        interp.allocate_tensors()
        grown = {d["index"] for d in interp.get_output_details() if len(d["shape"]) and int(d["shape"][0]) == 2}
        follow = [d["index"] for d in outputs
                  if d["index"] in grown and len(d["shape"]) and int(d["shape"][0]) == 1
                  and int(d["shape_signature"][0]) != -1]
    if not follow:
        return []
    model = flatbuffer_utils.read_model(str(path))
    tensors = model.subgraphs[0].tensors
    for index in follow:
        tensor = tensors[index]
        signature = [int(s) for s in (tensor.shapeSignature if tensor.shapeSignature is not None else tensor.shape)]
        tensor.shapeSignature = [-1, *signature[1:]]
    with atomic_path(path) as tmp:
        flatbuffer_utils.write_model(model, str(tmp))
    return follow
