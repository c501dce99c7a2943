"""Target descriptions: the shipped ones load, and every kind of mistake is named."""

import re
import tomllib

import pytest

from edgehad import targets
from edgehad.core.errors import UserInputError
from edgehad.targets import BUILTIN_DIR, ENV_VAR, list_targets, load_schema, load_target, validate_target

LOCAL = (BUILTIN_DIR / "local.toml").read_text()


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """An empty targets folder that load_target / list_targets look in."""
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    return tmp_path


def write(folder, name, text):
    path = folder / f"{name}.toml"
    path.write_text(text.replace('name = "local"', f'name = "{name}"'))
    return path


def test_local():
    t = load_target("local")
    assert t["name"] == "local"
    assert t["runtime"] == "ort"
    assert t["cpu"]["cores"] == 2
    assert "avx512_vnni" in t["cpu"]["isa"]
    assert t["peak"]["fp32_gops"] == 172.0  # 2 cores x 86 GFLOP/s (DESIGN.md)
    assert t["peak"]["int8_gops"] > t["peak"]["fp32_gops"]
    assert "gpu" not in t


def test_every_shipped_target_is_valid(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    shipped = sorted(p.stem for p in BUILTIN_DIR.glob("*.toml") if p.name != "schema.toml")
    assert [t["name"] for t in list_targets()] == shipped
    assert "local" in shipped


def test_schema_documents_every_key():
    def walk(entries, prefix=""):
        for key, spec in entries.items():
            yield prefix + key, spec
            yield from walk(spec.get("keys", {}), f"{prefix}{key}.")

    keys = dict(walk(load_schema()))
    assert {"name", "runtime", "cpu.cores", "cpu.isa", "peak.fp32_gops", "peak.int8_gops", "ram_kb"} <= set(keys)
    assert [k for k, spec in keys.items() if not spec.get("doc")] == []


def test_load_by_path_and_env_override(folder):
    path = write(folder, "board", LOCAL)
    assert load_target(str(path))["name"] == "board"
    assert load_target(path)["name"] == "board"
    assert load_target("board")["cpu"]["cores"] == 2
    assert [t["name"] for t in list_targets()] == ["board"]
    with pytest.raises(UserInputError, match=r"unknown target 'local'; known targets: board"):
        load_target("local")


def test_float_takes_an_integer(folder):
    write(folder, "board", LOCAL.replace("fp32_gops = 172.0", "fp32_gops = 172"))
    value = load_target("board")["peak"]["fp32_gops"]
    assert value == 172.0 and isinstance(value, float)


@pytest.mark.parametrize(
    "old, new, message",
    [
        ('runtime = "ort"', 'runtime = "ort"\nrutime = "tflite"',
         r"unknown key 'rutime'; known keys at the top level: name,"),
        ("cores = 2", "cores = 2\nthreads = 4", r"unknown key 'cpu\.threads'; known keys at \[cpu\]: cores, clock_ghz"),
        ("int8_gops = 688.0", "", r"missing required key 'peak\.int8_gops': add it \(int8 peak"),
        ('runtime = "ort"', "", r"missing required key 'runtime'"),
        ("cores = 2", 'cores = "2"', r"'cpu\.cores' must be an int, got str '2'"),
        ("cores = 2", "cores = true", r"'cpu\.cores' must be an int, got bool True"),
        ("ram_kb = 24684084", "ram_kb = 0", r"'ram_kb' must be greater than 0, got 0"),
        ('runtime = "ort"', 'runtime = "tensorflow"', r"'runtime' must be one of tflite, ort, got 'tensorflow'"),
        ('isa = ["x86-64-v4"', 'isa = [4, "x86-64-v4"', r"'cpu\.isa' must be a list\[str\]"),
        ('runtime = "ort"', 'runtime = "ort"\ngpu = "orin"', r"'gpu' must be a table, got str 'orin'"),
    ],
    ids=["unknown", "unknown-nested", "missing-nested", "missing", "type", "bool-not-int", "positive", "choices",
         "list", "table"],
)
def test_mistakes_are_named(folder, old, new, message):
    assert old in LOCAL
    path = write(folder, "board", LOCAL.replace(old, new, 1))
    with pytest.raises(UserInputError, match=rf"^{re.escape(str(path))}: {message}"):
        load_target("board")


def test_name_must_match_file(folder):
    (folder / "board.toml").write_text(LOCAL)  # still says name = "local"
    with pytest.raises(UserInputError, match=r"name 'local' differs from the file name"):
        load_target("board")
    with pytest.raises(UserInputError, match=r"name 'local' differs from the file name"):
        list_targets()


def test_bad_toml_and_missing_things(folder, tmp_path, monkeypatch):
    (folder / "board.toml").write_text("name = \n")
    with pytest.raises(UserInputError, match=r"board\.toml is not valid TOML \(.+\): fix the file"):
        load_target("board")
    with pytest.raises(UserInputError, match=r"nope\.toml: no such target file"):
        load_target(str(tmp_path / "nope.toml"))
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "absent"))
    with pytest.raises(UserInputError, match=rf"targets folder .*absent does not exist: check {ENV_VAR}"):
        list_targets()


def test_validate_target_directly():
    data = tomllib.loads(LOCAL)
    assert validate_target(data, "mem") == data
    with pytest.raises(UserInputError, match=r"^mem: a target description is a TOML table"):
        validate_target([], "mem")


def test_schema_is_the_builtin_one_even_with_override(folder):
    # the override folder has no schema.toml, yet validation works (and schema.toml is not a target)
    (folder / "schema.toml").write_text("not = 'a target'")
    write(folder, "board", LOCAL)
    assert [t["name"] for t in list_targets()] == ["board"]
    assert targets.targets_dir() == folder
