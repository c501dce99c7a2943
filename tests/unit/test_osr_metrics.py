"""Open-set metrics against hand-computed cases and scikit-learn; the OSCR plot."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from edgehad.core.errors import UserInputError
from edgehad.osr import metrics
from edgehad.osr.plot import BOTTOM, HEIGHT, LEFT, RIGHT, TOP, WIDTH, plot_oscr
from edgehad.plots import COLOURS


def test_auroc_by_hand():
    # pairs known > unknown: 0.9 > both, 0.8 > both, 0.4 > 0.3 only -> 5 of 6
    assert metrics.auroc([0.9, 0.8, 0.4], [0.5, 0.3]) == pytest.approx(5 / 6)
    # a tie counts one half: (0.5 vs 0.5) 0.5 + three wins -> 3.5 / 4
    assert metrics.auroc([0.5, 0.7], [0.5, 0.1]) == pytest.approx(0.875)
    assert metrics.auroc([2, 3], [0, 1]) == 1.0
    assert metrics.auroc([0, 1], [2, 3]) == 0.0
    assert metrics.auroc([1, 1, 1], [1, 1]) == 0.5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_matches_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    k = np.round(rng.normal(0.6, 1, 300), 1)  # rounding makes many ties
    u = np.round(rng.normal(0.0, 1, 200), 1)
    y = np.r_[np.ones(len(k)), np.zeros(len(u))]
    assert metrics.auroc(k, u) == pytest.approx(roc_auc_score(y, np.r_[k, u]), abs=1e-12)


def test_fpr95_by_hand():
    k = np.arange(1, 21, dtype=float)  # 19th largest of 1..20 is 2: accept score >= 2
    u = np.array([0.0, 1.5, 2.0, 3.0])
    assert metrics.fpr_at_tpr(k, u) == 0.5
    assert metrics.fpr_at_tpr(k, u, tpr=1.0) == 0.75  # threshold 1
    assert metrics.fpr_at_tpr([5, 6], [1, 2]) == 0.0


@pytest.mark.parametrize("seed", [0, 1])
def test_fpr95_matches_sklearn_roc(seed):
    rng = np.random.default_rng(seed)
    k, u = rng.normal(1.0, 1, 400), rng.normal(0.0, 1, 300)
    fpr, tpr, _ = roc_curve(np.r_[np.ones(400), np.zeros(300)], np.r_[k, u], drop_intermediate=False)
    assert metrics.fpr_at_tpr(k, u) == pytest.approx(fpr[np.argmax(tpr >= 0.95)], abs=1e-12)


def test_oscr_by_hand():
    # knowns 0.9 (correct), 0.7 (wrong), 0.3 (correct); unknowns 0.8, 0.2
    fpr, ccr, th = metrics.oscr([0.9, 0.7, 0.3], [True, False, True], [0.8, 0.2])
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.5, 0.5, 1])
    np.testing.assert_allclose(ccr, [0, 1 / 3, 1 / 3, 1 / 3, 2 / 3, 2 / 3])
    np.testing.assert_allclose(th, [np.inf, 0.9, 0.8, 0.7, 0.3, 0.2])
    # area: 1/3 over [0, 0.5], 2/3 over [0.5, 1]
    assert metrics.auoscr([0.9, 0.7, 0.3], [True, False, True], [0.8, 0.2]) == pytest.approx(0.5)


def test_oscr_ties_enter_together():
    fpr, ccr, _ = metrics.oscr([1.0, 0.5], [True, True], [0.5, 0.0])
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 1])
    np.testing.assert_allclose(ccr, [0, 0.5, 1, 1])


def test_auoscr_equals_auroc_when_every_known_is_correct():
    rng = np.random.default_rng(3)
    k, u = np.round(rng.normal(1, 1, 250), 1), np.round(rng.normal(0, 1, 150), 1)
    assert metrics.auoscr(k, np.ones(250, bool), u) == pytest.approx(metrics.auroc(k, u), abs=1e-12)
    # with 20% misclassified knowns the area shrinks below AUROC and is bounded by the accuracy
    correct = rng.random(250) > 0.2
    assert metrics.auoscr(k, correct, u) < metrics.auroc(k, u)
    assert metrics.auoscr(k, correct, u) <= correct.mean()


def test_evaluate_table():
    table = metrics.evaluate({"a": np.array([3.0, 2.0]), "b": np.array([0.0, 0.1]), "only_known": np.zeros(2)},
                             np.array([True, True]), {"a": np.array([1.0]), "b": np.array([1.0])})
    assert table == {"a": {"auroc": 1.0, "fpr95": 0.0, "auoscr": 1.0},
                     "b": {"auroc": 0.0, "fpr95": 1.0, "auoscr": 0.0}}


def test_metric_errors():
    with pytest.raises(UserInputError, match="got 0 known and 2 unknown"):
        metrics.auroc([], [1, 2])
    with pytest.raises(UserInputError, match="NaN or infinite"):
        metrics.auroc([np.nan], [1.0])
    with pytest.raises(UserInputError, match="2 known scores but 1 correctness flags"):
        metrics.oscr([1, 2], [True], [0])


def test_plot_svg(tmp_path):
    """The SVG read back: one polyline per score, in its own colour, whose points map back to (FPR, CCR)."""
    import xml.etree.ElementTree as ET

    curves = {}
    for i, name in enumerate(["costarr", "msp", "energy"]):
        k = np.linspace(0, 1, 50) + 0.2 * i
        u = np.linspace(-0.5, 0.8, 40)
        fpr, ccr, _ = metrics.oscr(k, np.ones(50, bool), u)
        curves[name] = (fpr, ccr, metrics.auoscr(k, np.ones(50, bool), u))
    path = plot_oscr(curves, tmp_path / "oscr.svg", title="OSCR of a<b & c")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["oscr.svg"]
    root = ET.parse(path).getroot()  # well-formed XML, user text escaped
    ns = {"s": "http://www.w3.org/2000/svg"}
    assert root.tag == "{http://www.w3.org/2000/svg}svg" and root.get("viewBox") == "0 0 800 600"
    assert [t.text for t in root.findall("s:text[@class='title']", ns)] == ["OSCR of a<b & c"]
    lines = root.findall("s:polyline[@class='curve']", ns)
    assert [p.get("data-score") for p in lines] == list(curves)
    assert [p.get("stroke") for p in lines] == COLOURS[:3]  # a colour per score, in order
    for line, (fpr, ccr, area) in zip(lines, curves.values()):
        points = np.array([[float(v) for v in xy.split(",")] for xy in line.get("points").split()])
        assert points.shape == (len(fpr), 2) and len(fpr) > 40
        # pixels back to rates: x runs 0..1 over [LEFT, WIDTH - RIGHT], y over [HEIGHT - BOTTOM, TOP]
        np.testing.assert_allclose((points[:, 0] - LEFT) / (WIDTH - RIGHT - LEFT), fpr, atol=1e-5)
        np.testing.assert_allclose((HEIGHT - BOTTOM - points[:, 1]) / (HEIGHT - BOTTOM - TOP), ccr, atol=1e-5)
        assert float(line.get("data-auoscr")) == pytest.approx(area, rel=1e-5)
    legend = [t.text for t in root.findall("s:g[@class='legend']/s:text", ns)]
    assert legend == [f"{name}  AUOSCR {area:.3f}" for name, (_, _, area) in curves.items()]
    assert COLOURS[3] not in path.read_text()  # a fourth colour was not used


def test_plot_path_must_be_svg(tmp_path):
    fpr, ccr, _ = metrics.oscr([1.0, 2.0], [True, True], [0.0])
    with pytest.raises(UserInputError, match=r"^`plot` .*oscr\.png: the OSCR plot is written as SVG: give a file "
                                             r"name ending in \.svg"):
        plot_oscr({"msp": (fpr, ccr, 0.5)}, tmp_path / "oscr.png")
    assert list(tmp_path.iterdir()) == []
