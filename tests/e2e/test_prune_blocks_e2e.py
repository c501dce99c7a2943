"""Depth pruning through `convert` (edgehad.prune.blocks, the prune stage's `blocks`): the report, and a
trained EfficientNet-B0 that keeps its accuracy with half its residual blocks gone (issue #16)."""

from __future__ import annotations

import json

from edgehad.prune.blocks import residual_blocks
from edgehad.zoo import get_model


def test_blocks_alone_remove_no_channel_and_the_report_counts_from_the_whole_model(tmp_path):
    from edgehad.api import convert
    from edgehad.cost import count_macs, count_params
    from edgehad.core.capture import captured

    with captured():
        report = convert("zoo:mobilenet_v2", model_args={"width_mult": 0.25, "input_size": 32, "num_classes": 10},
                         prune_blocks=0.3, formats="onnx", out=tmp_path / "out", samples=2)
    info = next(s for s in report["stages"] if s["name"] == "prune")["pruning"]
    full = get_model("mobilenet_v2", width_mult=0.25, input_size=32, num_classes=10)
    # at width 0.25 the rounded widths make one more block residual than at 1.0 (10)
    assert info["blocks"]["candidates"] == len(residual_blocks(full)) == 11
    assert len(info["blocks"]["removed"]) == 3   # int(0.3 * 11 + 0.5)
    assert info["params"][0] == count_params(full) and info["macs"][0] == count_macs(full, full.example_inputs)
    removed = [row for row in info["layers"] if row.get("removed")]
    assert removed and all(row["params"][1] == 0 for row in removed)
    assert {row["layer"].rsplit(".block", 1)[0] for row in removed} == set(info["blocks"]["removed"])
    # no channel of what is left was narrowed
    assert all(row["out"][0] == row["out"][1] for row in info["layers"] if not row.get("removed"))


def test_efficientnet_digits_without_half_its_blocks_keeps_its_accuracy_and_loses_their_ops(tmp_path, cli):
    from edgehad.inspection import inspect_file

    out = tmp_path / "out"
    result = cli("convert", "zoo:efficientnet_b0", "--model-arg", 'pretrained="digits"',
                     "--data", "digits?size=32&channels=3", "--quantize", "int8", "--format", "tflite",
                     "--calib-samples", "64", "--prune-blocks", "0.5", "--finetune-epochs", "3", "--out", str(out), "--json",
                 timeout=1500)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    blocks = next(s for s in report["stages"] if s["name"] == "prune")["pruning"]["blocks"]
    assert blocks["candidates"] == 9 and len(blocks["removed"]) == 5
    metric = next(s for s in report["stages"] if s["name"] == "verify")["task_metric"]
    assert metric["original"] - metric["tflite_int8"] <= 0.01   # the default gate held: <= 1 point lost
    ops = inspect_file(out / "model.tflite")["ops"]
    assert ops["ADD"] == 9 - 5   # one residual sum per block left
