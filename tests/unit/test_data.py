"""Data specs: digits and its options, .npz in both layouts, module:function, normalize."""

import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgehad.core.errors import UserInputError
from edgehad.data import load_data, sample_inputs
from tests.unit.test_osr_stats_checks import Marker

# digits per class in scikit-learn's 1,797 scans, and the val counts a stratified 20% split gives
DIGITS_PER_CLASS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


def test_digits_shapes_and_values(digits):
    xt, yt = digits.train
    xv, yv = digits.val
    assert xt.shape == (1437, 1, 8, 8) and xv.shape == (360, 1, 8, 8)
    assert len(yt) + len(yv) == 1797
    assert xt.dtype == np.float32 and yt.dtype == np.int64
    assert xt.min() == 0.0 and xt.max() == 1.0  # pixels 0..16 scaled by 1/16
    assert digits.spec == "digits" and digits.preprocessing["source"] == "digits"


def test_digits_split_is_stratified_and_fixed(digits):
    total = np.bincount(digits.train[1], minlength=10) + np.bincount(digits.val[1], minlength=10)
    assert total.tolist() == DIGITS_PER_CLASS
    val = np.bincount(digits.val[1], minlength=10)
    # stratified: every class within one sample of 20% of its count
    assert np.all(np.abs(val - 0.2 * np.array(DIGITS_PER_CLASS)) < 1)
    again = load_data("digits")
    assert np.array_equal(again.val[0], digits.val[0]) and np.array_equal(again.train[1], digits.train[1])


