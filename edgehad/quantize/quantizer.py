"""The PT2E quantizer edgehad uses: litert-torch's, with two annotation fixes.

1. Conv/Linear followed by ReLU/ReLU6/clamp(min >= 0) is annotated as one
   pattern, observer after the activation. litert-torch fuses conv+relu only;
   for conv+hardtanh (ReLU6) it observes the pre-clamp range (wasting about one
   bit: half the int8 codes are negatives that the clamp removes) and the ONNX
   export becomes Conv -> Q -> DQ -> Clip -> Q -> DQ, which onnxruntime cannot
   fuse into QLinearConv. Observing after the clamp gives zero point -128 over
   [0, max]; TFLite still fuses RELU6 into CONV_2D, and onnxruntime drops the Clip.

2. One observer per edge. When an op's input spec differs from its producer's
   output spec (e.g. mean -> linear), PT2E writes Q(s1) -> DQ -> Q(s2) -> DQ, a
   requantize that onnxruntime runs but the LiteRT converter folds away; the two
   files then disagree with each other and with the PT2E graph. Reusing the
   producer's spec leaves one observer, honoured by both.

Gates: litert-torch annotates sigmoid with the fixed output range TFLite's
LOGISTIC requires (scale 1/256, zero point -128), so a sigmoid gate followed by
a multiply (SE, GLU) is int8 end to end with the product requantized on its own
observed range.
"""

from __future__ import annotations

_RELU_LIKE = ("relu.default", "relu_.default", "hardtanh.default", "hardtanh_.default", "clamp.default")
_WEIGHTED = ("conv1d.default", "conv2d.default", "convolution.default", "linear.default")


def _is(node, names) -> bool:
    return node.op == "call_function" and any(str(node.target).endswith(n) for n in names) \
        and str(node.target).startswith("aten.")


def _in_modules(node, names) -> bool:
    """Whether ``node`` came from one of the modules ``names`` (or their children)."""
    stack = node.meta.get("nn_module_stack") or {}
    paths = [path for path, _ in stack.values()]
    return any(p == n or p.startswith(n + ".") for p in paths for n in names)


def make_quantizer(per_channel: bool = True, keep_float=(), only=None):
    """A litert-torch PT2E quantizer with the fixes above, for static int8.

    ``keep_float``: module names left in float (their ops get no observers).
    ``only``: quantize just this module (everything else float): the
    per-layer sensitivity probe.
    """
    import torch
    from litert_torch.quantize import pt2e_quantizer_utils as qutils
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from torch.fx import Node
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, SharedQuantizationSpec

    def annotate_weighted_then_relu(gm, config):
        for act in gm.graph.nodes:
            if not _is(act, _RELU_LIKE):
                continue
            op = act.args[0]
            if not isinstance(op, Node) or not _is(op, _WEIGHTED) or len(op.users) != 1:
                continue
            if "hardtanh" in str(act.target) and (act.args[1] if len(act.args) > 1 else -1.0) < 0:
                continue  # hardtanh(-1, 1) is not a ReLU-like clamp
            if "clamp" in str(act.target) and (len(act.args) < 2 or act.args[1] is None or act.args[1] < 0):
                continue
            partition = [act, op, op.args[1]]
            qspecs = {op.args[0]: qutils.get_input_act_qspec(config), op.args[1]: qutils.get_weight_qspec(config)}
            if len(op.args) > 2 and isinstance(op.args[2], Node):
                qspecs[op.args[2]] = qutils.get_bias_qspec(config)
                partition.append(op.args[2])
            if qutils._is_annotated(partition):
                continue
            op.meta["quantization_annotation"] = QuantizationAnnotation(input_qspec_map=qspecs, _annotated=True)
            act.meta["quantization_annotation"] = QuantizationAnnotation(
                output_qspec=qutils.get_output_act_qspec(config), _annotated=True)
            qutils._mark_nodes_as_annotated(partition)

    def share_producer_specs(gm):
        for node in gm.graph.nodes:
            ann = node.meta.get("quantization_annotation")
            if ann is None or not ann.input_qspec_map:
                continue
            for arg, spec in list(ann.input_qspec_map.items()):
                if spec is None or isinstance(spec, SharedQuantizationSpec):
                    continue
                if getattr(spec, "qscheme", None) not in (torch.per_tensor_affine, torch.per_tensor_symmetric):
                    continue  # weights are per-channel: never shared
                produced = getattr(arg.meta.get("quantization_annotation"), "output_qspec", None)
                if produced is None or produced == spec or getattr(produced, "dtype", None) != spec.dtype:
                    continue
                ann.input_qspec_map[arg] = produced

    config = get_symmetric_quantization_config(is_per_channel=per_channel)

    def stays_float(node) -> bool:
        return _in_modules(node, keep_float) or (only is not None and not _in_modules(node, [only]))

    def drop_float_annotations(gm):
        # litert-torch's set_module_name() cannot say "float"; instead we annotate everything and
        # then take the annotations off the nodes that must stay float (no observers, no Q/DQ).
        for node in gm.graph.nodes:
            if "quantization_annotation" in node.meta and stays_float(node):
                del node.meta["quantization_annotation"]

    class EdgehadQuantizer(PT2EQuantizer):
        def annotate(self, model):
            annotate_weighted_then_relu(model, config)
            model = super().annotate(model)
            if keep_float or only is not None:
                drop_float_annotations(model)
            share_producer_specs(model)
            return model

    return EdgehadQuantizer().set_global(config)
