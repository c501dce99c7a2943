"""``edgehad inspect`` through a real subprocess, on files edgehad wrote and on broken ones."""

from __future__ import annotations

import json

import pytest

from tests.e2e.test_cli_convert import assert_clean_error

INSPECT_KEYS = {"format", "inputs", "outputs", "ops", "params", "macs", "size_bytes", "quantized"}


@pytest.fixture(scope="module")
def files(model_file, tmp_path_factory):
    import edgehad

    out = tmp_path_factory.mktemp("insp")
    edgehad.convert(f"{model_file}:net", out=out, samples=2)
    return out


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_inspect_json_of_exported_files(files, fmt, cli):
    result = cli("inspect", files / f"model.{fmt}", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    info = json.loads(result.stdout)
    assert INSPECT_KEYS <= set(info)
    assert info["format"] == fmt
    # the TFLite image input is channels-last by default, and inspect says so; ONNX states no layout
    assert [i["shape"] for i in info["inputs"]] == [{"onnx": [1, 1, 8, 8], "tflite": [1, 8, 8, 1]}[fmt]]
    assert [i.get("layout") for i in info["inputs"]] == [{"onnx": None, "tflite": "nhwc"}[fmt]]
    assert [o["shape"] for o in info["outputs"]] == [[1, 10]]
    assert info["params"] == 8 * 9 + 8 + 8 * 64 * 10 + 10
    assert info["macs"] == 8 * 9 * 64 + 8 * 64 * 10
    assert info["quantized"] is False
    assert info["size_bytes"] == (files / f"model.{fmt}").stat().st_size
    expected_ops = {"onnx": {"Conv", "Relu", "Reshape", "Gemm"},
                    "tflite": {"DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "RESHAPE", "TRANSPOSE"}}[fmt]
    assert set(info["ops"]) == expected_ops


def test_inspect_model_spec_and_human_output(model_file, cli):
    result = cli("inspect", f"{model_file}:net", "--model-arg", "width=4", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    info = json.loads(result.stdout)
    assert info["format"] == "torch" and info["params"] == 4 * 9 + 4 + 4 * 64 * 10 + 10
    result = cli("inspect", f"{model_file}:net")
    assert result.returncode == 0 and "params" in result.stdout and "ops:" in result.stdout


def test_inspect_api_can_be_called_twice(files):
    import edgehad

    assert edgehad.inspect(files / "model.onnx")["format"] == "onnx"
    assert edgehad.inspect(files / "model.tflite")["format"] == "tflite"


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_corrupt_and_truncated_files(files, fmt, tmp_path, cli):
    data = (files / f"model.{fmt}").read_bytes()
    cases = {"truncated": data[:100], "empty": b"", "garbage": bytes(range(256)) * 4}
    for name, content in cases.items():
        path = tmp_path / f"{name}.{fmt}"
        path.write_bytes(content)
        result = cli("inspect", path)
        assert_clean_error(result, f"{path}")
        assert "re-export" in result.stderr or "empty" in result.stderr, result.stderr


def test_missing_and_unsupported_files(tmp_path, cli):
    assert_clean_error(cli("inspect", tmp_path / "nope.onnx"), "nope.onnx: no such file: check the path")
    (tmp_path / "model.h5").write_bytes(b"x")
    assert_clean_error(cli("inspect", tmp_path / "model.h5"), "cannot inspect '.h5' files")
