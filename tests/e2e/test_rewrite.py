"""edgehad convert --rewrite and edgehad rewrite: real models, real runtimes, the real CLI."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli
from tests.e2e.test_cli_convert import assert_clean_error


def _stage(report, name):
    return next(s for s in report["stages"] if s["name"] == name)


def test_attention_to_aft_with_distillation_stays_within_a_point(tmp_path):
    result = run_cli("convert", "zoo:digits_transformer", "--data", "digits", "--rewrite", "attention-to-aft",
                     "--finetune-epochs", "30", "--out", str(tmp_path / "out"), "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    rw = _stage(report, "rewrite")["rewrite"]
    assert rw["rules"][0]["rewritten"] == ["blocks.0.attn", "blocks.1.attn"]
    assert rw["moved"]["cosine"] < 0.999  # the function changed ...
    tuned = _stage(report, "finetune")["finetune"]
    assert tuned["moved"]["top1_agreement"] >= rw["moved"]["top1_agreement"]  # ... and distillation pulled it back
    metric = _stage(report, "verify")["task_metric"]
    for key in ("onnx_float", "tflite_float"):
        assert metric[key] >= metric["original"] - 0.01, metric
    ops = {a["format"]: a for a in report["artifacts"]}
    assert all(a["parity"]["passed"] for a in ops.values())


def test_hard_gates_quantize_no_worse_than_silu(tmp_path):
    import edgehad

    silu = edgehad.convert("zoo:digits_cnn", model_args={"act": "silu"}, data="digits", quantize="int8",
                           out=tmp_path / "silu")
    hard = edgehad.convert("zoo:digits_cnn", model_args={"act": "silu"}, data="digits", rewrite="act-to-hard-gate",
                           finetune_epochs=10, quantize="int8", out=tmp_path / "hard",
                           max_accuracy_drop=100)  # this test judges the accuracy itself, against the SiLU model
    assert _stage(hard, "rewrite")["rewrite"]["rules"][0]["rewritten"]
    a, b = _stage(silu, "verify")["task_metric"], _stage(hard, "verify")["task_metric"]
    for key in ("onnx_int8", "tflite_int8"):
        assert b[key] >= a[key] - 0.003, (key, a[key], b[key])  # within one val sample of the SiLU model


def test_rewrite_list_and_explain_json():
    result = run_cli("rewrite", "--list", "--json")
    assert result.returncode == 0, result.stderr
    rules = {r["rule"]: r for r in json.loads(result.stdout)}
    assert set(rules) == {"act-to-hard-gate", "attention-to-aft", "ffn-to-glu", "fold-se", "insert-se"}
    result = run_cli("rewrite", "zoo:mobilenet_v2", "--model-arg", "width_mult=0.35", "--model-arg", "input_size=64",
                     "--explain", "--rule", "insert-se,attention-to-aft", "--json")
    assert result.returncode == 0, result.stderr
    se, attn = json.loads(result.stdout)
    assert se["rewritten"] and all("depthwise" in r for r in se["skipped"].values())
    assert attn["rewritten"] == [] and "nothing in this model looks like" in attn["note"]


def test_strict_and_lenient_when_a_rule_matches_nothing(tmp_path):
    out = tmp_path / "out"
    args = ("convert", "zoo:digits_transformer", "--rewrite", "insert-se", "--out", str(out))
    assert_clean_error(run_cli(*args, "--strict"), "rule insert-se matched nothing it could rewrite")
    assert not out.exists()
    lenient = run_cli(*args, "--json")
    assert lenient.returncode == 0 and "warning: rewrite: insert-se rewrote nothing" in lenient.stderr
    report = json.loads(lenient.stdout)
    assert _stage(report, "rewrite")["rewrite"]["rules"][0]["rewritten"] == []


BAD = [
    (["convert", "zoo:digits_cnn", "--rewrite", "attn-to-aft"], "unknown rewrite rule 'attn-to-aft': valid rules are"),
    (["convert", "zoo:digits_cnn", "--strict"], "--strict needs --rewrite"),
    (["convert", "zoo:digits_transformer", "--rewrite", "attention-to-aft", "--finetune-epochs", "2"],
     "finetune needs --data"),
    (["convert", "zoo:digits_transformer", "--rewrite", "attention-to-aft"],
     "changes the model's function and is followed by distillation from the original, which needs --data"),
    (["rewrite"], "use `edgehad rewrite --list` or `edgehad rewrite MODEL --explain`"),
    (["rewrite", "zoo:digits_cnn"], "needs --explain"),
    (["rewrite", "zoo:digits_cnn", "--explain", "--rule", "nope"], "unknown rewrite rule 'nope'"),
]


@pytest.mark.parametrize("args, message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_rewrite_input(args, message, tmp_path):
    result = run_cli(*args, "--out", str(tmp_path / "out")) if args[0] == "convert" else run_cli(*args)
    assert_clean_error(result, message)


def test_finetune_epochs_zero_skips_recovery_for_a_speed_measurement(tmp_path):
    import edgehad

    report = edgehad.convert("zoo:transformer_encoder", model_args={"seq_len": 16, "dim": 32, "depth": 1},
                             rewrite="attention-to-aft", finetune_epochs=0, formats="onnx", out=tmp_path, samples=2)
    assert [s["name"] for s in report["stages"]][:2] == ["rewrite", "export-onnx"]
    assert report["artifacts"][0]["parity"]["passed"]


def test_a_function_changing_rule_brings_distillation_by_default(tmp_path):
    import edgehad

    report = edgehad.convert("zoo:digits_transformer", data="digits", rewrite="attention-to-aft", formats="onnx",
                             out=tmp_path, samples=2)
    assert [s["name"] for s in report["stages"]][:2] == ["rewrite", "finetune"]
