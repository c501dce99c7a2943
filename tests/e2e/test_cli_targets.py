"""``edgehad targets``: the table and --json, for real in a subprocess."""

import json

from edgehad.targets import BUILTIN_DIR, ENV_VAR
from tests.conftest import run_cli
from tests.e2e.test_cli_convert import assert_clean_error

SHIPPED = sorted(p.stem for p in BUILTIN_DIR.glob("*.toml") if p.name != "schema.toml")


def test_json_lists_every_target():
    r = run_cli("targets", "--json")
    assert r.returncode == 0, r.stderr
    found = json.loads(r.stdout)
    assert [t["name"] for t in found] == SHIPPED
    by_name = {t["name"]: t for t in found}
    assert {"local", "rpi4", "rpi5", "jetson-nano", "jetson-orin-nano", "generic-aarch64"} <= set(by_name)
    assert by_name["rpi5"]["peak"] == {"fp32_gops": 153.6, "int8_gops": 614.4, "fp16_gops": 307.2}
    assert by_name["jetson-orin-nano"]["gpu"]["int8_gops"] == 20480.0
    assert by_name["rpi4"]["match"]["cpu_part"] == ["0xd08"]


def test_table_shows_each_target_with_its_roofs(monkeypatch):
    monkeypatch.setenv("COLUMNS", "500")  # wide enough that every row is one line
    r = run_cli("targets")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for col in ("name", "device", "CPU", "cores x GHz", "fp32", "int8", "GB/s", "RAM GiB", "GPU", "runtime"):
        assert col in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.split() and line.split()[0] in SHIPPED}
    assert set(rows) == set(SHIPPED)
    expected = {
        "rpi4": ("Raspberry Pi 4 Model B", "Cortex-A72 (aarch64)", "4 x 1.8", "57.6", "115.2", "5.5", "4.0",
                 "tflite (CPU)"),
        "local": ("2 x 2.6", "332.8", "1,331", "25", "23.5", "ort (CPU)"),
        "jetson-nano": ("4 x 1.43", "45.76", "91.52", "25.6", "3.9", "Maxwell, 128 CUDA cores (sm_53): fp32 235.9",
                        "ort (CUDA)"),
        "jetson-orin-nano": ("6 x 1.5", "144", "576", "68", "int8 20,480", "ort (Tensorrt)"),
    }
    for name, cells in expected.items():
        assert [c for c in cells if c not in rows[name]] == [], rows[name]
    assert "Gop/s (a multiply-add is 2 ops)" in out


def test_narrow_terminal_wraps_words_whole(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    r = run_cli("targets")
    assert r.returncode == 0, r.stderr
    assert "…" not in r.stdout  # text wraps at spaces; nothing is cut off with an ellipsis
    assert "Cortex-A78AE" in r.stdout and "Sapphire" in r.stdout


def test_a_broken_target_file_is_one_clear_error(tmp_path, monkeypatch):
    (tmp_path / "board.toml").write_text((BUILTIN_DIR / "rpi4.toml").read_text().replace('name = "rpi4"',
                                                                                       'name = "board"')
                                         .replace("cores = 4", "cores = 0"))
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert_clean_error(run_cli("targets"), "board.toml: cpu.cores must be in [1, 4096], got 0")
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "absent"))
    assert_clean_error(run_cli("targets", "--json"), f"does not exist: check {ENV_VAR}")


def test_an_empty_folder_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    r = run_cli("targets")
    assert r.returncode == 0 and "no targets found: add a TOML file" in r.stdout
    r = run_cli("targets", "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == []
