"""Which classes a data set holds, in its source's own labels, and the check that unknowns were not fitted.

An open-set evaluation means something only when the unknown classes were
unknown to the fit: statistics fitted on data that holds them describe them as
known (their features shaped ``mu_c`` and ``eta_c``, their logits ``z_min`` and
``z_max``), so COSTARR scores them as known and the AUROC says little (the
README's digits example scored 0.59 that way). ``osr fit`` records what it was
fitted on (``fit_source``, ``fit_classes`` in the stats file) and ``osr eval``
compares that with its unknown data.

Labels are compared in the source's own labels, since a spec may relabel:
``digits?classes=6-9`` holds digits 6..9 relabelled 0..3, and its
``preprocessing["classes"]`` says which digit each label was. Two specs are
comparable only when they read the same source: ``digits`` (whatever its size,
channels or classes), the same ``.npz`` file, or the same ``MODULE:FUNCTION``;
data in memory has no source to compare, so nothing is recorded for it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def source_of(splits) -> str:
    """A name for the data source of ``splits`` (a ``DataSplits``), equal for specs that read the same labels;
    ``""`` for data in memory, which is compared with nothing."""
    spec = str(splits.spec or "")
    if spec == "digits" or spec.startswith("digits?"):
        return "digits"
    if spec.endswith(".npz"):
        return str(Path(spec).resolve())
    return "" if spec == "<in memory>" else spec


def source_labels(splits, labels) -> np.ndarray:
    """``labels`` of ``splits`` as the source's own labels: undoes a ``classes=`` relabelling."""
    labels = np.asarray(labels, dtype=np.int64)
    kept = splits.preprocessing.get("classes")
    return np.asarray(kept, dtype=np.int64)[labels] if kept else labels


def _named(classes) -> str:
    """Up to 20 classes, then how many more."""
    classes = [int(c) for c in classes]
    return ", ".join(map(str, classes[:20])) + (f" and {len(classes) - 20} more" if len(classes) > 20 else "")


def unknowns_in_fit(stats: dict, splits, labels, unknown: str, known: str, stats_path) -> str | None:
    """The warning when classes of the unknown data (``labels`` of ``splits``, spec ``unknown``) were known in the
    fit of ``stats``; None when none were, or when the stats or the data cannot tell (module docstring)."""
    fit_source, fit_classes = stats.get("fit_source"), stats.get("fit_classes")
    if not fit_source or fit_classes is None or source_of(splits) != fit_source or len(labels) == 0:
        return None
    both = sorted(set(np.unique(source_labels(splits, labels)).tolist()) & set(np.asarray(fit_classes).tolist()))
    if not both:
        return None
    many = len(both) > 1
    return (f"unknown class{'es' if many else ''} {_named(both)} of {unknown!r} {'were' if many else 'was'} known "
            f"when {stats_path} was fitted (on {fit_source} classes {_named(fit_classes)}): COSTARR scores "
            f"{'them' if many else 'it'} as known, so these numbers do not measure open-set recognition; refit on "
            f"the known classes only (`data={known!r}`)")
