"""``edgehad osr fit`` and ``edgehad osr eval`` through a real subprocess: outputs, JSON, and every bad input."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

from tests.conftest import run_cli
from tests.e2e.test_cli_convert import assert_clean_error
from tests.unit.test_osr_stats_checks import Marker

KNOWN, UNKNOWN = "digits?classes=0-5", "digits?classes=6-9"
SCORES = ["costarr", "pre_only", "post_only", "msp", "max_logit", "energy"]
FIT_KEYS = {"out", "model", "data", "classifier", "features", "classes", "samples", "correct", "train_accuracy",
            "counts", "excluded", "z_min", "z_max", "fingerprint"}
EVAL_KEYS = {"model", "source", "stats", "split", "known", "unknown", "scores", "plot"}

FACTORIES = textwrap.dedent('''
    import torch
    from edgehad import zoo

    def never_three():
        """digits_cnn whose class 3 is never predicted: no correctly classified sample of it."""
        m = zoo.get_model("digits_cnn")
        with torch.no_grad():
            m.classifier[1].bias[3] -= 1e4
        return m
''')


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    out = tmp_path_factory.mktemp("osr") / "stats.npz"
    result = run_cli("osr", "fit", "zoo:digits_cnn", "--data", "digits", "--out", out, "--json")
    return result, out


@pytest.fixture(scope="module")
def evaluated(fitted, tmp_path_factory):
    _, stats = fitted
    svg = tmp_path_factory.mktemp("plot") / "oscr.svg"
    result = run_cli("osr", "eval", "zoo:digits_cnn", "--stats", stats, "--known", KNOWN, "--unknown", UNKNOWN,
                     "--plot", svg, "--json")
    return result, svg


def test_fit_json(fitted):
    result, out = fitted
    assert result.returncode == 0, result.stderr[-2000:]
    doc = json.loads(result.stdout)
    assert set(doc) == FIT_KEYS
    assert doc["classifier"] == "classifier.1" and doc["features"] == 64 and doc["classes"] == 10
    assert doc["samples"] == 1437 and sum(doc["counts"]) == doc["correct"] >= 0.97 * 1437
    assert doc["excluded"] == [] and doc["z_min"] < 0 < doc["z_max"]
    from edgehad import zoo
    from edgehad.osr.stats import check_stats, fingerprint, load_stats

    stats = load_stats(out)
    assert stats["fingerprint"] == doc["fingerprint"] == fingerprint(zoo.get_model("digits_cnn"), "classifier.1")
    assert check_stats(stats, zoo.get_model("digits_cnn"))[0] == "classifier.1"
    assert [p.name for p in out.parent.iterdir()] == ["stats.npz"]  # no temporary left behind


def test_fit_text(tmp_path):
    result = run_cli("osr", "fit", "zoo:digits_cnn", "--data", "digits", "--out", tmp_path / "s.npz")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith(f"wrote {tmp_path / 's.npz'}: classifier classifier.1 (D=64, C=10), fitted on ")


def test_eval_json_and_plot(evaluated, fitted):
    result, svg = evaluated
    assert result.returncode == 0, result.stderr[-2000:]
    doc = json.loads(result.stdout)
    assert set(doc) == EVAL_KEYS and doc["source"] == "torch" and doc["split"] == "val"
    assert doc["known"]["samples"] == 217 and doc["unknown"]["samples"] == 143
    assert doc["known"]["accuracy"] > 0.97
    assert list(doc["scores"]) == SCORES
    for name, m in doc["scores"].items():
        assert set(m) == {"auroc", "fpr95", "auoscr"}
        assert 0 <= m["fpr95"] <= 1 and 0 <= m["auoscr"] <= m["auroc"] + 1e-9 <= 1 + 1e-9, (name, m)
    # the same numbers, recomputed in-process with scikit-learn's AUROC
    from sklearn.metrics import roc_auc_score

    from edgehad import zoo
    from edgehad.data import load_data
    from edgehad.osr import features, scores
    from edgehad.osr.stats import load_stats

    model, st = zoo.get_model("digits_cnn"), load_stats(fitted[1])
    W = model.classifier[1].weight.detach().numpy()
    fk, zk = features.penultimate(model, "classifier.1", load_data(KNOWN).val[0])
    fu, zu = features.penultimate(model, "classifier.1", load_data(UNKNOWN).val[0])
    y = np.r_[np.ones(len(fk)), np.zeros(len(fu))]
    for name, fn in (("costarr", scores.costarr), ("post_only", scores.post_only)):
        s = np.r_[fn(fk, zk, W, st), fn(fu, zu, W, st)]
        assert doc["scores"][name]["auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-9)
    assert doc["plot"] == str(svg)
    import xml.etree.ElementTree as ET

    # one curve per score with numbers, a point per threshold: an OSCR curve of n known and m unknown
    # samples has at most n + m + 1 points, and starts at FPR 0 (left edge) and ends at FPR 1 (right edge)
    from edgehad.osr.plot import LEFT, RIGHT, WIDTH

    root = ET.parse(svg).getroot()
    lines = root.findall("{http://www.w3.org/2000/svg}polyline[@class='curve']")
    assert [p.get("data-score") for p in lines] == [n for n in SCORES if doc["scores"][n] is not None]
    for line in lines:
        assert float(line.get("data-auoscr")) == pytest.approx(doc["scores"][line.get("data-score")]["auoscr"],
                                                                rel=1e-5)
        xs = [float(xy.split(",")[0]) for xy in line.get("points").split()]
        assert 2 <= len(xs) <= 217 + 143 + 1
        assert xs[0] == pytest.approx(LEFT, abs=0.01) and xs[-1] == pytest.approx(WIDTH - RIGHT, abs=0.01)


def _warnings(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("warning: ")]


def test_unknown_classes_in_the_fit_warn(evaluated, fitted):
    """Stats fitted on all ten digits, 6-9 then called unknown: one warning line naming them (issue #15)."""
    result, _ = evaluated
    assert result.returncode == 0, result.stderr[-2000:]
    assert _warnings(result.stderr) == [
        f"warning: unknown classes 6, 7, 8, 9 of {UNKNOWN!r} were known when {fitted[1]} was fitted (on digits "
        f"classes 0, 1, 2, 3, 4, 5, 6, 7, 8, 9): COSTARR scores them as known, so these numbers do not measure "
        f"open-set recognition; refit on the known classes only (--data {KNOWN!r})"]
    json.loads(result.stdout)  # stdout is still exactly one JSON document


@pytest.fixture(scope="module")
def fitted_known(tmp_path_factory):
    """The README's example: statistics of the known classes 0-5 only."""
    out = tmp_path_factory.mktemp("osr-known") / "known.npz"
    return run_cli("osr", "fit", "zoo:digits_cnn", "--data", KNOWN, "--out", out, "--json"), out


def test_readme_example_fits_the_known_classes_only(fitted_known):
    result, stats = fitted_known
    assert result.returncode == 0, result.stderr[-2000:]
    assert _warnings(result.stderr) == ["warning: classes 6, 7, 8, 9 are not in the fit data: excluded from the "
                                        "known set (inputs predicted as one of them score 0)"]
    doc = json.loads(result.stdout)
    assert doc["samples"] == doc["correct"] == 866 and doc["excluded"] == [6, 7, 8, 9]
    from edgehad.osr.stats import load_stats

    st = load_stats(stats)
    assert st["fit_source"] == "digits" and st["fit_classes"].tolist() == [0, 1, 2, 3, 4, 5]
    ev = run_cli("osr", "eval", "zoo:digits_cnn", "--stats", stats, "--known", KNOWN, "--unknown", UNKNOWN, "--json")
    assert ev.returncode == 0, ev.stderr[-2000:]
    assert _warnings(ev.stderr) == []
    scores = json.loads(ev.stdout)["scores"]
    # measured (README): COSTARR AUROC 0.9976, FPR@95TPR 0.0, AUOSCR 0.9954. digits_cnn was trained on all ten
    # digits and predicts 6-9 as 6-9, which the known-only stats exclude (score 0); MSP, MaxLogit and Energy
    # do not read the stats and stay at 0.57-0.59, as with the stats of all ten digits
    assert scores["costarr"]["auroc"] > 0.97 and scores["costarr"]["fpr95"] < 0.05
    assert scores["costarr"]["auoscr"] > 0.97
    assert scores["msp"]["auroc"] < 0.65 and scores["energy"]["auroc"] < 0.65


def test_unknown_class_warning_names_only_the_shared_classes(fitted_known, tmp_path):
    _, stats = fitted_known
    args = ("osr", "eval", "zoo:digits_cnn", "--known", KNOWN, "--unknown", "digits?classes=9,5", "--json")
    result = run_cli(*args, "--stats", stats)
    assert result.returncode == 0, result.stderr[-2000:]
    # 'digits?classes=9,5' relabels 9 -> 0 and 5 -> 1: the check reads the digits, so it names 5, not 1
    assert _warnings(result.stderr) == [
        f"warning: unknown class 5 of 'digits?classes=9,5' was known when {stats} was fitted (on digits classes 0, "
        f"1, 2, 3, 4, 5): COSTARR scores it as known, so these numbers do not measure open-set recognition; refit "
        f"on the known classes only (--data {KNOWN!r})"]
    # a stats file from before the record (no fit_source / fit_classes) cannot tell: no warning, same scores
    from edgehad.osr.stats import ARRAY_KEYS

    with np.load(stats, allow_pickle=False) as archive:
        assert {"fit_source", "fit_classes"} <= set(archive.files)
        old = tmp_path / "old.npz"
        np.savez(old, **{k: archive[k] for k in ARRAY_KEYS})
    before = run_cli(*args, "--stats", old)
    assert before.returncode == 0 and _warnings(before.stderr) == []
    assert json.loads(before.stdout)["scores"] == json.loads(result.stdout)["scores"]


def test_eval_text(fitted):
    result = run_cli("osr", "eval", "zoo:digits_cnn", "--stats", fitted[1], "--known", KNOWN, "--unknown", UNKNOWN)
    assert result.returncode == 0, result.stderr[-2000:]
    for name in SCORES:
        assert name in result.stdout
    assert "217 known" in result.stdout and "143 unknown" in result.stdout and "AUOSCR" in result.stdout


def test_eval_exported_two_output_file(fitted, tmp_path):
    """A real ONNX file with outputs (logits, known_score): COSTARR is read from the file."""
    import torch

    from edgehad import zoo
    from edgehad.export.onnx import export_onnx
    from edgehad.osr.stats import load_stats

    st = load_stats(fitted[1])

    class TwoOutputs(torch.nn.Module):  # the formula in torch, only to produce a file of that shape here
        def __init__(self, model):
            super().__init__()
            self.model = model
            self.register_buffer("mu_eta", torch.from_numpy(np.concatenate([st["mu"], st["eta"]], 1)))
            self.lo, self.hi = st["z_min"], st["z_max"]

        def forward(self, x):
            f = self.model.mixer(self.model.features(x)).mean((2, 3))
            lin = self.model.classifier[1]
            z = lin(f)
            c = z.argmax(1)
            v = torch.cat([f, f * lin.weight[c]], 1)
            cos = torch.nn.functional.cosine_similarity(v, self.mu_eta[c], dim=1, eps=1e-12)
            g = ((z.max(1).values - self.lo) / (self.hi - self.lo)).clamp(0, 1)
            return z, g * (1 + cos) / 2

    path = export_onnx(TwoOutputs(zoo.get_model("digits_cnn")).eval(), (torch.rand(1, 1, 8, 8),),
                       tmp_path / "model.onnx")
    torch_res = json.loads(run_cli("osr", "eval", "zoo:digits_cnn", "--stats", fitted[1], "--known", KNOWN,
                                   "--unknown", UNKNOWN, "--json").stdout)
    result = run_cli("osr", "eval", path, "--stats", fitted[1], "--known", KNOWN, "--unknown", UNKNOWN, "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "carries its own head; --stats is not used" in result.stderr
    doc = json.loads(result.stdout)
    assert doc["source"] == "onnx" and doc["stats"] is None
    assert doc["scores"]["pre_only"] is None and doc["scores"]["post_only"] is None
    for name in ("costarr", "msp", "max_logit", "energy"):
        for key in ("auroc", "fpr95", "auoscr"):
            assert doc["scores"][name][key] == pytest.approx(torch_res["scores"][name][key], abs=0.01), (name, key)
    text = run_cli("osr", "eval", path, "--known", KNOWN, "--unknown", UNKNOWN)
    assert text.returncode == 0 and "n/a" in text.stdout


# --- bad input -----------------------------------------------------------------------------


def test_stats_from_another_model_shape(fitted, model_file):
    result = run_cli("osr", "eval", f"{model_file}:net", "--stats", fitted[1], "--known", KNOWN, "--unknown", UNKNOWN)
    # the tiny net's final Linear is body.3, not classifier.1
    assert_clean_error(result, "are for another model: fitted with classifier 'classifier.1'")


def test_stats_from_another_model_dimensions(tmp_path, model_file):
    stats = tmp_path / "tiny.npz"
    assert run_cli("osr", "fit", f"{model_file}:net", "--data", "digits", "--out", stats).returncode == 0
    result = run_cli("osr", "eval", f"{model_file}:net", "--model-arg", "width=4", "--stats", stats,
                     "--known", KNOWN, "--unknown", UNKNOWN)
    assert_clean_error(result, "are for another model: features D=512 classes C=10, this model has D=256 C=10")


def test_stats_from_other_weights(fitted):
    result = run_cli("osr", "eval", "zoo:digits_cnn", "--model-arg", "act=silu", "--stats", fitted[1],
                     "--known", KNOWN, "--unknown", UNKNOWN)
    assert_clean_error(result, "were fitted on a different model")
    assert "refit with `edgehad osr fit`" in result.stderr


def test_class_without_correct_sample_warns(tmp_path):
    factories = tmp_path / "factories.py"
    factories.write_text(FACTORIES)
    out = tmp_path / "s.npz"
    result = run_cli("osr", "fit", f"{factories}:never_three", "--data", "digits", "--out", out, "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "warning: class 3 has no correctly classified training sample: excluded from the known set" in result.stderr
    doc = json.loads(result.stdout)
    assert doc["excluded"] == [3] and doc["counts"][3] == 0
    ev = run_cli("osr", "eval", f"{factories}:never_three", "--stats", out, "--known", KNOWN, "--unknown", UNKNOWN,
                 "--json")
    assert ev.returncode == 0, ev.stderr[-2000:]
    assert json.loads(ev.stdout)["known"]["accuracy"] < 0.9  # the 3s are misclassified, and still scored


def test_unlabeled_data(tmp_path):
    x = load_digits_x()
    npz = tmp_path / "unlabeled.npz"
    np.savez(npz, x_train=x[:100], x_val=x[100:150])
    result = run_cli("osr", "fit", "zoo:digits_cnn", "--data", npz, "--out", tmp_path / "s.npz")
    assert_clean_error(result, "osr fit needs labels")
    minus = tmp_path / "minus.npz"
    np.savez(minus, x_train=x[:100], y_train=-np.ones(100, np.int64), x_val=x[100:150], y_val=-np.ones(50, np.int64))
    result = run_cli("osr", "fit", "zoo:digits_cnn", "--data", minus, "--out", tmp_path / "s.npz")
    # refused where the data is loaded, naming the file and the array
    assert_clean_error(result, "minus.npz: array 'y_train' holds negative labels (100 of 100, min -1): labels are "
                               "class indices 0..C-1; drop unlabeled samples")
    assert not (tmp_path / "s.npz").exists()


def load_digits_x():
    from edgehad.data import load_data

    return load_data("digits").train[0]


def test_missing_and_corrupt_stats(tmp_path):
    args = ("--known", KNOWN, "--unknown", UNKNOWN)
    assert_clean_error(run_cli("osr", "eval", "zoo:digits_cnn", "--stats", tmp_path / "none.npz", *args),
                       "none.npz not found: refit with `edgehad osr fit")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"definitely not an npz archive")
    assert_clean_error(run_cli("osr", "eval", "zoo:digits_cnn", "--stats", bad, *args),
                       "is not a readable stats .npz")
    other = tmp_path / "other.npz"
    np.savez(other, x_train=np.zeros(2))
    assert_clean_error(run_cli("osr", "eval", "zoo:digits_cnn", "--stats", other, *args),
                       "is not an edgehad OSR stats file (missing z_min")
    assert_clean_error(run_cli("osr", "eval", "zoo:digits_cnn", *args), "osr eval of a MODEL spec needs --stats")


def test_bad_classifier_and_file_model(tmp_path, fitted):
    result = run_cli("osr", "fit", "zoo:digits_cnn", "--data", "digits", "--classifier", "head", "--out",
                     tmp_path / "s.npz")
    assert_clean_error(result, "--classifier 'head': the model has no module of that name; Linear modules: classifier.1 (64->10)")
    result = run_cli("osr", "fit", "zoo:digits_cnn", "--data", "digits", "--classifier", "features.0.0",
                     "--out", tmp_path / "s.npz")
    assert_clean_error(result, "is a Conv2d, not an nn.Linear")
    result = run_cli("osr", "fit", tmp_path / "model.onnx", "--data", "digits", "--out", tmp_path / "s.npz")
    assert_clean_error(result, "osr fit needs the PyTorch model")
    result = run_cli("osr", "eval", tmp_path / "model.tflite", "--known", KNOWN, "--unknown", UNKNOWN)
    assert_clean_error(result, "model.tflite not found")


def test_failed_fit_keeps_the_good_file(fitted, tmp_path):
    good = tmp_path / "keep.npz"
    good.write_bytes(fitted[1].read_bytes())
    result = run_cli("osr", "fit", "zoo:digits_cnn", "--data", "digits?channels=3", "--out", good)
    assert_clean_error(result, "do not fit")
    assert good.read_bytes() == fitted[1].read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.npz"]


# --- poisoned statistics: the same files refused by convert --osr and osr eval (issue #13) ---------


def poison(good, path, case):
    """A copy of the good stats file ``good`` with one defect, written with np.savez (save_stats refuses)."""
    with np.load(good, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    if case == "nan-mu":
        arrays["mu"] = arrays["mu"].copy()
        arrays["mu"][3, 7] = np.nan
    elif case == "no-known-class":
        arrays["known"] = np.zeros_like(arrays["known"])
    else:  # an object array whose element creates a marker file if unpickled
        arrays["eta"] = np.empty(1, dtype=object)
        arrays["eta"][0] = Marker(path.parent / "unpickled")
    np.savez(path, **arrays)
    return path


POISON_MESSAGES = {
    "nan-mu": ": array 'mu' holds 1 NaN or infinite value (class 3); a poisoned statistic would make known_score NaN",
    "no-known-class": ": no known class (every entry of 'known' is False)",
    "object-array": " is not a readable stats .npz: array 'eta' is an object array, which edgehad never unpickles",
}


@pytest.mark.parametrize("command", ["convert", "eval"])
@pytest.mark.parametrize("case", list(POISON_MESSAGES))
def test_poisoned_stats_are_refused_by_every_reader(fitted, tmp_path, case, command):
    stats = poison(fitted[1], tmp_path / f"{case}.npz", case)
    if command == "convert":
        result = run_cli("convert", "zoo:digits_cnn", "--osr", stats, "--out", tmp_path / "out")
    else:
        result = run_cli("osr", "eval", "zoo:digits_cnn", "--stats", stats, "--known", KNOWN, "--unknown", UNKNOWN)
    assert_clean_error(result, f"{stats}{POISON_MESSAGES[case]}")
    assert "refit with `edgehad osr fit" in result.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "unpickled").exists()
