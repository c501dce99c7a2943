"""edgehad.runtime's layout handling (issue #15): ``Session(path, layout="nchw")`` on an NHWC .tflite, the
InputsError texts, and the stdlib metadata reader on damaged bytes.

The file: a conv net taking an image [1, 3, 8, 6] (H != W, so a swapped H and W cannot pass) and an int32
per-sample scale [1], returning a 4-D map and [1, 5] logits; exported NHWC as the export stage does it
(edgehad.export.tflite with the layout record, then edgehad.export.layout.finish), so the file states
{"inputs": ["nhwc", None], "outputs": ["nhwc", None]}. Its ONNX export states no layout (PyTorch's NCHW).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from edgehad.runtime import (LAYOUT_ENTRY, TO_NCHW, TO_NHWC, InputsError, Session, parse_layout, read_layout,
                             tflite_metadata)

RECORD = {"inputs": ["nhwc", None], "outputs": ["nhwc", None]}
ENTRY = b'{"layout":{"inputs":["nhwc",null],"outputs":["nhwc",null]}}'


class Scaled(nn.Module):
    """conv 3->4 (3x3, pad 1) times an int32 scale per sample: a [N, 4, H, W] map and [N, 5] logits of its mean."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 5)

    def forward(self, x, n):
        y = self.conv(x) * n.to(x.dtype)[:, None, None, None]
        return y, self.fc(y.mean((2, 3)))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """{"tflite": the NHWC file, "onnx": the NCHW one, "model": the torch model}."""
    from edgehad.core.capture import captured
    from edgehad.export.layout import finish, model_layout
    from edgehad.export.onnx import export_onnx
    from edgehad.export.tflite import export_tflite

    torch.manual_seed(0)
    model = Scaled().eval()
    example = (torch.randn(1, 3, 8, 6), torch.tensor([3], dtype=torch.int32))
    folder = tmp_path_factory.mktemp("runtime-layout")
    record = model_layout(model, example, "nhwc")
    assert record == RECORD
    with captured():
        export_tflite(model, example, folder / "m.tflite", layout=record)
        export_onnx(model, example, folder / "m.onnx")
    finish(folder / "m.tflite", record)
    return {"tflite": folder / "m.tflite", "onnx": folder / "m.onnx", "model": model}


def _inputs(seed: int = 1):
    x = np.random.default_rng(seed).standard_normal((1, 3, 8, 6)).astype(np.float32)
    return x, np.array([2], np.int32)


def test_the_file_states_its_layout_per_tensor(files):
    assert read_layout(files["tflite"]) == RECORD
    s = Session(str(files["tflite"]), threads=1)
    assert [(i["shape"], i["dtype"], i["layout"]) for i in s.inputs] == [([1, 8, 6, 3], "float32", "nhwc"),
                                                                        ([1], "int32", None)]
    assert [(o["shape"], o["layout"]) for o in s.outputs] == [([1, 8, 6, 4], "nhwc"), ([1, 5], None)]
    onnx = Session(str(files["onnx"]), threads=1, layout="nchw")
    assert [i["layout"] for i in onnx.inputs] == [None, None] and onnx.inputs[0]["shape"] == [1, 3, 8, 6]


def test_layout_nchw_feeds_what_transposing_by_hand_feeds(files):
    x, n = _inputs()
    by_hand = Session(str(files["tflite"]), threads=1).run([np.ascontiguousarray(x.transpose(TO_NHWC)), n])
    session = Session(str(files["tflite"]), threads=1, layout="nchw")
    got = session.run([x, n])
    # the 4-D output comes back NCHW, the logits as they are: the same numbers, not merely close ones
    assert by_hand[0].shape == (1, 8, 6, 4) and got[0].shape == (1, 4, 8, 6)
    assert np.array_equal(got[0], by_hand[0].transpose(TO_NCHW)) and np.array_equal(got[1], by_hand[1])
    by_name = session.run({"args_1": n, "args_0": x})  # a dict by name goes the same way
    assert all(np.array_equal(a, b) for a, b in zip(by_name, got))
    # and they are the torch model's outputs (the float rule of DESIGN.md)
    with torch.no_grad():
        ref = [t.numpy() for t in files["model"](torch.from_numpy(x), torch.from_numpy(n))]
    for y, r in zip(got, ref):
        assert y.shape == r.shape and np.abs(y - r).max() <= 1e-4 * max(1.0, float(np.abs(r).max()))
    # layout="nhwc": the caller's order is the file's, nothing moves
    same = Session(str(files["tflite"]), threads=1, layout="nhwc").run([x.transpose(TO_NHWC), n])
    assert all(np.array_equal(a, b) for a, b in zip(same, by_hand))


def test_a_file_that_states_no_layout_is_fed_as_given(files):
    x, n = _inputs()
    plain = Session(str(files["onnx"]), threads=1).run([x, n])
    nchw = Session(str(files["onnx"]), threads=1, layout="nchw").run([x, n])
    assert plain[0].shape == (1, 4, 8, 6) and all(np.array_equal(a, b) for a, b in zip(plain, nchw))
    with pytest.raises(InputsError):  # layout="nhwc" does not turn an NHWC array into what ONNX takes
        Session(str(files["onnx"]), threads=1, layout="nhwc").run([x.transpose(TO_NHWC), n])


