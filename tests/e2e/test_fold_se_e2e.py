"""edgehad convert --rewrite fold-se: EfficientNet-B0 (digits) to an int8 TFLite file without its SE ops."""

from __future__ import annotations

import json

from tests.conftest import run_cli


def _stage(report, name):
    return next(s for s in report["stages"] if s["name"] == name)


def test_efficientnet_fold_se_int8_drops_the_gates_and_keeps_accuracy(tmp_path):
    import edgehad

    out = tmp_path / "out"
    result = run_cli("convert", "zoo:efficientnet_b0", "--model-arg", 'pretrained="digits"',
                     "--data", "digits?size=32&channels=3", "--rewrite", "fold-se", "--finetune-epochs", "2",
                     "--quantize", "int8", "--format", "tflite", "--out", out, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    rewrite = _stage(report, "rewrite")["rewrite"]
    assert rewrite["statistics"] == "64 train samples"
    how = rewrite["rules"][0]["how"]
    assert len(how) == 16 and all(h.startswith("folded into ") for h in how.values())

    # The plain int8 file has CONV_2D 65, LOGISTIC 65, MUL 65, MEAN 11 (the SE pools of the 11 blocks
    # whose map is larger than 1x1), DEPTHWISE_CONV_2D 16, ADD 9, PAD 5, SUM 1 (the head's pool), ...:
    # each folded block loses its pool, two 1x1 convs, two LOGISTIC+MUL pairs (SiLU, gate and product).
    ops = edgehad.inspect(str(out / "model.tflite"))["ops"]
    assert ops == {"CONV_2D": 33, "LOGISTIC": 33, "MUL": 33, "DEPTHWISE_CONV_2D": 16, "ADD": 9, "PAD": 5,
                   "DEQUANTIZE": 1, "FULLY_CONNECTED": 1, "QUANTIZE": 1, "RESHAPE": 1, "SUM": 1}

    metric = _stage(report, "verify")["task_metric"]
    assert metric["original"] == 0.986111  # 355 of 360
    assert metric["tflite_int8"] >= metric["original"] - 0.01, metric  # measured: 0.980556 (353 of 360)
