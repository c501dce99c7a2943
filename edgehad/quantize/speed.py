"""``--keep-float speed``: keep float the leading convs that run faster in fp32 than in int8, measured.

int8 is not faster everywhere. onnxruntime's int8 convolutions (MLAS, NHWC)
pay a per-pixel cost that dominates when a layer has few channels at high
resolution, while its fp32 convolutions (NCHWc blocks) do not. Measured on
MobileNetV2 pruned 50% (x86, AVX-512 VNNI + AMX, 1 thread): the 3-channel stem
took 333 us in int8 and 131 us in fp32; the 16-channel depthwise conv after it
237 us in int8. A model whose early layers are thin gains by leaving them
float.

Why a prefix only: the input is float already, so keeping the first layers
float moves the one quantize from the input to the prefix's output; a float
layer in the middle would add a dequantize and a requantize of its own.

Method: the input shape of every Conv2d is recorded with forward hooks on the
example input, in execution order. For each conv from the input on, two
one-node ONNX models with that conv's exact shape are built — fp32 ``Conv``
and the QDQ form edgehad's int8 export has (uint8 activations, per-channel
int8 weights, which onnxruntime fuses into ``QLinearConv``) — and
onnxruntime's profiler times the conv kernel alone (a lone node's layout
transposes would not exist inside the model). The layer stays float while
fp32 is at least ``MARGIN`` faster; the walk stops at the first layer where it
is not. The decision is for onnxruntime on the converting machine, with
``threads`` threads; LiteRT's kernels and other devices differ.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile

import numpy as np

MARGIN = 0.10      # fp32 must be 10% faster: timing noise must not decide a layer
ROUNDS, RUNS = 3, 15  # per layer and form: the best of 3 medians of 15 profiled runs
MAX_LAYERS = 12    # a longer float prefix is not what this is for


def conv_shapes(model, example_inputs) -> list[tuple[str, object, tuple]]:
    """(name, module, input shape) of each Conv2d, in the order the forward pass runs them."""
    import torch

    seen, hooks = [], []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Conv2d):
            hooks.append(module.register_forward_hook(
                lambda m, args, out, name=name: seen.append((name, m, tuple(args[0].shape)))))
    try:
        with torch.no_grad():
            model(*example_inputs)
    finally:
        for h in hooks:
            h.remove()
    first = {}
    for name, module, shape in seen:
        first.setdefault(name, (name, module, shape))
    return list(first.values())


def _conv_node(module, x: str, w: str, b: str | None, y: str):
    from onnx import helper

    (ph, pw), (sh, sw), (dh, dw) = module.padding, module.stride, module.dilation
    if isinstance(module.padding, str):
        raise ValueError("string padding")
    return helper.make_node("Conv", [x, w] + ([b] if b else []), [y], strides=[sh, sw], pads=[ph, pw, ph, pw],
                            dilations=[dh, dw], group=module.groups, kernel_shape=list(module.kernel_size))


def one_conv_models(module, shape) -> tuple[bytes, bytes]:
    """Serialized fp32 and QDQ-int8 ONNX models of ``module`` alone on an input of ``shape``."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = rng.standard_normal(tuple(module.weight.shape)).astype(np.float32) * 0.1
    cout = weight.shape[0]
    bias = np.zeros(cout, np.float32)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)

    def model(nodes, inits):
        graph = helper.make_graph(nodes, "one_conv", [x], [y], inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString()

    fp32 = model([_conv_node(module, "x", "w", "b", "y")],
                 [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")])

    w_scale = (np.abs(weight).reshape(cout, -1).max(axis=1) / 127).astype(np.float32)
    w_int8 = np.round(weight / w_scale.reshape(-1, 1, 1, 1)).astype(np.int8)
    a_scale, a_zero = np.array(0.05, np.float32), np.array(128, np.uint8)
    bias_scale = (a_scale * w_scale).astype(np.float32)
    inits = [numpy_helper.from_array(w_int8, "wq"), numpy_helper.from_array(w_scale, "ws"),
             numpy_helper.from_array(np.zeros(cout, np.int8), "wz"), numpy_helper.from_array(a_scale, "as"),
             numpy_helper.from_array(a_zero, "az"), numpy_helper.from_array(np.zeros(cout, np.int32), "bq"),
             numpy_helper.from_array(bias_scale, "bs"), numpy_helper.from_array(np.zeros(cout, np.int32), "bz")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "as", "az"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "as", "az"], ["xd"]),
             helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], axis=0),
             helper.make_node("DequantizeLinear", ["bq", "bs", "bz"], ["bd"], axis=0),
             _conv_node(module, "xd", "wd", "bd", "c"),
             helper.make_node("QuantizeLinear", ["c", "as", "az"], ["cq"]),
             helper.make_node("DequantizeLinear", ["cq", "as", "az"], ["y"])]
    return fp32, model(nodes, inits)


def conv_kernel_us(model_bytes: bytes, shape, threads: int) -> float:
    """Median per-run kernel time (us) of the Conv / QLinearConv node, from onnxruntime's profiler."""
    import onnxruntime as ort

    from edgehad.profiling.agent import kernel_times

    feed = {"x": np.random.default_rng(1).standard_normal(shape).astype(np.float32)}
    best = float("inf")
    with tempfile.TemporaryDirectory(prefix="edgehad-speed-") as tmp:
        for r in range(ROUNDS):
            opts = ort.SessionOptions()
            opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
            opts.log_severity_level = 3
            opts.enable_profiling = True
            opts.profile_file_prefix = os.path.join(tmp, f"r{r}")
            session = ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
            for _ in range(3):  # warm-up runs are profiled too; dropped below
                session.run(None, feed)
            for _ in range(RUNS):
                session.run(None, feed)
            with open(session.end_profiling()) as f:
                events = json.load(f)
            times = [us for _, op, us in kernel_times(events) if op in ("Conv", "QLinearConv", "FusedConv")]
            if len(times) >= RUNS:
                best = min(best, statistics.median(times[-RUNS:]))
    return best


def float_faster_prefix(model, example_inputs, threads: int = 1) -> list[dict]:
    """The leading convs to keep float: [{layer, fp32_us, int8_us}], plus the first one int8 won (kept: False)."""
    decisions = []
    for name, module, shape in conv_shapes(model, example_inputs)[:MAX_LAYERS]:
        try:
            fp32, int8 = one_conv_models(module, shape)
        except ValueError:  # a conv this microbenchmark cannot express (string padding): stop here
            break
        fp32_us, int8_us = conv_kernel_us(fp32, shape, threads), conv_kernel_us(int8, shape, threads)
        keep = fp32_us < int8_us * (1 - MARGIN)
        decisions.append({"layer": name, "fp32_us": round(fp32_us, 1), "int8_us": round(int8_us, 1), "kept": keep})
        if not keep:
            break
    return decisions
