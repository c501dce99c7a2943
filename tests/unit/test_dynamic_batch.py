"""``dynamic_batch`` pieces on small hand-made inputs (edgehad.export.batch, the verify stage at batch 4).

The conversions of zoo:digits_cnn with a dynamic batch, every scheme, are in tests/e2e/test_dynamic_batch.py.
Here: the batch of 4 built from the samples, the guard-free graph, the ONNX check, and the verify stage
judging a real onnxruntime file at batch 4 against right and wrong references.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgehad.core.errors import ConversionError, UserInputError
from edgehad.export.batch import BATCH, batch_shapes, batched, check_onnx_batch, unguarded

W = np.arange(12, dtype=np.float32).reshape(3, 4) / 10


def samples(n: int, seed: int = 0) -> list[tuple]:
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((1, 3)).astype(np.float32), np.full((1, 2), i, np.int64)) for i in range(n)]


def test_batched_stacks_the_first_samples_in_order_and_repeats_too_few():
    six, two = samples(6), samples(2)
    x, k = batched(six)
    assert x.shape == (BATCH, 3) == (4, 3) and k.dtype == np.int64 and k[:, 0].tolist() == [0, 1, 2, 3]
    np.testing.assert_array_equal(x, np.concatenate([s[0] for s in six[:4]]))
    x2, k2 = batched(two)
    assert k2[:, 0].tolist() == [0, 1, 0, 1]
    np.testing.assert_array_equal(x2[2:], x2[:2])


def test_scalar_input_is_refused_naming_the_option():
    import torch

    from edgehad.cli.flags import speak_flags

    class Two(torch.nn.Module):
        def forward(self, x, rate):
            return x * rate

    class Varargs(torch.nn.Module):  # as the NHWC wrapper (edgehad.export.layout.channels_last)
        def forward(self, *args):
            return args[0]

    shapes = batch_shapes(Two(), (torch.zeros(1, 3), torch.zeros(1, 2)))
    assert list(shapes) == ["x", "rate"] and shapes["x"] == {0: shapes["rate"][0]}  # one symbol for all
    assert shapes["x"][0].__name__ == "batch"
    assert [list(s) for s in batch_shapes(Varargs(), (torch.zeros(1, 3), torch.zeros(2, 1)))["args"]] == [[0], [0]]
    with pytest.raises(UserInputError) as err:
        batch_shapes(Two(), (torch.zeros(1, 3), torch.tensor(16000)))
    said = str(err.value)
    assert said == ("`dynamic_batch` makes the first dim of every input the batch, but input 1 is a scalar "
                    "(0-d): drop `dynamic_batch`, or give that input a batch dim")
    assert speak_flags(said).startswith("--dynamic-batch makes") and "drop --dynamic-batch," in speak_flags(said)


def test_unguarded_graph_runs_at_batch_4_with_the_same_weights():
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU()).eval()
    graph = torch.export.export(model, (torch.randn(1, 3),)).module()  # traced at batch 1: a guard asserts it
    x = torch.randn(4, 3)
    with pytest.raises(Exception):
        graph(x)
    free = unguarded(graph)
    assert free is not graph and free.training == graph.training
    torch.testing.assert_close(free(x), model(x), rtol=0, atol=0)
    with pytest.raises(Exception):  # the original keeps its guard
        graph(x)
    assert unguarded(model) is model  # a plain module has none


def onnx_matmul(path, batch_dim) -> None:
    """y = x @ W over an x of [batch_dim, 3] (a name: symbolic; an int: fixed)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    dim = batch_dim
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "mm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [dim, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [dim, 4])],
        [numpy_helper.from_array(W, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return model


def test_check_onnx_batch_names_a_fixed_input(tmp_path):
    check_onnx_batch(onnx_matmul(tmp_path / "d.onnx", "batch"))
    with pytest.raises(UserInputError) as err:
        check_onnx_batch(onnx_matmul(tmp_path / "s.onnx", 1))
    assert str(err.value).startswith("`dynamic_batch`: the model fixes its batch size to 1, so the ONNX file "
                                     "cannot take another batch (torch.export kept x[0]=1): make it batch-agnostic")


def verify_one(path, batch_reference, inputs):
    """Run the verify stage over one float ONNX file whose batch-1 reference is right."""
    from edgehad.core.artifact import Artifact, ExportedFile
    from edgehad.core.stage import Context
    from edgehad.stages.verify import Verify

    f = ExportedFile(format="onnx", variant="float", stage="export-onnx", path=path,
                     reference=[[x @ W] for (x,) in inputs], batch_reference=batch_reference)
    artifact = Artifact(model=None, example_inputs=(), source={}, files=[f], sample_inputs=inputs)
    Verify().run(artifact, Context(workdir=path.parent))
    return f


def test_verify_judges_a_dynamic_file_at_batch_4_too(tmp_path):
    path = tmp_path / "d.onnx"
    onnx_matmul(path, "batch")
    inputs = [(s[0],) for s in samples(3)]  # three samples: the batch repeats the first
    x = batched(inputs)[0]
    f = verify_one(path, [[x @ W]], inputs)
    assert f.parity["passed"] and f.parity["samples"] == 3 and f.parity["batch_sizes"] == [1, 4]
    b4 = f.parity["batch_4"]
    assert b4["samples"] == 4 and b4["passed"] and b4["max_abs"] < 1e-6

    wrong = x @ W
    wrong[3, 2] += 0.5  # the fourth row off: only the batch shows it
    with pytest.raises(ConversionError) as err:
        verify_one(path, [[wrong]], inputs)
    said = str(err.value)
    assert said.startswith("verification failed: onnx (float) at batch 4: max_abs=0.5 (tolerance ")
    assert said.endswith("over 4 samples (floor: [verify] rtol)") and said.count("onnx (float)") == 1


def test_verify_fails_a_file_that_does_not_take_the_batch(tmp_path):
    path = tmp_path / "s.onnx"
    onnx_matmul(path, 1)
    inputs = [(s[0],) for s in samples(4)]
    with pytest.raises(ConversionError) as err:
        verify_one(path, [[batched(inputs)[0] @ W]], inputs)
    said = str(err.value)
    assert said.startswith("verification failed: onnx (float) at batch 4: the runtime could not run it (")
    assert "floor" not in said
