"""Issue #15, ``--dynamic-batch``: a symbolic batch dim in ONNX and a resizable batch in TFLite, verified at
batch 1 and 4, for every scheme (fp32, int8, int8-dynamic, fp16) on zoo:digits_cnn.

One conversion per scheme, both formats each: fp32 through the CLI flag with --data (the batch of 4 is
real digits); int8 through the API with data (it calibrates on it); int8-dynamic and fp16 through the API
without data (the batch of 4 is the seeded random samples). Every TFLite file is channels-last (the
default; the batch stays dim 0 of [N, H, W, C]) but fp16's, which opts out (``tflite_layout="nchw"``),
so both layouts are resized. Each file is then run here in its runtime at batch 1 and 4 on real
digits: the batch's rows must be the file's own batch-1 outputs (but for onnxruntime's int8-dynamic,
whose activation range spans the batch), and close to torch's. A model that fixes its batch is refused
in one line, leaving no output folder.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import run_cli

SCHEMES = ("fp32", "int8", "int8-dynamic", "fp16")
FIXED_BATCH = '''
import torch

class Fixed(torch.nn.Module):
    """Batch 1 baked in: view(1, -1)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4 * 64, 10)
        self.example_inputs = (torch.randn(1, 1, 8, 8),)

    def forward(self, x):
        return self.fc(self.conv(x).view(1, -1))

def fixed():
    torch.manual_seed(0)
    return Fixed()
