"""edgehad convert --prune: real models pruned, recovered, exported and run in both runtimes."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli
from tests.e2e.test_cli_convert import assert_clean_error
from tests.e2e.test_zoo_parity import SMALL


def _stage(report, name):
    return next(s for s in report["stages"] if s["name"] == name)


@pytest.fixture(scope="module")
def digits_pruned(tmp_path_factory):
    out = tmp_path_factory.mktemp("pruned") / "out"
    # no --finetune-epochs: with data, pruning is followed by recovery by default
    result = run_cli("convert", "zoo:digits_cnn", "--data", "digits", "--prune", "0.5", "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout), out


def test_recovery_brings_digits_cnn_back_within_one_point(digits_pruned):
    report, out = digits_pruned
    pruning = _stage(report, "prune")["pruning"]
    assert pruning["macs_ratio"] <= 0.5                       # >= 50% of MACs removed
    assert pruning["compaction_max_abs_error"] <= 1e-5
    tuned = _stage(report, "finetune")["finetune"]
    metric = _stage(report, "verify")["task_metric"]
    assert tuned["best"] > pruning["val_accuracy_after_prune"] + 0.2   # recovery raised accuracy
    for key in ("onnx_float", "tflite_float"):
        assert metric[key] >= metric["original"] - 0.01, (key, metric)
    assert {p.name for p in out.iterdir()} == {"model.onnx", "model.tflite", "report.json", "report.md"}


def test_accuracy_lost_without_recovery_fails_with_both_numbers(tmp_path):
    """Parity alone would call this file verified: it matches its pruned torch graph exactly."""
    out = tmp_path / "out"
    result = run_cli("convert", "zoo:digits_cnn", "--data", "digits", "--prune", "0.5", "--finetune-epochs", "0",
                     "--format", "onnx", "--out", str(out))
    assert_clean_error(result, "accuracy: onnx (float) has top-1 ", code=1)
    line = next(ln for ln in result.stderr.splitlines() if ln.startswith("error: "))
    import re

    got, original, drop = map(float, re.search(r"top-1 ([\d.]+)% on 360 digits val samples against ([\d.]+)% for the "
                                               r"original model, ([\d.]+) points lower \(allowed: 1\)", line).groups())
    assert original == 99.2 and got < 50 and abs(drop - (original - got)) < 0.11
    assert "--finetune-epochs N" in line and "--max-accuracy-drop" in line
    assert not out.exists()
    # the bound is the user's to move: allowed, the same run passes and reports what it measured
    result = run_cli("convert", "zoo:digits_cnn", "--data", "digits", "--prune", "0.5", "--finetune-epochs", "0",
                     "--format", "onnx", "--max-accuracy-drop", "100", "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    metric = _stage(json.loads(result.stdout), "verify")["task_metric"]
    assert metric["max_drop_points"] == 100 and round(100 * metric["onnx_float"], 1) == got


def test_report_says_exactly_what_was_pruned(digits_pruned):
    report, out = digits_pruned
    pruning = _stage(report, "prune")["pruning"]
    groups = {g["group"]: g for g in pruning["groups"]}
    assert groups["classifier.1"]["skipped"].startswith("no layer reads these channels")
    pruned = [g for g in pruning["groups"] if "kept" in g]
    assert pruned and all(g["kept"] + g["removed"] == g["channels"] for g in pruned)
    layers = {row["layer"]: row for row in pruning["layers"]}
    assert layers["classifier.1"]["out"] == [10, 10] and layers["classifier.1"]["in"][1] < layers["classifier.1"]["in"][0]
    for fmt in ("onnx", "tflite"):  # measured, not asserted: only that both were timed
        lat = pruning["latency"][fmt]
        assert lat["original_ms"] > 0 and lat["pruned_ms"] > 0
    md = (out / "report.md").read_text()
    assert "## Pruning: 50% of channels by magnitude" in md and "## Fine-tuning" in md and "latency" in md


@pytest.mark.parametrize("name", ["resnet8", "ds_cnn", "mobilenet_v3_small", "efficientnet_b0"])
def test_mlperf_tiny_and_se_models_prune_export_and_verify(name, tmp_path):
    import edgehad

    report = edgehad.convert(f"zoo:{name}", model_args=SMALL[name], prune=0.5, out=tmp_path, samples=4)
    pruning = _stage(report, "prune")["pruning"]
    assert pruning["params"][1] < pruning["params"][0] and pruning["macs_ratio"] < 0.6
    assert sorted(a["format"] for a in report["artifacts"]) == ["onnx", "tflite"]
    assert all(a["parity"]["passed"] for a in report["artifacts"])


def test_prune_then_int8(tmp_path):
    import edgehad
    from edgehad.inspection import inspect_file

    report = edgehad.convert("zoo:digits_cnn", data="digits", prune=0.5, finetune_epochs=3, quantize="int8",
                             max_accuracy_drop=100, out=tmp_path)  # accuracy is judged in test_recovery_brings_digits_cnn_back_within_one_point
    names = [s["name"] for s in report["stages"]]
    assert names.index("prune") < names.index("finetune") < names.index("quantize")
    for a in report["artifacts"]:
        assert a["variant"] == "int8" and a["parity"]["passed"]
    assert inspect_file(tmp_path / "model.tflite")["quantized"]


BAD = [
    (["--prune", "1.0"], "must be in [0, 1)"),
    (["--prune", "-0.2"], "must be in [0, 1)"),
    (["--prune", "0.5", "--prune-criterion", "size"], "unknown pruning criterion 'size'"),
    (["--prune", "0.5", "--prune-criterion", "taylor"], "prune needs --data"),
    (["--prune", "0.5", "--finetune-epochs", "3"], "finetune needs --data"),
    (["--prune", "0.5", "--finetune-epochs", "-1", "--data", "digits"], "--finetune-epochs must be >= 0"),
    (["--prune-criterion", "taylor"], "--prune-* options need --prune RATIO"),
    (["--no-distill"], "--no-distill needs --finetune-epochs"),
    (["--prune", "0.5", "--prune-round-to", "0"], "--prune-round-to must be >= 1"),
]


@pytest.mark.parametrize("args, message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_prune_flags(args, message, tmp_path):
    out = tmp_path / "out"
    result = run_cli("convert", "zoo:digits_cnn", *args, "--out", str(out))
    assert_clean_error(result, message)
    assert not out.exists()


def test_nothing_prunable_and_unsafe_stop(model_file, tmp_path):
    out = tmp_path / "out"
    result = run_cli("convert", f"{model_file}:no_inputs", "--input-shape", "1x4", "--prune", "0.5", "--out", str(out))
    assert_clean_error(result, "nothing in this model can be pruned")
    args = ",".join(f"{k}={v}" for k, v in SMALL["transformer_encoder"].items()).split(",")
    result = run_cli("convert", "zoo:transformer_encoder", *[x for a in args for x in ("--model-arg", a)],
                     "--prune", "0.5", "--prune-unsafe", "stop", "--out", str(out))
    assert_clean_error(result, "cannot be pruned safely")
    assert not out.exists()


def test_gradual_schedule_reaches_the_same_size_in_rounds(tmp_path):
    import edgehad

    report = edgehad.convert("zoo:digits_cnn", data="digits", prune=0.5, prune_steps=3, finetune_epochs=2,
                             formats="onnx", max_accuracy_drop=100, out=tmp_path)  # accuracy is judged in test_recovery_brings_digits_cnn_back_within_one_point
    pruning = _stage(report, "prune")["pruning"]
    assert [r["round"] for r in pruning["rounds"]] == [1, 2, 3]
    macs = [r["macs"] for r in pruning["rounds"]]
    assert macs == sorted(macs, reverse=True) and pruning["macs"][1] == macs[-1]
    assert all("val_top1_accuracy" in r for r in pruning["rounds"][:-1])
    layers = {row["layer"]: row for row in pruning["layers"]}
    assert layers["features.0.0"]["out"] == [32, 16]  # same end point as one-shot: half, multiple of 8


def test_unstructured_zeros_survive_fine_tuning_and_shrink_only_the_zipped_file(tmp_path):
    import numpy as np
    import onnx
    from onnx import numpy_helper

    import edgehad

    report = edgehad.convert("zoo:digits_cnn", data="digits", prune=0.7, prune_structure="elements",
                             finetune_epochs=3, max_accuracy_drop=100, out=tmp_path)  # accuracy is judged in test_recovery_brings_digits_cnn_back_within_one_point
    pruning = _stage(report, "prune")["pruning"]
    assert pruning["unstructured"] and pruning["macs_ratio"] == 1.0
    assert "dense runtimes run the same kernels" in pruning["notes"][0]
    weights = [numpy_helper.to_array(t) for t in onnx.load(str(tmp_path / "model.onnx")).graph.initializer]
    big = np.concatenate([w.ravel() for w in weights if w.ndim >= 2])
    assert (big == 0).mean() >= 0.69  # still 70% zeros after 3 epochs of training
    for a in report["artifacts"]:
        assert a["size_zipped_bytes"] < 0.5 * a["size_bytes"]


def test_pruning_twice_into_the_same_folder(tmp_path):
    import edgehad

    for _ in range(2):  # the second run replaces the first's files; no leftovers in between
        edgehad.convert("zoo:resnet8", prune=0.5, formats="onnx", out=tmp_path / "out", samples=2)
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"model.onnx", "report.json", "report.md"}
