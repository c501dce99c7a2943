"""int8 static: one PT2E graph, exported to ONNX and TFLite, checked against it and against float."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edgehad.data import load_data
from edgehad.inspection import inspect_file
from edgehad.runtime import Session
from tests.e2e.test_cli_convert import assert_clean_error

DIGITS = "digits"
DIGITS32 = "digits?size=32&channels=3"


def accuracy_torch(model, x, y) -> float:
    with torch.no_grad():
        return float(np.mean([int(model(torch.from_numpy(x[i:i + 1])).argmax()) == y[i] for i in range(len(x))]))


def accuracy_file(path, x, y) -> float:
    sess = Session(str(path), layout="nchw")  # x is NCHW; the .tflite is NHWC (the default)
    return float(np.mean([int(sess.run([x[i:i + 1]], dequantize=True)[0].argmax()) == y[i] for i in range(len(x))]))


def output_scale_onnx(path) -> float:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    out = model.graph.output[0].name
    producer = {o: n for n in model.graph.node for o in n.output}
    node = producer[out]
    while node.op_type != "DequantizeLinear":
        node = producer[node.input[0]]
    return float(consts[node.input[1]])


@pytest.fixture(scope="module")
def digits_int8(tmp_path_factory):
    import edgehad

    out = tmp_path_factory.mktemp("q") / "out"
    report = edgehad.convert("zoo:digits_cnn", data=DIGITS, quantize="int8", int8_io=True, out=out)
    return report, out


def _quantized_torch(name, args, data):
    """The PT2E graph the stage builds, rebuilt here from the same calibration samples."""
    from edgehad.quantize.calibration import calibration_inputs
    from edgehad.quantize.pt2e import quantize_int8
    from edgehad.zoo import get_model

    model = get_model(name, **args)
    calib = calibration_inputs(model.example_inputs, load_data(data), n=256)
    return model, quantize_int8(model, model.example_inputs, calib)[0]


def test_int8_files_within_two_output_steps_of_the_pt2e_graph(digits_int8):
    report, out = digits_int8
    _, qgm = _quantized_torch("digits_cnn", {}, DIGITS)
    x = load_data(DIGITS).val[0]
    with torch.no_grad():
        ref = np.concatenate([qgm(torch.from_numpy(x[i:i + 1])).numpy() for i in range(len(x))])
    tfl = Session(str(out / "model.tflite"))
    step = {"tflite": tfl.outputs[0]["quantization"]["scale"], "onnx": output_scale_onnx(out / "model.onnx")}
    for fmt in ("onnx", "tflite"):
        sess = Session(str(out / f"model.{fmt}"), layout="nchw")
        got = np.concatenate([sess.run([x[i:i + 1]], dequantize=True)[0] for i in range(len(x))])
        within = np.mean(np.abs(got - ref) <= 2 * step[fmt] + 1e-6)
        assert within >= 0.99, (fmt, within)


def test_int8_accuracy_and_agreement_on_real_digits(digits_int8):
    from edgehad.zoo import get_model

    report, out = digits_int8
    x, y = load_data(DIGITS).val
    float_acc = accuracy_torch(get_model("digits_cnn"), x, y)
    preds = {}
    for fmt in ("onnx", "tflite"):
        acc = accuracy_file(out / f"model.{fmt}", x, y)
        assert acc >= float_acc - 0.005, (fmt, acc, float_acc)
        sess = Session(str(out / f"model.{fmt}"), layout="nchw")
        preds[fmt] = np.array([int(sess.run([x[i:i + 1]], dequantize=True)[0].argmax()) for i in range(len(x))])
    assert np.mean(preds["onnx"] == preds["tflite"]) >= 0.99


def test_int8_report_io_and_size(digits_int8, digits_float_out):
    import edgehad

    report, out = digits_int8
    quant = report["stages"][0]
    assert quant["name"] == "quantize"
    assert quant["quantization"]["calibration"] == {"source": "digits train split", "samples": 256}
    for a in report["artifacts"]:
        assert a["variant"] == "int8" and a["parity"]["passed"]
        assert a["parity"]["vs_original"]["cosine"] >= 0.99
    info = edgehad.inspect(out / "model.tflite")
    assert info["quantized"] and info["inputs"][0]["dtype"] == "int8"
    assert info["inputs"][0]["quantization"]["scale"] > 0
    onnx_info = edgehad.inspect(out / "model.onnx")
    assert onnx_info["quantized"] and onnx_info["weight_dtypes"]["int8"] >= 28000
    assert (out / "model.tflite").stat().st_size <= 0.35 * (digits_float_out / "model.tflite").stat().st_size


def test_onnx_int8_reaches_fused_kernels(digits_int8, tmp_path):
    """onnxruntime's optimized graph runs the convs and the linear as int8 kernels."""
    import onnx
    import onnxruntime as ort

    _, out = digits_int8
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(str(out / "model.onnx"), opts, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node]
    assert "Conv" not in ops and ops.count("QLinearConv") == 3
    assert "Gemm" not in ops and ("QGemm" in ops or "QLinearMatMul" in ops or "MatMulIntegerToFloat" in ops)


