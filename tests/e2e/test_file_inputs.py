"""`--input-shape NAME=SHAPE` and `--inputs FILE.npz` for inspect, profile and micro, through the real CLI.

Files with symbolic dims as exporters write them: torch.onnx.export (dynamo) and litert-torch with
torch.export Dims for batch, height and width, next to the same model exported at a static shape;
and the streaming audio model of tests/unit/test_file_inputs.py (int64 scalar sample rate, recurrent
state with a symbolic batch).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.conftest import run_cli
from tests.e2e.test_cli_convert import assert_clean_error
from tests.unit.test_file_inputs import audio_arrays, det_macs, detector, streaming

SHAPE = (2, 3, 16, 12)  # the stated shape, and the static export's


class Det(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.b = torch.nn.Conv2d(8, 4, 1)

    def forward(self, images):
        return self.b(torch.relu(self.a(images)))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """{name: path}: det.onnx / det.tflite with dynamic batch, height, width; det_static.* at SHAPE."""
    import litert_torch

    d = tmp_path_factory.mktemp("exported")
    torch.manual_seed(0)
    model = Det().eval()
    example = (torch.randn(3, 3, 8, 8),)  # torch.export specializes dims of size 0 or 1: start from 3
    dims = {0: torch.export.Dim("batch"), 2: torch.export.Dim("height", min=4, max=64),
            3: torch.export.Dim("width", min=4, max=64)}
    torch.onnx.export(model, example, str(d / "det.onnx"), dynamo=True, input_names=["images"],
                      dynamic_shapes={"images": dims})
    torch.onnx.export(model, (torch.randn(*SHAPE),), str(d / "det_static.onnx"), dynamo=True, input_names=["images"])
    litert_torch.convert(model, example, dynamic_shapes=(dims,)).export(str(d / "det.tflite"))
    litert_torch.convert(model, (torch.randn(*SHAPE),)).export(str(d / "det_static.tflite"))
    return {p.name: p for p in d.iterdir()}


def _json(result):
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def test_inspect_names_every_symbolic_dim(tmp_path):
    """Cheap (onnx.helper files): the fast lane's check of the rule, from the command line."""
    det = detector(tmp_path / "det.onnx")
    assert_clean_error(run_cli("inspect", det),
                       f"error: {det} has symbolic dims: images[0]=batch, images[2]=height, images[3]=width; give "
                       f"them with --input-shape (e.g. images=1x3x16x16) or --inputs (an .npz of arrays by input "
                       f"name)")
    text = run_cli("inspect", det, "--input-shape", "images=1x3x64x48")
    assert text.returncode == 0, text.stderr
    assert f"{det_macs(1, 64, 48):,} MACs at images=1x3x64x48" in text.stdout


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_macs_at_the_stated_shape_equal_the_static_export(exported, fmt):
    dynamic, static = exported[f"det.{fmt}"], exported[f"det_static.{fmt}"]
    name = "images" if fmt == "onnx" else "args_0"  # a TFLite input answers to its signature name too
    stated = "x".join(map(str, SHAPE))
    fixed = _json(run_cli("inspect", static, "--json"))
    at = _json(run_cli("inspect", dynamic, "--input-shape", f"{name}={stated}", "--json"))
    assert at["macs"] == fixed["macs"] == SHAPE[0] * SHAPE[2] * SHAPE[3] * (8 * 27 + 4 * 8)
    assert list(at["input_shapes"].values()) == [list(SHAPE)]
    message = (f"error: {dynamic} has symbolic dims: images[0]=batch, images[2]=height, images[3]=width;" if fmt ==
               "onnx" else f"error: {dynamic} has symbolic dims: serving_default_args_0[0], "
                           f"serving_default_args_0[2], serving_default_args_0[3];")
    assert_clean_error(run_cli("inspect", dynamic), message)
    assert_clean_error(run_cli("profile", dynamic, "--runs", "1"), message)


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_profile_times_the_stated_shape_and_records_it(exported, fmt):
    dynamic, static = exported[f"det.{fmt}"], exported[f"det_static.{fmt}"]
    name = "images" if fmt == "onnx" else "serving_default_args_0"
    stated = "x".join(map(str, SHAPE))
    docs = _json(run_cli("profile", dynamic, static, "--input-shape", f"{name}={stated}", "--runs", "3",
                         "--warmup", "0", "--json"))
    assert [d["inputs"] for d in docs] == [{name: {"shape": list(SHAPE), "dtype": "float32"}}] * 2
    assert docs[0]["input_source"] == "random"
    assert docs[0]["roofline"]["macs"] == docs[1]["roofline"]["macs"] == det_macs(*SHAPE[:1], *SHAPE[2:])
    if fmt == "onnx":  # one graph both ways; litert-torch's dynamic graph holds ops of its own that move bytes
        assert docs[0]["roofline"]["bytes"] == docs[1]["roofline"]["bytes"]


