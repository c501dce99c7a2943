"""Channels-last TFLite I/O (issue #15): which tensors change, the wrapper, the file's record, one real conversion.

The conversion is a tiny conv net with two outputs, a feature map and logits from its global average pooling, so
with ``tflite_layout="nhwc"`` its input and its first output change and the logits do not. Its NCHW file has two
TRANSPOSE ops (measured: one at the input, one before the MEAN); the NHWC file has none (the second one folded
into the MEAN). The mobilenet_v2 int8 comparison of both layouts is in tests/e2e/test_tflite_layout.py.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from torch import nn

import edgehad
from edgehad.cli.flags import speak_flags
from edgehad.core.errors import UserInputError
from edgehad.export.layout import channels_last, io_layout, stamp
from edgehad.runtime import parse_layout, read_layout
from edgehad.inspection import inspect_file


class FeatureMap(nn.Module):
    """conv 3->8 (3x3, pad 1) -> relu -> conv 8->4 (1x1): an [N, 4, H, W] map, as a segmentation head gives;
    and [N, 5] logits of its mean over H and W."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 4, 1)
        self.fc = nn.Linear(4, 5)
        self.example_inputs = (torch.randn(1, 3, 8, 6),)  # H != W, so a swapped H and W cannot pass

    def forward(self, x):
        y = self.head(torch.relu(self.conv(x)))
        return y, self.fc(y.mean((2, 3)))


