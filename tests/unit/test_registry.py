"""edgehad.core.registry.import_submodules on a package written here: every module, once, failures not hidden."""

from __future__ import annotations

import itertools
import sys

import pytest

from edgehad.core.registry import import_submodules

_NUMBER = itertools.count()


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A fresh package (a new name per test: a package is imported once per process) whose modules ``a`` and
    ``b`` register their names in its ``FOUND``; returns (name, folder)."""
    name = f"edgehad_test_registry_{next(_NUMBER)}"
    root = tmp_path / name
    root.mkdir()
    (root / "__init__.py").write_text("FOUND = []\n")
    for module in ("a", "b"):
        (root / f"{module}.py").write_text(f"from {name} import FOUND\nFOUND.append({module!r})\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name, root
    for loaded in [m for m in sys.modules if m == name or m.startswith(f"{name}.")]:
        del sys.modules[loaded]


def test_every_module_even_when_one_was_imported_alone(package):
    import importlib

    name, _ = package
    importlib.import_module(f"{name}.b")  # imported on its own first: the registry is not empty, yet not full
    import_submodules(name)
    import_submodules(name)  # a second call imports nothing again
    assert sorted(sys.modules[name].FOUND) == ["a", "b"]


def test_a_module_that_fails_fails_again_on_the_next_call(package):
    name, root = package
    (root / "c.py").write_text("raise RuntimeError('c is broken')\n")
    for _ in range(2):  # not recorded as done: the registry never looks complete while a module is missing
        with pytest.raises(RuntimeError, match="c is broken"):
            import_submodules(name)
    assert sorted(sys.modules[name].FOUND) == ["a", "b"]
