"""Registries that fill themselves: every module of a package registers what it defines when imported.

Stages (edgehad.stages), rewrite rules (edgehad.rewrite), pruning criteria
(edgehad.prune.criteria) and the block catalogue (edgehad.blocks) each keep a
dict that a decorator fills. Adding one is a new file and nothing else, so no
list of modules is kept by hand: ``import_submodules`` imports them all.
"""

from __future__ import annotations

import importlib
import pkgutil

_IMPORTED: set[str] = set()


def import_submodules(package: str) -> None:
    """Import every module of ``package`` (a dotted name, e.g. ``"edgehad.stages"``), once per process.

    Once per package, not "while the registry is empty": a module imported on
    its own beforehand (a test importing one rule) must not hide the others.
    The package counts as done only after every module imported, so an import
    that fails fails again on the next call instead of leaving the registry
    silently partial.
    """
    if package in _IMPORTED:
        return
    for info in pkgutil.iter_modules(importlib.import_module(package).__path__):
        importlib.import_module(f"{package}.{info.name}")
    _IMPORTED.add(package)
