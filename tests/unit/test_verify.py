"""Parity metrics and the float tolerance rule, on hand-made outputs."""

from __future__ import annotations

import numpy as np
import pytest

from edgehad.export.verify import compare


def sample(*rows):
    return [[np.array([r], dtype=np.float32)] for r in rows]


def test_identical_outputs():
    ref = sample([1.0, 2.0, 3.0], [3.0, 1.0, 0.0])
    p = compare(ref, ref)
    assert (p.max_abs, p.max_rel, p.top1_agreement, p.samples, p.passed) == (0.0, 0.0, 1.0, 2, True)
    assert p.cosine == pytest.approx(1.0)


def test_metrics_by_hand():
    ref = sample([1.0, 2.0, 4.0])
    act = sample([1.0, 2.0, 4.002])
    p = compare(ref, act)
    assert p.max_abs == pytest.approx(0.002, rel=1e-4)
    assert p.max_rel == pytest.approx(0.002 / 4, rel=1e-4)
    assert p.tolerance == pytest.approx(4e-4)
    cos = (1 + 4 + 4 * 4.002) / (np.sqrt(21) * np.sqrt(1 + 4 + 4.002 ** 2))
    assert p.cosine == pytest.approx(cos, abs=1e-9)
    assert not p.passed  # 0.002 > 1e-4 * 4


def test_tolerance_scales_with_output_magnitude_but_not_below_one():
    assert compare(sample([0.01, 0.02]), sample([0.01, 0.02 + 9e-5])).passed          # 9e-5 <= 1e-4 * 1
    assert not compare(sample([0.01, 0.02]), sample([0.01, 0.02 + 2e-4])).passed
    assert compare(sample([100.0, 1.0]), sample([100.009, 1.0])).passed               # 9e-3 <= 1e-4 * 100


def test_top1_flip_on_a_near_tie_is_allowed_but_not_outside_it():
    tie = compare(sample([1.0, 1.00001, 0.0]), sample([1.00002, 1.00001, 0.0]))
    assert tie.top1_agreement == 0.0 and tie.top1_disagreements_outside_ties == 0 and tie.passed
    flip = compare(sample([1.0, 2.0]), sample([2.0, 1.0]), rtol=10.0)   # within a huge tolerance, but a real flip
    assert flip.top1_disagreements_outside_ties == 0  # gap 1.0 <= tolerance 20: counted as a tie
    flip = compare(sample([1.0, 2.0]), sample([2.0, 1.0]), rtol=0.4)
    assert flip.top1_disagreements_outside_ties == 1 and not flip.passed


def test_size_mismatch_is_an_error():
    with pytest.raises(ValueError, match="output sizes differ: 3 vs 2"):
        compare(sample([1.0, 2.0, 3.0]), sample([1.0, 2.0]))
