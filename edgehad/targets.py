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
import re
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


# Matching levels, most specific first: the board's device-tree model names the board; an
# Arm CPU part number names the core (several boards share one); the CPU name likewise;
# the architecture alone says only "some aarch64 machine".
MATCH_LEVELS = ("device_model", "cpu_part", "cpu", "arch")
ARM_LTD = 0x41  # MIDR implementer code of Arm Ltd.'s own cores (Cortex-A...)
_PART_IN_TEXT = re.compile(r"implementer\s+(0x[0-9a-f]+)\s+part\s+(0x[0-9a-f]+)", re.IGNORECASE)


def _hex(text) -> int | None:
    try:
        return int(str(text).strip(), 16)
    except ValueError:
        return None


def _machine_part(machine: dict) -> tuple[int | None, int | None]:
    """(implementer, part) from the agent's machine dict: ``cpu_implementer``/``cpu_part`` keys,
    or a cpu string "implementer 0x41 part 0xd08" (what the agent reports when cpuinfo has no model name)."""
    part = _hex(machine["cpu_part"]) if machine.get("cpu_part") else None
    impl = _hex(machine["cpu_implementer"]) if machine.get("cpu_implementer") else None
    if part is None:
        found = _PART_IN_TEXT.search(str(machine.get("cpu") or ""))
        if found:
            impl, part = int(found[1], 16), int(found[2], 16)
    return impl, part


def _part_matches(entry: str, impl: int | None, part: int | None) -> bool:
    """A TOML ``cpu_part`` entry ("0xd08" = an Arm Ltd. core, or "0x4e:0x004") against the machine's."""
    want_impl, _, want_part = entry.rpartition(":")
    want_impl = _hex(want_impl) if want_impl else ARM_LTD
    return part is not None and _hex(want_part) == part and (impl is None or impl == want_impl)


def _match_level(match: dict, machine: dict, level: str) -> int:
    """How well one target's [match] table fits at ``level``: 0 no match, else the matched text's length
    (the longer substring is the more specific description)."""
    if level == "cpu_part":
        impl, part = _machine_part(machine)
        return max((len(e) for e in match.get(level, []) if _part_matches(e, impl, part)), default=0)
    have = str(machine.get(level) or "").casefold()
    if not have:
        return 0
    if level == "arch":
        return max((len(e) for e in match.get(level, []) if e.casefold() == have), default=0)
    return max((len(e) for e in match.get(level, []) if e.casefold() in have), default=0)


def closest_target(machine: dict) -> str | None:
    """The target in targets_dir() that best describes ``machine``, or None if none fits.

    ``machine`` is what the profiling agent reports: ``arch`` (platform.machine()),
    ``cpu`` (cpuinfo's model name, or "implementer 0x41 part 0xd08"), ``device_model``
    (/proc/device-tree/model), ``cores``; ``cpu_implementer`` / ``cpu_part`` are used when
    present. Each target's ``[match]`` table (targets/schema.toml) lists what identifies it;
    levels are tried in MATCH_LEVELS order and the first level any target matches decides.
    Within a level the longest matching entry wins, then a non-emulated target, then the name.
    """
    if not isinstance(machine, dict):
        return None
    candidates = [t for t in list_targets() if t.get("match")]
    for level in MATCH_LEVELS:
        scored = [(_match_level(t["match"], machine, level), t) for t in candidates]
        scored = [(score, t) for score, t in scored if score]
        if scored:
            best = min(scored, key=lambda st: (-st[0], bool(st[1].get("emulated")), st[1]["name"]))
            return best[1]["name"]
    return None
