"""Every recipe value has a declared type and range: one JSON Schema, checked before any heavy work."""

from __future__ import annotations

import math
import tomllib

import pytest
from jsonschema import Draft202012Validator

from edgehad.core.errors import UserInputError
from edgehad.core.recipe import CONVERTERS_DIR, build_stages, load_recipe, parse_recipe, recipe_schema
from edgehad.core.stage import get_stage, stages
from edgehad.core.validation import check


def test_the_schema_is_valid_draft_2020_12_and_every_shipped_recipe_fits_it():
    schema = recipe_schema()
    Draft202012Validator.check_schema(schema)
    shipped = sorted(CONVERTERS_DIR.glob("*.toml"))
    assert [p.name for p in shipped] == ["float.toml", "int8.toml", "prune50-int8.toml", "prune50.toml"]
    for path in shipped:
        errors = list(Draft202012Validator(schema).iter_errors(tomllib.loads(path.read_text(encoding="utf-8"))))
        assert errors == [], (path.name, [e.message for e in errors])
    assert sorted(schema["properties"]["stages"]["properties"]) == sorted(stages())


def test_every_option_declares_a_type_or_choices_and_its_default_fits():
    for name, cls in stages().items():
        for key, opt in cls.options.items():
            assert "type" in opt.schema or "enum" in opt.schema, (name, key)
            if opt.schema.get("type") in ("integer", "number"):  # a number always has a range
                assert {"minimum", "exclusiveMinimum"} & set(opt.schema), (name, key)
            assert list(Draft202012Validator(opt.schema).iter_errors(opt.default)) == [], (name, key)


# (stage, option, value, the message after "recipe <recipe>: ")
BAD_VALUES = [
    ("export-onnx", "opset", 17, "stages.export-onnx.opset must be in [18, 25], got 17"),
    ("export-onnx", "opset", 9999, "stages.export-onnx.opset must be in [18, 25], got 9999"),
    ("export-onnx", "opset", -5, "stages.export-onnx.opset must be in [18, 25], got -5"),
    ("export-onnx", "opset", True, "stages.export-onnx.opset must be an integer in [18, 25], got true"),
    ("export-onnx", "opset", 18.5, "stages.export-onnx.opset must be an integer in [18, 25], got 18.5"),
    ("verify", "rtol", -1, "stages.verify.rtol must be >= 0, got -1"),
    ("verify", "rtol", -1.0, "stages.verify.rtol must be >= 0, got -1.0"),
    ("verify", "rtol", math.nan, "stages.verify.rtol must be a finite number, got nan"),
    ("verify", "rtol", math.inf, "stages.verify.rtol must be a finite number, got inf"),
    ("verify", "rtol", "1e-4", 'stages.verify.rtol must be a number >= 0, got "1e-4"'),
    ("verify", "threads", -4, "stages.verify.threads must be >= 1, got -4"),
    ("verify", "metric_samples", -1, "stages.verify.metric_samples must be >= 1, got -1"),
    ("verify", "min_cosine", 1.5, "stages.verify.min_cosine must be in [0, 1], got 1.5"),
    ("quantize", "scheme", "int4", 'stages.quantize.scheme must be one of "int8", "int8-dynamic", "fp16", "none", '
                                   'got "int4"'),
    ("quantize", "calib_samples", 0, "stages.quantize.calib_samples must be >= 1, got 0"),
    ("quantize", "int8_io", 1, "stages.quantize.int8_io must be true or false, got 1"),
    ("prune", "ratio", 1.0, "stages.prune.ratio must be in [0, 1), got 1.0"),
    ("prune", "steps", 0, "stages.prune.steps must be >= 1, got 0"),
    ("finetune", "epochs", 0, "stages.finetune.epochs must be >= 1, got 0"),
    ("finetune", "lr", 0.0, "stages.finetune.lr must be > 0, got 0.0"),
]