def test_inputs_error_texts(files):
    path, onnx = str(files["tflite"]), str(files["onnx"])
    x, n = _inputs()
    s = Session(path, threads=1)
    cases = [
        # NCHW into the NHWC file
        (s, [x, n], f"{path}: input args_0 takes 1x8x6x3 float32, got 1x3x8x6 float32 - it takes channels-last "
                    "(NHWC) images: transpose yours with x.transpose(0, 2, 3, 1) or open the Session with "
                    'layout="nchw" to have it done'),
        # floats for an int32 input that has no quantization parameters (a cast would truncate them)
        (s, [x.transpose(TO_NHWC), n.astype(np.float32)],
         f"{path}: input args_1 takes int32 (not quantized), got float32: pass int32 values"),
        (s, [x.transpose(TO_NHWC)], f"{path} takes 2 inputs (args_0, args_1), got 1 arrays"),
        (s, [x.transpose(TO_NHWC), n, n], f"{path} takes 2 inputs (args_0, args_1), got 3 arrays"),
        (s, x.transpose(TO_NHWC), f"{path} takes 2 inputs (args_0, args_1): pass a list in that order or a dict "
                                  "by name, not one array"),
        (s, {"args_0": x.transpose(TO_NHWC), "scale": n},
         f"{path} has no input 'scale'; its inputs: args_0, args_1"),
    ]
    o = Session(onnx, threads=1)
    names = ", ".join(i["name"] for i in o.inputs)
    cases += [
        # NHWC into the NCHW file: the hint, but no layout= offer (the file states none, so none would apply)
        (o, [x.transpose(TO_NHWC), n], f"{onnx}: input {o.inputs[0]['name']} takes 1x3x8x6 float32, got 1x8x6x3 "
                                       "float32 - it takes channels-first (NCHW) images: transpose yours with "
                                       "x.transpose(0, 3, 1, 2)"),
        (o, x, f"{onnx} takes 2 inputs ({names}): pass a list in that order or a dict by name, not one array"),
    ]
    for session, arrays, said in cases:
        with pytest.raises(InputsError) as err:
            session.run(arrays)
        assert str(err.value) == said
    # with layout="nchw", NHWC arrays are the wrong order; the message points at layout="nhwc"
    with pytest.raises(InputsError, match=r'open the Session with layout="nhwc" to have it done$'):
        Session(path, threads=1, layout="nchw").run([x.transpose(TO_NHWC), n])
    with pytest.raises(ValueError) as err:
        Session(path, threads=1, layout="NHWC")
    assert str(err.value) == "layout 'NHWC': give 'nchw', 'nhwc' or None (arrays as the file takes them)"


def _metadata_count_at(data: bytes) -> int:
    """Where the Model table's metadata vector keeps its length (tflite's schema: Model field 6)."""
    from edgehad.runtime import _MODEL_METADATA, _field, _target

    root = int.from_bytes(data[0:4], "little")
    return _target(data, _field(data, root, _MODEL_METADATA))


def test_tflite_metadata_on_damaged_bytes_is_none_or_the_entry(files):
    data = files["tflite"].read_bytes()
    assert tflite_metadata(data, LAYOUT_ENTRY) == ENTRY and parse_layout(ENTRY) == RECORD
    assert tflite_metadata(data, "absent") is None
    # truncated anywhere: the entry (when all it needs is left) or None, never other bytes or an exception
    got = {tflite_metadata(data[:n], LAYOUT_ENTRY) for n in range(0, len(data), 7)}
    assert got <= {None, ENTRY} and None in got
    assert tflite_metadata(data[:len(data) // 8], LAYOUT_ENTRY) is None
    # garbage
    rng = np.random.default_rng(0)
    for junk in (b"", b"\x00" * 3, b"\xff" * 64, b"\x00" * 4096, rng.integers(0, 256, 4096, np.uint8).tobytes()):
        assert tflite_metadata(junk, LAYOUT_ENTRY) is None
    # mutations of a real file: the root offset, the entry's name, its buffer index, the record's JSON
    count_at = _metadata_count_at(data)
    name_at = data.index(LAYOUT_ENTRY.encode())
    record_at = data.index(ENTRY)
    mutated = {
        "root past the end": (0, (len(data) + 8).to_bytes(4, "little")),
        "root at its last word": (0, (len(data) - 4).to_bytes(4, "little")),
        "no metadata entries": (count_at, (0).to_bytes(4, "little")),
        "entry renamed": (name_at, b"E"),
        "record not JSON": (record_at, b"["),
    }
    for why, (at, new) in mutated.items():
        damaged = data[:at] + new + data[at + len(new):]
        raw = tflite_metadata(damaged, LAYOUT_ENTRY)
        assert raw is None or parse_layout(raw) is None, why
    # and a file on disk: an empty one, garbage, a truncated one
    for k, content in enumerate((b"", b"\xff" * 64, data[: len(data) // 8])):
        path = files["tflite"].parent / f"damaged{k}.tflite"
        path.write_bytes(content)
        assert read_layout(path) is None


def test_a_huge_metadata_count_is_none_not_a_hang(files, tmp_path):
    data = files["tflite"].read_bytes()
    at = _metadata_count_at(data)
    damaged = tmp_path / "count.tflite"
    damaged.write_bytes(data[:at] + b"\xff\xff\xff\xff" + data[at + 4:])
    code = f"from edgehad.runtime import read_layout; print(read_layout({str(damaged)!r}))"
    try:  # in a child: a loop over 2**32 entries must fail this test, not stall the suite
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("read_layout on a file whose metadata count is 0xffffffff did not return within 30 s")
    assert done.returncode == 0 and done.stdout.strip() == "None"
