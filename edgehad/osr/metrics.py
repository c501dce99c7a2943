"""Open-set metrics over "higher = known" scores of known and unknown inputs.

- ``auroc``: area under the ROC curve of knowns (positive) vs unknowns
  (negative), scikit-learn's ``roc_auc_score``: the probability that a
  random known scores above a random unknown, ties counting one half
  (Mann-Whitney U / (n_k n_u)).
- ``fpr_at_tpr``: the fraction of unknowns accepted at the highest threshold
  that still accepts at least 95% of the knowns (threshold t = the
  ceil(0.95 n_k)-th largest known score; accept when score >= t), read off
  scikit-learn's ``roc_curve``: the FPR of its first point with TPR >= 0.95.
- ``oscr`` / ``auoscr``: the Open-Set Classification Rate curve of Dhamija,
  Günther, Boult, "Reducing Network Agnostophobia", NeurIPS 2018. As the
  threshold θ falls, CCR(θ) = |{known x: correctly classified and score >= θ}|
  / n_k against FPR(θ) = |{unknown x: score >= θ}| / n_u. Thresholds are the
  distinct scores (tied inputs enter together), the curve runs from (0, 0) to
  (1, closed-set accuracy), and AUOSCR is its trapezoidal area: 1 only for a
  perfect classifier with a perfect separation.
"""

from __future__ import annotations

import math

import numpy as np

from edgehad.core.errors import UserInputError


def _check(known, unknown) -> tuple[np.ndarray, np.ndarray]:
    k = np.asarray(known, dtype=np.float64).ravel()
    u = np.asarray(unknown, dtype=np.float64).ravel()
    if len(k) == 0 or len(u) == 0:
        raise UserInputError(f"open-set metrics need known and unknown inputs, got {len(k)} known and {len(u)} unknown")
    if not (np.isfinite(k).all() and np.isfinite(u).all()):
        raise UserInputError("open-set scores hold NaN or infinite values: check the model's outputs")
    return k, u


def _roc_inputs(k: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels (known = 1) and pooled scores, as scikit-learn's ROC functions take them."""
    return np.r_[np.ones(len(k)), np.zeros(len(u))], np.r_[k, u]


def auroc(known, unknown) -> float:
    """Area under the ROC curve, knowns positive (ties count 1/2)."""
    from sklearn.metrics import roc_auc_score

    k, u = _check(known, unknown)
    return float(roc_auc_score(*_roc_inputs(k, u)))


def fpr_at_tpr(known, unknown, tpr: float = 0.95) -> float:
    """Fraction of unknowns with score >= t, t the ceil(tpr · n_k)-th largest known score.

    That is the first point of the ROC curve (thresholds falling) whose TPR reaches ``tpr``:
    TPR moves only at known scores, so the point's threshold is that known score.
    """
    from sklearn.metrics import roc_curve

    k, u = _check(known, unknown)
    n = max(1, math.ceil(tpr * len(k) - 1e-9))  # 1e-9: 0.95 * 20 is 19.000000000000004 in floats
    fpr, tpr_curve, _ = roc_curve(*_roc_inputs(k, u), drop_intermediate=False)
    # TPRs are j / n_k in floats: compare half a known below n / n_k
    return float(fpr[np.argmax(tpr_curve >= (n - 0.5) / len(k))])


def oscr(known, correct, unknown) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OSCR curve: ``(fpr, ccr, thresholds)``, from (0, 0) at θ = +inf down to the lowest score.

    ``correct`` [n_k] bool: whether each known input was classified correctly.
    """
    k, u = _check(known, unknown)
    correct = np.asarray(correct, dtype=bool).ravel()
    if correct.shape != k.shape:
        raise UserInputError(f"oscr: {len(k)} known scores but {len(correct)} correctness flags")
    thresholds = np.unique(np.concatenate([k, u]))[::-1]  # distinct, descending
    # counts of scores >= θ for each θ, via sorted search (ties enter together)
    kc_sorted, u_sorted = np.sort(k[correct]), np.sort(u)
    ccr = (len(kc_sorted) - np.searchsorted(kc_sorted, thresholds, side="left")) / len(k)
    fpr = (len(u_sorted) - np.searchsorted(u_sorted, thresholds, side="left")) / len(u)
    return (np.concatenate([[0.0], fpr]), np.concatenate([[0.0], ccr]),
            np.concatenate([[np.inf], thresholds]))


def auoscr(known, correct, unknown) -> float:
    """Area under the OSCR curve (trapezoids over FPR from 0 to 1)."""
    fpr, ccr, _ = oscr(known, correct, unknown)
    return float(np.sum(np.diff(fpr) * (ccr[1:] + ccr[:-1]) / 2.0))


def evaluate(known_scores: dict, correct, unknown_scores: dict) -> dict:
    """``{score: {"auroc", "fpr95", "auoscr"}}`` for every score present in both dicts."""
    out = {}
    for name, k in known_scores.items():
        if name not in unknown_scores:
            continue
        u = unknown_scores[name]
        out[name] = {"auroc": auroc(k, u), "fpr95": fpr_at_tpr(k, u, 0.95), "auoscr": auoscr(k, correct, u)}
    return out


__all__ = ["auroc", "fpr_at_tpr", "oscr", "auoscr", "evaluate"]
