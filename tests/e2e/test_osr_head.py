"""The COSTARR head inside the exported model: ``edgehad convert --osr``, for real.

The head's torch score is checked against the numpy reference
(edgehad.osr.scores.costarr), the exported files' score against the torch
head in onnxruntime and LiteRT on real digits, and the bad inputs through the
CLI (exit 2, one line).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.conftest import run_cli
from tests.e2e.test_cli_convert import assert_clean_error


@pytest.fixture(scope="module")
def digits():
    from edgehad.data import load_data

    d = load_data("digits")
    return (np.asarray(d.train[0], np.float32), np.asarray(d.train[1]),
            np.asarray(d.val[0], np.float32), np.asarray(d.val[1]))


@pytest.fixture(scope="module")
def fitted(digits):
    """digits_cnn (trained weights) and its COSTARR statistics on the train split."""
    from edgehad.osr.stats import fit_stats
    from edgehad.zoo import get_model

    model = get_model("digits_cnn")
    return model, fit_stats(model, digits[0], digits[1])


@pytest.fixture(scope="module")
def stats_file(fitted, tmp_path_factory):
    from edgehad.osr.stats import save_stats

    return save_stats(tmp_path_factory.mktemp("osr") / "digits.npz", fitted[1])


def head_scores(model, stats, x):
    from edgehad.osr.head import OSRHead

    head = OSRHead(model, stats, example_inputs=model.example_inputs)
    with torch.no_grad():
        z, s = head(torch.as_tensor(x))
    return z.numpy(), s.numpy()


def file_outputs(path, x):
    from edgehad.runtime import Session

    session = Session(str(path), threads=1, layout="nchw")  # x is NCHW; an NHWC .tflite gets it transposed
    outs = [session.run([x[i:i + 1]]) for i in range(len(x))]
    return session, np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])[:, 0]


# -- the head in torch ------------------------------------------------------------------------------

def test_head_equals_numpy_reference_on_digits(fitted, digits):
    from edgehad.osr.features import classifier_weight, find_classifier, penultimate
    from edgehad.osr.scores import costarr

    model, stats = fitted
    x = digits[2]
    name, linear = find_classifier(model)
    f, z = penultimate(model, name, x)
    reference = costarr(f, z, classifier_weight(linear), stats)
    logits, score = head_scores(model, stats, x)
    assert score.shape == (len(x), 1)
    np.testing.assert_allclose(score[:, 0], reference, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(logits, z)           # the logits are the model's, untouched
    assert 0.3 < reference.min() and reference.max() < 1.0   # real spread, not a constant


def test_head_algebra_on_fixed_tensors():
    """A' = (mu + W ⊙ eta)·known/(2|m|), B = 1 + W ⊙ W against the direct formula, incl. an excluded class and f = 0."""
    from edgehad.osr.head import KnownScore
    from edgehad.osr.scores import costarr

    rng = np.random.default_rng(0)
    C, D, N = 7, 12, 50
    W = rng.normal(size=(C, D)).astype(np.float32)
    f = np.abs(rng.normal(size=(N, D))).astype(np.float32)
    f[3] = 0.0                                           # an all-zero feature vector: cos 0, score g/2
    z = (f @ W.T + rng.normal(size=C)).astype(np.float32)
    known = np.ones(C, bool)
    known[int(z[5].argmax())] = False                    # an excluded class: its inputs score 0
    stats = {"mu": np.abs(rng.normal(size=(C, D))).astype(np.float32), "eta": rng.normal(size=(C, D)).astype(np.float32),
             "z_min": float(z.min()) + 0.5, "z_max": float(z.max()) - 0.5, "known": known}
    with torch.no_grad():
        got = KnownScore(W, stats)(torch.as_tensor(f), torch.as_tensor(z)).numpy()[:, 0]
    want = costarr(f, z, W, stats)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    assert got[5] == 0.0
    assert got[3] > 0 and np.isfinite(got).all()


def test_head_refuses_a_model_that_does_more_after_its_linear():
    from edgehad.core.errors import UserInputError
    from edgehad.osr.head import OSRHead

    class Softmaxed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(x).softmax(1)

    stats = {"mu": np.ones((3, 4), np.float32), "eta": np.ones((3, 4), np.float32), "z_min": -1.0, "z_max": 1.0,
             "known": np.ones(3, bool), "classifier": "fc"}
    with pytest.raises(UserInputError, match="must produce the model's output"):
        OSRHead(Softmaxed().eval(), stats, example_inputs=(torch.randn(1, 4),))