GATED = [
    ("digits_cnn", {"act": "silu", "gate": "se"}, DIGITS),
    ("digits_cnn", {"act": "relu", "gate": "glu"}, DIGITS),
    ("mobilenet_v3_small", {"pretrained": "digits"}, DIGITS32),
    ("efficientnet_b0", {"pretrained": "digits"}, DIGITS32),
]


@pytest.mark.parametrize("name, args, data", GATED, ids=[f"{n}-{a}" for n, a, _ in GATED])
def test_gated_models_quantize_within_one_point(name, args, data, tmp_path):
    import edgehad
    from edgehad.zoo import get_model

    report = edgehad.convert(f"zoo:{name}", model_args=args, data=data, quantize="int8", out=tmp_path)
    x, y = load_data(data).val
    float_acc = accuracy_torch(get_model(name, **args), x, y)
    for a in report["artifacts"]:
        acc = accuracy_file(a["path"], x, y)
        assert acc >= float_acc - 0.01, (a["format"], acc, float_acc)
        assert a["parity"]["vs_original"]["cosine"] >= 0.99
    # Gates included, the TFLite file is int8 end to end: the only (de)quantize ops are the float I/O.
    ops = inspect_file(tmp_path / "model.tflite")["ops"]
    assert (ops.get("QUANTIZE"), ops.get("DEQUANTIZE")) == (1, 1), ops
    # A folded hard-sigmoid gate's clamp is the identity once quantized, and is gone: TFLite Micro has
    # no RELU_0_TO_1 kernel.
    assert "RELU_0_TO_1" not in ops, ops


