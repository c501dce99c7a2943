"""Recipes and the stage registry: validation, flag overrides, declared order."""

from __future__ import annotations

import re

import pytest

from edgehad.core.errors import UserInputError
from edgehad.core.recipe import CONVERTERS_DIR, build_stages, load_recipe, parse_recipe
from edgehad.core.stage import stages


def names(stage_list):
    return [s.name for s in stage_list]


def test_registry_discovers_stage_files_in_declared_order():
    registered = stages()
    assert [n for n in registered if n in ("quantize", "export-onnx", "export-tflite", "verify")] == [
        "quantize", "export-onnx", "export-tflite", "verify"]
    orders = [cls.order for cls in registered.values()]
    assert orders == sorted(orders)


def test_every_shipped_recipe_loads():
    shipped = sorted(CONVERTERS_DIR.glob("*.toml"))
    assert "float.toml" in [p.name for p in shipped]
    for path in shipped:
        recipe = load_recipe(str(path))
        assert recipe.name and build_stages(recipe)


def test_float_recipe_by_name():
    recipe = load_recipe("float")
    assert names(build_stages(recipe)) == ["export-onnx", "export-tflite", "verify"]
    assert build_stages(recipe)[0].config == {"opset": 18, "dynamic_batch": False}


def test_stage_order_ignores_table_order_and_verify_is_always_added():
    recipe = parse_recipe({"stages": {"export-tflite": {}, "export-onnx": {"opset": 19}}})
    built = build_stages(recipe)
    assert names(built) == ["export-onnx", "export-tflite", "verify"]
    assert built[0].config["opset"] == 19


def test_format_flag_replaces_export_stages_and_overrides_win():
    recipe = parse_recipe({"stages": {"export-onnx": {"opset": 19}, "verify": {"rtol": 1e-3}}})
    assert names(build_stages(recipe, formats=["tflite"])) == ["export-tflite", "verify"]
    built = build_stages(recipe, overrides={"verify": {"rtol": 1e-5}, "export-tflite": {}})
    assert names(built) == ["export-onnx", "export-tflite", "verify"]
    assert built[-1].config["rtol"] == 1e-5


@pytest.mark.parametrize("raw, message", [
    ({"stagez": {}}, "unknown recipe key 'stagez'"),
    ({"data": {"spec": "digits", "norm": "1,2"}}, "unknown recipe key 'data.norm'"),
    ({"stages": {"quantise": {}}}, "unknown stage 'quantise': known stages are rewrite, prune, finetune, osr, quantize"),
    ({"stages": {"export-onnx": {"opsett": 17}}}, "unknown option 'opsett' for stage 'export-onnx': valid options are dynamic_batch, opset"),
    ({"stages": {"export-onnx": {"opset": "17"}}},
     'recipe <recipe>: stages.export-onnx.opset must be an integer in [18, 25], got "17"'),
    ({"stages": {"verify": 3}}, "'stages.verify' in <recipe> must be a table"),
])
def test_recipe_errors_name_the_key(raw, message):
    with pytest.raises(UserInputError, match=re.escape(message)):
        parse_recipe(raw)


def test_bad_toml_and_missing_recipe(tmp_path):
    (tmp_path / "r.toml").write_text("[stages\n")
    with pytest.raises(UserInputError, match="is not valid TOML"):
        load_recipe(str(tmp_path / "r.toml"))
    with pytest.raises(UserInputError, match="does not exist: give a .toml path or one of: .*float"):
        load_recipe("no-such-recipe")


def test_unknown_format():
    with pytest.raises(UserInputError, match="unknown format 'coreml'"):
        build_stages(None, formats=["onnx", "coreml"])
