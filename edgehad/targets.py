"""Device descriptions ("targets"): TOML files in the repository's targets/ folder.

A target says what a device can do: cores, clock, ISA, peak fp32/int8
throughput, memory bandwidth, RAM, an optional GPU, and the runtime to prefer.
The profiler's roofline and the converter's choices read it. The schema is
data too, ``targets/schema.toml``: every key, its type, unit and meaning.

Adding a device is one new file, ``targets/<name>.toml``; ``list_targets()``
finds it. ``EDGEHAD_TARGETS_DIR`` points the lookup at another folder (the
schema still comes from edgehad's own targets/ folder).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from edgehad.core.errors import EdgehadError, UserInputError

ENV_VAR = "EDGEHAD_TARGETS_DIR"
BUILTIN_DIR = Path(__file__).resolve().parent.parent / "targets"
SCHEMA_FILE = "schema.toml"

_TYPES = {"str", "int", "float", "bool", "list[str]", "table"}
_SCHEMA_FIELDS = {"type", "required", "doc", "choices", "positive", "keys"}


def targets_dir() -> Path:
    """The folder target names are looked up in: $EDGEHAD_TARGETS_DIR, else the repo's targets/."""
    override = os.environ.get(ENV_VAR)
    return Path(override) if override else BUILTIN_DIR


def load_schema() -> dict:
    """The parsed schema (see targets/schema.toml); checked for shape so typos there fail loudly."""
    path = BUILTIN_DIR / SCHEMA_FILE
    try:
        schema = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise EdgehadError(f"edgehad's target schema {path} cannot be read ({e}): reinstall edgehad") from None
    _check_schema(schema, "")
    return schema


def _check_schema(entries: dict, prefix: str) -> None:
    for key, spec in entries.items():
        where = f"{BUILTIN_DIR / SCHEMA_FILE}: [{prefix}{key}]"
        if not isinstance(spec, dict) or spec.get("type") not in _TYPES or set(spec) - _SCHEMA_FIELDS:
            raise EdgehadError(f"{where} is not a valid schema entry: fix the schema")
        if spec["type"] == "table":
            _check_schema(spec.get("keys", {}), f"{prefix}{key}.keys.")


def _doc(spec: dict) -> str:
    return spec.get("doc", "").rstrip(".") or "see targets/schema.toml"


def _type_error(source: str, key: str, spec: dict, value) -> UserInputError:
    article = "an" if spec["type"][0] in "aeiou" else "a"
    return UserInputError(f"{source}: '{key}' must be {article} {spec['type']}, got {type(value).__name__} {value!r}")


def _check_value(source: str, key: str, spec: dict, value):
    kind = spec["type"]
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if kind == "str":
        ok = isinstance(value, str)
    elif kind == "int":
        ok = is_int
    elif kind == "float":
        ok = is_int or isinstance(value, float)
        if ok:
            value = float(value)
    elif kind == "bool":
        ok = isinstance(value, bool)
    elif kind == "list[str]":
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    else:  # table
        ok = isinstance(value, dict)
    if not ok:
        raise _type_error(source, key, spec, value)
    if "choices" in spec and value not in spec["choices"]:
        raise UserInputError(
            f"{source}: '{key}' must be one of {', '.join(map(str, spec['choices']))}, got {value!r}"
        )
    if spec.get("positive") and not value > 0:
        raise UserInputError(f"{source}: '{key}' must be greater than 0, got {value!r}")
    return value


def _validate(source: str, data: dict, entries: dict, prefix: str) -> dict:
    out = {}
    for key in data:
        if key not in entries:
            where = f"[{prefix[:-1]}]" if prefix else "the top level"
            raise UserInputError(
                f"{source}: unknown key '{prefix}{key}'; known keys at {where}: {', '.join(entries)}"
            )
    for key, spec in entries.items():
        full = f"{prefix}{key}"
        if key not in data:
            if spec.get("required"):
                raise UserInputError(f"{source}: missing required key '{full}': add it ({_doc(spec)})")
            continue
        value = _check_value(source, full, spec, data[key])
        if spec["type"] == "table":
            value = _validate(source, value, spec.get("keys", {}), f"{full}.")
        out[key] = value
    return out


def validate_target(data: dict, source: str = "target") -> dict:
    """Check ``data`` against the schema; return it with integer floats made floats.

    ``source`` names the file (or whatever the data came from) in error messages.
    """
    if not isinstance(data, dict):
        raise UserInputError(f"{source}: a target description is a TOML table, got {type(data).__name__}")
    return _validate(source, data, load_schema(), "")


def _read(path: Path) -> dict:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise UserInputError(f"{path} is not valid TOML ({e}): fix the file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserInputError(f"{path} cannot be read ({e}): check the path") from None
    target = validate_target(data, str(path))
    if target["name"] != path.stem:
        raise UserInputError(
            f"{path}: name '{target['name']}' differs from the file name: rename one so both read '{path.stem}'"
        )
    return target


def _target_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise UserInputError(f"targets folder {folder} does not exist: check {ENV_VAR}")
    return sorted(p for p in folder.glob("*.toml") if p.name != SCHEMA_FILE)


def load_target(name_or_path: str | os.PathLike) -> dict:
    """A validated target: by name (``"local"``, from targets_dir()) or by path to a .toml file."""
    text = os.fspath(name_or_path)
    if isinstance(name_or_path, Path) or text.endswith(".toml") or os.sep in text or "/" in text:
        path = Path(text)
        if not path.is_file():
            raise UserInputError(f"{text}: no such target file: check the path")
        return _read(path)
    folder = targets_dir()
    names = [p.stem for p in _target_files(folder)]
    if text not in names:
        raise UserInputError(
            f"unknown target '{text}'; known targets: {', '.join(names) or 'none'} "
            f"(in {folder}), or pass the path of a .toml file"
        )
    return _read(folder / f"{text}.toml")


def list_targets() -> list[dict]:
    """Every target in targets_dir(), validated, sorted by name."""
    return [_read(p) for p in _target_files(targets_dir())]


def closest_target(machine: dict) -> str | None:
    """Placeholder while closest-target matching is being written this session."""
    return None
