"""The catalogue of Hadamard-product blocks: one entry per block, each with a small example.

The survey "Hadamard product in deep learning" (2025) sorts its uses in four
domains; every entry names its domain, formula and paper, and builds a small
instance with example inputs. One parametrized test exports every entry to
ONNX and TFLite and checks parity, builtin ops only and no layout TRANSPOSE
(tests/e2e/test_block_export.py): registering an entry is all a new block needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from edgehad.core.registry import import_submodules

DOMAINS = ("higher-order interactions", "multimodal fusion", "adaptive modulation and masking", "efficient operators")


@dataclass(frozen=True)
class Entry:
    name: str
    domain: str
    formula: str
    paper: str
    example: Callable  # () -> (module in eval mode, example inputs tuple)


_ENTRIES: dict[str, Entry] = {}


def block(name: str, domain: str, formula: str, paper: str):
    """Register the decorated example builder under ``name``."""
    if domain not in DOMAINS:
        raise ValueError(f"{name}: unknown domain {domain!r}")

    def wrap(fn):
        _ENTRIES[name] = Entry(name, domain, formula, paper, fn)
        return fn
    return wrap


def catalogue() -> dict[str, Entry]:
    """Every registered block, importing each module of edgehad.blocks once."""
    import_submodules("edgehad.blocks")
    return dict(sorted(_ENTRIES.items()))
