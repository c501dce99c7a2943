"""Poisoned COSTARR statistics are refused by the one check every reader runs (``validate_stats``, issue #13).

Each bad file is written with ``np.savez`` directly (``save_stats`` itself
refuses to write them) and read back with ``load_stats``, the reader of
``convert --osr FILE`` and ``osr eval --stats FILE``.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgehad.core.errors import UserInputError
from edgehad.osr.stats import VERSION, load_stats, save_stats


def good_stats(C: int = 3, D: int = 4) -> dict:
    """A small valid stats dict: every class known, counts summing to samples."""
    rng = np.random.default_rng(0)
    counts = np.arange(1, C + 1, dtype=np.int64)
    return {"z_min": -2.0, "z_max": 5.0, "mu": rng.random((C, D), dtype=np.float32),
            "eta": rng.normal(size=(C, D)).astype(np.float32), "known": np.ones(C, bool), "counts": counts,
            "classifier": "fc", "fingerprint": "0" * 32, "samples": int(counts.sum()), "version": VERSION}


def write(path, **changes):
    arrays = {**good_stats(), **changes}
    np.savez(path, **{k: np.asarray(v) for k, v in arrays.items()})
    return path


def with_value(key, index, value):
    a = good_stats()[key].copy()
    a[index] = value
    return a


def test_good_stats_round_trip(tmp_path):
    path = write(tmp_path / "good.npz")
    stats = load_stats(path)
    assert stats["mu"].dtype == np.float32 and stats["counts"].tolist() == [1, 2, 3]
    assert stats["samples"] == 6 and stats["z_min"] == -2.0 and stats["known"].all()


POISONED = {
    "nan-mu": ({"mu": with_value("mu", (1, 2), np.nan)},
               "array 'mu' holds 1 NaN or infinite value (class 1); a poisoned statistic would make known_score NaN"),
    "inf-eta": ({"eta": with_value("eta", (slice(None), 0), np.inf)},
                "array 'eta' holds 3 NaN or infinite values (classes 0, 1, 2)"),
    "nan-z_min": ({"z_min": np.float64(np.nan)}, "array 'z_min' holds 1 NaN or infinite value;"),
    "inf-z_max": ({"z_max": np.float64(np.inf)}, "array 'z_max' holds 1 NaN or infinite value;"),
    "no-known-class": ({"known": np.zeros(3, bool)},
                       "no known class (every entry of 'known' is False): every input would score 0"),
    "known-without-sample": ({"counts": np.array([0, 2, 4]), "samples": 6},
                             "class 0 marked known without a correctly classified sample (counts 0)"),
    "negative-count": ({"counts": np.array([-1, 3, 4]), "samples": 6},
                       "counts must not be negative, found -1 for class 0"),
    "negative-samples": ({"counts": np.zeros(3, np.int64), "samples": -1}, "samples must not be negative, found -1"),
    "counts-vs-samples": ({"samples": 7}, "counts sum to 6 but samples is 7"),
    "mu-rank-1": ({"mu": np.zeros(4, np.float32)}, "array 'mu' must be a float [C, D] array, found float32 of shape [4]"),
    "mu-int": ({"mu": np.zeros((3, 4), np.int64)}, "array 'mu' must be a float [C, D] array, found int64 of shape [3, 4]"),
    "known-int": ({"known": np.ones(3, np.int64)}, "array 'known' must be a bool [C] array, found int64 of shape [3]"),
    "samples-array": ({"samples": np.array([3, 3])},
                      "array 'samples' must be an integer scalar, found int64 of shape [2]"),
    "z_min-string": ({"z_min": "low"}, "array 'z_min' must be a float scalar, found a <U3 scalar"),
    "eta-shape": ({"eta": np.zeros((3, 5), np.float32)},
                  "the arrays disagree on the shape: mu [3, 4], eta [3, 5], known [3], counts [3]"),
    "known-length": ({"known": np.ones(2, bool)}, "known [2], counts [3] (want [C, D], [C, D], [C], [C])"),
    "counts-length": ({"counts": np.array([2, 4]), "samples": 6}, "known [3], counts [2]"),
    "empty-mu": ({"mu": np.zeros((0, 4), np.float32)}, "array 'mu' is empty (shape [0, 4])"),
    "z-range": ({"z_max": -2.0}, "z_max -2.0 is not above z_min -2.0"),
    "version": ({"version": VERSION + 1}, f"stats format version {VERSION + 1}, this edgehad reads {VERSION}"),
    "empty-classifier": ({"classifier": ""}, "'classifier' and 'fingerprint' must not be empty"),
}


@pytest.mark.parametrize("case", list(POISONED))
def test_poisoned_file_is_refused(tmp_path, case):
    changes, message = POISONED[case]
    path = write(tmp_path / "bad.npz", **changes)
    with pytest.raises(UserInputError) as info:
        load_stats(path)
    text = str(info.value)
    assert text.startswith(f"{path}: ") and message in text, text
    assert text.endswith("refit with `edgehad osr fit` (`data` SPEC, `out` FILE.npz)") and "\n" not in text


class Marker:
    """Unpickling this creates ``path``: proof that the loader did (or did not) run pickle."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_object_array_is_never_unpickled(tmp_path):
    marker = tmp_path / "unpickled"
    evil = np.empty(1, dtype=object)
    evil[0] = Marker(marker)
    path = write(tmp_path / "evil.npz", mu=evil)
    with pytest.raises(UserInputError, match=r"evil.npz is not a readable stats .npz: array 'mu' is an object array, "
                                             r"which edgehad never unpickles"):
        load_stats(path)
    assert not marker.exists()


def test_save_refuses_poisoned_stats_and_keeps_the_good_file(tmp_path):
    good = save_stats(tmp_path / "s.npz", good_stats())
    before = good.read_bytes()
    bad = {**good_stats(), "mu": with_value("mu", (0, 0), np.nan)}
    with pytest.raises(UserInputError, match=r"stats for .*s.npz: array 'mu' holds 1 NaN .*: fit them with `edgehad osr fit`"):
        save_stats(good, bad)
    assert good.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["s.npz"]


def test_fit_refuses_a_model_with_non_finite_logits():
    """A NaN weight in one class's row makes its logit NaN: the fit must not hand back NaN statistics."""
    import torch

    from edgehad.data import load_data
    from edgehad.osr.stats import fit_stats

    d = load_data("digits")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)).eval()
    with torch.no_grad():
        model[1].weight[4, 0] = float("nan")
    with pytest.raises(UserInputError, match=r"^osr fit: array 'z_min' holds 1 NaN or infinite value; .*"
                                             r"the model's features or logits are not finite on this data"):
        fit_stats(model, d.train[0][:200], d.train[1][:200], warn=lambda msg: None)


def test_validate_returns_typed_stats():
    from edgehad.osr.stats import validate_stats

    raw = {**good_stats(), "mu": good_stats()["mu"].astype(np.float64), "samples": np.int32(6)}
    stats = validate_stats(raw, "here")
    assert stats["mu"].dtype == np.float32 and type(stats["samples"]) is int and stats["classifier"] == "fc"
