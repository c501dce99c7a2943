"""Device descriptions ("targets"): TOML files in the repository's targets/ folder.

A target says what a device can do: cores, clock, ISA, peak fp32/int8
throughput, memory bandwidth, RAM, an optional GPU, and the runtime to prefer.
The profiler's roofline and the converter's choices read it. The schema is
data too, ``targets/schema.toml``: a JSON Schema (Draft 2020-12) written in
TOML, every key with its type, range, unit and meaning, checked with
jsonschema through ``edgehad.core.validation.check`` like every other setting.

Adding a device is one new file, ``targets/<name>.toml``; ``list_targets()``
finds it. ``EDGEHAD_TARGETS_DIR`` points the lookup at another folder (the
schema still comes from edgehad's own targets/ folder).

``local`` is the machine edgehad runs on, never a copy of another's: its file
holds only what is true everywhere, and ``local_target`` adds this machine's
CPU, RAM and peaks when it is loaded (edgehad.machine), with ``peak.source``
"estimate" (from the ISA and clock), "measured" (``edgehad targets calibrate
local``, edgehad.profiling.calibrate, which also measures the memory
bandwidth) or "unknown" (no readable clock; ``peak.note`` says what to do).
"""

from __future__ import annotations

import os
import re
import tomllib
from importlib import resources
from pathlib import Path

from edgehad.core.errors import EdgehadError, UserInputError
from edgehad.core.validation import check

ENV_VAR = "EDGEHAD_TARGETS_DIR"
# the repository's targets/ folder, shipped in the wheel as the package edgehad.target_files
BUILTIN_DIR = Path(str(resources.files("edgehad.target_files")))
SCHEMA_FILE = "schema.toml"
LOCAL = "local"
# what only this machine can say: a local.toml that states any of them would hold another machine's numbers
MACHINE_KEYS = ("cpu", "peak", "memory_bandwidth_gbs", "ram_kb", "flash_kb", "gpu", "match", "ssh", "emulated")


def targets_dir() -> Path:
    """The folder target names are looked up in: $EDGEHAD_TARGETS_DIR, else the repo's targets/."""
    override = os.environ.get(ENV_VAR)
    return Path(override) if override else BUILTIN_DIR


def load_schema() -> dict:
    """The parsed JSON Schema (targets/schema.toml), itself checked so that a mistake there fails loudly."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    path = BUILTIN_DIR / SCHEMA_FILE
    try:
        schema = tomllib.loads(path.read_text())
        Draft202012Validator.check_schema(schema)
    except (OSError, tomllib.TOMLDecodeError, SchemaError) as e:
        message = " ".join(str(getattr(e, "message", e)).split())
        raise EdgehadError(f"edgehad's target schema {path} is broken ({message}): reinstall edgehad") from None
    return schema


def _typed_numbers(data: dict, schema: dict) -> dict:
    """``data`` with each "number" a float and each "integer" an int (JSON Schema takes 4 and 4.0 for both)."""
    out = {}
    for key, value in data.items():
        spec = schema.get("properties", {}).get(key, {})
        if spec.get("type") == "number" and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        elif spec.get("type") == "integer" and isinstance(value, float):
            value = int(value)
        elif spec.get("type") == "object" and isinstance(value, dict):
            value = _typed_numbers(value, spec)
        out[key] = value
    return out


def validate_target(data: dict, source: str = "target") -> dict:
    """Check ``data`` against the schema; return it with integer floats made floats.

    ``source`` names the file (or whatever the data came from) in error messages.
    """
    if not isinstance(data, dict):
        raise UserInputError(f"{source}: a target description is a TOML table, got {type(data).__name__}")
    schema = load_schema()
    check(data, schema, source)
    return _typed_numbers(data, schema)


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
    if target["name"] == LOCAL:
        return local_target(target, str(path))
    return target


def local_target(base: dict, source: str = LOCAL) -> dict:
    """``base`` (local.toml's keys) completed with this machine's CPU, RAM, peaks and, once calibrated, bandwidth."""
    from edgehad.machine import estimate_peaks, this_machine
    from edgehad.profiling.calibrate import calibration_file, load_calibration

    stated = [k for k in MACHINE_KEYS if k in base]
    if stated:
        raise UserInputError(f"{source}: '{stated[0]}' is not read from the file: the {LOCAL} target describes the "
                             f"machine edgehad runs on; remove it, or describe another machine in a file of its "
                             f"own name")
    machine = this_machine()
    cpu = {"cores": len(machine.cores), "isa": machine.isa, "arch": machine.arch}
    if machine.clock_ghz is not None:
        cpu.update(clock_ghz=machine.clock_ghz, clock_source=machine.clock_source)
    if machine.model:
        cpu["model"] = machine.model
    target = {**base, "cpu": cpu}
    if machine.ram_kb:
        target["ram_kb"] = machine.ram_kb
    record, ignored = load_calibration(machine.fingerprint())
    calibrate = f"run `edgehad targets calibrate {LOCAL}` to measure"
    if record is not None:
        target["peak"] = {"fp32_gops": float(record["fp32_gops"]), "int8_gops": float(record["int8_gops"]),
                          "source": "measured", "date": record["date"], "threads": record["threads"],
                          "method": record.get("method") or f"edgehad targets calibrate {LOCAL}"}
        target["memory_bandwidth_gbs"] = float(record["memory_bandwidth_gbs"])
        target["source"] = (f"CPU and RAM read from this machine; peaks and memory bandwidth measured on "
                            f"{record['date']} with {record['threads']} thread(s), stored in {calibration_file()}")
    else:
        peak, why = estimate_peaks(machine)
        if peak is None:
            target["peak"] = {"source": "unknown", "note": f"peak unknown: {why}: {calibrate} it"}
        else:
            target["peak"] = {**peak, "source": "estimate"}
            if ignored:
                target["peak"]["note"] = ignored
        target["source"] = ("CPU and RAM read from this machine; peaks "
                            + ("unknown" if peak is None else "an estimate from the ISA and clock (peak.formula)")
                            + f"; memory bandwidth unknown: {calibrate} both")
    return validate_target(target, source)


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
