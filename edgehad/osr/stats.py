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
many were fitted on), ``version``; and, written by ``edgehad.osr.fit`` where the
data says it (optional: older files and fits from arrays lack them), what the fit
was on (``edgehad.osr.classes``): ``fit_source`` (the data source, e.g. ``digits``)
and ``fit_classes`` [K] int64 (the known classes in that source's own labels), so
``osr eval`` can warn when its unknown classes were known in the fit.

Every reader goes through one check, ``validate_stats``: a NaN in mu would
make ``known_score`` NaN for every input predicted as that class, in the
deployed file too, so non-finite values, wrong dtypes or shapes, negative or
inconsistent counts and a file without a known class are refused on load
(``convert --osr FILE`` and ``osr eval`` alike), after a fit and before a save.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgehad.core.errors import UserInputError

VERSION = 1
ARRAY_KEYS = ("z_min", "z_max", "mu", "eta", "known", "counts", "classifier", "fingerprint", "samples", "version")
OPTIONAL_KEYS = ("fit_source", "fit_classes")  # what the fit was on (module docstring); absent in older files
REFIT = "refit with `edgehad osr fit` (`data` SPEC, `out` FILE.npz)"
# each array of the format: numpy dtype kinds accepted, rank, and how a message names it
FORMAT = {
    "z_min": ("f", 0, "a float scalar"), "z_max": ("f", 0, "a float scalar"),
    "mu": ("f", 2, "a float [C, D] array"), "eta": ("f", 2, "a float [C, D] array"),
    "known": ("b", 1, "a bool [C] array"), "counts": ("iu", 1, "an integer [C] array"),
    "classifier": ("U", 0, "a string"), "fingerprint": ("U", 0, "a string"),
    "samples": ("iu", 0, "an integer scalar"), "version": ("iu", 0, "an integer scalar"),
    "fit_source": ("U", 0, "a string"), "fit_classes": ("iu", 1, "an integer [K] array"),
}


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
    # a class absent from the data (a fit on the known classes only) is told apart from one the model never
    # got right: the first is what an open-set fit wants, the second says something about the model
    present = np.bincount(y, minlength=C) > 0
    for missing, why in (([int(c) for c in np.flatnonzero(~present)], "not in the fit data"),
                         ([int(c) for c in np.flatnonzero(present & (counts == 0))],
                          "no correctly classified training sample")):
        if missing:
            many = len(missing) > 1
            # name up to 20 classes: a 1000-class model fitted on a few samples would print a page
            named = ', '.join(map(str, missing[:20])) + (f" and {len(missing) - 20} more" if len(missing) > 20 else "")
            verb = ("are" if many else "is") if why.startswith("not") else ("have" if many else "has")
            warn(f"class{'es' if many else ''} {named} {verb} {why}: excluded from the known set "
                 f"(inputs predicted as {'one of them' if many else 'it'} score 0)")
    stats = {
        "z_min": float(z_k.min()), "z_max": float(z_k.max()),
        "mu": mu.astype(np.float32), "eta": eta.astype(np.float32),
        "known": counts > 0, "counts": counts,
        "classifier": name, "fingerprint": fingerprint(model, name),
        "samples": int(correct.sum()), "version": VERSION,
    }
    # a model whose features overflow (or NaN weights) must not yield a file that poisons every score
    return validate_stats(stats, "osr fit", fix="the model's features or logits are not finite on this data: "
                                                "check its weights and the data's normalization")


def save_stats(path, stats: dict) -> Path:
    """Write ``stats`` to ``path`` (.npz) atomically: a failed write never replaces a good file.

    Statistics ``validate_stats`` refuses are never written.
    """
    from edgehad.core.files import atomic_path

    path = Path(path)
    missing = [k for k in ARRAY_KEYS if k not in stats]
    if missing:
        raise UserInputError(f"stats for {path} lack {', '.join(missing)}: fit them with `edgehad osr fit`")
    validate_stats(stats, f"stats for {path}", fix="fit them with `edgehad osr fit`")
    arrays = {k: np.asarray(stats[k]) for k in ARRAY_KEYS + OPTIONAL_KEYS if k in stats}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:  # a file object: np.savez would append ".npz" to a path
            np.savez(fh, **arrays)
    return path


def load_stats(path) -> dict:
    """Read a stats ``.npz`` written by ``save_stats``; anything ``validate_stats`` refuses is a ``UserInputError``.

    Loaded with ``allow_pickle=False``: an object array is refused, never unpickled.
    """
    p = Path(path)
    if not p.is_file():
        raise UserInputError(f"stats file {path} not found: {REFIT}")
    raw = {}
    try:
        with np.load(p, allow_pickle=False) as archive:
            missing = [k for k in ARRAY_KEYS if k not in archive.files]
            if missing:
                raise UserInputError(f"{path} is not an edgehad OSR stats file (missing {', '.join(missing)}): {REFIT}")
            for k in ARRAY_KEYS + tuple(k for k in OPTIONAL_KEYS if k in archive.files):
                raw[k] = _read_array(archive, k, path)
    except UserInputError:
        raise
    except (Exception, MemoryError) as exc:  # any failure to parse the bytes (bad CRC, mangled header, huge shape)
        raise UserInputError(f"{path} is not a readable stats .npz ({type(exc).__name__}): {REFIT}") from None
    return validate_stats(raw, str(path))


def _read_array(archive, key: str, path) -> np.ndarray:
    try:
        array = archive[key]
    except ValueError as exc:
        if "allow_pickle" in str(exc):  # numpy refuses to unpickle: say so rather than "unreadable"
            raise UserInputError(f"{path} is not a readable stats .npz: array {key!r} is an object array, "
                                 f"which edgehad never unpickles: {REFIT}") from None
        raise
    if not isinstance(array, np.ndarray):  # a member that is not .npy comes back as raw bytes
        raise UserInputError(f"{path} is not a readable stats .npz: member {key!r} is not an array: {REFIT}")
    return array


def validate_stats(arrays: dict, source: str, fix: str = "") -> dict:
    """Refuse statistics that would poison the score; return them typed (the dict ``load_stats`` gives).

    The one check of the format, run on every stats file read (``load_stats``:
    ``convert --osr FILE``, ``osr eval``) and on every fit before it is used or
    written. ``arrays`` maps each of ``ARRAY_KEYS`` to a value. Refused, with
    one line naming ``source``, the array and ``fix`` (default: refit): another
    format version; a wrong dtype or rank; mu, eta, known, counts that disagree
    on the number of classes C; NaN or infinity in z_min, z_max, mu or eta;
    z_max <= z_min; negative counts or samples; counts that do not sum to
    samples; a known class without a sample; no known class at all.
    """
    fix = fix or REFIT
    a = {k: np.asarray(arrays[k]) for k in ARRAY_KEYS}
    a.update({k: np.asarray(arrays[k]) for k in OPTIONAL_KEYS if k in arrays})

    def refuse(what: str):
        return UserInputError(f"{source}: {what}: {fix}")

    version = a["version"]
    if version.ndim == 0 and version.dtype.kind in "iu" and int(version) != VERSION:
        raise refuse(f"stats format version {int(version)}, this edgehad reads {VERSION}")
    for key, (kinds, rank, wanted) in FORMAT.items():
        if key not in a:  # an optional key the file does not have
            continue
        v = a[key]
        if v.dtype.kind not in kinds or v.ndim != rank:
            got = f"{v.dtype} of shape {list(v.shape)}" if v.ndim else f"a {v.dtype} scalar"
            raise refuse(f"array {key!r} must be {wanted}, found {got}")
    mu, eta, known, counts = a["mu"], a["eta"], a["known"], a["counts"]
    C, D = mu.shape
    if C == 0 or D == 0:
        raise refuse(f"array 'mu' is empty (shape {list(mu.shape)}): the stats have no class or no feature")
    if eta.shape != mu.shape or known.shape != (C,) or counts.shape != (C,):
        raise refuse(f"the arrays disagree on the shape: mu {list(mu.shape)}, eta {list(eta.shape)}, "
                     f"known {list(known.shape)}, counts {list(counts.shape)} (want [C, D], [C, D], [C], [C])")
    for key in ("z_min", "z_max", "mu", "eta"):
        bad = ~np.isfinite(a[key])
        if bad.any():
            where = f" (class{'es' if bad.ndim and bad.any(1).sum() > 1 else ''} " \
                    f"{_first_classes(np.flatnonzero(bad.any(1)))})" if bad.ndim else ""
            raise refuse(f"array {key!r} holds {int(bad.sum())} NaN or infinite value{'s' if bad.sum() > 1 else ''}"
                         f"{where}; a poisoned statistic would make known_score NaN")
    z_min, z_max = float(a["z_min"]), float(a["z_max"])
    if not z_max > z_min:
        raise refuse(f"z_max {z_max} is not above z_min {z_min}")
    if (counts < 0).any() or int(a["samples"]) < 0:
        neg = np.flatnonzero(counts < 0)
        raise refuse(f"counts must not be negative, found {int(counts[neg[0]])} for class {int(neg[0])}" if len(neg)
                     else f"samples must not be negative, found {int(a['samples'])}")
    if int(counts.sum()) != int(a["samples"]):
        raise refuse(f"counts sum to {int(counts.sum())} but samples is {int(a['samples'])}")
    empty_known = np.flatnonzero(known & (counts == 0))
    if len(empty_known):
        raise refuse(f"class{'es' if len(empty_known) > 1 else ''} {_first_classes(empty_known)} marked known "
                     "without a correctly classified sample (counts 0)")
    if not known.any():
        raise refuse("no known class (every entry of 'known' is False): every input would score 0")
    if not str(a["classifier"]) or not str(a["fingerprint"]):
        raise refuse("'classifier' and 'fingerprint' must not be empty")
    typed = {
        "z_min": z_min, "z_max": z_max, "mu": mu.astype(np.float32), "eta": eta.astype(np.float32),
        "known": known.astype(bool), "counts": counts.astype(np.int64),
        "classifier": str(a["classifier"]), "fingerprint": str(a["fingerprint"]),
        "samples": int(a["samples"]), "version": int(a["version"]),
    }
    if "fit_source" in a and "fit_classes" in a:  # one without the other says nothing: dropped
        typed.update(fit_source=str(a["fit_source"]), fit_classes=a["fit_classes"].astype(np.int64))
    return typed


def _first_classes(classes) -> str:
    """Up to 5 class indices, then how many more: a 1000-class model must not print a page."""
    classes = [int(c) for c in classes]
    return ", ".join(map(str, classes[:5])) + (f" and {len(classes) - 5} more" if len(classes) > 5 else "")


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


__all__ = ["fingerprint", "fit_stats", "save_stats", "load_stats", "validate_stats", "check_stats", "VERSION"]
