"""The Python API as torch users call it: a module, a tuple of example tensors, data in memory (issue #14)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import edgehad

ROOT = Path(__file__).resolve().parents[2]


def _net():
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                               torch.nn.Linear(4 * 64, 10))


def test_a_module_with_a_tuple_of_examples_and_arrays_as_data(tmp_path):
    import torch
    from sklearn.datasets import load_digits

    model = _net().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    d = load_digits()
    x, y = (d.images / 16.0).astype(np.float32)[:, None], d.target
    report = edgehad.convert(model, (torch.randn(1, 1, 8, 8),), data=(x, y), formats="onnx", out=tmp_path / "o")
    assert report["verified"] is True and report["data"] == "<in memory>"
    assert report["samples"] == 16 and report["source"]["inputs"][0]["shape"] == [1, 1, 8, 8]
    assert model.training is True                      # the caller's module is left as it was
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("shape", [(1, 1, 8, 8), [(1, 1, 8, 8)], "1x1x8x8", ["1x1x8x8"]])
def test_input_shape_as_tuple_or_text(tmp_path, shape):
    report = edgehad.convert(_net(), input_shape=shape, formats="onnx", out=tmp_path / "o")
    assert report["source"]["inputs"][0]["shape_text"] == "1x1x8x8"


def test_train_and_val_iterables_as_data():
    from edgehad.data import load_data

    rng = np.random.default_rng(0)
    train = [(rng.random((1, 8, 8), np.float32), i % 3) for i in range(12)]
    val = [(rng.random((1, 8, 8), np.float32), i % 3) for i in range(6)]
    splits = load_data((train, val))
    assert splits.train[0].shape == (12, 1, 8, 8) and splits.val[1].tolist() == [0, 1, 2, 0, 1, 2]
    with pytest.raises(edgehad.UserInputError, match="negative labels"):
        load_data(((np.zeros((4, 2), np.float32), np.array([0, 1, -1, 0])), (np.zeros((2, 2)), np.array([0, 1]))))


def test_help_shows_the_real_signature():
    import inspect

    params = inspect.signature(edgehad.convert).parameters
    assert list(params)[:2] == ["model", "example_inputs"] and "out" in params


def test_every_api_function_names_its_parameters():
    """No ``**kwargs`` behind the API: help() and editors show every option; profile() takes each Job setting."""
    import dataclasses
    import inspect

    from edgehad import api
    from edgehad.profiling.job import Job

    for name, function in inspect.getmembers(api, inspect.isfunction):
        if function.__module__ == api.__name__ and not name.startswith("_"):
            kinds = {p.kind for p in inspect.signature(function).parameters.values()}
            assert inspect.Parameter.VAR_KEYWORD not in kinds, name
    params = inspect.signature(api.profile).parameters
    settings = {f.name for f in dataclasses.fields(Job)} - {"inputs", "input_shapes"}  # set by profile itself
    assert settings <= set(params)
    assert all(params[key].default == getattr(Job, key) for key in settings)


CLI_MAY_IMPORT = {"edgehad", "edgehad.api", "edgehad.cli.common", "edgehad.cli.flags", "edgehad.core.capture",
                  "edgehad.core.errors", "edgehad.core.stage", "edgehad.core.validation", "edgehad.profiling.job"}


@pytest.mark.parametrize("module", sorted(p.name for p in (ROOT / "edgehad" / "cli").glob("*.py")
                                          if p.name not in ("__init__.py", "common.py", "flags.py")))
def test_cli_commands_call_the_api(module):
    """A command turns flags into an edgehad.api call; the library's other modules stay behind the API
    (the schema modules are read for --help ranges and flag checks only)."""
    tree = ast.parse((ROOT / "edgehad" / "cli" / module).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                and node.module and node.module.startswith("edgehad")}
    assert imported <= CLI_MAY_IMPORT, imported - CLI_MAY_IMPORT
    assert "edgehad.api" in imported or any(isinstance(n, ast.ImportFrom) and n.module == "edgehad"
                                            and any(a.name == "api" for a in n.names) for n in ast.walk(tree))
