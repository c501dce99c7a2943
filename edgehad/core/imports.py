"""Import a user's ``module:attr`` or ``path/to/file.py:attr`` (model factories, data functions)."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path

from edgehad.core.errors import UserInputError


def import_attr(spec: str, what: str = "factory"):
    """Return the callable named by ``spec`` (``pkg.mod:name`` or ``file.py:name``).

    A file is imported under a stable private module name (registered in
    ``sys.modules``, which dataclasses and pickling need) with its folder on
    ``sys.path`` while it runs, so it can import its neighbours.
    """
    target, sep, attr = spec.rpartition(":")
    if not sep or not target or not attr.isidentifier():
        raise UserInputError(f"{spec!r} is not MODULE:NAME or path/to/file.py:NAME")
    if target.endswith(".py"):
        module = _import_file(Path(target), spec)
    else:
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as exc:
            raise UserInputError(f"module {target!r} in {spec!r} cannot be imported ({exc}): check the name or install it") from exc
        except Exception as exc:
            raise UserInputError(f"importing {target} failed: {type(exc).__name__}: {exc}") from exc
        except SystemExit as exc:
            raise UserInputError(f"importing {target} called sys.exit({exc.code!r}): remove the call from module level") from None
    found = getattr(module, attr, None)
    if found is None or not callable(found):
        raise UserInputError(f"{target} has no {what} {attr!r}: check the name after ':' in {spec!r}")
    return found


def _import_file(path: Path, spec: str):
    if not path.is_file():
        raise UserInputError(f"file {path} does not exist: check the path in {spec!r}")
    resolved = path.resolve()
    name = f"_edgehad_user_{path.stem}_{hashlib.sha1(str(resolved).encode()).hexdigest()[:8]}"
    if name in sys.modules:
        return sys.modules[name]
    module_spec = importlib.util.spec_from_file_location(name, resolved)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    sys.path.insert(0, str(resolved.parent))
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:  # the user's file failed to import
        sys.modules.pop(name, None)
        raise UserInputError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    except SystemExit as exc:  # a file that ends the process at import is not a module to use
        sys.modules.pop(name, None)
        raise UserInputError(f"importing {path} called sys.exit({exc.code!r}): remove the call from module level") from None
    finally:
        sys.path.remove(str(resolved.parent))
    return module


# Packages one feature needs, beyond the base install (pyproject.toml): the module, what needs it,
# and how to get it. litert-torch is a base dependency on x86_64 only: its litert-converter has no
# Linux aarch64 wheel, so on an ARM board the base install converts to ONNX.
OPTIONAL = {
    "tflite_micro": ("TFLite Micro (edgehad micro, edgehad bundle)", "pip install 'edgehad[micro]'"),
    "litert_torch": ("TFLite export and int8 quantization",
                     "pip install litert-torch (x86_64 only: it has no Linux aarch64 wheel); "
                     "on this machine convert with `formats='onnx'` and no `quantize='int8'`"),
}


def require(module: str) -> None:
    """UserInputError naming the extra (or the install line) when an optional package is missing."""
    import importlib.util

    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):  # a broken install, or a module blocked in sys.modules
        found = None
    if found is None:
        what, how = OPTIONAL[module]
        raise UserInputError(f"{what} needs the Python package {module!r}, which is not installed: {how}")