def test_digits_size_and_channels(digits):
    d = load_data("digits?size=32&channels=3")
    assert d.train[0].shape == (1437, 3, 32, 32) and d.val[0].shape == (360, 3, 32, 32)
    assert np.array_equal(d.val[0][:, 0], d.val[0][:, 2])  # channels are copies
    expected = F.interpolate(torch.from_numpy(digits.val[0]), size=(32, 32), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(d.val[0][:, :1], expected.numpy(), atol=1e-6)
    assert np.array_equal(d.val[1], digits.val[1])
    assert d.preprocessing["size"] == 32 and d.preprocessing["channels"] == 3


def test_digits_classes_range_and_list(digits):
    d = load_data("digits?classes=0-5")
    assert sorted(set(d.val[1].tolist())) == [0, 1, 2, 3, 4, 5]
    assert len(d.val[1]) == int(np.isin(digits.val[1], range(6)).sum())
    # a list relabels in the order given: 7 -> 0, 3 -> 1
    d = load_data("digits?classes=7,3")
    assert d.preprocessing["classes"] == [7, 3]
    assert np.array_equal(d.val[0][d.val[1] == 0], digits.val[0][digits.val[1] == 7])
    assert np.array_equal(d.val[0][d.val[1] == 1], digits.val[0][digits.val[1] == 3])
    assert len(d.val[1]) == int(np.isin(digits.val[1], [3, 7]).sum())


@pytest.mark.parametrize(
    "spec, message",
    [
        ("digits?colour=red", r"unknown digits option 'colour'; valid options: size, channels, classes"),
        ("digits?size=0", r"size='0': expected an integer from 1 to 1024"),
        ("digits?size=big", r"size='big': expected an integer"),
        ("digits?classes=3-12", r"classes='3-12': expected a range like 0-5"),
        ("digits?classes=1,1", r"distinct digits"),
        ("digits?size", r"malformed"),
        ("mnist", r"data spec 'mnist' not understood; use 'digits"),
    ],
)
def test_bad_digits_specs(spec, message):
    with pytest.raises(UserInputError, match=message):
        load_data(spec)


def test_npz_with_four_arrays(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, x_train=rng.random((6, 3), dtype=np.float64), y_train=np.arange(6) % 2,
             x_val=rng.random((4, 3)), y_val=np.array([1, 0, 1, 1], dtype=np.int32))
    d = load_data(str(path))
    assert d.train[0].shape == (6, 3) and d.train[0].dtype == np.float32
    assert d.val[1].tolist() == [1, 0, 1, 1] and d.val[1].dtype == np.int64


def test_npz_with_x_y_is_split_like_digits(tmp_path):
    x = np.arange(100 * 2, dtype=np.float32).reshape(100, 2)
    y = np.repeat([0, 1, 2, 3], 25)
    path = tmp_path / "xy.npz"
    np.savez(path, x=x, y=y)
    d = load_data(str(path))
    assert len(d.train[1]) == 80 and len(d.val[1]) == 20
    assert np.bincount(d.val[1]).tolist() == [5, 5, 5, 5]
    # every sample lands in exactly one split
    seen = np.sort(np.concatenate([d.train[0][:, 0], d.val[0][:, 0]]))
    assert np.array_equal(seen, x[:, 0])


def test_npz_object_array_is_refused(tmp_path):
    path = tmp_path / "obj.npz"
    ragged = np.empty(2, dtype=object)
    ragged[0], ragged[1] = np.zeros(3), np.zeros(4)
    np.savez(path, x=ragged, y=np.array([0, 1]))
    with pytest.raises(UserInputError, match=r"array 'x' is an object array; edgehad loads .npz files without pickle"):
        load_data(str(path))


def test_npz_errors(tmp_path):
    with pytest.raises(UserInputError, match=r"missing.npz not found"):
        load_data(str(tmp_path / "missing.npz"))
    path = tmp_path / "wrong.npz"
    np.savez(path, y=np.zeros(4))  # labels only (arrays of other names are named inputs: test_data_named.py)
    with pytest.raises(UserInputError, match=r"holds arrays \['y'\]; expected x_train"):
        load_data(str(path))
    path = tmp_path / "short.npz"
    np.savez(path, x=np.zeros((4, 2)), y=np.zeros(3, dtype=int))
    with pytest.raises(UserInputError, match="x has 4 samples but y has 3 labels"):
        load_data(str(path))
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(UserInputError, match="not a readable .npz archive"):
        load_data(str(tmp_path / "text.npz"))


DATA_MODULE = textwrap.dedent("""
    import numpy as np
    import torch

    def samples():
        # train: single samples as numpy; val: batches of torch tensors
        train = [(np.full((2, 2), i, dtype=np.float64), i % 3) for i in range(9)]
        val = [(torch.ones(4, 2, 2) * b, torch.tensor([0, 1, 2, 0])) for b in range(2)]
        return train, val

    def arrays():
        return (np.zeros((5, 3)), np.arange(5)), (torch.zeros(2, 3), torch.tensor([1, 0]))

    def mixed():
        return [(np.zeros(2), 1), (np.zeros((3, 2)), np.array([1, 2, 0]))], []

    def broken():
        raise RuntimeError("no data today")
""")


@pytest.fixture
def data_module(tmp_path, monkeypatch):
    (tmp_path / "my_data.py").write_text(DATA_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path / "my_data.py"


def test_function_spec_by_path_and_by_module(data_module):
    d = load_data(f"{data_module}:samples")
    assert d.train[0].shape == (9, 2, 2) and d.train[0].dtype == np.float32
    assert d.train[1].tolist() == [0, 1, 2] * 3
    assert d.val[0].shape == (8, 2, 2) and d.val[1].tolist() == [0, 1, 2, 0] * 2
    assert d.val[0][4:].min() == 1.0  # second batch follows the first
    d = load_data("my_data:arrays")
    assert d.train[0].shape == (5, 3) and d.val[1].tolist() == [1, 0]


def test_function_spec_errors(data_module):
    with pytest.raises(UserInputError, match=r"broken\(\) raised RuntimeError: no data today"):
        load_data("my_data:broken")
    with pytest.raises(UserInputError, match="has no function 'nothing'"):
        load_data("my_data:nothing")
    with pytest.raises(UserInputError, match="module 'no_such_module' in .* cannot be imported"):
        load_data("no_such_module:fn")
    with pytest.raises(UserInputError, match=r"labels must be all scalars \(samples\) or all 1-D \(batches\)"):
        load_data("my_data:mixed")


def test_normalize_is_applied_and_recorded(digits):
    d = load_data("digits", normalize="0.5,0.25")
    np.testing.assert_allclose(d.val[0], (digits.val[0] - 0.5) / 0.25, atol=1e-6)
    assert d.preprocessing["mean"] == [0.5] and d.preprocessing["std"] == [0.25]
    assert digits.preprocessing["mean"] == [0.0] and digits.preprocessing["std"] == [1.0]
    d = load_data("digits?channels=3", normalize="0.1/0.2/0.3,1/2/4")
    base = digits.val[0][:, 0]
    np.testing.assert_allclose(d.val[0][:, 2], (base - 0.3) / 4, atol=1e-6)
    assert d.preprocessing["mean"] == [0.1, 0.2, 0.3]
    d = load_data("digits", normalize=(0.5, 0.25))  # the Python form
    np.testing.assert_allclose(d.train[0], (digits.train[0] - 0.5) / 0.25, atol=1e-6)


@pytest.mark.parametrize(
    "normalize, message",
    [
        ("0.5", r"normalize '0.5' not understood; give normalize as 'MEAN,STD'"),
        ("0.5,0", "std must be positive"),
        ("0.1/0.2/0.3,1/2/4", r"3 per-channel values but the inputs of 'digits' have shape \[1, 8, 8\]"),
    ],
)
def test_bad_normalize(normalize, message):
    with pytest.raises(UserInputError, match=message):
        load_data("digits", normalize=normalize)


def test_sample_inputs(digits):
    x = sample_inputs(digits, 5)
    assert x.shape == (5, 1, 8, 8) and x.dtype == np.float32
    assert np.array_equal(x, digits.val[0][:5])
    assert np.array_equal(sample_inputs(digits, 3, split="train"), digits.train[0][:3])
    assert sample_inputs(digits, 10_000).shape[0] == 360
    with pytest.raises(UserInputError, match="unknown split 'test'"):
        sample_inputs(digits, 3, split="test")


# --- data that must be refused where it is loaded (issue #13) ------------------------------------


def _digits_arrays(n_train=40, n_val=20):
    d = load_data("digits")
    return {"x_train": d.train[0][:n_train], "y_train": d.train[1][:n_train],
            "x_val": d.val[0][:n_val], "y_val": d.val[1][:n_val]}


def _poisoned(tmp_path, **changes):
    arrays = {**_digits_arrays(), **changes}
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return str(path)


def _with_value(name, index, value, dtype=np.float32):
    a = _digits_arrays()[name].astype(dtype)
    a.reshape(len(a), -1)[index[0], index[1]] = value
    return a


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda: {"x_val": _with_value("x_val", (3, 5), np.nan)},
         r"bad.npz: array 'x_val' holds NaN or infinite values in 1 of 20 samples \(first: sample 3\): drop or repair"),
        (lambda: {"x_train": _with_value("x_train", (7, 0), np.inf)},
         r"array 'x_train' holds NaN or infinite values in 1 of 40 samples \(first: sample 7\)"),
        (lambda: {"x_val": _with_value("x_val", (0, 0), 1e300, np.float64)},  # finite in float64, inf in float32
         r"array 'x_val' holds NaN or infinite values in 1 of 20 samples"),
        (lambda: {"y_val": np.r_[-np.ones(5, np.int64), np.zeros(15, np.int64)]},
         r"array 'y_val' holds negative labels \(5 of 20, min -1\): labels are class indices 0..C-1; drop unlabeled"),
        (lambda: {"y_train": np.full(40, 1.5)}, r"array 'y_train' must hold integer class labels, found fractional values \(e.g. 1.5\)"),
        (lambda: {"y_val": np.r_[np.nan, np.zeros(19)]}, r"array 'y_val' holds NaN or infinite labels"),
        (lambda: {"y_val": np.array(["a"] * 20)}, r"array 'y_val' is <U1, not numeric"),
        (lambda: {"x_val": np.zeros((21, 1, 8, 8), np.float32)}, r"x_val has 21 samples but y_val has 20 labels: give one label"),
        (lambda: {"x_val": np.zeros((0, 1, 8, 8), np.float32), "y_val": np.zeros(0, np.int64)},
         r"arrays 'x_val' and 'y_val' are empty: the split needs at least one sample"),
        (lambda: {"x_train": np.float32(1.0)}, r"array 'x_train' is a scalar: it must hold one sample per row"),
    ],
    ids=["nan-x_val", "inf-x_train", "float32-overflow", "negative-labels", "fractional-labels", "nan-labels",
         "string-labels", "length-mismatch", "empty-split", "scalar-x"],
)
def test_bad_npz_is_refused_naming_file_and_array(tmp_path, change, message):
    with pytest.raises(UserInputError, match=message):
        load_data(_poisoned(tmp_path, **change()))