def test_quantize_needs_data_or_explicit_random(model_file, tmp_path, cli):
    result = cli("convert", f"{model_file}:net", "--quantize", "int8", "--out", tmp_path / "o")
    assert_clean_error(result, "int8 quantization needs calibration data: pass --data SPEC, or --calib random")
    result = cli("convert", f"{model_file}:net", "--quantize", "int8", "--calib", "random", "--calib-samples", "8",
                 "--out", tmp_path / "o", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    quant = json.loads(result.stdout)["stages"][0]["quantization"]
    assert "NOT representative" in quant["calibration"]["source"] and quant["calibration"]["samples"] == 8


@pytest.fixture(scope="module")
def bad_npz(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("npz")
    x, y = load_data(DIGITS).train
    x = x.copy()
    x[5, 0, 0, 0] = np.nan
    np.savez(tmp / "nan.npz", x_train=x, y_train=y, x_val=x[:10], y_val=y[:10])
    np.savez(tmp / "few.npz", x_train=x[6:16], y_train=y[6:16], x_val=x[6:16], y_val=y[6:16])  # no NaN: x[5] has it
    return tmp


@pytest.mark.parametrize("data, extra, message", [
    ("nan.npz", [], "nan.npz: array 'x_train' holds NaN or infinite values in 1 of 1437 samples (first: sample 5)"),
    ("few.npz", [], "calibration asked for 256 samples but {dir}/few.npz has 10 in its train split"),
    ("digits?size=16", [], "gives inputs of shape 1x1x16x16 but the model takes 1x1x8x8"),
])
def test_bad_calibration_data(data, extra, message, model_file, bad_npz, tmp_path, cli):
    spec = str(bad_npz / data) if data.endswith(".npz") else data
    result = cli("convert", f"{model_file}:net", "--quantize", "int8", "--data", spec, *extra, "--out", tmp_path / "o")
    assert_clean_error(result, message.format(dir=bad_npz))
    assert not (tmp_path / "o").exists()


def test_keep_float_named_layers_stay_float_in_both_files(tmp_path):
    import edgehad

    report = edgehad.convert("zoo:digits_cnn", data=DIGITS, quantize="int8", keep_float="classifier.1", out=tmp_path)
    quant = report["stages"][0]["quantization"]
    assert quant["kept_float"] == [{"layer": "classifier.1", "reason": "asked for with keep_float"}]
    for a in report["artifacts"]:
        dtypes = edgehad.inspect(a["path"])["weight_dtypes"]
        assert dtypes["float32"] >= 640 + 10, (a["format"], dtypes)   # the classifier's weight and bias
        assert a["parity"]["passed"]


def test_keep_float_stem_names_the_first_conv_on_image_channels(tmp_path):
    import edgehad

    report = edgehad.convert("zoo:digits_cnn", data=DIGITS, quantize="int8", keep_float="stem", out=tmp_path)
    kept = report["stages"][0]["quantization"]["kept_float"]
    assert [k["layer"] for k in kept] == ["features.0.0"] and "<= 4 input channels" in kept[0]["reason"]
    for a in report["artifacts"]:
        dtypes = edgehad.inspect(a["path"])["weight_dtypes"]
        assert dtypes["float32"] >= 32 * 9, (a["format"], dtypes)   # the stem's 3x3 filters stay float
        assert a["parity"]["passed"]


def test_consecutive_float_layers_have_no_quantize_between_them(tmp_path):
    """The activation after a float conv stays float too: no Q/DQ pair between two float convs."""
    import onnx

    import edgehad

    report = edgehad.convert("zoo:digits_cnn", data=DIGITS, quantize="int8", keep_float="features.0.0,features.1.0",
                             formats=["onnx"], out=tmp_path)
    graph = onnx.load(report["artifacts"][0]["path"]).graph
    weights = {i.name for i in graph.initializer}
    ops = [n.op_type for n in graph.node if not (n.op_type == "DequantizeLinear" and n.input[0] in weights)]
    assert ops[:6] == ["Conv", "Relu", "Conv", "Relu", "MaxPool", "QuantizeLinear"], ops[:8]  # max-pool shares its range
    assert report["artifacts"][0]["parity"]["passed"]


def test_keep_float_speed_keeps_the_prefix_fp32_wins(tmp_path, monkeypatch):
    """Timings set here (this machine's would decide nothing testable): fp32 wins the first two convs, not the third.

    The conversion must keep exactly those two float, in both files, and stop the walk at the third.
    """
    import edgehad
    from edgehad.quantize import speed

    fp32_us = {(1, 1, 8, 8): 50.0, (1, 32, 8, 8): 80.0, (1, 32, 4, 4): 95.0}  # int8 takes 100 us for each

    def timed(model_bytes, shape, threads):
        return 100.0 if b"QuantizeLinear" in model_bytes else fp32_us[tuple(shape)]

    monkeypatch.setattr(speed, "conv_kernel_us", timed)
    report = edgehad.convert("zoo:digits_cnn", data=DIGITS, quantize="int8", keep_float="speed", out=tmp_path)
    kept = report["stages"][0]["quantization"]["kept_float"]
    assert [k["layer"] for k in kept] == ["features.0.0", "features.1.0"]
    assert all(k["reason"].startswith("keep_float speed: ") and " us in fp32 against " in k["reason"] for k in kept)
    assert "50.0 us in fp32 against 100.0" in kept[0]["reason"], kept[0]["reason"]
    for a in report["artifacts"]:
        dtypes = edgehad.inspect(a["path"])["weight_dtypes"]
        assert dtypes["float32"] >= 32 * 9 + 32 * 32 * 9, (a["format"], dtypes)  # both kept convs' filters
        assert a["parity"]["passed"]


def test_keep_float_auto_ranks_layers_and_meets_the_target(tmp_path):
    import edgehad

    recipe = tmp_path / "r.toml"
    recipe.write_text('[stages.quantize]\nscheme = "int8"\nkeep_float = "auto"\ntarget_cosine = 0.99999\n'
                      "[stages.export-tflite]\n[stages.verify]\n")
    report = edgehad.convert("zoo:digits_cnn", data=DIGITS, recipe=str(recipe), out=tmp_path / "o")
    quant = report["stages"][0]["quantization"]
    ranking = quant["sensitivity"]
    assert sorted(r["layer"] for r in ranking) == ["classifier.1", "features.0.0", "features.1.0", "features.3.0"]
    assert [r["sqnr_db"] for r in ranking] == sorted(r["sqnr_db"] for r in ranking)
    kept = [k["layer"] for k in quant["kept_float"]]
    assert kept == [r["layer"] for r in ranking[:len(kept)]]
    assert all("output cosine" in k["reason"] for k in quant["kept_float"])


def test_keep_float_unknown_layer(model_file, tmp_path, cli):
    result = cli("convert", f"{model_file}:net", "--quantize", "int8", "--data", "digits", "--keep-float", "body.9",
                 "--out", tmp_path / "o")
    assert_clean_error(result, "--keep-float: no module named 'body.9' in the model; layers are e.g. body.0, body.3")


@pytest.mark.parametrize("scheme", ["int8-dynamic", "fp16"])
def test_dynamic_and_fp16_schemes_through_the_pipeline(scheme, tmp_path, cli):
    result = cli("convert", "zoo:digits_cnn", "--data", "digits", "--quantize", scheme, "--out", tmp_path / "o", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["stages"][0]["quantization"] == {"scheme": scheme}
    metric = report["stages"][-1]["task_metric"]
    for a in report["artifacts"]:
        assert a["variant"] == scheme and a["parity"]["passed"]
        assert a["parity"]["cosine"] >= (0.99 if scheme == "int8-dynamic" else 0.9999)
        assert metric[f"{a['format']}_{scheme}"] >= metric["original"] - 0.01


def test_constant_activation_gets_a_warning_naming_the_layer(model_file, tmp_path, cli):
    result = cli("convert", f"{model_file}:dead", "--quantize", "int8", "--data", "digits", "--calib-samples", "32",
                 "--out", tmp_path / "o", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "warning: activation after dead (conv2d_1) was constant during calibration" in result.stderr
    quant = json.loads(result.stdout)["stages"][0]["quantization"]
    assert quant["degenerate_ranges"] == ["dead (conv2d_1)"]
