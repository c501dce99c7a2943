"""Data specs: one string names a data set, every command reads it the same way.

``load_data(spec, normalize=None)`` returns ``DataSplits`` with a ``train`` and a
``val`` split, each ``(x, y)``: x float32 in the layout the source gives (NCHW
for images), y int64. A model with several inputs (a text encoder's token ids
and attention mask) takes *named* data instead: x is a dict of arrays by the
model's input names, each kept in the dtype it was saved in (int64 token ids
stay int64), and y is optional (None: enough to verify and calibrate on real
inputs, not to train or measure accuracy). Specs:

``digits[?OPTIONS]``
    scikit-learn's handwritten digits (1,797 real 8x8 scans), pixels 0..16
    scaled to [0, 1], shape [N, 1, 8, 8]; stratified 80/20 split, seed 0
    (1,437 train / 360 val). Options, as a query string, applied after the split:

    - ``size=32``: bilinear resize to 32x32 (``interpolate``, align_corners=False);
    - ``channels=3``: replicate the gray channel 3 times;
    - ``classes=0-5`` or ``classes=0,3,7``: keep only those digits and relabel
      them 0..k-1 in the order given (``classes=7,3`` makes 7 -> 0 and 3 -> 1);
      ``preprocessing["classes"]`` keeps the original digits. Selecting after the
      split keeps every val sample a val sample of the full set.

``FILE.npz``
    arrays ``x_train, y_train, x_val, y_val``, or ``x, y`` split as above
    (stratified 80/20, seed 0). Loaded with ``allow_pickle=False``: object
    arrays are refused. x is cast to float32 as is (no scaling).

    Named inputs: arrays named by the model's inputs (its forward arguments, the
    ONNX file's input names), e.g. ``input_ids`` and ``attention_mask``, each
    [N, ...] with one row per sample, any integer, bool or float dtype kept as
    it is; ``y`` optional. With ``_train`` / ``_val`` suffixes on every array
    (``input_ids_train``, ``attention_mask_train``, ``y_train``, ``input_ids_val``,
    ...) the splits are explicit; without them the samples are split 80/20 with
    seed 0 (stratified when there is y). An archive whose only input is ``x`` is
    the single-input layout above; ``convert`` checks the names against the
    model's (``edgehad.core.pipeline.bind_data``).

``MODULE:FUNCTION`` or ``FILE.py:FUNCTION``
    the function, called without arguments, returns ``(train, val)``. Each is an
    iterable of ``(x, y)`` pairs, either single samples (y a scalar) or batches
    (y one-dimensional), e.g. a torch ``DataLoader``; or simply a pair of arrays
    ``(x, y)``. numpy arrays and torch tensors are both accepted. Named inputs:
    each split a dict of arrays by input name (labels, if any, under ``"y"``), or
    a pair ``(dict, y)``.

Every split is checked where it is loaded (any command, any split): x numeric
and finite (no NaN or infinity, after the cast to float32; each float array of
named data), y integer class labels >= 0, one per sample, no split empty, every
named array with the same number of samples. A refusal is one line naming the
file or spec, the array and what to fix. A ``MODULE:FUNCTION`` that calls
``sys.exit()`` is refused the same way.

``normalize``: ``x = (x - mean) / std``, given as the string ``"MEAN,STD"``
(one value for all channels, e.g. ``"0.5,0.25"``) or ``"M1/M2/M3,S1/S2/S3"``
(one value per channel, along dim 1), or as a tuple ``(mean, std)`` of numbers
or sequences. It is recorded in ``preprocessing`` (``mean``, ``std``), which is
``[0.0]``, ``[1.0]`` when no normalization was asked for. It applies to one
image input x: named data is saved already prepared.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl

import numpy as np

from edgehad.core.errors import UserInputError
from edgehad.core.imports import import_attr

SEED = 0
VAL_FRACTION = 0.2
DIGITS_OPTIONS = ("size", "channels", "classes")


@dataclass
class DataSplits:
    """Two splits, ``(x, y)`` each, and how the inputs were prepared.

    x: one array (one input), or a dict of arrays by input name (named data); y: int64 labels, or None.
    """

    train: tuple
    val: tuple
    preprocessing: dict = field(default_factory=dict)
    spec: str = ""

    @property
    def input_names(self) -> list[str] | None:
        """The input names of named data, None for one array x."""
        x = self.train[0]
        return list(x) if isinstance(x, dict) else None

    @property
    def labelled(self) -> bool:
        return self.train[1] is not None


def load_data(spec, normalize: str | tuple | None = None) -> DataSplits:
    """Load the data set named by ``spec`` (see the module docstring) and normalize it.

    From Python, ``spec`` may also be data in memory: arrays ``(x, y)`` (split 80/20 stratified,
    seed 0, as a file's ``x, y``) or ``(train, val)``, each an ``(x, y)`` pair of arrays or an
    iterable of ``(x, y)`` samples or batches; or named data: a dict of arrays by input name
    (``"y"``: labels, optional; split 80/20, seed 0), ``(dict, y)``, or ``(train, val)`` of those.
    The same checks apply.
    """
    if isinstance(spec, dict) or (isinstance(spec, (tuple, list)) and len(spec) == 2):
        train, val, prep = _load_in_memory(spec)
        spec, source, where = "<in memory>", "in memory", "data"
    else:
        if not isinstance(spec, str) or not spec.strip():
            raise UserInputError("empty data spec; use 'digits', FILE.npz, MODULE:FUNCTION or FILE.py:FUNCTION")
        spec = source = where = spec.strip()
        if spec == "digits" or spec.startswith("digits?"):
            train, val, prep = _load_digits(spec.partition("?")[2])
        elif spec.endswith(".npz"):
            train, val, prep = _load_npz(spec)
        elif ":" in spec:
            train, val, prep = _load_function(spec)
        else:
            raise UserInputError(
                f"data spec {spec!r} not understood; use 'digits[?size=..&channels=..&classes=..]', "
                "FILE.npz, MODULE:FUNCTION or FILE.py:FUNCTION"
            )
    for name, (x, y) in (("train", train), ("val", val)):
        if _count(x) == 0:
            raise UserInputError(f"data spec {spec!r}: the {name} split is empty: give it at least one sample")
    mean, std = _parse_normalize(normalize)
    if normalize is not None and isinstance(train[0], dict):
        raise UserInputError(f"`normalize` applies to one image input x, and {where} gives named inputs "
                             f"({', '.join(train[0])}): save them prepared as the model takes them")
    if normalize is not None:
        train = (_apply_normalize(train[0], mean, std, where), train[1])
        val = (_apply_normalize(val[0], mean, std, where), val[1])
    preprocessing = {"source": source, **prep, "mean": mean, "std": std}
    return DataSplits(train=train, val=val, preprocessing=preprocessing, spec=spec)


def _load_in_memory(data):
    if isinstance(data, dict):  # named inputs, labels under "y" or none: one set, split 80/20
        x, y = _named_split(data, "data (named inputs)")
        train, val = _split(x, y, "data (named inputs)")
        return train, val, {"layout": _split_layout(x, y)}
    first, second = data
    if isinstance(first, dict) and _is_array(second):  # (named inputs, y): one labelled set
        x, y = _named_split({**first, "y": second}, "data (inputs, y)")
        train, val = _split(x, y, "data (inputs, y)")
        return train, val, {"layout": _split_layout(x, y)}
    if _is_array(first) and _is_array(second):  # (x, y): one labelled set, split as a file's x, y is
        x, y = _as_xy(_to_numpy(first), _to_numpy(second), "data (x, y)")
        train, val = _split(x, y, "data (x, y)")
        return train, val, {"layout": "x, y split 80/20 stratified, seed 0"}
    return _materialize(first, "data (train split)"), _materialize(second, "data (val split)"), {}


def _count(x) -> int:
    """Samples in x: one array, or named arrays (all of one length, checked where loaded)."""
    return len(next(iter(x.values()))) if isinstance(x, dict) else len(x)


def _take(x, index: np.ndarray):
    return {k: v[index] for k, v in x.items()} if isinstance(x, dict) else x[index]


def _split_layout(x, y) -> str:
    names = ", ".join(x) if isinstance(x, dict) else "x"
    return f"{names}{', y' if y is not None else ''} split 80/20{' stratified' if y is not None else ''}, seed 0"


def sample_inputs(splits: DataSplits, n: int, split: str = "val") -> np.ndarray:
    """The first ``n`` inputs of ``split`` (fewer if the split is smaller), float32; one input only."""
    if split not in ("train", "val"):
        raise UserInputError(f"unknown split {split!r}; use 'train' or 'val'")
    if n < 1:
        raise UserInputError(f"need at least one sample input, got n={n}")
    x = getattr(splits, split)[0]
    if isinstance(x, dict):
        raise UserInputError(f"`data` {splits.spec} gives named inputs ({', '.join(x)}), and only one input x "
                             "is fed from `data` here: give the arrays by input name with `inputs` FILE.npz")
    return np.ascontiguousarray(x[:n], dtype=np.float32)


# --- digits -------------------------------------------------------------------


def _load_digits(query: str):
    from sklearn.datasets import load_digits

    from edgehad.core.memory import refuse_beyond_ram

    opts = _parse_digits_options(query)
    d = load_digits()
    side, channels = opts.get("size", 8), opts.get("channels", 1)
    refuse_beyond_ram(len(d.images) * channels * side * side * 4, f"digits?{query}",
                      "choose a smaller size or fewer channels")
    x = (d.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = d.target.astype(np.int64)
    (xt, yt), (xv, yv) = _split(x, y, "digits")
    prep: dict = {"input_scale": "pixel / 16 (pixels 0..16 -> [0, 1])", "layout": "NCHW"}
    if "classes" in opts:
        keep = opts["classes"]
        (xt, yt), (xv, yv) = (_select_classes(xt, yt, keep), _select_classes(xv, yv, keep))
        prep["classes"] = keep
    if "size" in opts:
        xt, xv = _resize(xt, opts["size"]), _resize(xv, opts["size"])
        prep["size"] = opts["size"]
    if "channels" in opts:
        c = opts["channels"]
        xt, xv = np.repeat(xt, c, axis=1), np.repeat(xv, c, axis=1)
        prep["channels"] = c
    return (xt, yt), (xv, yv), prep


def _parse_digits_options(query: str) -> dict:
    opts: dict = {}
    if not query:
        return opts
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise UserInputError(
            f"digits options {query!r} are malformed; write them as digits?size=32&channels=3&classes=0-5"
        ) from None
    for key, value in pairs:
        if key not in DIGITS_OPTIONS:
            raise UserInputError(f"unknown digits option {key!r}; valid options: {', '.join(DIGITS_OPTIONS)}")
        if key == "classes":
            opts[key] = _parse_classes(value)
        else:
            opts[key] = _positive_int(key, value, limit=1024 if key == "size" else 64)
    return opts


def _positive_int(key: str, value: str, limit: int) -> int:
    try:
        v = int(value)
    except ValueError:
        v = 0
    if not 1 <= v <= limit:
        raise UserInputError(f"digits option {key}={value!r}: expected an integer from 1 to {limit}")
    return v


def _parse_classes(value: str) -> list[int]:
    try:
        if "-" in value:
            lo, hi = (int(p) for p in value.split("-"))
            classes = list(range(lo, hi + 1))
        else:
            classes = [int(p) for p in value.split(",")]
    except ValueError:
        classes = []
    if not classes or any(not 0 <= c <= 9 for c in classes) or len(set(classes)) != len(classes):
        raise UserInputError(
            f"digits option classes={value!r}: expected a range like 0-5 or distinct digits like 0,3,7 (0..9)"
        )
    return classes


def _select_classes(x: np.ndarray, y: np.ndarray, classes: list[int]):
    keep = np.isin(y, classes)
    relabel = np.full(10, -1, dtype=np.int64)
    relabel[classes] = np.arange(len(classes))
    return x[keep], relabel[y[keep]]


def _resize(x: np.ndarray, size: int) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    t = F.interpolate(torch.from_numpy(x), size=(size, size), mode="bilinear", align_corners=False)
    return t.numpy().astype(np.float32)


# --- split ----------------------------------------------------------------------


def _split(x, y: np.ndarray | None, source: str):
    """80/20 split with seed 0, stratified by y when there are labels; x one array or named arrays.

    The indices are split, not the arrays: the same samples land in each split as when
    ``train_test_split(x, y, ...)`` split x itself, so every named array is cut alike.
    """
    from sklearn.model_selection import train_test_split

    index = np.arange(_count(x))
    if y is None:
        if len(index) < 2:
            raise UserInputError(f"{source}: {len(index)} sample cannot be split 80/20: give at least 2, "
                                 "or explicit _train and _val arrays")
        ti, vi = train_test_split(index, test_size=VAL_FRACTION, random_state=SEED)
        return (_take(x, ti), None), (_take(x, vi), None)
    counts = np.unique(y, return_counts=True)
    if counts[1].min() < 2:
        rare = counts[0][counts[1].argmin()]
        raise UserInputError(
            f"{source}: class {rare} has a single sample; a stratified 80/20 split needs at least 2 per class "
            "(or provide x_train, y_train, x_val, y_val)"
        )
    try:
        ti, vi = train_test_split(index, test_size=VAL_FRACTION, stratify=y, random_state=SEED)
    except ValueError as e:
        raise UserInputError(f"{source}: cannot split 80/20 stratified: {e}") from None
    return (_take(x, ti), y[ti]), (_take(x, vi), y[vi])


# --- npz --------------------------------------------------------------------------


def _load_npz(path_str: str):
    path = Path(path_str)
    if not path.is_file():
        raise UserInputError(f"data file {path_str} not found")
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as e:
        raise UserInputError(f"{path_str} is not a readable .npz archive ({e})") from None
    with archive:
        names = set(archive.files)
        four = ("x_train", "y_train", "x_val", "y_val")
        if _is_named(names):
            return _load_named_npz(archive, path_str)
        if set(four) <= names:
            arrays = {k: _npz_array(archive, k, path_str) for k in four}
            train = _as_xy(arrays["x_train"], arrays["y_train"], path_str, ("x_train", "y_train"))
            val = _as_xy(arrays["x_val"], arrays["y_val"], path_str, ("x_val", "y_val"))
            layout = "x_train, y_train, x_val, y_val"
        elif {"x", "y"} <= names:
            x, y = _as_xy(_npz_array(archive, "x", path_str), _npz_array(archive, "y", path_str), path_str)
            train, val = _split(x, y, path_str)
            layout = "x, y split 80/20 stratified, seed 0"
        else:
            raise UserInputError(
                f"{path_str} holds arrays {sorted(names)}; expected x_train, y_train, x_val, y_val or x, y, "
                "or arrays named by the model's inputs"
            )
    return train, val, {"npz_layout": layout}


SPLIT_SUFFIXES = ("_train", "_val")


def _is_named(names: set[str]) -> bool:
    """Whether an archive holds named inputs: any input array other than ``x`` (with or without a suffix),
    or ``x`` without labels (inputs to verify and calibrate on, dtype kept)."""
    bases = {_base(n) for n in names}
    inputs = bases - {"y"}
    return bool(inputs) and (inputs != {"x"} or "y" not in bases)


def _base(name: str) -> str:
    for suffix in SPLIT_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _load_named_npz(archive, path_str: str):
    """Arrays by input name, ``y`` optional; every array suffixed ``_train`` / ``_val`` (explicit splits) or
    none (split 80/20, seed 0)."""
    names = list(archive.files)
    suffixed = [n for n in names if n != _base(n)]
    if not suffixed:
        arrays = {n: _npz_array(archive, n, path_str) for n in names}
        x, y = _named_split(arrays, path_str)
        train, val = _split(x, y, path_str)
        return train, val, {"npz_layout": _split_layout(x, y)}
    plain = [n for n in names if n == _base(n)]
    if plain:
        raise UserInputError(f"{path_str}: arrays {', '.join(plain)} have no _train / _val suffix but "
                             f"{', '.join(suffixed)} do: suffix every array (explicit splits) or none (split 80/20)")
    by_split = {s: [n[: -len(s)] for n in names if n.endswith(s)] for s in SPLIT_SUFFIXES}
    if set(by_split["_train"]) != set(by_split["_val"]):
        raise UserInputError(f"{path_str}: the train arrays ({', '.join(by_split['_train'])}) and the val arrays "
                             f"({', '.join(by_split['_val'])}) name different inputs: give each with both suffixes")
    splits = []
    for suffix, base_names in by_split.items():
        arrays = {b: _npz_array(archive, b + suffix, path_str) for b in base_names}
        splits.append(_named_split(arrays, path_str, suffix))
    layout = ", ".join(n for n in names)
    return splits[0], splits[1], {"npz_layout": layout}


def _npz_array(archive, name: str, path_str: str) -> np.ndarray:
    try:
        array = archive[name]
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise UserInputError(
                f"{path_str}: array {name!r} is an object array; edgehad loads .npz files without pickle "
                "for safety, so save plain numeric arrays (e.g. np.stack the samples)"
            ) from None
        raise UserInputError(f"{path_str}: cannot read array {name!r} ({e})") from None
    except (Exception, MemoryError) as e:  # a damaged member: bad CRC, a mangled .npy header, a huge shape
        raise UserInputError(f"{path_str}: cannot read array {name!r} ({type(e).__name__}): "
                             "the file is damaged; save it again with np.savez") from None
    if not isinstance(array, np.ndarray):  # a member that is not .npy comes back as raw bytes
        raise UserInputError(f"{path_str}: member {name!r} is not a .npy array: save the file with np.savez")
    return array


# --- module:function --------------------------------------------------------------


def _load_function(spec: str):
    target, _, func_name = spec.rpartition(":")
    if not target or not func_name.isidentifier():
        raise UserInputError(f"data spec {spec!r}: expected MODULE:FUNCTION or FILE.py:FUNCTION")
    try:
        fn = import_attr(spec, "function")
    except UserInputError as exc:
        raise UserInputError(f"data spec {spec!r}: {exc}") from None
    try:
        result = fn()
    except Exception as e:
        raise UserInputError(f"data spec {spec!r}: {func_name}() raised {type(e).__name__}: {e}") from None
    except SystemExit as e:  # else the CLI would exit with the user's code and no message at all
        raise UserInputError(f"data spec {spec!r}: {func_name}() called sys.exit({e.code!r}) instead of returning "
                             "(train, val): return the data, or raise an exception with a message") from None
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise UserInputError(f"data spec {spec!r}: {func_name}() must return (train, val), got {type(result).__name__}")
    train = _materialize(result[0], f"{spec} (train split)")
    val = _materialize(result[1], f"{spec} (val split)")
    return train, val, {}


def _to_numpy(a) -> np.ndarray:
    if hasattr(a, "detach"):  # a torch tensor; no need to import torch to recognise it
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def _is_array(a) -> bool:
    return isinstance(a, np.ndarray) or hasattr(a, "detach")


def _materialize(data, source: str) -> tuple:
    """Turn an iterable of (x, y) samples or batches, or one (x, y) pair of arrays, into arrays;
    named data (a dict of arrays, or a pair (dict, y)) into checked named arrays."""
    if isinstance(data, dict):
        return _named_split(data, source)
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], dict) and _is_array(data[1]):
        return _named_split({**data[0], "y": data[1]}, source)
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(_is_array(a) for a in data):
        if np.ndim(_to_numpy(data[1])) == 1:
            return _as_xy(_to_numpy(data[0]), _to_numpy(data[1]), source)
    xs, ys, kinds = [], [], set()
    try:
        for item in data:
            if not isinstance(item, (tuple, list)) or len(item) != 2:
                raise UserInputError(f"{source}: each item must be an (x, y) pair, got {type(item).__name__}")
            x, y = _to_numpy(item[0]), _to_numpy(item[1])
            kinds.add("batch" if y.ndim == 1 else "sample" if y.ndim == 0 else "bad")
            xs.append(x)
            ys.append(y)
    except UserInputError:
        raise
    except Exception as e:
        raise UserInputError(f"{source}: iterating the data failed: {type(e).__name__}: {e}") from None
    except SystemExit as e:  # a generator or DataLoader worker that exits: a clear line, not the user's exit code
        raise UserInputError(f"{source}: iterating the data called sys.exit({e.code!r}); "
                             "raise an exception with a message instead") from None
    if not xs:
        raise UserInputError(f"{source}: the data is empty")
    if "bad" in kinds or len(kinds) > 1:
        raise UserInputError(
            f"{source}: labels must be all scalars (samples) or all 1-D (batches); found {sorted(kinds)}"
        )
    try:
        if kinds == {"batch"}:
            x, y = np.concatenate(xs), np.concatenate(ys)
        else:
            x, y = np.stack(xs), np.stack(ys)
    except ValueError as e:
        raise UserInputError(f"{source}: samples differ in shape ({e})") from None
    return _as_xy(x, y, source)


def _named_split(arrays: dict, source: str, suffix: str = "") -> tuple[dict, np.ndarray | None]:
    """Named inputs of one split (``"y"``: its labels, optional), checked: numeric, not scalars, one row
    per sample in every array, float arrays finite. Dtypes are kept: token ids must stay integers, and
    the model's dtype is applied when the data is bound to it. ``suffix`` is the arrays' ``_train`` /
    ``_val`` in the file, named in the messages."""
    arrays = {str(k): _to_numpy(v) for k, v in arrays.items()}
    y = arrays.pop("y", None)
    if not arrays:
        raise UserInputError(f"{source}: holds labels{' y' + suffix} but no inputs: add arrays named by the "
                             "model's inputs")
    for name, a in arrays.items():
        if a.dtype.kind not in "biuf":
            raise UserInputError(f"{source}: array {name + suffix!r} is {a.dtype}, not numeric: save token ids "
                                 "and masks as integers, other inputs as numbers")
        if a.ndim == 0:
            raise UserInputError(f"{source}: array {name + suffix!r} is a scalar: it must hold one sample per row")
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        said = ", ".join(f"{n + suffix} {k}" for n, k in lengths.items())
        raise UserInputError(f"{source}: the inputs hold different numbers of samples ({said}): "
                             "give every input one row per sample")
    n = next(iter(lengths.values()))
    if n == 0:
        raise UserInputError(f"{source}: the arrays are empty: the split needs at least one sample")
    for name, a in arrays.items():
        if a.dtype.kind == "f":
            bad = ~np.isfinite(a.reshape(n, -1)).all(axis=1)
            if bad.any():
                raise UserInputError(f"{source}: array {name + suffix!r} holds NaN or infinite values in "
                                     f"{int(bad.sum())} of {n} samples (first: sample {int(np.flatnonzero(bad)[0])}): "
                                     "drop or repair those samples")
    if y is not None:
        y = _as_y(y, n, source, "y" + suffix, ", ".join(arrays) + suffix)
    return {k: np.ascontiguousarray(a) for k, a in arrays.items()}, y


def _as_y(y: np.ndarray, n: int, source: str, yn: str, xn: str) -> np.ndarray:
    """Labels: integer class indices >= 0, one per sample (``n``)."""
    if y.dtype.kind not in "biuf":
        raise UserInputError(f"{source}: array {yn!r} is {y.dtype}, not numeric: save y as integer class labels")
    if y.ndim != 1:
        raise UserInputError(f"{source}: array {yn!r} must be one label per sample (1-D), got shape {list(y.shape)}")
    if len(y) != n:
        raise UserInputError(f"{source}: {xn} has {n} samples but {yn} has {len(y)} labels: "
                             "give one label per sample")
    if y.dtype.kind == "f":
        if not np.isfinite(y).all():
            raise UserInputError(f"{source}: array {yn!r} holds NaN or infinite labels: "
                                 "labels must be integer class indices 0..C-1")
        if not np.all(np.mod(y, 1) == 0):
            raise UserInputError(f"{source}: array {yn!r} must hold integer class labels, found fractional "
                                 f"values (e.g. {y[np.mod(y, 1) != 0][0]}): give class indices 0..C-1")
    y = y.astype(np.int64)
    if len(y) and y.min() < 0:
        raise UserInputError(f"{source}: array {yn!r} holds negative labels ({int((y < 0).sum())} of {len(y)}, "
                             f"min {int(y.min())}): labels are class indices 0..C-1; drop unlabeled samples")
    return y


def _as_xy(x: np.ndarray, y: np.ndarray, source: str, names: tuple[str, str] = ("x", "y")):
    """Check and cast: x float32 and finite, y int64 class labels (integers >= 0), one per sample, not empty.

    Every refusal is one line naming ``source`` (the file or spec), the array
    (``names``) and what to fix: a NaN input, a negative label (often "unlabeled")
    or an empty split would otherwise give a silently wrong accuracy or a
    calibration of nothing.
    """
    xn, yn = names
    for name, a in ((xn, x), (yn, y)):
        if a.dtype.kind not in "biuf":
            raise UserInputError(f"{source}: array {name!r} is {a.dtype}, not numeric: save x as numbers "
                                 "(e.g. float32) and y as integer class labels")
    if x.ndim == 0:
        raise UserInputError(f"{source}: array {xn!r} is a scalar: it must hold one sample per row")
    if y.ndim != 1:
        raise UserInputError(f"{source}: array {yn!r} must be one label per sample (1-D), got shape {list(y.shape)}")
    if len(x) != len(y):
        raise UserInputError(f"{source}: {xn} has {len(x)} samples but {yn} has {len(y)} labels: "
                             "give one label per sample")
    if len(x) == 0:
        raise UserInputError(f"{source}: arrays {xn!r} and {yn!r} are empty: the split needs at least one sample")
    with np.errstate(over="ignore", invalid="ignore"):  # checked after the cast: 1e300 in float64 is inf in float32
        x = np.ascontiguousarray(x, dtype=np.float32)
    bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
    if bad.any():
        raise UserInputError(f"{source}: array {xn!r} holds NaN or infinite values in {int(bad.sum())} of {len(x)} "
                             f"samples (first: sample {int(np.flatnonzero(bad)[0])}): drop or repair those samples")
    return x, _as_y(y, len(x), source, yn, xn)


# --- normalize ----------------------------------------------------------------------


def _parse_normalize(normalize) -> tuple[list[float], list[float]]:
    if normalize is None:
        return [0.0], [1.0]
    usage = "give normalize as 'MEAN,STD' (e.g. '0.5,0.25') or per channel 'M1/M2/M3,S1/S2/S3'"
    try:
        if isinstance(normalize, str):
            mean_s, std_s = normalize.split(",")
            mean = [float(v) for v in mean_s.split("/")]
            std = [float(v) for v in std_s.split("/")]
        else:
            m, s = normalize
            mean = [float(v) for v in np.atleast_1d(m)]
            std = [float(v) for v in np.atleast_1d(s)]
    except (ValueError, TypeError):
        raise UserInputError(f"normalize {normalize!r} not understood; {usage}") from None
    if len(mean) != len(std) and 1 not in (len(mean), len(std)):
        raise UserInputError(f"normalize {normalize!r}: {len(mean)} means but {len(std)} stds; {usage}")
    if any(not np.isfinite(v) for v in mean + std) or any(s <= 0 for s in std):
        raise UserInputError(f"normalize {normalize!r}: std must be positive and all values finite")
    return mean, std


def _apply_normalize(x: np.ndarray, mean: list[float], std: list[float], spec: str) -> np.ndarray:
    n = max(len(mean), len(std))
    if n > 1 and (x.ndim < 2 or x.shape[1] != n):
        raise UserInputError(
            f"normalize has {n} per-channel values but the inputs of {spec!r} have shape "
            f"{list(x.shape[1:])} (channels along dim 1)"
        )
    shape = (1, n) + (1,) * (x.ndim - 2) if n > 1 else ()
    m = np.broadcast_to(np.asarray(mean, dtype=np.float32), (n,)).reshape(shape)
    s = np.broadcast_to(np.asarray(std, dtype=np.float32), (n,)).reshape(shape)
    return ((x - m) / s).astype(np.float32)


__all__ = ["DataSplits", "load_data", "sample_inputs"]