# -- float export ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def converted_float(tmp_path_factory):
    out = tmp_path_factory.mktemp("osr-float") / "out"
    result = run_cli("convert", "zoo:digits_cnn", "--data", "digits", "--osr", "fit", "--out", out, "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    return out, json.loads(result.stdout)


def test_float_files_score_equals_torch(converted_float, fitted, digits):
    out, report = converted_float
    model, stats = fitted
    x = digits[2][:120]
    logits, score = head_scores(model, stats, x)
    for name in ("model.onnx", "model.tflite"):
        session, z, s = file_outputs(out / name, x)
        assert len(session.outputs) == 2 and session.outputs[1]["shape"] == [1, 1], session.outputs
        assert np.abs(s - score[:, 0]).max() <= 1e-4, name
        assert np.abs(z - logits).max() <= 1e-4 * max(1.0, np.abs(logits).max()), name
    for artifact in report["artifacts"]:     # verification checked each output on its own scale
        per_output = artifact["parity"]["outputs"]
        assert len(per_output) == 2 and all(o["within_tolerance"] for o in per_output)
        assert per_output[1]["tolerance"] == pytest.approx(1e-4)


def test_output_names(converted_float):
    """ONNX: graph outputs named logits, known_score; TFLite: litert-torch names tuple outputs output_0, output_1."""
    import onnx

    out, _ = converted_float
    from edgehad.runtime import Session

    assert [o.name for o in onnx.load(str(out / "model.onnx")).graph.output] == ["logits", "known_score"]

    assert [o["name"] for o in Session(str(out / "model.tflite")).outputs] == ["output_0", "output_1"]


def test_report_records_the_head(converted_float, fitted):
    _, report = converted_float
    model, stats = fitted
    names = [s["name"] for s in report["stages"]]
    assert names.index("osr") < names.index("export-onnx")
    osr = next(s for s in report["stages"] if s["name"] == "osr")["osr"]
    assert osr["stats"].startswith("fit on digits train split")
    assert osr["fingerprint"] == stats["fingerprint"]
    assert osr["classifier"] == "classifier.1" and osr["outputs"] == ["logits", "known_score"]
    onnx_ops, tflite_ops = osr["added"]["onnx"], osr["added"]["tflite"]
    assert {"ArgMax", "Gather", "ReduceSum"} <= set(onnx_ops["ops_added"])
    assert {"ARG_MAX", "EMBEDDING_LOOKUP", "RSQRT"} <= set(tflite_ops["ops_added"])
    for entry in (onnx_ops, tflite_ops):
        assert entry["ops_added_total"] == sum(entry["ops_added"].values())
        assert entry["ops_added_total"] == entry["ops_head_total"] - entry["ops_plain_total"] > 0
        assert entry["plain_us"] > 0 and entry["head_us"] > 0 and "added_us" in entry


# -- int8 --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def converted_int8(stats_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("osr-int8") / "out"
    result = run_cli("convert", "zoo:digits_cnn", "--data", "digits", "--quantize", "int8",
                     "--osr", stats_file, "--out", out, "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    return out, json.loads(result.stdout)


def test_int8_keeps_the_head_float_and_its_score_close(converted_int8, fitted, digits):
    out, report = converted_int8
    quant = next(s for s in report["stages"] if s["name"] == "quantize")["quantization"]
    assert [k["layer"] for k in quant["kept_float"]] == ["osr_head"]
    for artifact in report["artifacts"]:
        # against the int8 torch model each file came from (like every export)
        assert artifact["variant"] == "int8"
        assert artifact["parity"]["outputs"][1]["max_abs"] <= 0.02, artifact["parity"]
    model, stats = fitted
    x = digits[2]
    _, score = head_scores(model, stats, x)
    for name in ("model.onnx", "model.tflite"):
        _, z, s = file_outputs(out / name, x)
        err = np.abs(s - score[:, 0])
        # against the float model: the body's int8 noise moves f and z (measured max ~0.05, mean ~0.004)
        assert err.mean() <= 0.02 and np.percentile(err, 95) <= 0.02, (name, err.mean(), err.max())
        assert (z.argmax(1) == digits[3]).mean() > 0.97


# -- bad input ---------------------------------------------------------------------------------------

def test_osr_fit_without_data_exits_2():
    assert_clean_error(run_cli("convert", "zoo:digits_cnn", "--osr", "fit", "--out", "unused"), "--osr fit")


def test_stale_stats_after_pruning(stats_file, tmp_path):
    result = run_cli("convert", "zoo:digits_cnn", "--prune", "0.5", "--finetune-epochs", "0",
                     "--osr", stats_file, "--out", tmp_path / "out")
    assert_clean_error(result, "stale statistics: prune ran before the head")
    assert "--osr fit" in result.stderr
    assert not (tmp_path / "out").exists()


def test_stats_of_another_model(stats_file, tmp_path):
    result = run_cli("convert", "zoo:mobilenet_v2", "--input-shape", "1x3x32x32", "--osr", stats_file,
                     "--out", tmp_path / "out")
    assert_clean_error(result, "are for another model: features D=64 classes C=10, this model has D=1280 C=1000")


def test_stats_of_same_shape_other_weights(stats_file, tmp_path):
    result = run_cli("convert", "zoo:digits_cnn", "--model-arg", "pretrained=false", "--osr", stats_file,
                     "--out", tmp_path / "out")
    assert_clean_error(result, "were fitted on a different model")


def test_missing_stats_file(tmp_path):
    assert_clean_error(run_cli("convert", "zoo:digits_cnn", "--osr", tmp_path / "none.npz", "--out", tmp_path / "o"),
                       "not found")


def test_keep_float_auto_with_osr(stats_file, tmp_path):
    result = run_cli("convert", "zoo:digits_cnn", "--data", "digits", "--quantize", "int8", "--keep-float", "auto",
                     "--osr", stats_file, "--out", tmp_path / "out")
    assert_clean_error(result, "--keep-float auto cannot be combined with --osr")
