"""MODEL specs, factory arguments, input shapes and safe weight loading."""

from __future__ import annotations

import pickle

import pytest
import torch

from edgehad.core.errors import UserInputError
from edgehad.loading import load_model, load_state_dict, parse_input_shape, parse_model_args


def test_file_spec_builds_model_with_example_inputs(model_file):
    loaded = load_model(f"{model_file}:net", model_args={"width": 4})
    assert loaded.name == "net"
    assert loaded.module.body[0].out_channels == 4
    assert [tuple(t.shape) for t in loaded.example_inputs] == [(1, 1, 8, 8)]
    assert not loaded.module.training


def test_module_spec_and_zoo_shorthand():
    direct = load_model("edgehad.zoo:digits_cnn", model_args={"pretrained": False})
    short = load_model("zoo:digits_cnn", model_args={"pretrained": False})
    assert type(direct.module) is type(short.module)
    assert tuple(short.example_inputs[0].shape) == (1, 1, 8, 8)


def test_model_args_are_toml_literals_with_plain_string_fallback():
    assert parse_model_args(["width_mult=0.5", "flag=true", "n=3", 'gate="se"', "act=silu"]) == {
        "width_mult": 0.5, "flag": True, "n": 3, "gate": "se", "act": "silu"}
    with pytest.raises(UserInputError, match="is not KEY=VALUE"):
        parse_model_args(["novalue"])


def test_input_shape_parsing():
    assert parse_input_shape("1x3x224x224") == ((1, 3, 224, 224), "float32")
    assert parse_input_shape("1x16:int64") == ((1, 16), "int64")
    with pytest.raises(UserInputError, match="is not a shape"):
        parse_input_shape("1xfoo")
    with pytest.raises(UserInputError, match="unknown dtype 'complex'"):
        parse_input_shape("1x3:complex")


def test_input_shape_overrides_example_and_must_fit(model_file):
    with pytest.raises(UserInputError, match=r"inputs of shape 1x3x8x8 do not fit .*`input_shape`"):
        load_model(f"{model_file}:net", input_shapes=["1x3x8x8"])


@pytest.mark.parametrize("spec, message", [
    ("{dir}/missing.py:net", "does not exist"),
    ("{file}:nope", "has no factory 'nope'"),
    ("no_such_package_xyz.models:net", "cannot be imported"),
    ("{file}:broken", "raised ValueError: the factory is broken on purpose"),
    ("{file}:not_a_module", "returned int, not a torch.nn.Module"),
    ("{file}:no_inputs", "has no example_inputs attribute: pass `input_shape`"),
    ("zoo:not_a_model", "not_a_model"),
    ("justtext", "is not understood"),
])
def test_bad_specs_say_what_to_do(model_file, spec, message):
    spec = spec.format(dir=model_file.parent, file=model_file)
    with pytest.raises(UserInputError, match=message):
        load_model(spec)


def test_weights_pt_and_safetensors_roundtrip(model_file, tmp_path):
    from safetensors.torch import save_file

    src = load_model(f"{model_file}:net").module
    for p in src.parameters():
        torch.nn.init.constant_(p, 0.25)
    torch.save(src.state_dict(), tmp_path / "w.pt")
    save_file(src.state_dict(), str(tmp_path / "w.safetensors"))
    for name in ("w.pt", "w.safetensors"):
        loaded = load_model(f"{model_file}:net", weights=str(tmp_path / name)).module
        assert torch.equal(loaded.body[0].weight, torch.full_like(loaded.body[0].weight, 0.25))


def test_weights_with_wrong_keys_name_the_first_few(model_file, tmp_path):
    state = load_model(f"{model_file}:net").module.state_dict()
    renamed = {f"encoder.{k}": v for k, v in state.items()}
    torch.save(renamed, tmp_path / "w.pt")
    with pytest.raises(UserInputError, match=r"missing body\.0\.weight, body\.0\.bias, body\.3\.weight and 1 more; "
                                             r"unexpected encoder\.body\.0\.weight"):
        load_model(f"{model_file}:net", weights=str(tmp_path / "w.pt"))


def test_weights_with_wrong_shapes(model_file, tmp_path):
    torch.save(load_model(f"{model_file}:net", model_args={"width": 4}).module.state_dict(), tmp_path / "w.pt")
    with pytest.raises(UserInputError, match=r"other shapes than the model: body\.0\.weight \(4, 1, 3, 3\) vs \(8, 1, 3, 3\)"):
        load_model(f"{model_file}:net", weights=str(tmp_path / "w.pt"))


class _Exploit:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_that_is_not_a_state_dict_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    with open(tmp_path / "evil.pt", "wb") as fh:
        pickle.dump({"weight": _Exploit(str(marker))}, fh)
    with pytest.raises(UserInputError, match="not a plain state dict .*refused without running them"):
        load_state_dict(str(tmp_path / "evil.pt"))
    assert not marker.exists()


def test_whole_module_pickle_is_refused(model_file, tmp_path):
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pt")
    with pytest.raises(UserInputError, match="not a plain state dict"):
        load_state_dict(str(tmp_path / "module.pt"))


def test_missing_and_unknown_weights_files(tmp_path):
    with pytest.raises(UserInputError, match="does not exist"):
        load_state_dict(str(tmp_path / "nope.pt"))
    (tmp_path / "w.ckpt").write_bytes(b"x")
    with pytest.raises(UserInputError, match="unknown extension '.ckpt'"):
        load_state_dict(str(tmp_path / "w.ckpt"))
    (tmp_path / "w.safetensors").write_bytes(b"garbage")
    with pytest.raises(UserInputError, match="not a valid safetensors file"):
        load_state_dict(str(tmp_path / "w.safetensors"))


def test_exported_program_spec(model_file, tmp_path):
    src = load_model(f"{model_file}:net")
    program = torch.export.export(src.module, src.example_inputs)
    torch.export.save(program, str(tmp_path / "net.pt2"))
    loaded = load_model(str(tmp_path / "net.pt2"))
    assert loaded.is_exported_program
    x = src.example_inputs[0]
    assert torch.allclose(loaded.module(x), src.module(x), atol=1e-6)
    with pytest.raises(UserInputError, match="`model_args` does not apply"):
        load_model(str(tmp_path / "net.pt2"), model_args={"width": 2})
    (tmp_path / "bad.pt2").write_bytes(b"not a zip")
    with pytest.raises(UserInputError, match="is not a torch.export program"):
        load_model(str(tmp_path / "bad.pt2"))
