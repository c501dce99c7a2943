"""No pickle inside a .pt2 runs code (issue #13, defect 1)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edgehad.core.errors import UserInputError
from edgehad.loading import load_model
from tests.pt2_payloads import CARRIERS, write_evil_pt2, write_good_pt2


@pytest.mark.parametrize("carrier", CARRIERS)
def test_the_fixture_runs_code_in_plain_torch(tmp_path, carrier):
    """Each carrier is live: torch.export.load without the guard creates the marker."""
    import torch

    marker = tmp_path / "MARKER"
    evil = write_evil_pt2(tmp_path / "evil.pt2", carrier, marker)
    try:
        torch.export.load(str(evil))
    except Exception:
        pass  # the payload returns a file object, not what torch expected: it fails after running
    assert marker.exists(), f"{carrier}: the payload did not run in plain torch, so the test below proves nothing"


@pytest.mark.parametrize("carrier", CARRIERS)
def test_load_model_refuses_every_carrier(tmp_path, carrier):
    marker = tmp_path / "MARKER"
    evil = write_evil_pt2(tmp_path / "evil.pt2", carrier, marker)
    with pytest.raises(UserInputError, match="pickled Python objects, refused without running them"):
        load_model(str(evil))
    assert not marker.exists()


def test_a_good_program_still_loads_and_the_guard_is_lifted(tmp_path):
    import os

    import torch
    from torch.export.pt2_archive import _package

    loaded = load_model(str(write_good_pt2(tmp_path / "good.pt2")))
    assert tuple(loaded.example_inputs[0].shape) == (1, 4)
    assert tuple(loaded.module(*loaded.example_inputs).shape) == (1, 3)
    assert "TORCH_FORCE_WEIGHTS_ONLY_LOAD" not in os.environ
    assert _package.pickle.loads is __import__("pickle").loads
    assert torch._C._pickle_load_obj.__module__ != "edgehad.core.unpickling"


def test_torch_unpickles_only_where_the_guard_looks():
    """Pin torch's unpickling call sites in the .pt2 reader: an upgrade that adds one fails here."""
    import torch

    root = Path(torch.__file__).parent
    sites = {}
    for rel in ("export/pt2_archive/_package.py", "_export/serde/serialize.py"):
        text = (root / rel).read_text()
        sites[rel] = sorted(set(re.findall(r"weights_only=False|pickle\.loads?\(|_pickle_load_obj\(|torch\.load\(", text)))
    assert sites == {
        "export/pt2_archive/_package.py": ["_pickle_load_obj(", "pickle.loads(", "torch.load(", "weights_only=False"],
        "_export/serde/serialize.py": ["torch.load(", "weights_only=False"],
    }
