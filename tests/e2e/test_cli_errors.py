"""Bad input is one ``error:`` line and exit 2, never "internal error" (issue #13, defects 11 and 12)."""

from __future__ import annotations

import json
import textwrap

import pytest

from edgehad.core.errors import UserInputError
from edgehad.loading import load_model

ODD_MODELS = textwrap.dedent('''
    import sys
    import torch

    class Returns(torch.nn.Module):
        def __init__(self, value):
            super().__init__()
            self.value = value
            self.example_inputs = (torch.randn(1, 4),)

        def forward(self, x):
            return self.value if not callable(self.value) else self.value(x)

    def text():
        return Returns("abc")

    def empty():
        return Returns(())

    def none():
        return Returns(None)

    def mixed():
        return Returns(lambda x: (x * 2, "label"))

    def exits():
        sys.exit(3)

    def linear():
        torch.manual_seed(0)
        m = torch.nn.Linear(4, 2)
        m.example_inputs = (torch.randn(1, 4),)
        return m
''')


@pytest.fixture
def odd(tmp_path):
    path = tmp_path / "odd.py"
    path.write_text(ODD_MODELS)
    return path


@pytest.mark.parametrize("factory, said", [
    ("text", "returns a str ('abc') among its outputs"),
    ("empty", "returns nothing among its outputs"),
    ("none", "returns a NoneType ('None') among its outputs"),
    ("mixed", "returns a str ('label') among its outputs"),
    ("exits", "called sys.exit(3): it must return a torch.nn.Module"),
])
def test_factories_and_outputs_that_cannot_be_converted(odd, factory, said):
    with pytest.raises(UserInputError, match=__import__("re").escape(said)):
        load_model(f"{odd}:{factory}")


def test_a_factory_calling_sys_exit_is_exit_2_with_a_line(cli, odd, tmp_path):
    result = cli("convert", f"{odd}:exits", "--out", tmp_path / "out")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: factory '{odd}:exits' called sys.exit(3): "
                                                  "it must return a torch.nn.Module"]


@pytest.mark.parametrize("shape", ["100000x100000x100000", "1x1x200000x200000"])
def test_an_input_shape_larger_than_ram_is_refused_before_allocating(odd, shape):
    with pytest.raises(UserInputError, match=rf"`input_shape` {shape} needs [\d,.]+ GiB, more than "
                                             r"this machine's [\d,.]+ GiB of RAM"):
        load_model(f"{odd}:linear", input_shapes=[shape])


def test_integer_weights_are_not_cast_into_float_parameters(odd, tmp_path):
    import torch
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    save_file({"weight": torch.ones(2, 4, dtype=torch.int64), "bias": torch.zeros(2)}, str(path))
    with pytest.raises(UserInputError, match=r"other dtypes than the model \(integer vs float\): "
                                             r"weight torch.int64 vs torch.float32"):
        load_model(f"{odd}:linear", weights=str(path))


@pytest.mark.parametrize("args, line", [
    (["convert", "zoo:digits_cnn", "--formats", "onnx"],
     "error: No such option '--formats'. (Did you mean one of: '--format', '--normalize'?) "
     "(see 'edgehad convert --help')"),
    (["convert"], "error: Missing argument 'MODEL'. (see 'edgehad convert --help')"),
    (["nosuch"], "error: No such command 'nosuch'. (see 'edgehad --help')"),
    (["inspect", "--weights"], "error: Option '--weights' requires an argument."),
])
def test_click_usage_errors_are_one_line(cli, args, line):
    result = cli(*args)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [line]


def test_json_output_is_strict_json():
    """Defect 9: non-finite numbers become null; Python's NaN/Infinity tokens never reach a reader."""
    from edgehad.core.jsondoc import dumps, finite

    import numpy as np

    doc = {"sqnr_db": float("inf"), "x": [float("nan"), 1.5, np.float32("-inf"), np.float64(2.0)], "n": 3}
    text = dumps(doc)

    def refuse(token):
        raise ValueError(token)

    assert json.loads(text, parse_constant=refuse) == {"sqnr_db": None, "x": [None, 1.5, None, 2.0], "n": 3}
    assert finite({"a": (1.0, float("nan"))}) == {"a": [1.0, None]}


def _identity_onnx(path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


@pytest.mark.parametrize("command", ["osr fit", "bundle", "profile --report"])
@pytest.mark.parametrize("place, message", [
    ("/proc/edgehad-x", "is under a virtual file system: pick a folder on a disk"),
    ("{file}/x", "which is a file: pick a path in a folder"),
])
def test_every_output_path_is_checked_before_work(cli, tmp_path, odd, command, place, message):
    model = _identity_onnx(tmp_path / "m.onnx")
    dest = place.format(file=odd)
    args = {"osr fit": ["osr", "fit", f"{odd}:linear", "--data", "digits", "--out", dest + ".npz"],
            "bundle": ["bundle", model, "--out", dest],
            "profile --report": ["profile", model, "--runs", "2", "--report", dest]}[command]
    result = cli(*args)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: --") and lines[0].endswith(message), lines


@pytest.mark.parametrize("pair", ["width=nan", "width=inf", "sizes=[1.0, -inf]"])
def test_model_args_must_be_finite(pair):
    from edgehad.loading import parse_model_args

    with pytest.raises(UserInputError, match=r"is not a finite number: give a finite value"):
        parse_model_args([pair])
    assert parse_model_args(['name="nan"']) == {"name": "nan"}


def test_a_digits_spec_larger_than_ram_is_refused():
    from edgehad.data import load_data

    with pytest.raises(UserInputError, match=r"digits\?size=1024&channels=64 needs [\d,.]+ GiB, more than this "
                                             r"machine's [\d,.]+ GiB of RAM: choose a smaller size"):
        load_data("digits?size=1024&channels=64")
