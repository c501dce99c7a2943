"""COSTARR and baseline scores against direct numpy references; the fit, stats files and feature access."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from edgehad import zoo
from edgehad.core.errors import UserInputError
from edgehad.data import load_data
from edgehad.osr import features, scores, stats as osr_stats


@pytest.fixture(scope="module")
def fixed():
    """Fixed tensors: N=7 inputs, D=5 features, C=4 classes, and stats with every class known."""
    rng = np.random.default_rng(42)
    f = rng.normal(size=(7, 5))
    z = rng.normal(size=(7, 4)) * 3
    W = rng.normal(size=(4, 5))
    st = {"z_min": 2.1, "z_max": 3.0, "mu": rng.normal(size=(4, 5)), "eta": rng.normal(size=(4, 5)),
          "known": np.ones(4, dtype=bool)}
    return f, z, W, st


def reference_costarr(f, z, W, st):
    """The issue's formula, one input at a time, written out step by step."""
    out = []
    for i in range(len(f)):
        c = int(np.argmax(z[i]))
        v = np.concatenate([f[i], f[i] * W[c]])
        m = np.concatenate([st["mu"][c], st["eta"][c]])
        cos = np.dot(v, m) / (np.linalg.norm(v) * np.linalg.norm(m))
        S = (1 + cos) / 2
        g = (z[i, c] - st["z_min"]) / (st["z_max"] - st["z_min"])
        g = min(max(g, 0.0), 1.0)
        out.append(g * S)
    return np.array(out)


def test_costarr_matches_the_formula(fixed):
    f, z, W, st = fixed
    got = scores.costarr(f, z, W, st)
    ref = reference_costarr(f, z, W, st)
    assert got.shape == (7,)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)
    # the fixture exercises both clip ends and the interior of the gate
    zc = z.max(1)
    assert (zc > st["z_max"]).any() and (zc < st["z_min"]).any() and ((zc > st["z_min"]) & (zc < st["z_max"])).any()


def test_costarr_by_hand():
    # f = [1, 2], predicted class 1 with w_1 = [2, 0]: v = [1, 2, 2, 0]; m = [1, 2, 2, 0] -> cos 1, S = 1
    # z = [0, 1] with z_min -1, z_max 3: g = (1 + 1) / 4 = 0.5 -> score 0.5
    st = {"z_min": -1.0, "z_max": 3.0, "mu": np.array([[0.0, 1.0], [1.0, 2.0]]),
          "eta": np.array([[0.0, 0.0], [2.0, 0.0]]), "known": np.array([True, True])}
    f = np.array([[1.0, 2.0]])
    z = np.array([[0.0, 1.0]])
    W = np.array([[5.0, 5.0], [2.0, 0.0]])
    assert scores.costarr(f, z, W, st)[0] == pytest.approx(0.5, abs=1e-15)
    # opposite features: cos -1 -> S 0 -> score 0
    assert scores.costarr(-f, z, W, st)[0] == pytest.approx(0.0, abs=1e-15)
    # orthogonal m: mu_1 = [2, -1], eta_1 = [0, 0] -> v·m = 2 - 2 = 0 -> S 1/2 -> 0.25
    st2 = dict(st, mu=np.array([[0.0, 1.0], [2.0, -1.0]]), eta=np.zeros((2, 2)))
    assert scores.costarr(f, z, W, st2)[0] == pytest.approx(0.25, abs=1e-15)


def test_ablations_match_their_formulas(fixed):
    f, z, W, st = fixed
    pre, post = [], []
    for i in range(len(f)):
        c = int(np.argmax(z[i]))
        g = np.clip((z[i, c] - st["z_min"]) / (st["z_max"] - st["z_min"]), 0, 1)
        mu, eta, fw = st["mu"][c], st["eta"][c], f[i] * W[c]
        pre.append(g * (1 + f[i] @ mu / np.linalg.norm(f[i]) / np.linalg.norm(mu)) / 2)
        post.append(g * (1 + fw @ eta / np.linalg.norm(fw) / np.linalg.norm(eta)) / 2)
    np.testing.assert_allclose(scores.pre_only(f, z, W, st), pre, atol=1e-12)
    np.testing.assert_allclose(scores.post_only(f, z, W, st), post, atol=1e-12)
    assert not np.allclose(pre, post)  # the two halves differ, so neither test is vacuous


