"""Dynamic int8 and fp16, TFLite and ONNX: each file runs in its runtime, stays close
to the float torch model, is smaller, and says what it holds.

Size bars are on the weights' share of the file: (file size - the float file's
non-weight bytes) / the float file's weight bytes. Whole-file ratios would test
the graph instead: the small transformer's float TFLite file is 30% graph (22 of
73 KB), so even ideal int8 weights leave it at 0.53x; on digits_cnn, ONNX fp16 is
0.56x of the float file while its weights are 0.50x.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgehad.core.errors import ConversionError, UserInputError
from edgehad.data import load_data
from edgehad.export.onnx import export_onnx
from edgehad.export.tflite import export_tflite
from edgehad.inspection import inspect_file
from edgehad.quantize.dynamic import onnx_dynamic_int8, tflite_dynamic_int8
from edgehad.quantize.fp16 import onnx_fp16, tflite_fp16
from edgehad.runtime import Session
from edgehad.zoo import get_model

SCHEMES = {  # (scheme, format): the tool, from that format's float file
    ("dynamic", "tflite"): tflite_dynamic_int8,
    ("dynamic", "onnx"): onnx_dynamic_int8,
    ("fp16", "tflite"): tflite_fp16,
    ("fp16", "onnx"): onnx_fp16,
}
MIN_COSINE = {"dynamic": 0.99, "fp16": 0.999}
MAX_WEIGHT_RATIO = {"dynamic": 0.35, "fp16": 0.55}  # int8 + per-channel scales; fp16 + a few float32 biases
MIN_TOP1_AGREEMENT = 0.98
N = 64


def _inputs(name, model):
    if name == "digits_cnn":
        x = load_data("digits").val[0][:N]  # real scans, 8x8 in [0, 1]
    else:  # the transformer takes embeddings: standard normal, as its example input
        g = torch.Generator().manual_seed(1)
        x = torch.randn(16, *model.example_inputs[0].shape[1:], generator=g).numpy()
    return x.astype(np.float32)


@pytest.fixture(scope="module", params=["digits_cnn", "transformer"])
def case(request, tmp_path_factory):
    """One model, its float files, the four quantized files, and outputs on N inputs."""
    name = request.param
    if name == "digits_cnn":
        model = get_model("digits_cnn")  # pretrained
    else:
        model = get_model("transformer_encoder", seq_len=16, dim=32, heads=4, depth=1)
    d = tmp_path_factory.mktemp(name)
    x = _inputs(name, model)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    floats = {"tflite": export_tflite(model, model.example_inputs, d / "float.tflite"),
              "onnx": export_onnx(model, model.example_inputs, d / "float.onnx")}
    files = {(scheme, fmt): make(floats[fmt], d / f"{scheme}.{fmt}")
             for (scheme, fmt), make in SCHEMES.items()}
    return {"name": name, "x": x, "ref": ref, "floats": floats, "files": files}


def _run(path, x):
    sess = Session(path, threads=1)  # the files have a fixed batch of 1
    return np.concatenate([sess.run([x[i:i + 1]])[0] for i in range(len(x))])


def _cosine(a, b):
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _weight_bytes(info):
    return sum(n * np.dtype(dtype).itemsize for dtype, n in info["weight_dtypes"].items())


params = pytest.mark.parametrize("scheme,fmt", list(SCHEMES), ids=[f"{s}-{f}" for s, f in SCHEMES])


@params
def test_runs_close_to_float_model(case, scheme, fmt):
    y = _run(case["files"][scheme, fmt], case["x"])
    ref = case["ref"]
    assert y.shape == ref.shape and y.dtype == np.float32  # float I/O kept
    per_sample = min(_cosine(a, b) for a, b in zip(y, ref))
    assert per_sample >= MIN_COSINE[scheme], f"{case['name']} {scheme} {fmt}: cosine {per_sample:.6f}"
    if case["name"] == "digits_cnn":
        agree = float(np.mean(y.argmax(1) == ref.argmax(1)))
        assert agree >= MIN_TOP1_AGREEMENT, f"{scheme} {fmt}: top-1 agreement {agree:.3f} on {len(y)} val samples"


@params
def test_file_is_smaller(case, scheme, fmt):
    float_file, path = case["floats"][fmt], case["files"][scheme, fmt]
    float_size, size = float_file.stat().st_size, path.stat().st_size
    weights = _weight_bytes(inspect_file(float_file))
    graph = float_size - weights
    ratio = (size - graph) / weights
    assert size < float_size
    assert ratio <= MAX_WEIGHT_RATIO[scheme], (
        f"{case['name']} {scheme} {fmt}: weights {ratio:.3f}x of float "
        f"(file {size} B vs {float_size} B, graph {graph} B)")


@params
def test_inspection_reports_the_scheme(case, scheme, fmt):
    info = inspect_file(case["files"][scheme, fmt])
    dtypes = info["weight_dtypes"]
    if scheme == "dynamic":
        assert info["quantized"] is True
        assert dtypes.get("int8", 0) > 0.95 * sum(dtypes.values())  # what is left: biases and scales
    else:
        assert info["quantized"] is False
        assert dtypes.get("float16", 0) > 0.95 * sum(dtypes.values())
    if scheme == "dynamic" and fmt == "onnx":
        assert "DynamicQuantizeLinear" in info["ops"]


class _NoWeights(torch.nn.Module):
    def forward(self, x):
        return torch.relu(x) * 2.0 + 1.0


def test_model_without_weights_fails_and_keeps_the_old_file(tmp_path):
    model, args = _NoWeights().eval(), (torch.randn(1, 4),)
    dest = tmp_path / "model.tflite"
    dest.write_bytes(b"a good file from an earlier run")
    float_tflite = export_tflite(model, args, tmp_path / "float.tflite")
    with pytest.raises(ConversionError, match="no weights this scheme applies to"):
        tflite_dynamic_int8(float_tflite, dest)
    assert dest.read_bytes() == b"a good file from an earlier run"
    float_onnx = export_onnx(model, args, tmp_path / "float.onnx")
    with pytest.raises(ConversionError, match="no weights this scheme applies to"):
        onnx_dynamic_int8(float_onnx, tmp_path / "dynamic.onnx")
    # no temporaries left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["float.onnx", "float.tflite", "model.tflite"]


@pytest.mark.parametrize("fn, fmt, kind", [(onnx_dynamic_int8, "onnx", "ONNX"), (onnx_fp16, "onnx", "ONNX"),
                                           (tflite_dynamic_int8, "tflite", "TFLite"), (tflite_fp16, "tflite", "TFLite")])
def test_missing_float_file_is_a_user_error(tmp_path, fn, fmt, kind):
    with pytest.raises(UserInputError, match=f"no such {kind} file"):
        fn(tmp_path / f"missing.{fmt}", tmp_path / f"out.{fmt}")
