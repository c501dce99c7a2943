"""Bad --data through the real CLI (issue #13): exit 2, one line naming the file and the array, no out folder.

The loader's refusals are covered case by case in tests/unit/test_data.py;
these check that they reach the user as a clean error from each command that
reads data, before any file is written.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from tests.conftest import run_cli
from tests.e2e.test_cli_convert import assert_clean_error
from tests.unit.test_osr_stats_checks import Marker


@pytest.fixture(scope="module")
def digits_arrays():
    from edgehad.data import load_data

    d = load_data("digits")
    return {"x_train": d.train[0][:100], "y_train": d.train[1][:100], "x_val": d.val[0][:50], "y_val": d.val[1][:50]}


def bad_npz(arrays, path, case):
    arrays = dict(arrays)
    if case == "nan-val":
        arrays["x_val"] = arrays["x_val"].copy()
        arrays["x_val"][2, 0, 3, 3] = np.nan
    elif case == "negative-labels":
        arrays["y_val"] = np.full(len(arrays["y_val"]), -1, np.int64)
    else:  # an object array whose element creates a marker file if unpickled
        arrays["x_train"] = np.empty(1, dtype=object)
        arrays["x_train"][0] = Marker(path.parent / "unpickled")
    np.savez(path, **arrays)
    return path


MESSAGES = {
    "nan-val": "bad.npz: array 'x_val' holds NaN or infinite values in 1 of 50 samples (first: sample 2)",
    "negative-labels": "bad.npz: array 'y_val' holds negative labels (50 of 50, min -1): labels are class indices",
    "object-array": "bad.npz: array 'x_train' is an object array; edgehad loads .npz files without pickle",
}


@pytest.mark.parametrize("case", list(MESSAGES))
def test_convert_refuses_bad_data(digits_arrays, tmp_path, case):
    data = bad_npz(digits_arrays, tmp_path / "bad.npz", case)
    result = run_cli("convert", "zoo:digits_cnn", "--data", data, "--out", tmp_path / "out")
    assert_clean_error(result, MESSAGES[case])
    assert not (tmp_path / "out").exists() and not (tmp_path / "unpickled").exists()


def test_osr_eval_refuses_negative_known_labels(digits_arrays, tmp_path):
    """osr eval reads its --known data through the same loader: refused before any scoring."""
    from edgehad.osr.stats import save_stats
    from tests.unit.test_osr_stats_checks import good_stats

    data = bad_npz(digits_arrays, tmp_path / "bad.npz", "negative-labels")
    # a valid file: the data is refused before the stats are matched against the model
    stats = save_stats(tmp_path / "stats.npz", good_stats())
    result = run_cli("osr", "eval", "zoo:digits_cnn", "--stats", stats, "--known", data, "--unknown", "digits")
    assert_clean_error(result, MESSAGES["negative-labels"])


def test_data_function_that_exits(tmp_path):
    """Before: exit 3 and no message at all."""
    (tmp_path / "quits.py").write_text(textwrap.dedent("""
        import sys

        def data():
            sys.exit(3)
    """))
    result = run_cli("convert", "zoo:digits_cnn", "--data", f"{tmp_path / 'quits.py'}:data", "--out", tmp_path / "out")
    assert_clean_error(result, "quits.py:data': data() called sys.exit(3) instead of returning (train, val)")
    assert not (tmp_path / "out").exists()
