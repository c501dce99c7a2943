"""``edgehad targets``: the table and --json, for real in a subprocess."""

import json

import pytest

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
    # the microcontroller: RAM and flash in KiB, peaks from the Cortex-M4's instruction timings
    mcu = by_name["nano33ble"]
    assert (mcu["ram_kb"], mcu["flash_kb"], mcu["peak"]) == (256, 1024, {"fp32_gops": 0.064, "int8_gops": 0.256})


def test_table_shows_each_target_with_its_roofs(monkeypatch, config):
    monkeypatch.setenv("COLUMNS", "500")  # wide enough that every row is one line
    r = run_cli("targets")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for col in ("name", "device", "CPU", "cores x GHz", "fp32", "int8", "GB/s", "RAM", "GPU", "runtime"):
        assert col in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.split() and line.split()[0] in SHIPPED}
    assert set(rows) == set(SHIPPED)
    expected = {
        "rpi4": ("Raspberry Pi 4 Model B", "Cortex-A72 (aarch64)", "4 x 1.8", "57.6", "115.2", "5.5", "4.0 GiB",
                 "tflite (CPU)"),
        "nano33ble": ("Arduino Nano 33 BLE Sense", "Cortex-M4F (armv7e-m)", "1 x 0.064", "256 KiB", "tflite"),
        "jetson-nano": ("4 x 1.43", "45.76", "91.52", "25.6", "3.9 GiB", "Maxwell, 128 CUDA cores (sm_53): fp32 235.9",
                        "ort (CUDA)"),
        "jetson-orin-nano": ("6 x 1.5", "144", "576", "68", "int8 20,480", "ort (Tensorrt)"),
    }
    for name, cells in expected.items():
        assert [c for c in cells if c not in rows[name]] == [], rows[name]
    assert "Gop/s (a multiply-add is 2 ops)" in out
    local = load_target_here("local")  # this machine, whatever it is: its own numbers, marked as estimates
    fp32 = local["peak"]["fp32_gops"]
    cells = (f"{local['cpu']['cores']} x {local['cpu']['clock_ghz']:g}",
             (f"{fp32:,.4g}" if fp32 < 1000 else f"{fp32:,.0f}") + " (estimate)",
             f"{local['ram_kb'] / 1024 ** 2:.1f} GiB", "ort (CPU)")
    assert [c for c in cells if c not in rows["local"]] == [], rows["local"]


def test_show_prints_the_targets_own_text_as_written():
    """Citations such as "[pb]" are the target's text, not rich markup to swallow."""
    r = run_cli("targets", "show", "rpi4")
    assert r.returncode == 0, r.stderr
    assert "product brief [pb], WikiChip FLOPS table [wc]" in r.stdout
    r = run_cli("targets", "show", "nano33ble")
    assert "RAM      256 KiB, flash 1024 KiB" in r.stdout


def load_target_here(name):
    from edgehad.targets import load_target

    return load_target(name)


@pytest.fixture
def config(tmp_path, monkeypatch):
    """A private XDG_CONFIG_HOME for the CLI processes: no calibration until a test makes one."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return tmp_path / "config" / "edgehad" / "local-calibration.json"


def test_calibrate_local_then_show_reports_measured(config):
    r = run_cli("targets", "show", "local", "--json")
    assert r.returncode == 0, r.stderr
    before = json.loads(r.stdout)
    assert before["peak"]["source"] == "estimate" and "memory_bandwidth_gbs" not in before

    r = run_cli("targets", "calibrate", "local", "--size", "64", "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)  # stdout is the one document; progress went to stderr
    stored = json.loads(config.read_text())
    assert result == {**stored, "file": str(config)}
    assert stored["size"] == 64 and stored["threads"] >= 1
    assert all(stored[k] > 0 for k in ("fp32_gops", "int8_gops", "memory_bandwidth_gbs"))

    r = run_cli("targets", "show", "local", "--json")
    assert r.returncode == 0, r.stderr
    after = json.loads(r.stdout)
    assert after["peak"] == {"fp32_gops": stored["fp32_gops"], "int8_gops": stored["int8_gops"],
                             "source": "measured", "date": stored["date"], "threads": stored["threads"],
                             "method": stored["method"]}
    assert after["memory_bandwidth_gbs"] == stored["memory_bandwidth_gbs"]
    assert after["cpu"] == before["cpu"]  # the same machine, read again

    r = run_cli("targets", "show", "local")
    assert r.returncode == 0, r.stderr
    assert f"measured on {stored['date']} with {stored['threads']} thread(s)" in r.stdout
    assert f"{stored['memory_bandwidth_gbs']:,.4g} GB/s" in r.stdout


def test_calibrate_mistakes_are_one_line(config):
    assert_clean_error(run_cli("targets", "calibrate", "local", "--size", "3"),
                       "--size must be an integer in [16, 16384], got 3")
    r = run_cli("targets", "calibrate", "rpi4")
    assert r.returncode == 2 and "'rpi4' is not 'local'" in r.stderr
    assert not config.exists()
    assert_clean_error(run_cli("targets", "show", "nope"), "unknown target 'nope'; known targets: ")


def test_narrow_terminal_wraps_words_whole(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    r = run_cli("targets")
    assert r.returncode == 0, r.stderr
    assert "…" not in r.stdout  # text wraps at spaces; nothing is cut off with an ellipsis
    assert "Cortex-A78AE" in r.stdout and "Raspberry" in r.stdout


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
