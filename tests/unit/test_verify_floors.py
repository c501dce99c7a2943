"""Every verify failure names the recipe key that moves its floor, and that key does move it.

``[verify] rtol`` (float files, also tests/unit/test_dynamic_batch.py), ``[verify] min_cosine`` (int8 and
int8-dynamic files, each output on its own), ``[verify] min_cosine_fp16`` (fp16 files) and
``[verify] max_accuracy_drop`` (top-1 against the original).
Files are real ONNX files run in onnxruntime; only the torch reference is written by hand.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgehad.core.artifact import Artifact, ExportedFile
from edgehad.core.errors import ConversionError
from edgehad.core.stage import Context
from edgehad.stages.verify import Verify, check_accuracy

W = np.arange(12, dtype=np.float32).reshape(3, 4) / 10 - 0.5


def matmul_file(path):
    """y = x @ W and z = 2 x @ W: [1, 3] -> two [1, 4] outputs."""
    w = helper.make_tensor("W", TensorProto.FLOAT, W.shape, W.ravel())
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"]), helper.make_node("Mul", ["y", "two"], ["z"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4]),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 4])], [w, two])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.save(model, str(path))
    return path


def verify(tmp_path, variant: str, moved: float, **floors):
    """Verify the file against a reference whose second output is off by ``moved`` on one element."""
    path = matmul_file(tmp_path / "m.onnx")
    inputs = [(np.random.default_rng(i).standard_normal((1, 3)).astype(np.float32),) for i in range(8)]
    reference = [[x @ W, 2 * x @ W] for (x,) in inputs]
    reference[0][1] = reference[0][1].copy()
    reference[0][1][0, 1] += moved
    f = ExportedFile(format="onnx", variant=variant, stage="export-onnx", path=path, reference=reference)
    artifact = Artifact(model=None, example_inputs=(), source={}, files=[f], sample_inputs=inputs)
    Verify(**floors).run(artifact, Context(workdir=tmp_path))
    return f


def test_a_quantized_file_under_min_cosine_names_the_key_and_the_key_moves_the_floor(tmp_path):
    with pytest.raises(ConversionError) as err:
        verify(tmp_path, "int8", moved=8.0)
    said = str(err.value)
    assert said.startswith("verification failed: onnx (int8): max_abs=8 (tolerance ")
    assert " over 8 samples, output 1 cosine=" in said and said.endswith(" (floor: [verify] min_cosine)")
    f = verify(tmp_path, "int8", moved=8.0, min_cosine=0.5)
    cosines = [o["cosine"] for o in f.parity["outputs"]]
    assert f.parity["passed"] and f.parity["rule"] == "cosine >= 0.5 for every output"
    assert cosines[0] == pytest.approx(1.0) and 0.5 < cosines[1] < 0.99  # the second output decided


def test_an_fp16_file_has_its_own_tighter_floor(tmp_path):
    """fp16 keeps cosine 0.999999 on trained models (README "Verification floors"): 0.999 by default."""
    with pytest.raises(ConversionError) as err:
        verify(tmp_path, "fp16", moved=1.0)
    said = str(err.value)
    assert said.startswith("verification failed: onnx (fp16): max_abs=1 (tolerance ")
    cosine = float(said.split("output 1 cosine=")[1].split(" ")[0])
    assert 0.99 < cosine < 0.999 and said.endswith(f"output 1 cosine={cosine:.6f} (floor: [verify] min_cosine_fp16)")
    assert verify(tmp_path, "int8", moved=1.0).parity["passed"]  # the same file passes int8's floor
    f = verify(tmp_path, "fp16", moved=1.0, min_cosine_fp16=0.99)
    assert f.parity["passed"] and f.parity["rule"] == "cosine >= 0.99 for every output"


def test_a_float_file_over_rtol_names_the_key_and_the_key_moves_the_floor(tmp_path):
    with pytest.raises(ConversionError) as err:
        verify(tmp_path, "float", moved=0.01)
    assert str(err.value).endswith(" over 8 samples (floor: [verify] rtol)")
    assert verify(tmp_path, "float", moved=0.01, rtol=0.01).parity["passed"]


def test_an_accuracy_drop_names_the_key():
    f = ExportedFile(format="tflite", variant="int8", stage="export-tflite", path=None,
                     parity={"task_accuracy": 0.9})
    artifact = Artifact(model=None, example_inputs=(), source={}, files=[f], stages=[{"name": "quantize"}])
    metric = {"original": 0.95, "samples": 360, "data": "digits"}
    with pytest.raises(ConversionError) as err:
        check_accuracy(artifact, metric, 1.0)
    assert str(err.value) == (
        "accuracy: tflite (int8) has top-1 90.0% on 360 digits val samples against 95.0% for the original model, "
        "5.0 points lower (allowed: 1); keep the layers that lose it float (`keep_float` auto), or allow more "
        "with `max_accuracy_drop` ([verify] max_accuracy_drop)")
    check_accuracy(artifact, metric, 5.0)  # the key moves the floor
    assert metric["max_drop_points"] == 5.0
