"""Export to ONNX with the torch.onnx dynamo exporter (torch.export -> ONNX)."""

from __future__ import annotations

from pathlib import Path

from edgehad.core import stop
from edgehad.core.capture import captured
from edgehad.core.errors import UserInputError
from edgehad.core.files import atomic_path
from edgehad.export.lowering import export_error

DEFAULT_OPSET = 18
# The opsets torch.onnx.export(dynamo=True) writes as asked (torch 2.13, onnxscript 0.7, measured): it builds
# every graph at torchlib's opset 18, and onnxscript's version converter moves it to 18..25. Below 18 it falls
# back to ONNX's C converter, which fails for common ops (no Relu adapter below 14, for one) and then keeps
# opset 18 with only a log line; above 25 it always keeps 18. So these are the opsets a file can have;
# onnxruntime 1.32 loads all of them. export_onnx still checks the written file against the request.
MIN_OPSET, MAX_OPSET = 18, 25


def export_onnx(model, example_inputs: tuple, path: str | Path, opset: int = DEFAULT_OPSET,
                postprocess=None, output_names: list[str] | None = None, dynamic_batch: bool = False) -> Path:
    """Write ``model`` to ``path`` as ONNX; raises UnsupportedOpError naming the op and module.

    ``postprocess(model_proto)`` may rewrite the graph in place before it is
    saved (the int8 path uses it to reach onnxruntime's fused kernels).
    ``output_names`` names the graph outputs (the COSTARR head's ``logits``, ``known_score``).
    The file's ONNX opset is ``opset`` (one of MIN_OPSET..MAX_OPSET), or nothing is written.
    ``dynamic_batch``: dim 0 of every input (and of the outputs that follow it) is ``dim_param
    "batch"`` (edgehad.export.batch), or nothing is written.
    """
    import torch

    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise UserInputError(f"ONNX opset {opset!r} cannot be written: torch.onnx writes opsets "
                             f"{MIN_OPSET}..{MAX_OPSET}; ask for one of those")
    path = Path(path)
    dynamic = {}
    if dynamic_batch:
        from edgehad.export.batch import batch_shapes, unguarded

        model = unguarded(model)
        dynamic = {"dynamic_shapes": batch_shapes(model, tuple(example_inputs))}
    with captured() as log, atomic_path(path) as tmp:
        try:
            with stop.held("torch.onnx.export"):  # no KeyboardInterrupt inside its C++ (edgehad.core.stop)
                program = torch.onnx.export(model, tuple(example_inputs), dynamo=True, opset_version=opset,
                                            output_names=output_names, optimize=True, verbose=False, **dynamic)
            check_opset(program.model_proto, opset)
            if dynamic_batch:
                from edgehad.export.batch import check_onnx_batch

                check_onnx_batch(program.model_proto)
            proto = program.model_proto
            # onnxruntime's PRelu kernel is slow in every file, float too: the same function in the form it
            # runs fast (edgehad.export.prelu); a graph without PRelu is saved as exported
            has_prelu = any(n.op_type == "PRelu" for n in proto.graph.node)
            if postprocess is None and not has_prelu:
                program.save(str(tmp))
            else:
                import onnx

                from edgehad.export.prelu import onnx_prelu_once

                if postprocess is not None:
                    postprocess(proto)
                onnx_prelu_once(proto)
                onnx.save(proto, str(tmp))
        except UserInputError:
            raise
        except Exception as exc:
            raise export_error("torch.onnx", "ONNX", exc, model, example_inputs, dynamic_batch) from exc
    del log
    return path


def file_opset(proto_or_path) -> int | None:
    """The default-domain (ai.onnx) opset a model imports; a path is read without its external data."""
    if isinstance(proto_or_path, (str, Path)):
        import onnx

        proto_or_path = onnx.load(str(proto_or_path), load_external_data=False)
    versions = {o.domain: o.version for o in proto_or_path.opset_import}
    return versions.get("", versions.get("ai.onnx"))


def check_opset(proto_or_path, opset: int) -> None:
    """Refuse a file whose opset is not the one asked for: the exporter falls back silently."""
    written = file_opset(proto_or_path)
    if written != opset:
        raise UserInputError(f"ONNX opset {opset} was asked for but the file has opset {written} (the exporter "
                             f"could not convert this model to {opset}): ask for opset {written}")