def test_profile_feeds_the_npz_given(tmp_path):
    audio = streaming(tmp_path / "audio.onnx")
    np.savez(tmp_path / "chunk.npz", **audio_arrays(batch=2))
    (doc,) = _json(run_cli("profile", audio, "--inputs", tmp_path / "chunk.npz", "--runs", "2", "--warmup", "0",
                           "--json"))
    assert doc["inputs"] == {"chunk": {"shape": [2, 512], "dtype": "float32"}, "sr": {"shape": [], "dtype": "int64"},
                             "state": {"shape": [2, 2, 128], "dtype": "float32"}}
    assert doc["input_source"] == f"the arrays of {tmp_path / 'chunk.npz'}"
    assert doc["roofline"]["macs"] == 2 * 512 * 128


def test_a_runtime_failure_on_the_inputs_fed_is_one_line_exit_1(tmp_path):
    audio = streaming(tmp_path / "audio.onnx")
    np.savez(tmp_path / "sr16k.npz", **audio_arrays(sr=16000))  # 512 samples do not reshape to rows of 16000
    result = run_cli("profile", audio, "--inputs", tmp_path / "sr16k.npz", "--runs", "2")
    assert_clean_error(result, f"error: {audio}: ort failed running it on the samples given (chunk: float32 1x512, "
                               f"sr: int64 scalar, state: float32 2x1x128): [ONNXRuntimeError]", code=1)
    assert "Reshape node" in result.stderr and "internal error" not in result.stderr


@pytest.mark.parametrize("change, message", [
    (lambda a: a.pop("state"), "has no array for input(s) state of {audio}"),
    (lambda a: a.update(extra=np.zeros(2)), "holds 'extra', which {audio} has no input named"),
    (lambda a: a.update(sr=np.array(16.0)), "sr is float64 but {audio} takes int64 there"),
])
def test_an_npz_that_does_not_fit_is_exit_2(tmp_path, change, message):
    audio = streaming(tmp_path / "audio.onnx")
    arrays = audio_arrays()
    change(arrays)
    np.savez(tmp_path / "bad.npz", **arrays)
    assert_clean_error(run_cli("profile", audio, "--inputs", tmp_path / "bad.npz", "--runs", "1"),
                       message.format(audio=audio))


def test_micro_compares_on_the_arrays_given(exported, tmp_path):
    static = exported["det_static.tflite"]
    x = np.random.default_rng(3).standard_normal(SHAPE).astype(np.float32)
    np.savez(tmp_path / "x.npz", args_0=x)
    doc = _json(run_cli("micro", static, "--inputs", tmp_path / "x.npz", "--json"))
    assert doc["samples"] == 1 and doc["inputs_drawn"] == [f"from {tmp_path / 'x.npz'}"]
    assert doc["input_shapes"] == {"serving_default_args_0": list(SHAPE)}
    assert doc["parity"]["passed"] and doc["problems"] == []


def test_micro_refuses_shapes_tflm_cannot_run(exported):
    dynamic = exported["det.tflite"]
    # TFLM runs every tensor at its stored shape (so micro takes the stored input shapes when none is
    # given); the exporter stored its example's inside the graph, which do not follow from them
    for stated in ([], ["--input-shape", "args_0=1x3x1x1"]):
        assert_clean_error(run_cli("micro", dynamic, *stated),
                           f"error: {dynamic} has dynamic dims, and TFLite Micro runs the shapes stored in it, which "
                           f"do not follow from its inputs")
    assert_clean_error(run_cli("micro", dynamic, "--input-shape", "args_0=2x3x8x8"),
                       f"error: {dynamic}: TFLite Micro runs the input shapes stored in the file and cannot resize "
                       f"them: serving_default_args_0 is 1x3x1x1 there, not 2x3x8x8")