def test_logit_baselines(fixed):
    _, z, _, _ = fixed
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    np.testing.assert_allclose(scores.msp(z), p.max(1), atol=1e-12)
    np.testing.assert_allclose(scores.max_logit(z), z.max(1), atol=0)
    np.testing.assert_allclose(scores.energy(z), np.log(np.exp(z).sum(1)), atol=1e-12)
    big = np.array([[1000.0, 999.0, -5.0]])  # stable where exp overflows
    assert scores.energy(big)[0] == pytest.approx(1000 + np.log(1 + np.exp(-1) + np.exp(-1005)))
    assert scores.msp(big)[0] == pytest.approx(1 / (1 + np.exp(-1) + np.exp(-1005)))


def test_excluded_class_scores_zero(fixed):
    f, z, W, st = fixed
    c = z.argmax(1)
    st2 = dict(st, known=np.array([c[0] != k for k in range(4)]))  # exclude the class of input 0
    for fn in (scores.costarr, scores.pre_only, scores.post_only):
        s_all, s_ex = fn(f, z, W, st), fn(f, z, W, st2)
        hit = c == c[0]
        assert (s_ex[hit] == 0).all()
        np.testing.assert_array_equal(s_ex[~hit], s_all[~hit])


def test_all_scores_without_features(fixed):
    f, z, W, st = fixed
    assert list(scores.all_scores(f, z, W, st)) == ["costarr", "pre_only", "post_only", "msp", "max_logit", "energy"]
    assert list(scores.all_scores(None, z, None, None)) == ["msp", "max_logit", "energy"]


# --- feature access ------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_cnn():
    return zoo.get_model("digits_cnn")


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


def test_find_classifier_in_zoo_models(digits_cnn):
    name, lin = features.find_classifier(digits_cnn)
    assert name == "classifier.1" and (lin.in_features, lin.out_features) == (64, 10)
    mb = zoo.get_model("mobilenet_v2", width_mult=0.35, num_classes=7, input_size=32)
    name, lin = features.find_classifier(mb)
    assert name == "classifier.1" and lin.out_features == 7


class _SoftmaxAfter(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = torch.nn.Linear(4, 6)
        self.head = torch.nn.Linear(6, 3)
        self.example_inputs = (torch.randn(1, 4),)

    def forward(self, x):
        return self.head(torch.relu(self.hidden(x))).softmax(-1)


def test_find_classifier_errors_name_candidates():
    m = _SoftmaxAfter().eval()
    with pytest.raises(UserInputError, match=r"`classifier` MODULE; Linear modules: hidden \(4->6\), head \(6->3\)"):
        features.find_classifier(m)
    assert features.find_classifier(m, "head")[0] == "head"
    with pytest.raises(UserInputError, match="no module of that name; Linear modules: hidden"):
        features.find_classifier(m, "fc")
    conv = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3))
    with pytest.raises(UserInputError, match="is a Conv2d, not an nn.Linear"):
        features.find_classifier(conv, "0")
    with pytest.raises(UserInputError, match="has none"):
        features.find_classifier(conv)


def test_penultimate_is_the_linear_input(digits_cnn, digits):
    x = digits.val[0][:50]
    f, z = features.penultimate(digits_cnn, "classifier.1", x, batch=16)
    assert f.shape == (50, 64) and z.shape == (50, 10)
    with torch.no_grad():
        t = torch.from_numpy(x)
        f_ref = digits_cnn.mixer(digits_cnn.features(t)).mean((2, 3)).numpy()
        z_ref = digits_cnn(t).numpy()
    np.testing.assert_allclose(f, f_ref, atol=1e-6)
    np.testing.assert_allclose(z, z_ref, atol=1e-5)


# --- fit ----------------------------------------------------------------------------------


