"""COSTARR statistics: fitted on the correctly classified training samples, saved as ``.npz``.

The fit of Rabinowitz, Cruz, Scheirer, Boult, "Consolidated Open Set Technique
with Attenuation for Robust Recognition" (COSTARR, ICCV 2025), as issue #8
states it. Let f [N, D] be the penultimate features (the final Linear's input),
z [N, C] the logits, W [C, D] the final Linear's weight (its bias is not used),
and K the samples whose argmax z equals their label. Then

- ``z_min = min(z[K])``, ``z_max = max(z[K])``: the minimum and maximum over the
  *whole* logit matrix of the correct samples, every class's logit, not only
  the winning one (so z_min is typically a negative logit of a losing class;
  the score's gate ``(z_c - z_min) / (z_max - z_min)`` then measures the
  winning logit against the full range the model produces on known data);
- per class c, over the correct samples K_c of class c:
  ``mu_c = mean_{i in K_c} f_i`` and ``eta_c = mean_{i in K_c} f_i ⊙ w_c``.

A class with no correctly classified training sample has no mean: it is
*excluded from the known set*. A warning names it, ``known[c]`` is False, its
``mu_c`` and ``eta_c`` are zero, and every input predicted as c scores 0
("unknown"): the model never got that class right on its own training data,
so its predictions are not trusted as known. (Falling back to all samples of
the class was rejected: it mixes misclassified features into the mean and
fails when the class has no sample at all.)

The ``.npz`` holds (``allow_pickle=False``): ``z_min``, ``z_max`` (float64
scalars), ``mu``, ``eta`` [C, D] float32, ``known`` [C] bool, ``counts`` [C]
int64 (correct samples per class), ``classifier`` (the final Linear's module
name), ``fingerprint`` (``fingerprint(model, classifier)``), ``samples`` (how
many were fitted on), ``version``.
"""

from __future__ import annotations

import hashlib
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgehad.core.errors import UserInputError

VERSION = 1
ARRAY_KEYS = ("z_min", "z_max", "mu", "eta", "known", "counts", "classifier", "fingerprint", "samples", "version")


def fingerprint(model, classifier: str = "") -> str:
    """sha256 (hex, first 32 chars) of the model's state_dict and the classifier's name.

    Hashes every state_dict entry in sorted name order: name, dtype, shape and
    the raw bytes of the values (buffers included: BatchNorm statistics change
    the function as much as weights do). Any retraining, pruning or rewrite
    changes it, which is the point: statistics of another model are stale.
    """
    h = hashlib.sha256()
    h.update(f"classifier={classifier}\n".encode())
    state = model.state_dict()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.view(-1).view(dtype=_byte_dtype()).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:32]


def _byte_dtype():
    import torch

    return torch.uint8


def fit_stats(model, x, y, classifier: str | None = None, batch: int = 256,
              warn: Callable[[str], None] | None = None) -> dict:
    """Fit the COSTARR statistics (see the module docstring) of ``model`` on inputs ``x`` with labels ``y``.

    ``classifier`` names the final Linear (else found by ``features.find_classifier``).
    ``warn`` receives warning lines (default: ``warnings.warn``). Returns the
    stats dict that ``save_stats`` writes and ``scores.costarr`` reads.
    """
    from edgehad.osr.features import classifier_weight, find_classifier, penultimate

    if y is None:
        raise UserInputError("osr fit needs labels: the data has inputs but no labels y (give x, y pairs)")
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != len(x):
        raise UserInputError(f"osr fit needs one label per input: {len(x)} inputs, labels of shape {list(y.shape)}")
    if len(y) == 0:
        raise UserInputError("osr fit: the data is empty")
    warn = warn or (lambda msg: warnings.warn(msg, stacklevel=3))
    name, linear = find_classifier(model, classifier)
    f, z = penultimate(model, name, x, batch=batch)
    W = classifier_weight(linear)
    C, D = W.shape
    if y.min() < 0 or y.max() >= C:
        raise UserInputError(
            f"osr fit: labels must be class indices 0..{C - 1} for this {C}-class model, found "
            f"{int(y.min())}..{int(y.max())} (negative labels usually mean unlabeled data)"
        )
    correct = z.argmax(1) == y
    if not correct.any():
        raise UserInputError("osr fit: the model classifies none of the training samples correctly: "
                             "check the data spec and normalization match the model")
    f_k, z_k, y_k = f[correct].astype(np.float64), z[correct], y[correct]
    mu = np.zeros((C, D), np.float64)
    eta = np.zeros((C, D), np.float64)
    counts = np.bincount(y_k, minlength=C).astype(np.int64)
    for c in range(C):
        if counts[c]:
            fc = f_k[y_k == c]
            mu[c] = fc.mean(0)
            eta[c] = (fc * W[c].astype(np.float64)).mean(0)
    missing = [int(c) for c in np.flatnonzero(counts == 0)]
    if missing:
        # name up to 20 classes: a 1000-class model fitted on a few samples would print a page
        named = ', '.join(map(str, missing[:20])) + (f" and {len(missing) - 20} more" if len(missing) > 20 else "")
        warn(f"class{'es' if len(missing) > 1 else ''} {named} "
             f"{'have' if len(missing) > 1 else 'has'} no correctly classified training sample: "
             f"excluded from the known set (inputs predicted as {'one of them' if len(missing) > 1 else 'it'} score 0)")
    return {
        "z_min": float(z_k.min()), "z_max": float(z_k.max()),
        "mu": mu.astype(np.float32), "eta": eta.astype(np.float32),
        "known": counts > 0, "counts": counts,
        "classifier": name, "fingerprint": fingerprint(model, name),
        "samples": int(correct.sum()), "version": VERSION,
    }


