"""`edgehad convert` refuses a recipe value or flag out of its declared range before loading the model,
and honours the ONNX opset it is asked for."""

from __future__ import annotations

import json

import pytest

from tests.e2e.test_cli_convert import assert_clean_error

# (recipe text, the error line's message after "error: recipe <path>: ")
BAD_RECIPES = [
    ("[stages.export-onnx]\nopset = 17\n", "stages.export-onnx.opset must be in [18, 25], got 17"),
    ("[stages.export-onnx]\nopset = true\n", "stages.export-onnx.opset must be an integer in [18, 25], got true"),
    ("[stages.verify]\nrtol = nan\n", "stages.verify.rtol must be a finite number, got nan"),
    ("[stages.verify]\nthreads = -4\n", "stages.verify.threads must be >= 1, got -4"),
]


@pytest.mark.parametrize("text, message", BAD_RECIPES, ids=["opset=17", "opset=true", "rtol=nan", "threads=-4"])
def test_a_bad_recipe_value_is_exit_2_before_the_model_loads(text, message, tmp_path, cli):
    recipe = tmp_path / "r.toml"
    recipe.write_text(text)
    # the MODEL does not exist: had the model been loaded first, the error would say so
    result = cli("convert", tmp_path / "missing.py:net", "--recipe", recipe, "--out", tmp_path / "out")
    assert_clean_error(result, f"error: recipe {recipe}: {message}")
    assert not (tmp_path / "out").exists()


def test_a_recipe_that_is_not_utf8_is_exit_2(tmp_path, cli):
    recipe = tmp_path / "r.toml"
    recipe.write_bytes(b"# caf\xe9\n[stages.verify]\n")
    result = cli("convert", tmp_path / "missing.py:net", "--recipe", recipe, "--out", tmp_path / "out")
    assert_clean_error(result, f"error: recipe {recipe} is not UTF-8 text (byte 0xe9 at offset 5): save it as UTF-8")


@pytest.mark.parametrize("flags, message", [
    (["--calib-samples", "0"], "--calib-samples must be >= 1, got 0"),
    (["--prune", "nan"], "--prune must be a finite number, got nan"),
    (["--prune", "0.5", "--prune-steps", "-2"], "--prune-steps must be >= 1, got -2"),
])
def test_a_bad_flag_value_is_exit_2_naming_the_flag(flags, message, tmp_path, cli):
    result = cli("convert", tmp_path / "missing.py:net", *flags, "--out", tmp_path / "out")
    assert_clean_error(result, f"error: {message}")


def test_the_written_onnx_file_has_the_opset_asked_for(model_file, tmp_path, cli):
    import onnx

    recipe = tmp_path / "r.toml"
    recipe.write_text("[stages.export-onnx]\nopset = 21\n[stages.verify]\n")
    result = cli("convert", f"{model_file}:net", "--recipe", recipe, "--format", "onnx", "--out", tmp_path / "out",
                 "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    [artifact] = json.loads(result.stdout)["artifacts"]
    assert artifact["parity"]["passed"]
    opsets = {o.domain: o.version for o in onnx.load(tmp_path / "out" / "model.onnx").opset_import}
    assert opsets[""] == 21
