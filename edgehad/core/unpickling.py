"""No pickle from a user's file runs code: the guard around ``torch.export.load``.

A ``.pt2`` archive is a zip of JSON (the graph) and tensor payloads, but
torch 2.13 still unpickles some of its members with the full unpickler:

- ``torch/_export/serde/serialize.py`` ``deserialize_torch_artifact`` (the
  example inputs, legacy weights) tries ``weights_only=True`` and on failure
  *retries with* ``weights_only=False``: any ``__reduce__`` payload runs;
- ``torch/export/pt2_archive/_package.py`` loads weights and constants marked
  ``use_pickle`` with ``torch.load(..., weights_only=False)``, opaque constants
  with ``pickle.loads`` and TorchScript objects with ``torch._C._pickle_load_obj``.

``no_code_from_pickles()`` closes each of these while a file is read:
``TORCH_FORCE_WEIGHTS_ONLY_LOAD=1`` makes every ``torch.load`` use the
weights-only unpickler (tensors, containers and plain numbers only), and the
two direct unpicklers are swapped for one that refuses. A refused member ends
the load with ``PickledCodeRefused``; nothing from the file was executed.

``tests/unit/test_unpickling.py`` pins the list of call sites above against
the installed torch, so an upgrade that adds one fails the suite instead of
opening a hole.
"""

from __future__ import annotations

import contextlib
import os
import threading

FORCE_SAFE = "TORCH_FORCE_WEIGHTS_ONLY_LOAD"
FORCE_UNSAFE = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"

_lock = threading.Lock()  # the switches are process-wide: one guarded load at a time


class PickledCodeRefused(Exception):
    """A member of the file needed the full unpickler; it was not run."""


def _refuse(*_args, **_kwargs):
    raise PickledCodeRefused("the file holds pickled Python objects, which edgehad does not unpickle")


class _RefusingPickle:
    """Stands in for the ``pickle`` module inside torch's archive reader."""

    loads = staticmethod(_refuse)
    load = staticmethod(_refuse)

    def __getattr__(self, name):  # everything else of pickle (constants, dumps) as usual
        import pickle

        return getattr(pickle, name)


@contextlib.contextmanager
def no_code_from_pickles():
    """While active, unpickling inside ``torch.export.load`` is weights-only or refused."""
    import torch
    from torch.export.pt2_archive import _package

    with _lock:
        saved_env = {k: os.environ.get(k) for k in (FORCE_SAFE, FORCE_UNSAFE)}
        saved_pickle, saved_obj = _package.pickle, torch._C._pickle_load_obj
        os.environ[FORCE_SAFE] = "1"
        os.environ.pop(FORCE_UNSAFE, None)
        _package.pickle = _RefusingPickle()
        torch._C._pickle_load_obj = _refuse
        try:
            yield
        finally:
            _package.pickle = saved_pickle
            torch._C._pickle_load_obj = saved_obj
            for key, value in saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def is_refused_pickle(exc: BaseException) -> bool:
    """True when ``exc`` (or what caused it) is a pickle the guard or torch's weights-only unpickler refused."""
    import pickle

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (PickledCodeRefused, pickle.UnpicklingError)):
            return True
        if "weights_only" in str(exc) or "Weights only load failed" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