def save_stats(path, stats: dict) -> Path:
    """Write ``stats`` to ``path`` (.npz) atomically: a failed write never replaces a good file."""
    from edgehad.core.files import atomic_path

    path = Path(path)
    arrays = {k: np.asarray(stats[k]) for k in ARRAY_KEYS}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:  # a file object: np.savez would append ".npz" to a path
            np.savez(fh, **arrays)
    return path


def load_stats(path) -> dict:
    """Read a stats ``.npz`` written by ``save_stats`` (no pickle); a bad file is a ``UserInputError``."""
    p = Path(path)
    refit = "refit with `edgehad osr fit MODEL --data SPEC --out FILE.npz`"
    if not p.is_file():
        raise UserInputError(f"stats file {path} not found: {refit}")
    try:
        with np.load(p, allow_pickle=False) as archive:
            missing = [k for k in ARRAY_KEYS if k not in archive.files]
            if missing:
                raise UserInputError(f"{path} is not an edgehad OSR stats file (missing {', '.join(missing)}): {refit}")
            raw = {k: archive[k] for k in ARRAY_KEYS}
    except UserInputError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise UserInputError(f"{path} is not a readable stats .npz ({type(exc).__name__}): {refit}") from None
    stats = {
        "z_min": float(raw["z_min"]), "z_max": float(raw["z_max"]),
        "mu": raw["mu"].astype(np.float32), "eta": raw["eta"].astype(np.float32),
        "known": raw["known"].astype(bool), "counts": raw["counts"].astype(np.int64),
        "classifier": str(raw["classifier"]), "fingerprint": str(raw["fingerprint"]),
        "samples": int(raw["samples"]), "version": int(raw["version"]),
    }
    C = stats["mu"].shape[0] if stats["mu"].ndim == 2 else -1
    if (stats["mu"].ndim != 2 or stats["eta"].shape != stats["mu"].shape or stats["known"].shape != (C,)
            or not np.isfinite([stats["z_min"], stats["z_max"]]).all() or stats["z_max"] <= stats["z_min"]):
        raise UserInputError(f"{path} holds inconsistent stats (shapes mu {list(stats['mu'].shape)}, "
                             f"eta {list(stats['eta'].shape)}, known {list(stats['known'].shape)}): {refit}")
    if stats["version"] != VERSION:
        raise UserInputError(f"{path} is stats format version {stats['version']}, this edgehad reads {VERSION}: {refit}")
    return stats


def check_stats(stats: dict, model, path: str = "the stats") -> tuple[str, object]:
    """Check ``stats`` belong to ``model``; return ``(name, linear)`` of its final Linear.

    Shapes first (a clear "another model" error naming D and C), then the
    fingerprint (same shapes, other weights: fitted on a different model).
    """
    from torch import nn

    name = stats["classifier"]
    C, D = stats["mu"].shape
    module = dict(model.named_modules()).get(name)
    if not isinstance(module, nn.Linear):
        raise UserInputError(
            f"{path} are for another model: fitted with classifier {name!r}, which this model does not have "
            f"as an nn.Linear; refit with `edgehad osr fit`"
        )
    c2, d2 = module.weight.shape
    if (c2, d2) != (C, D):
        raise UserInputError(
            f"{path} are for another model: features D={D} classes C={C}, this model has D={d2} C={c2}; "
            "refit with `edgehad osr fit`"
        )
    if fingerprint(model, name) != stats["fingerprint"]:
        raise UserInputError(
            f"{path} were fitted on a different model (same shapes, other weights: fingerprint "
            f"{stats['fingerprint'][:12]} vs {fingerprint(model, name)[:12]}); refit with `edgehad osr fit`"
        )
    return name, module


__all__ = ["fingerprint", "fit_stats", "save_stats", "load_stats", "check_stats", "VERSION"]