def test_fit_stats_on_digits(digits_cnn, digits):
    x, y = digits.train
    st = osr_stats.fit_stats(digits_cnn, x, y)
    f, z = features.penultimate(digits_cnn, "classifier.1", x)
    W = digits_cnn.classifier[1].weight.detach().numpy()
    ok = z.argmax(1) == y
    assert st["samples"] == ok.sum() >= 0.97 * len(y)
    assert st["z_min"] == pytest.approx(z[ok].min()) and st["z_max"] == pytest.approx(z[ok].max())
    assert st["z_min"] < z[ok].max(1).min()  # over the whole matrix: below every winning logit
    for c in (0, 7):
        np.testing.assert_allclose(st["mu"][c], f[ok & (y == c)].mean(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(st["eta"][c], (f[ok & (y == c)] * W[c]).mean(0), rtol=1e-5, atol=1e-6)
    assert st["counts"].tolist() == np.bincount(y[ok], minlength=10).tolist()
    assert st["known"].all() and st["classifier"] == "classifier.1"
    # known val inputs score higher than the same inputs scrambled (a sanity check of direction)
    fv, zv = features.penultimate(digits_cnn, "classifier.1", digits.val[0])
    noise = np.random.default_rng(0).permutation(digits.val[0].reshape(-1)).reshape(digits.val[0].shape)
    fn, zn = features.penultimate(digits_cnn, "classifier.1", noise)
    assert scores.costarr(fv, zv, W, st).mean() > scores.costarr(fn, zn, W, st).mean() + 0.1


def test_class_without_correct_sample_is_excluded(digits):
    m = zoo.get_model("digits_cnn")
    with torch.no_grad():
        m.classifier[1].bias[3] -= 1e4  # class 3 is never predicted
    x, y = digits.train
    seen = []
    st = osr_stats.fit_stats(m, x, y, warn=seen.append)
    assert seen == ["class 3 has no correctly classified training sample: excluded from the known set "
                    "(inputs predicted as it score 0)"]
    assert st["known"].tolist() == [c != 3 for c in range(10)] and st["counts"][3] == 0
    assert not st["mu"][3].any() and not st["eta"][3].any()
    with warnings.catch_warnings(record=True) as caught:  # default: a Python warning
        warnings.simplefilter("always")
        osr_stats.fit_stats(m, x, y)
    assert any("class 3 has no correctly classified" in str(w.message) for w in caught)


def test_fit_needs_labels(digits_cnn, digits):
    x, y = digits.train
    with pytest.raises(UserInputError, match="needs labels"):
        osr_stats.fit_stats(digits_cnn, x, None)
    with pytest.raises(UserInputError, match=r"class indices 0..9 .* found -1..-1 \(negative labels usually mean unlabeled"):
        osr_stats.fit_stats(digits_cnn, x, -np.ones_like(y))
    with pytest.raises(UserInputError, match="one label per input"):
        osr_stats.fit_stats(digits_cnn, x, y[:10])


# --- stats files and fingerprints -------------------------------------------------------


def test_save_load_roundtrip_and_checks(digits_cnn, digits, tmp_path):
    st = osr_stats.fit_stats(digits_cnn, *digits.train)
    path = osr_stats.save_stats(tmp_path / "s.npz", st)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.npz"]  # no temp file left, no ".npz.npz"
    back = osr_stats.load_stats(path)
    for k in ("mu", "eta", "known", "counts"):
        np.testing.assert_array_equal(back[k], st[k])
    for k in ("z_min", "z_max", "classifier", "fingerprint", "samples"):
        assert back[k] == st[k]
    assert osr_stats.check_stats(back, digits_cnn)[0] == "classifier.1"
    # same architecture, other weights: the fingerprint says so
    other = zoo.get_model("digits_cnn", act="silu")
    with pytest.raises(UserInputError, match="were fitted on a different model .* refit with `edgehad osr fit`"):
        osr_stats.check_stats(back, other)
    # another shape
    six = zoo.DigitsCNN(num_classes=6).eval()
    with pytest.raises(UserInputError, match="are for another model: features D=64 classes C=10, this model has D=64 C=6"):
        osr_stats.check_stats(back, six)


def test_fingerprint_tracks_every_weight(digits_cnn):
    a = osr_stats.fingerprint(digits_cnn, "classifier.1")
    assert a == osr_stats.fingerprint(zoo.get_model("digits_cnn"), "classifier.1")
    assert a != osr_stats.fingerprint(digits_cnn, "other")
    m = zoo.get_model("digits_cnn")
    with torch.no_grad():
        m.features[0][1].running_mean[0] += 1e-6  # a buffer, not a parameter
    assert osr_stats.fingerprint(m, "classifier.1") != a


def test_load_stats_bad_files(tmp_path):
    with pytest.raises(UserInputError, match="not found: refit with"):
        osr_stats.load_stats(tmp_path / "missing.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"PK\x03\x04 this is not a zip archive")
    with pytest.raises(UserInputError, match="is not a readable stats .npz"):
        osr_stats.load_stats(junk)
    other = tmp_path / "other.npz"
    np.savez(other, x=np.zeros(3))
    with pytest.raises(UserInputError, match="not an edgehad OSR stats file .missing z_min"):
        osr_stats.load_stats(other)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, **{k: np.array([object()], dtype=object) for k in osr_stats.ARRAY_KEYS})
    with pytest.raises(UserInputError, match="is not a readable stats .npz"):
        osr_stats.load_stats(pickled)
