"""Refuse an allocation the machine cannot hold, before numpy or torch tries it.

An absurd shape (``--input-shape 100000x100000x100000``, ``digits?size=1024&channels=64``)
would otherwise end in the allocator's own error, or worse, in minutes of swapping.
"""

from __future__ import annotations

import os

from edgehad.core.errors import UserInputError


def ram_bytes() -> int | None:
    """Physical memory of this machine; None where the OS does not say (then nothing is refused)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def refuse_beyond_ram(need: int, what: str, fix: str) -> None:
    """UserInputError when ``need`` bytes exceed this machine's RAM: ``WHAT needs N GiB, more than ...: FIX``."""
    ram = ram_bytes()
    if ram is not None and need > ram:
        raise UserInputError(f"{what} needs {need / 2**30:,.1f} GiB, more than this machine's "
                             f"{ram / 2**30:,.1f} GiB of RAM: {fix}")