class TwoHeads(nn.Module):
    """An image and a per-sample scale in; a dict out: a 4-D map and [N, 5] logits."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 5)

    def forward(self, x, scale):
        y = self.conv(x) * scale[:, None, None, None]
        return {"map": y, "logits": self.fc(y.mean((2, 3)))}


def test_io_layout_marks_4d_float_inputs_and_4d_outputs():
    inputs = (torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8, dtype=torch.int64), torch.zeros(1, 16))
    outputs = [np.zeros((1, 4, 8, 8)), np.zeros((1, 10)), np.zeros((1, 2, 3))]
    assert io_layout(inputs, outputs, "nhwc") == {"inputs": ["nhwc", None, None], "outputs": ["nhwc", None, None]}
    assert io_layout(inputs, outputs, "nchw") == {"inputs": ["nchw", None, None], "outputs": ["nchw", None, None]}
    with pytest.raises(ValueError, match="layout 'NHWC': use one of nchw, nhwc"):
        io_layout(inputs, outputs, "NHWC")


def test_channels_last_wrapper_permutes_the_image_io_only():
    torch.manual_seed(0)
    model = TwoHeads().eval()
    x, scale = torch.randn(2, 3, 5, 7), torch.tensor([0.5, 2.0])
    with torch.no_grad():
        ref = model(x, scale)
    record = {"inputs": ["nhwc", None], "outputs": ["nhwc", None]}  # pytree leaves of the dict: map, logits
    wrapped, (x_last, scale_same) = channels_last(model, (x, scale), record)
    assert list(x_last.shape) == [2, 5, 7, 3] and scale_same is scale
    with torch.no_grad():
        out = wrapped(x_last, scale)
    assert list(out) == ["map", "logits"] and list(out["map"].shape) == [2, 5, 7, 4]
    assert torch.equal(out["map"], ref["map"].permute(0, 2, 3, 1))
    # the mean over a permuted view sums in another order: equal to float rounding
    assert torch.allclose(out["logits"], ref["logits"], rtol=0, atol=1e-6)


def test_channels_last_wraps_an_int8_pt2e_graph():
    """The int8 model is a PT2E graph, which refuses .eval(): the wrapper must not call it on what it wraps."""
    from edgehad.quantize.pt2e import quantize_int8

    torch.manual_seed(0)
    model = FeatureMap().eval()
    x = model.example_inputs[0]
    quantized, _ = quantize_int8(model, (x,), [(x,), (torch.rand_like(x),)])
    wrapped, (x_last,) = channels_last(quantized, (x,), {"inputs": ["nhwc"], "outputs": ["nhwc", None]})
    assert wrapped.training is False
    with torch.no_grad():
        (y_last, logits), (y, ref) = wrapped(x_last), quantized(x)
    assert torch.equal(y_last, y.permute(0, 2, 3, 1)) and torch.equal(logits, ref)


@pytest.mark.parametrize("raw", [b"", b"\xff", b"[]", b'{"layout": 1}', b'{"layout": {"inputs": ["nhwc"]}}',
                                 b'{"layout": {"inputs": ["NHWC"], "outputs": []}}'])
def test_a_malformed_record_reads_as_none(raw):
    assert parse_layout(raw) is None


@pytest.fixture(scope="module")
def nhwc(tmp_path_factory):
    """FeatureMap converted to TFLite with ``tflite_layout="nhwc"``: (report, folder, model)."""
    torch.manual_seed(0)
    model = FeatureMap().eval()
    out = tmp_path_factory.mktemp("layout") / "nhwc"
    report = edgehad.convert(model, formats="tflite", tflite_layout="nhwc", out=out)
    return report, out, model


def test_nhwc_file_has_no_transpose_and_records_its_layout(nhwc):
    report, out, _ = nhwc
    (entry,) = report["artifacts"]
    record = {"inputs": ["nhwc"], "outputs": ["nhwc", None]}
    assert entry["layout"] == record and report["preprocessing"] == {"tflite_layout": "nhwc"}
    parity = entry["parity"]
    assert parity["passed"] and [o["within_tolerance"] for o in parity["outputs"]] == [True, True]
    info = inspect_file(out / "model.tflite")
    assert info["ops"] == {"CONV_2D": 2, "FULLY_CONNECTED": 1, "MEAN": 1}  # no TRANSPOSE
    assert [(t["shape"], t["layout"]) for t in info["inputs"]] == [([1, 8, 6, 3], "nhwc")]
    assert [(t["shape"], t["layout"]) for t in info["outputs"]] == [([1, 8, 6, 4], "nhwc"), ([1, 5], None)]
    assert read_layout(out / "model.tflite") == record
    saved = json.loads((out / "report.json").read_text())
    assert saved["artifacts"][0]["layout"] == record and saved["preprocessing"]["tflite_layout"] == "nhwc"
    assert "model.tflite nhwc; nhwc, -" in (out / "report.md").read_text()


def test_nhwc_file_computes_the_torch_model_channels_last(nhwc):
    """Independent of the verify stage: the file fed x in NHWC gives torch's output in NHWC."""
    from edgehad.runtime import Session

    _, out, model = nhwc
    x = torch.rand(1, 3, 8, 6, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref_map, ref_logits = (t.numpy() for t in model(x))
    y, logits = Session(str(out / "model.tflite"), threads=1).run([x.permute(0, 2, 3, 1).numpy()])
    assert y.shape == (1, 8, 6, 4) and logits.shape == (1, 5)
    assert np.abs(y - ref_map.transpose(0, 2, 3, 1)).max() <= 1e-4 * max(1.0, float(np.abs(ref_map).max()))
    assert np.abs(logits - ref_logits).max() <= 1e-4 * max(1.0, float(np.abs(ref_logits).max()))


def test_stamp_replaces_the_entry(nhwc, tmp_path):
    from ai_edge_litert import schema_py_generated as schema

    path = tmp_path / "m.tflite"
    shutil.copy(nhwc[1] / "model.tflite", path)
    stamp(path, {"inputs": ["nchw"], "outputs": [None, None]})
    assert read_layout(path) == {"inputs": ["nchw"], "outputs": [None, None]}
    model = schema.Model.GetRootAs(path.read_bytes(), 0)
    names = [model.Metadata(i).Name() for i in range(model.MetadataLength())]
    assert names.count(b"edgehad") == 1 and b"min_runtime_version" in names  # litert-torch's own entry kept
    assert inspect_file(path)["outputs"][0]["layout"] is None


def test_layout_without_a_tflite_file_is_refused(tmp_path):
    with pytest.raises(UserInputError) as err:
        edgehad.convert(FeatureMap(), formats="onnx", tflite_layout="nhwc", out=tmp_path / "o")
    said = str(err.value)
    assert said == ("`tflite_layout` sets the layout of the TFLite file, and none is written: "
                    "add tflite to `formats`")
    assert speak_flags(said).endswith("add tflite to --format") and "--tflite-layout sets" in speak_flags(said)
    with pytest.raises(UserInputError, match="layout"):
        edgehad.convert(FeatureMap(), tflite_layout="NHWC", out=tmp_path / "o")
    assert not (tmp_path / "o").exists()


def _transpose_then_reduce(perm, axes, keep_dims, reduction="MEAN", output_too=False):
    """A hand-built .tflite: x [2, 3, 4, 5] -> TRANSPOSE(perm) -> reduction(axes, keep_dims) (ModelT, schema)."""
    from ai_edge_litert import schema_py_generated as schema

    model, graph = schema.ModelT(), schema.SubGraphT()
    model.version, model.buffers, model.subgraphs, model.operatorCodes = 3, [schema.BufferT()], [graph], []
    graph.tensors = []
    for name in ("TRANSPOSE", reduction):
        code = schema.OperatorCodeT()
        code.builtinCode = code.deprecatedBuiltinCode = getattr(schema.BuiltinOperator, name)
        code.version = 1
        model.operatorCodes.append(code)

    def tensor(shape, dtype=schema.TensorType.FLOAT32, data=None):
        t = schema.TensorT()
        t.shape, t.type, t.name, t.buffer = list(shape), dtype, f"t{len(graph.tensors)}".encode(), 0
        if data is not None:
            b = schema.BufferT()
            b.data = np.asarray(data, "<i4").view(np.uint8)
            model.buffers.append(b)
            t.buffer = len(model.buffers) - 1
        graph.tensors.append(t)
        return len(graph.tensors) - 1

    shape = [2, 3, 4, 5]
    moved = [shape[p] for p in perm]
    x, p = tensor(shape), tensor([4], schema.TensorType.INT32, perm)
    xt, a = tensor(moved), tensor([len(axes)], schema.TensorType.INT32, axes)
    y = tensor([1 if i in axes else d for i, d in enumerate(moved)] if keep_dims
               else [d for i, d in enumerate(moved) if i not in axes])
    transpose, reduce = schema.OperatorT(), schema.OperatorT()
    transpose.opcodeIndex, transpose.inputs, transpose.outputs = 0, [x, p], [xt]
    reduce.opcodeIndex, reduce.inputs, reduce.outputs = 1, [xt, a], [y]
    reduce.builtinOptionsType = schema.BuiltinOptions.ReducerOptions
    reduce.builtinOptions = schema.ReducerOptionsT()
    reduce.builtinOptions.keepDims = keep_dims
    graph.operators, graph.inputs, graph.outputs = [transpose, reduce], [x], [y] + ([xt] if output_too else [])
    return model, schema


def _run(model, x) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_litert.tools import flatbuffer_utils

    interp = Interpreter(model_content=bytes(flatbuffer_utils.convert_object_to_bytearray(model)), num_threads=1)
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
    return interp.get_tensor(interp.get_output_details()[0]["index"])


@pytest.mark.parametrize("perm, axes, reduction, folded_axes", [
    ((0, 3, 1, 2), (2, 3), "MEAN", [1, 2]),      # NHWC -> NCHW, then the global average pooling
    ((0, 2, 3, 1), (1, 2), "MEAN", [2, 3]),      # the other way round
    ((0, 3, 1, 2), (1,), "SUM", [3]),            # a channel sum; N, H, W stay in order
    ((0, 3, 1, 2), (-1, -2), "REDUCE_MAX", [1, 2]),
])
def test_a_transpose_before_a_reduction_is_folded_into_it(perm, axes, reduction, folded_axes):
    from edgehad.export.layout import fold_reduction_transposes

    model, schema = _transpose_then_reduce(perm, axes, False, reduction)
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32)
    before = _run(model, x)
    assert fold_reduction_transposes(model, schema) == 1
    (op,) = model.subgraphs[0].operators
    graph = model.subgraphs[0]
    assert op.opcodeIndex == 1 and op.inputs[0] == graph.inputs[0]
    axes_buffer = model.buffers[graph.tensors[op.inputs[1]].buffer]
    assert np.frombuffer(bytes(axes_buffer.data), "<i4").tolist() == folded_axes
    after = _run(model, x)
    assert after.shape == before.shape and np.allclose(after, before, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("perm, axes, keep_dims, output_too", [
    ((0, 3, 1, 2), (2, 3), True, False),   # keep_dims: the kept dims would come out in another order
    ((0, 2, 1, 3), (3,), False, False),    # the dims kept are swapped: the TRANSPOSE does real work
    ((0, 3, 1, 2), (2, 3), False, True),   # the transposed tensor is also a graph output
])
def test_a_transpose_that_matters_stays(perm, axes, keep_dims, output_too):
    from edgehad.export.layout import fold_reduction_transposes

    model, schema = _transpose_then_reduce(perm, axes, keep_dims, output_too=output_too)
    assert fold_reduction_transposes(model, schema) == 0 and len(model.subgraphs[0].operators) == 2
