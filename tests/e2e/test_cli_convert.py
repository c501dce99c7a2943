"""``edgehad convert`` through a real subprocess: outputs, JSON, and every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

REPORT_KEYS = {"source", "stages", "artifacts", "preprocessing"}


def assert_clean_error(result, message: str, code: int = 2):
    """One ``error: ...`` line with ``message``, the exit code, and no traceback."""
    assert result.returncode == code, (result.returncode, result.stderr[-2000:])
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert message in errors[0], errors[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


@pytest.fixture(scope="module")
def converted(model_file, tmp_path_factory):
    from tests.conftest import run_cli

    out = tmp_path_factory.mktemp("conv") / "out"
    result = run_cli("convert", f"{model_file}:net", "--data", "digits", "--normalize", "0.5,0.25",
                     "--out", out, "--json")
    return result, out


def test_json_stdout_is_exactly_one_document(converted):
    result, out = converted
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)  # litert-torch's progress lines must not be on stdout
    assert REPORT_KEYS <= set(report)
    # ... while edgehad's own progress still reaches stderr with --json: one line per stage
    assert [ln for ln in result.stderr.splitlines() if ln.startswith("… stage ")] == \
        ["… stage export-onnx", "… stage export-tflite", "… stage verify"]
    assert [s["name"] for s in report["stages"]] == ["export-onnx", "export-tflite", "verify"]
    for stage in report["stages"]:
        assert stage["params"] == 8 * 9 + 8 + 8 * 64 * 10 + 10
        assert stage["macs"] == 8 * 9 * 64 + 8 * 64 * 10
        assert stage["seconds"] >= 0
    assert report["preprocessing"]["mean"] == [0.5] and report["preprocessing"]["std"] == [0.25]
    assert report["data"] == "digits" and report["samples"] == 16
    metric = report["stages"][-1]["task_metric"]
    assert metric["name"] == "top1_accuracy" and metric["samples"] == 360
    assert metric["onnx_float"] == metric["tflite_float"] == metric["original"] == metric["torch_float"]


def test_files_and_parity(converted):
    import numpy as np

    from edgehad.data import load_data
    from edgehad.runtime import Session

    result, out = converted
    report = json.loads(result.stdout)
    # the bound from the data: DESIGN's float rule, 1e-4 * max(1, max|y|), over the 16 samples verify ran
    x = load_data("digits", normalize="0.5,0.25").val[0][:report["samples"]].astype(np.float32)
    session = Session(str(out / "model.onnx"))
    y_max = max(float(np.abs(session.run([x[i:i + 1]])[0]).max()) for i in range(len(x)))
    bound = 1e-4 * max(1.0, y_max)
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx", "model.tflite", "report.json", "report.md"]
    assert json.loads((out / "report.json").read_text())["artifacts"] == report["artifacts"]
    formats = {a["format"]: a for a in report["artifacts"]}
    assert set(formats) == {"onnx", "tflite"}
    for fmt, a in formats.items():
        assert Path(a["path"]) == out / f"model.{fmt}"
        assert a["size_bytes"] == (out / f"model.{fmt}").stat().st_size
        p = a["parity"]
        assert set(p) >= {"max_abs", "max_rel", "cosine", "top1_agreement"}
        assert p["max_abs"] <= bound and p["passed"], (fmt, p["max_abs"], bound)
        assert p["cosine"] > 0.999999 and p["top1_agreement"] == 1.0
    md = (out / "report.md").read_text()
    assert "| model.tflite | tflite | float |" in md


def test_exported_files_match_torch_on_real_digits(converted, model_file):
    """Independent of the verify stage: run the files ourselves on real digits."""
    from edgehad.data import load_data
    from edgehad.loading import load_model
    from edgehad.runtime import Session

    _, out = converted
    model = load_model(f"{model_file}:net").module
    x = load_data("digits", normalize="0.5,0.25").val[0][:8].astype(np.float32)
    for name in ("model.onnx", "model.tflite"):
        sess = Session(str(out / name), layout="nchw")  # the .tflite is NHWC: the Session transposes x
        for i in range(len(x)):
            ref = model(torch.from_numpy(x[i:i + 1])).detach().numpy()
            got = sess.run([x[i:i + 1]])[0]
            np.testing.assert_allclose(got, ref, atol=1e-4 * max(1, np.abs(ref).max()), rtol=0)


def test_human_output_and_python_m(model_file, tmp_path, cli):
    result = cli("convert", f"{model_file}:net", "--format", "onnx", "--out", tmp_path / "o")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "model.onnx" in result.stdout and "yes" in result.stdout
    # no data: the summary says that accuracy was not judged, and how to judge it
    assert "accuracy: not measured (no data given); give --data to judge it" in result.stdout
    assert not (tmp_path / "o" / "model.tflite").exists()


def test_keep_intermediate_and_recipe_file(model_file, tmp_path, cli):
    recipe = tmp_path / "r.toml"
    recipe.write_text('name = "mine"\n[stages.export-tflite]\n[stages.verify]\nrtol = 1e-4\n')
    result = cli("convert", f"{model_file}:net", "--recipe", recipe, "--keep-intermediate", "--out", tmp_path / "o",
                 "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert [s["name"] for s in report["stages"]] == ["export-tflite", "verify"]
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["model.tflite", "report.json", "report.md"]


def test_exported_program_file(model_file, tmp_path, cli):
    from edgehad.loading import load_model

    src = load_model(f"{model_file}:net")
    torch.export.save(torch.export.export(src.module, src.example_inputs), str(tmp_path / "net.pt2"))
    result = cli("convert", tmp_path / "net.pt2", "--out", tmp_path / "o", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["source"]["exported_program"] is True
    assert all(a["parity"]["passed"] for a in report["artifacts"])


BAD_INPUTS = [
    # (args after "convert", message in the error line)
    (["{dir}/missing.py:net"], "does not exist"),
    (["no_such_module_xyz:net"], "cannot be imported"),
    (["{file}:nope"], "has no factory 'nope'"),
    (["{file}:broken"], "raised ValueError: the factory is broken on purpose"),
    (["{file}:net", "--input-shape", "1x3x32x32"], "inputs of shape 1x3x32x32 do not fit"),
    (["{file}:net", "--weights", "{tmp}/wrongkeys.pt"], "missing body.0.weight"),
    (["{file}:net", "--weights", "{tmp}/evil.pt"], "not a plain state dict"),
    (["{file}:net", "--weights", "{tmp}/nope.pt"], "weights file {tmp}/nope.pt does not exist"),
    (["{file}:unsupported"], "cannot lower op"),
    (["{file}:net", "--recipe", "{tmp}/badkey.toml"], "unknown recipe key 'stagez'"),
    (["{file}:net", "--recipe", "{tmp}/badopt.toml"], "unknown option 'opsett' for stage 'export-onnx'"),
    (["{file}:net", "--recipe", "{tmp}/badstage.toml"], "unknown stage 'quantise'"),
    (["{file}:net", "--recipe", "{tmp}/missing.toml"], "does not exist"),
    (["{file}:net", "--format", "coreml"], "unknown format 'coreml'"),
    (["{file}:net", "--data", "digits?size=32&channels=3"], "gives inputs of shape 1x3x32x32 but the model takes 1x1x8x8"),
    (["{file}:net", "--data", "digits?colour=1"], "colour"),
    (["{file}:net", "--model-arg", "width"], "is not KEY=VALUE"),
]


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, model_file):
    import pickle

    from tests.unit.test_loading import _Exploit

    tmp = tmp_path_factory.mktemp("bad")
    from edgehad.loading import load_model

    state = load_model(f"{model_file}:net").module.state_dict()
    torch.save({f"encoder.{k}": v for k, v in state.items()}, tmp / "wrongkeys.pt")
    with open(tmp / "evil.pt", "wb") as fh:
        pickle.dump({"w": _Exploit(str(tmp / "pwned"))}, fh)
    (tmp / "badkey.toml").write_text("stagez = 1\n")
    (tmp / "badopt.toml").write_text("[stages.export-onnx]\nopsett = 17\n")
    (tmp / "badstage.toml").write_text("[stages.quantise]\n")
    return tmp


@pytest.mark.parametrize("args, message", BAD_INPUTS, ids=[m for _, m in BAD_INPUTS])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(args, message, model_file, bad_files, tmp_path, cli):
    fill = {"dir": model_file.parent, "file": model_file, "tmp": bad_files}
    out = tmp_path / "out"
    result = cli("convert", *[a.format(**fill) for a in args], "--out", out)
    assert_clean_error(result, message.format(**fill))
    assert not out.exists() or list(out.iterdir()) == []
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left behind
    assert not (bad_files / "pwned").exists()


def test_unsupported_op_names_op_and_module(model_file, tmp_path, cli):
    result = cli("convert", f"{model_file}:unsupported", "--format", "tflite", "--out", tmp_path / "o")
    assert_clean_error(result, "litert-torch cannot lower op aten.special_bessel_j0 in module body.4 (Odd)")
    result = cli("convert", f"{model_file}:unsupported", "--format", "onnx", "--out", tmp_path / "o")
    assert_clean_error(result, "torch.onnx cannot lower op prims.bessel_j0 in module body.4 (Odd)")


def test_failed_run_leaves_a_good_out_untouched(model_file, tmp_path, cli):
    out = tmp_path / "out"
    assert cli("convert", f"{model_file}:net", "--out", out).returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    # a model that exports its first format and then fails in the second
    result = cli("convert", f"{model_file}:unsupported", "--out", out)
    assert result.returncode == 2
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_debug_shows_traceback(model_file, tmp_path, cli):
    result = cli("convert", f"{model_file}:broken", "--out", tmp_path / "o", "--debug")
    assert result.returncode == 2
    assert "Traceback" in result.stderr and "error: factory" in result.stderr
