"""edgehad.export.prelu: the TFLite exporter's PReLU form is PReLU."""

import torch

from edgehad.export.prelu import prelu_once, single_layer_prelu


def test_prelu_once_equals_prelu_for_slopes_below_and_above_one():
    x = torch.randn(2, 4, 5, 5, generator=torch.Generator().manual_seed(0)) * 10
    a = torch.tensor([0.0, 0.25, 1.0, 3.0])
    want = torch.nn.functional.prelu(x, a)
    got = prelu_once(x, a.view(1, 4, 1, 1))
    assert torch.equal(got[x >= 0], x[x >= 0])  # the positive side exactly
    assert float((got - want).abs().max()) <= 1e-6 * float(x.abs().max())


def test_single_layer_prelu_swaps_litert_decomposition_and_restores_it():
    from litert_torch import fx_infra

    op = torch.ops.aten._prelu_kernel.default
    before = fx_infra.decomp.pre_convert_decomp().get(op)
    with single_layer_prelu():
        assert fx_infra.decomp.pre_convert_decomp()[op] is prelu_once
        assert fx_infra.decomp.pre_lower_decomp()[op] is prelu_once
    assert fx_infra.decomp.pre_convert_decomp().get(op) is before and before is not prelu_once


def test_onnx_prelu_once_rewrites_prelu_and_onnxruntime_computes_the_same():
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from edgehad.export.prelu import onnx_prelu_once

    slope = np.array([0.0, 0.25, 1.0, 3.0], np.float32).reshape(4, 1, 1)
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("PRelu", ["x", "a"], ["y"], name="p")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4, 5, 5]),
         helper.make_tensor_value_info("r", TensorProto.FLOAT, [2, 4, 5, 5])],
        [numpy_helper.from_array(slope, "a")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    x = np.random.default_rng(0).standard_normal((2, 4, 5, 5)).astype(np.float32) * 10
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(["y"], {"x": x})[0]
    assert onnx_prelu_once(model) == 1
    onnx.checker.check_model(model)
    assert [n.op_type for n in model.graph.node] == ["Relu", "Abs", "Sub", "Mul", "Add"]
    assert [i.name for i in model.graph.initializer] == ["p_once_c"]  # the slope itself is gone
    got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(["y"], {"x": x})[0]
    assert np.array_equal(got[x >= 0], x[x >= 0])
    assert float(np.abs(got - want).max()) <= 1e-6 * float(np.abs(x).max())