def test_bad_xy_npz_names_its_arrays(tmp_path):
    x = np.zeros((20, 3), np.float32)
    x[4, 1] = np.nan
    path = tmp_path / "xy.npz"
    np.savez(path, x=x, y=np.repeat([0, 1], 10))
    with pytest.raises(UserInputError, match=r"xy.npz: array 'x' holds NaN or infinite values in 1 of 20 samples"):
        load_data(str(path))


def test_npz_object_array_is_never_unpickled(tmp_path):
    marker = tmp_path / "unpickled"
    evil = np.empty(1, dtype=object)
    evil[0] = Marker(marker)
    path = _poisoned(tmp_path, y_train=evil)
    with pytest.raises(UserInputError, match=r"array 'y_train' is an object array; edgehad loads .npz files without pickle"):
        load_data(path)
    assert not marker.exists()


EXITING_MODULE = textwrap.dedent("""
    import sys

    import numpy as np

    def exits():
        sys.exit(3)

    def _batches():
        yield np.zeros((2, 3)), np.array([0, 1])
        sys.exit("stop")

    def exits_while_iterating():
        return _batches(), (np.zeros((2, 3)), np.array([0, 1]))
""")


def test_function_spec_that_exits_is_refused(tmp_path):
    (tmp_path / "exiting.py").write_text(EXITING_MODULE)
    spec = f"{tmp_path / 'exiting.py'}"
    with pytest.raises(UserInputError, match=r"exits\(\) called sys.exit\(3\) instead of returning \(train, val\)"):
        load_data(f"{spec}:exits")
    with pytest.raises(UserInputError, match=r"\(train split\): iterating the data called sys.exit\('stop'\)"):
        load_data(f"{spec}:exits_while_iterating")
    (tmp_path / "exits_on_import.py").write_text("import sys\nsys.exit(4)\ndef data():\n    return None\n")
    with pytest.raises(UserInputError, match=r"exits_on_import.py called sys.exit\(4\): remove the call from module level"):
        load_data(f"{tmp_path / 'exits_on_import.py'}:data")


def test_function_spec_with_negative_labels_is_refused(tmp_path):
    (tmp_path / "neg.py").write_text(textwrap.dedent("""
        import numpy as np

        def data():
            return (np.zeros((4, 2)), np.array([0, 1, -1, 0])), (np.zeros((2, 2)), np.array([0, 1]))
    """))
    with pytest.raises(UserInputError, match=r"neg.py:data \(train split\): array 'y' holds negative labels \(1 of 4"):
        load_data(f"{tmp_path / 'neg.py'}:data")