'''


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """{scheme: (report, folder)}: zoo:digits_cnn with a dynamic batch, both formats."""
    import edgehad

    root = tmp_path_factory.mktemp("dynbatch")
    result = run_cli("convert", "zoo:digits_cnn", "--data", "digits", "--dynamic-batch", "--samples", "8",
                     "--out", root / "fp32", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    done = {"fp32": (json.loads(result.stdout), root / "fp32")}
    done["int8"] = (edgehad.convert("zoo:digits_cnn", data="digits", quantize="int8", calib_samples=64,
                                    dynamic_batch=True, samples=8, out=root / "int8"),
                    root / "int8")
    for scheme in ("int8-dynamic", "fp16"):
        layout = "nchw" if scheme == "fp16" else None  # the opt-out; None: the default, nhwc
        done[scheme] = (edgehad.convert("zoo:digits_cnn", quantize=scheme, dynamic_batch=True, samples=3,
                                        tflite_layout=layout, out=root / scheme), root / scheme)
    return done


def digits_val(n: int) -> np.ndarray:
    from edgehad.data import load_data

    return np.asarray(load_data("digits").val[0][:n], np.float32)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_report_verifies_each_file_at_batch_1_and_4(converted, scheme):
    report, folder = converted[scheme]
    variant = "float" if scheme == "fp32" else scheme
    assert sorted(a["format"] for a in report["artifacts"]) == ["onnx", "tflite"]
    tflite = next(a for a in report["artifacts"] if a["format"] == "tflite")
    assert tflite["layout"]["inputs"] == ["nchw" if scheme == "fp16" else "nhwc"]
    samples = 3 if scheme in ("int8-dynamic", "fp16") else 8  # fewer than 4: the batch repeats them
    for a in report["artifacts"]:
        p = a["parity"]
        assert a["variant"] == variant and p["passed"] and p["samples"] == samples
        assert p["batch_sizes"] == [1, 4]
        b4 = p["batch_4"]
        assert b4["samples"] == 4 and b4["passed"] and b4["top1_agreement"] == 1.0
        if scheme == "fp32":  # the float rule, and far inside it
            assert b4["max_abs"] <= b4["tolerance"] and b4["max_abs"] < 1e-4
        else:
            assert b4["cosine"] >= 0.99
    exports = {s["name"]: s for s in report["stages"] if s["name"].startswith("export-")}
    assert set(exports) == {"export-onnx", "export-tflite"}
    assert all(s["dynamic_batch"] is True for s in exports.values())


@pytest.mark.parametrize("scheme", SCHEMES)
def test_files_hold_a_symbolic_batch(converted, scheme):
    import onnx
    from ai_edge_litert.interpreter import Interpreter

    folder = converted[scheme][1]
    model = onnx.load(str(folder / "model.onnx"))
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        assert dims[0].dim_param == "batch", value.name
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[1:]] == [1, 8, 8]
    interp = Interpreter(model_path=str(folder / "model.tflite"))
    image = [-1, 1, 8, 8] if scheme == "fp16" else [-1, 8, 8, 1]  # NHWC but fp16's (tflite_layout="nchw")
    assert [list(d["shape_signature"]) for d in interp.get_input_details()] == [image]
    assert [list(d["shape_signature"]) for d in interp.get_output_details()] == [[-1, 10]]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_files_run_at_batch_1_and_4(converted, scheme):
    """Run here, on real digits: the 4 rows of a batch are the file's own batch-1 outputs (the batch
    changes no numbers, but for onnxruntime's int8-dynamic), and the file stays close to the torch model
    at batch 4."""
    import torch

    from edgehad.loading import load_model
    from edgehad.runtime import Session

    x = digits_val(4)
    assert x.shape == (4, 1, 8, 8)
    torch_model = load_model("zoo:digits_cnn").module
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(x)).numpy()
    folder = converted[scheme][1]
    for name in ("model.onnx", "model.tflite"):
        session = Session(str(folder / name))
        nhwc = name == "model.tflite" and scheme != "fp16"
        fed = np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if nhwc else x
        batch = session.run([fed])[0]
        rows = np.concatenate([session.run([fed[i:i + 1]])[0] for i in range(4)])
        assert batch.shape == rows.shape == (4, 10)
        scale = max(1.0, float(np.abs(rows).max()))
        if (scheme, name) == ("int8-dynamic", "model.onnx"):
            # onnxruntime's DynamicQuantizeLinear takes one activation range over the whole batch, so a row
            # moves a little with the rows batched with it (0.03 of logits near 4, measured); same classes
            np.testing.assert_allclose(batch, rows, rtol=0, atol=0.05 * scale)
            assert (batch.argmax(1) == rows.argmax(1)).all()
        else:
            np.testing.assert_allclose(batch, rows, rtol=0, atol=1e-5 * scale)
        assert session.run([fed[:1]])[0].shape == (1, 10)  # back to batch 1 after 4
        if scheme == "fp32":
            np.testing.assert_allclose(batch, expected, rtol=0, atol=1e-4 * max(1.0, float(np.abs(expected).max())))
        else:  # quantized against float: the same classes, outputs nearly parallel
            cosine = float((batch * expected).sum() / np.linalg.norm(batch) / np.linalg.norm(expected))
            assert cosine > 0.99 and (batch.argmax(1) == expected.argmax(1)).all(), (name, cosine)


def test_inspect_shows_the_batch_symbolic(converted):
    folder = converted["fp32"][1]
    shapes = {}
    for name, sample in (("model.onnx", "1x8x8"), ("model.tflite", "8x8x1")):  # the .tflite is NHWC
        for batch in (1, 4):
            result = run_cli("inspect", folder / name, "--input-shape", f"{batch}x{sample}", "--json")
            assert result.returncode == 0, result.stderr[-2000:]
            shapes[name, batch] = json.loads(result.stdout)
    onnx1, tfl1, tfl4 = shapes["model.onnx", 1], shapes["model.tflite", 1], shapes["model.tflite", 4]
    assert [t["shape"] for t in onnx1["inputs"]] == [["batch", 1, 8, 8]]
    assert [t["shape"] for t in onnx1["outputs"]] == [["batch", 10]]
    assert [t["shape"] for t in tfl1["inputs"]] == [[None, 8, 8, 1]]
    assert [t["shape"] for t in tfl1["outputs"]] == [[None, 10]]
    assert list(tfl4["input_shapes"].values()) == [[4, 8, 8, 1]]
    for name in ("model.onnx", "model.tflite"):  # MACs counted at the batch asked for
        assert shapes[name, 4]["macs"] == 4 * shapes[name, 1]["macs"] > 0
    # without a batch, inspect names the symbolic dim rather than guessing it
    result = run_cli("inspect", folder / "model.tflite")
    assert result.returncode == 2 and "symbolic dims" in result.stderr and "--input-shape" in result.stderr


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_a_model_that_fixes_its_batch_is_refused_in_one_line(tmp_path, fmt):
    (tmp_path / "fixed.py").write_text(FIXED_BATCH)
    out = tmp_path / "out"
    result = run_cli("convert", f"{tmp_path / 'fixed.py'}:fixed", "--format", fmt, "--dynamic-batch",
                     "--out", out)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error: ")]
    assert errors == [f"error: --dynamic-batch: the model fixes its batch size to 1, so the "
                      f"{'ONNX' if fmt == 'onnx' else 'TFLite'} file cannot take another batch"
                      + (" (torch.export kept x[0]=1)" if fmt == "onnx" else "")
                      + ": make it batch-agnostic (e.g. x.flatten(1) or x.view(x.shape[0], -1) instead of "
                      "x.view(1, -1)), or drop --dynamic-batch"]
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name not in ("fixed.py", "__pycache__")]
