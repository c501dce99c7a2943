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

3. Gates get a fixed output range. litert-torch annotates sigmoid with the
   range TFLite's LOGISTIC requires (scale 1/256, zero point -128) but leaves
   hardsigmoid unannotated, so every hard-sigmoid gate (MobileNetV3's SE)
   became a float island: DEQUANTIZE -> float ops -> QUANTIZE. A gate's output
   lies in [0, 1] whatever the data, so it gets the same fixed range (no
   observer; calibration cannot make it worse), and the product that follows
   is requantized on its own observed range.

4. Transformer activations that int8 per-tensor cannot hold stay float, by design: attention masks,
   embedding rows, residual sums into a LayerNorm, attention scores into a softmax
   (``float_activations``, with the measurements). The matmuls keep int8 inputs and weights.
"""

from __future__ import annotations

_RELU_LIKE = ("relu.default", "relu_.default", "hardtanh.default", "hardtanh_.default", "clamp.default")
_GATES = ("hardsigmoid.default", "hardsigmoid_.default", "sigmoid.default")
_PRODUCTS = ("mul.Tensor",)
_SAME_RANGE = ("max_pool2d.default", "max_pool1d.default")
_UNARY = ("hardswish.default", "hardswish_.default", "mean.dim", "adaptive_avg_pool2d.default")
_PRELU = ("prelu.default",)
_WEIGHTED = ("conv1d.default", "conv2d.default", "convolution.default", "linear.default")
_NORMS = ("layer_norm.default", "native_layer_norm.default")
_RESIDUAL = ("add.Tensor", "add_.Tensor")
_LOOKUPS = ("embedding.default",)
_SOFTMAX = ("softmax.int", "_softmax.default")
_SCORES_FROM = ("matmul.default", "bmm.default")
_SCORES = (*_SCORES_FROM, "add.Tensor", "sub.Tensor", "mul.Tensor", "div.Tensor", "mul.Scalar", "div.Scalar")
_MASK_APPLY = ("add.Tensor", "add_.Tensor", "sub.Tensor", "sub_.Tensor")


def _is(node, names) -> bool:
    return node.op == "call_function" and any(str(node.target).endswith(n) for n in names) \
        and str(node.target).startswith("aten.")


def _in_modules(node, names) -> bool:
    """Whether ``node`` came from one of the modules ``names`` (or their children)."""
    stack = node.meta.get("nn_module_stack") or {}
    paths = [path for path, _ in stack.values()]
    return any(p == n or p.startswith(n + ".") for p in paths for n in names)


def _shares_with(node, nodes: set) -> bool:
    """Whether ``node``'s annotation takes its range from one of ``nodes`` (a SharedQuantizationSpec)."""
    from torchao.quantization.pt2e.quantizer import SharedQuantizationSpec

    ann = node.meta.get("quantization_annotation")
    if ann is None:
        return False
    specs = [*ann.input_qspec_map.values(), ann.output_qspec]
    for spec in specs:
        if isinstance(spec, SharedQuantizationSpec):
            edge = spec.edge_or_node
            sources = edge if isinstance(edge, tuple) else (edge,)
            if any(src in nodes for src in sources):
                return True
    return False


def _floating(node, gm) -> bool:
    """Whether ``node``'s value is a floating-point tensor (unknown counts as floating: left as annotated).

    A constant (``get_attr``: a buffer such as BERT's position ids) carries no ``val`` metadata: its
    tensor is read from ``gm``."""
    val = node.meta.get("val") if hasattr(node, "meta") else None
    if val is None and getattr(node, "op", None) == "get_attr":
        val = gm
        for part in node.target.split("."):
            val = getattr(val, part, None)
    dtype = getattr(val, "dtype", None)
    return dtype is None or dtype.is_floating_point


MASK = ("a mask (a float computed from integer inputs only, e.g. an attention or pooling mask), not an activation: "
        "observed, BERT's additive finfo.min mask set the range of the scores it is added to, all one value in int8")
LOOKUP = "embedding rows: the table stays float, and int8 rows only add error before the float sum"
RESIDUAL = ("the residual sum into a LayerNorm, and the layer feeding it: transformer outlier channels "
            "(~100x the typical value) leave per-tensor int8 about one step for the other channels")
SCORES = "attention scores into a softmax: exp() turns one int8 step of the logits into a ~50% weight change"


def mask_like(gm) -> set:
    """The float nodes of ``gm`` computed from integer or bool tensors and literals only: masks, not activations.

    E.g. transformers' ``where(attention_mask, 0.0, finfo.min)`` or ``(1.0 - mask.float()) * -10000.0``. A float
    input, a parameter or a float constant (``get_attr``) anywhere upstream makes a node an activation."""
    found = set()
    for node in gm.graph.nodes:  # topological order: a producer is seen before its users
        if node.op != "call_function":
            continue
        dtype = getattr(node.meta.get("val"), "dtype", None)
        if dtype is None or not dtype.is_floating_point:
            continue
        if all(arg in found or not _floating(arg, gm) for arg in node.all_input_nodes):
            found.add(node)
    return found


def float_activations(gm) -> dict:
    """The activations static int8 leaves float, by design, with the reason for each: ``{node: reason}``.

    Found on a real encoder (all-MiniLM-L6-v2, 6 BERT layers): with every activation int8 the PT2E graph had
    output cosine 0.32 against float on real sentences, and 0.89 once the mask alone stayed float; the file
    then differed from the graph as much as the graph from float, since one rounding step that
    onnxruntime takes differently (its int32 bias, its fused Gemm) grew layer by layer. These are the
    tensors Bondarenko et al. ("Understanding and Overcoming the Challenges of Efficient Transformer
    Quantization", EMNLP 2021) find int8 per-tensor cannot hold, and the ones onnxruntime's own transformer
    recipe leaves float (it quantizes the MatMul inputs only):

    - masks (``mask_like``), and an add/sub that applies one to an activation;
    - embedding lookups' outputs that are only summed;
    - a residual sum (add chain) into a LayerNorm, and the weighted layer on its branch (its int8 inputs and
      weights stay: only its output is float);
    - attention scores: the chain from the Q K^T matmul (output only) through scale and mask into a softmax.

    Graphs without LayerNorm, softmax, lookups or masks (CNNs) have none.
    """
    masks = mask_like(gm)
    found = dict.fromkeys(masks, MASK)
    for node in gm.graph.nodes:
        if _is(node, _MASK_APPLY) and node not in masks and any(a in masks for a in node.all_input_nodes):
            found[node] = MASK
        elif _is(node, _LOOKUPS) and node.users and all(_is(u, _RESIDUAL) for u in node.users):
            found[node] = LOOKUP  # summed (BERT's word + position + type); a layer reading it needs int8
    for norm in gm.graph.nodes:
        if not _is(norm, _NORMS) or not norm.args or not hasattr(norm.args[0], "op"):
            continue
        todo = [norm.args[0]]
        while todo:
            add = todo.pop()
            if not _is(add, _RESIDUAL) or add in found:
                continue
            found[add] = RESIDUAL
            for arg in add.all_input_nodes:
                if _is(arg, _RESIDUAL):
                    todo.append(arg)
                elif _is(arg, _WEIGHTED) and len(arg.users) == 1 and arg not in found:
                    found[arg] = RESIDUAL
    for softmax in gm.graph.nodes:
        if not _is(softmax, _SOFTMAX) or not softmax.args or not hasattr(softmax.args[0], "op"):
            continue
        todo = [softmax.args[0]]
        while todo:
            node = todo.pop()
            if not _is(node, _SCORES) or found.get(node) == SCORES:
                continue
            found[node] = SCORES
            if not _is(node, _SCORES_FROM):  # up through scale and mask to the matmul, which keeps int8 inputs
                todo.extend(a for a in node.all_input_nodes if len(a.users) == 1)
    return found


def _module_path(node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    return list(stack.values())[-1][0] if stack else ""


def _followers() -> set:
    """Element-wise ops that run fused onto the op before them: activations and inference-mode norms."""
    import torch

    aten = torch.ops.aten
    names = ("relu", "relu_", "relu6", "hardtanh", "hardtanh_", "clamp", "clamp_", "hardswish", "hardswish_",
             "silu", "silu_", "sigmoid", "batch_norm", "_native_batch_norm_legit_no_training")
    return {getattr(aten, n).default for n in names if hasattr(aten, n)}


def make_quantizer(per_channel: bool = True, keep_float=(), only=None):
    """A litert-torch PT2E quantizer with the fixes above, for static int8.

    ``keep_float``: module names left in float (their ops get no observers).
    ``only``: quantize just this module (everything else float): the
    per-layer sensitivity probe.
    """
    import torch

    from edgehad.core.imports import require

    require("litert_torch")
    from litert_torch.quantize import pt2e_quantizer_utils as qutils
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from torch.fx import Node
    from torchao.quantization.pt2e.quantizer import (
        FixedQParamsQuantizationSpec, QuantizationAnnotation, SharedQuantizationSpec)

    # [0, 1] in 256 steps: the range TFLite's LOGISTIC output is defined with.
    gate_range = FixedQParamsQuantizationSpec(
        dtype=torch.int8, scale=1.0 / 256.0, zero_point=-128, quant_min=-128, quant_max=127,
        qscheme=torch.per_tensor_affine)

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
            if "hardtanh" in str(act.target) and tuple(act.args[1:3]) == (0.0, 1.0):
                # A folded gate (see pt2e.fold_gate_affine): the layer itself requantizes to the
                # fixed [0, 1] range, which saturates exactly like the clamp, so both formats
                # keep an int8 layer (TFLite cannot fuse RELU_0_TO_1 into CONV_2D).
                op.meta["quantization_annotation"] = QuantizationAnnotation(
                    input_qspec_map=qspecs, output_qspec=gate_range, _annotated=True)
                act.meta["quantization_annotation"] = QuantizationAnnotation(
                    input_qspec_map={op: gate_range}, output_qspec=gate_range, _annotated=True)
                qutils._mark_nodes_as_annotated(partition)
                continue
            act.meta["quantization_annotation"] = QuantizationAnnotation(
                output_qspec=qutils.get_output_act_qspec(config), _annotated=True)
            qutils._mark_nodes_as_annotated(partition)

    def annotate_gates(gm, config):
        for gate in gm.graph.nodes:
            if not _is(gate, _GATES) or qutils._is_annotated([gate]):
                continue
            gate.meta["quantization_annotation"] = QuantizationAnnotation(
                input_qspec_map={gate.args[0]: qutils.get_input_act_qspec(config)},
                output_qspec=gate_range, _annotated=True)

    def annotate_leftover_unary(gm, config):
        # litert-torch annotates hardswish and mean by module partition and misses some of them
        # (in MobileNetV3 every hardswish whose output also feeds an SE mean): each one left
        # out is a DEQUANTIZE -> float op -> QUANTIZE island in the TFLite file.
        for node in gm.graph.nodes:
            if not _is(node, _UNARY) or qutils._is_annotated([node]) or not isinstance(node.args[0], Node):
                continue
            node.meta["quantization_annotation"] = QuantizationAnnotation(
                input_qspec_map={node.args[0]: qutils.get_input_act_qspec(config)},
                output_qspec=qutils.get_output_act_qspec(config), _annotated=True)
        for node in gm.graph.nodes:  # max-pool picks input values: output range = input range
            if not _is(node, _SAME_RANGE) or qutils._is_annotated([node]) or not isinstance(node.args[0], Node):
                continue
            edge = (node.args[0], node)
            node.meta["quantization_annotation"] = QuantizationAnnotation(
                input_qspec_map={node.args[0]: qutils.get_input_act_qspec(config)},
                output_qspec=SharedQuantizationSpec(edge), _annotated=True)
        for node in gm.graph.nodes:  # Hadamard products of two activations (silu split by pt2e)
            if not _is(node, _PRODUCTS) or qutils._is_annotated([node]):
                continue
            if not all(isinstance(a, Node) for a in node.args[:2]):
                continue
            node.meta["quantization_annotation"] = QuantizationAnnotation(
                input_qspec_map={a: qutils.get_input_act_qspec(config) for a in node.args[:2]},
                output_qspec=qutils.get_output_act_qspec(config), _annotated=True)

    def annotate_prelu_input(gm, config):
        # litert-torch observes a PReLU's output but not its input, so the conv / linear before it had a
        # float output: both exporters then ran that layer in float on dequantized weights (MTCNN's ONet:
        # every conv, and the int8 ONNX file slower than fp32). Observing the input quantizes the layer's
        # output; the PReLU itself stays a small op between int8 tensors (its slope stays float).
        for node in gm.graph.nodes:
            if not _is(node, _PRELU) or not isinstance(node.args[0], Node):
                continue
            ann = node.meta.get("quantization_annotation")
            if ann is None:
                ann = node.meta["quantization_annotation"] = QuantizationAnnotation(_annotated=True)
            ann.input_qspec_map.setdefault(node.args[0], qutils.get_input_act_qspec(config))
            if ann.output_qspec is None:
                ann.output_qspec = qutils.get_output_act_qspec(config)

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
                if isinstance(produced, SharedQuantizationSpec):  # e.g. max-pool: same range as its input
                    ann.input_qspec_map[arg] = SharedQuantizationSpec(arg)
                    continue
                if produced is None or produced == spec or getattr(produced, "dtype", None) != spec.dtype:
                    continue
                ann.input_qspec_map[arg] = produced

    config = get_symmetric_quantization_config(is_per_channel=per_channel)
    followers = _followers()

    def stays_float(node) -> bool:
        return _in_modules(node, keep_float) or (only is not None and not _in_modules(node, [only]))

    def drop_float_annotations(gm):
        # litert-torch's set_module_name() cannot say "float"; instead we annotate everything and
        # then take the annotations off the nodes that must stay float (no observers, no Q/DQ).
        # An activation or norm right after a float node stays float with it: quantizing it would put
        # a quantize/dequantize pair between two float ops (measured: it undid the gain of keeping
        # MobileNetV2's first two convs float).
        # An op that shares its range with a float tensor (max-pool: SharedQuantizationSpec) has no range.
        floating = set()
        for node in gm.graph.nodes:  # topological order: a producer is seen before its users
            follows_float = node.target in followers and bool(node.args) and node.args[0] in floating
            if stays_float(node) or follows_float or _shares_with(node, floating):
                floating.add(node)
                node.meta.pop("quantization_annotation", None)

    def keep_float_activations(gm):
        # The tensors of float_activations() get no observer: a weighted layer or score matmul among them
        # keeps its int8 inputs and weights and gives a float output; any other op among them computes
        # in float on its dequantized inputs.
        found = float_activations(gm)
        for node in gm.graph.nodes:
            ann = node.meta.get("quantization_annotation")
            if ann is None:
                continue
            for arg in [a for a in ann.input_qspec_map if a in found]:
                del ann.input_qspec_map[arg]
            if node in found:
                ann.output_qspec = None
                if not _is(node, _WEIGHTED) and not _is(node, _SCORES_FROM):
                    ann.input_qspec_map.clear()
        return [{"tensor": node.name, "module": _module_path(node), "reason": reason,
                 "layer": _is(node, _WEIGHTED)} for node, reason in found.items()]

    def drop_integer_annotations(gm):
        # An observer on an integer tensor (token ids, an attention mask, a position index: a mul or an
        # add of int64 values) fails calibration ("histogram_cpu" not implemented for 'Long') and could
        # not mean anything anyway: int8 quantizes real-valued activations only.
        for node in gm.graph.nodes:
            ann = node.meta.get("quantization_annotation")
            if ann is None:
                continue
            for arg in [a for a in ann.input_qspec_map if not _floating(a, gm)]:
                del ann.input_qspec_map[arg]
            if ann.output_qspec is not None and not _floating(node, gm):
                ann.output_qspec = None

    class EdgehadQuantizer(PT2EQuantizer):
        def annotate(self, model):
            annotate_weighted_then_relu(model, config)
            model = super().annotate(model)
            annotate_gates(model, config)
            annotate_leftover_unary(model, config)
            annotate_prelu_input(model, config)
            if keep_float or only is not None:
                drop_float_annotations(model)
            drop_integer_annotations(model)
            self.float_activations = keep_float_activations(model)
            share_producer_specs(model)
            return model

    quantizer = EdgehadQuantizer().set_global(config)
    quantizer.float_activations = []  # filled by annotate(): [{"tensor", "module", "reason"}]
    return quantizer