@pytest.mark.parametrize("stage, key, value, message", BAD_VALUES, ids=[f"{k}={v}" for _, k, v, _ in BAD_VALUES])
def test_a_bad_value_is_exit_2_naming_the_key(stage, key, value, message):
    with pytest.raises(UserInputError) as caught:
        parse_recipe({"stages": {stage: {key: value}}}, source="r.toml")
    assert str(caught.value) == f"recipe r.toml: {message}"
    assert caught.value.exit_code == 2


def test_flags_and_the_python_api_go_through_the_same_schema():
    # build_stages is where edgehad.api.convert's keyword arguments (and so the CLI's flags) become stages
    with pytest.raises(UserInputError, match=r"^stages\.verify\.threads must be >= 1, got -4$"):
        build_stages(None, overrides={"verify": {"threads": -4}})
    with pytest.raises(UserInputError, match=r"^stages\.quantize\.calib_samples must be an integer >= 1, got true$"):
        build_stages(None, overrides={"quantize": {"calib_samples": True}})
    with pytest.raises(UserInputError, match=r"^--prune-steps must be >= 1, got 0$"):
        get_stage("prune").check_option("steps", 0, "--prune-steps")


def test_values_become_the_declared_python_type():
    built = build_stages(parse_recipe({"stages": {"export-onnx": {"opset": 21.0}, "verify": {"rtol": 1}}}))
    opset, rtol = built[0].config["opset"], built[-1].config["rtol"]
    assert (opset, type(opset), rtol, type(rtol)) == (21, int, 1.0, float)


@pytest.mark.parametrize("raw, message", [
    ({"name": 3}, "recipe r.toml: name must be a non-empty string, got 3"),
    ({"data": {"spec": ""}}, 'recipe r.toml: data.spec must be a non-empty string, got ""'),
])
def test_top_level_values_are_typed_too(raw, message):
    with pytest.raises(UserInputError) as caught:
        parse_recipe(raw, source="r.toml")
    assert str(caught.value) == message


def test_a_recipe_that_is_not_utf8_is_exit_2(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes('description = "d\xe9bit"\n'.encode("latin-1"))
    with pytest.raises(UserInputError) as caught:
        load_recipe(str(path))
    assert str(caught.value) == f"recipe {path} is not UTF-8 text (byte 0xe9 at offset 16): save it as UTF-8"


def test_check_names_an_unknown_key_and_lists_the_known_ones():
    schema = {"type": "object", "properties": {"host": {"type": "string"}, "port": {"type": "integer"}},
              "additionalProperties": False}
    with pytest.raises(UserInputError, match=r"^hosts\.toml: unknown key 'user': valid keys are host, port$"):
        check({"host": "pi", "user": "me"}, schema, "hosts.toml")
    with pytest.raises(UserInputError, match=r"^hosts\.toml: port must be an integer, got \"22\"$"):
        check({"port": "22"}, schema, "hosts.toml")


def test_export_refuses_an_opset_it_cannot_write_and_checks_the_one_it_wrote(tmp_path):
    import torch
    from onnx import helper

    from edgehad.export.onnx import check_opset, export_onnx

    with pytest.raises(UserInputError, match=r"^ONNX opset 17 cannot be written: torch.onnx writes opsets 18\.\.25"):
        export_onnx(torch.nn.Linear(2, 2), (torch.zeros(1, 2),), tmp_path / "m.onnx", opset=17)
    assert list(tmp_path.iterdir()) == []
    # what torch.onnx does when its version converter fails: it keeps opset 18 and only logs it
    fell_back = helper.make_model(helper.make_graph([], "g", [], []), opset_imports=[helper.make_opsetid("", 18)])
    with pytest.raises(UserInputError) as caught:
        check_opset(fell_back, 19)
    assert str(caught.value) == ("ONNX opset 19 was asked for but the file has opset 18 (the exporter could not "
                                 "convert this model to 19): ask for opset 18")
    check_opset(fell_back, 18)
