"""``edgehad profile``'s numeric flags and a target's numbers: every value out of its declared range is exit 2
with one ``error:`` line that names the flag and the range, before anything is measured."""

from __future__ import annotations

import json

import pytest

from edgehad.targets import BUILTIN_DIR
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def relu(tmp_path_factory):
    """A one-op .onnx file that profiles in well under a second: a value let through would run at once."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("values") / "relu.onnx"
    onnx.save(model, str(path))
    return path


def assert_refused_before_running(result, line: str):
    """Exit 2, and stderr is that one error line and nothing else: no progress, nothing measured or printed."""
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert result.stderr.strip().splitlines() == [f"error: {line}"]
    assert result.stdout == ""


@pytest.mark.parametrize("args, line", [
    (["--seconds", "nan"], "--seconds must be a number in (0, 86400], got NaN"),
    (["--seconds", "inf"], "--seconds must be a number in (0, 86400], got Infinity"),
    (["--seconds", "-1"], "--seconds must be a number in (0, 86400], got -1"),
    (["--seconds", "0"], "--seconds must be a number in (0, 86400], got 0"),
    (["--seconds", "1e9"], "--seconds must be a number in (0, 86400], got 1000000000.0"),
    (["--timeout", "nan"], "--timeout must be a number in (0, 604800], got NaN"),
    (["--timeout", "-inf"], "--timeout must be a number in (0, 604800], got -Infinity"),
    (["--timeout", "0"], "--timeout must be a number in (0, 604800], got 0"),
    (["--runs", "1e20"], "--runs must be an integer in [1, 10000000], got 1e+20"),
    (["--runs", "100000000000000000000"], "--runs must be an integer in [1, 10000000], got 100000000000000000000"),
    (["--runs", "0"], "--runs must be an integer in [1, 10000000], got 0"),
    (["--runs", "2.5"], "--runs must be an integer in [1, 10000000], got 2.5"),
    (["--runs", "nan"], "--runs must be an integer in [1, 10000000], got NaN"),
    (["--threads", "-4"], "--threads must be an integer in [1, 1024], got -4"),
    (["--threads", "0"], "--threads must be an integer in [1, 1024], got 0"),
    (["--warmup", "-1"], "--warmup must be an integer in [0, 1000000], got -1"),
    (["--seed", "-1"], "--seed must be an integer in [0, 4294967295], got -1"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_out_of_range_flag_is_one_error_line(relu, args, line):
    assert_refused_before_running(run_cli("profile", relu, *args), line)


def test_flag_checked_before_the_file(tmp_path):
    """The settings are checked first: a missing file is not even looked at."""
    assert_refused_before_running(run_cli("profile", tmp_path / "missing.onnx", "--seconds", "nan", "--json"),
                                  "--seconds must be a number in (0, 86400], got NaN")


def test_in_range_values_still_run(relu):
    """The bounds are inclusive where they say so: warm-up 0, a whole number written as 3.0."""
    result = run_cli("profile", relu, "--runs", "3.0", "--warmup", "0", "--seed", "4294967295", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    (doc,) = json.loads(result.stdout)
    assert doc["runs"] == 3 and doc["threads"] == 1


def test_python_api_gets_the_same_check(relu):
    from edgehad.api import profile
    from edgehad.core.errors import UserInputError

    with pytest.raises(UserInputError, match=r"^`seconds` must be a number in \(0, 86400\], got NaN$"):
        profile([relu], seconds=float("nan"))
    with pytest.raises(UserInputError, match=r"^`threads` must be an integer in \[1, 1024\], got true$"):
        profile([relu], threads=True)


@pytest.mark.parametrize("value, shown", [("inf", "inf"), ("nan", "nan"), ("-57.6", "-57.6")])
def test_target_with_a_non_finite_peak_is_refused(relu, tmp_path, value, shown):
    """profile --json once printed ``Infinity`` (not JSON) from such a target's roofline."""
    path = tmp_path / "board.toml"
    path.write_text((BUILTIN_DIR / "rpi4.toml").read_text().replace('name = "rpi4"', 'name = "board"')
                    .replace("fp32_gops = 57.6", f"fp32_gops = {value}"))
    allowed = "> 0" if value.startswith("-") else "a finite number"
    assert_refused_before_running(run_cli("profile", relu, "--target", path, "--runs", "1", "--json"),
                                  f"{path}: peak.fp32_gops must be {allowed}, got {shown}")
