"""tegrastats parsing on recorded-format fixtures, one per JetPack release / board (tests/fixtures/tegrastats)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgehad.profiling.tegrastats import parse_line, summarize

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tegrastats"


def fixture_lines(name: str) -> list[str]:
    """The sample lines of a fixture; its ``#`` header names where the format comes from."""
    lines = (FIXTURES / name).read_text().splitlines()
    assert lines[0].startswith("# tegrastats"), f"{name}: no header naming the format's source"
    return [ln for ln in lines if ln.strip() and not ln.startswith("#")]


# Per fixture: the summary's numbers, worked out from the lines by hand (means over the samples shown).
EXPECTED = {
    "l4t21_tk1.txt": dict(
        samples=3, ram_used_mb={"min": 690, "max": 811, "mean": 769.0}, ram_total_mb=1892, swap_used_mb=None,
        gpu_util_pct={"min": 0, "max": 80, "mean": 51.333}, gpu_freq_mhz={"min": 72, "max": 852, "mean": 592.0},
        cpu_util_pct={"mean": 23.222, "max": 58, "per_core_mean": [39.0, 28.0, 3.0, 2.0]},
        emc_util_pct={"min": 5, "max": 21, "mean": 15.0}, temps_c=None,
        power_mw=None, power_input_rail=None, power_total_mw=None, power_total_source=None),
    "jetpack4_nano.txt": dict(
        samples=3, ram_used_mb={"min": 2448, "max": 2472, "mean": 2460.0}, ram_total_mb=3964,
        swap_used_mb={"min": 0, "max": 4, "mean": 1.333},
        gpu_util_pct={"min": 0, "max": 99, "mean": 53.333}, gpu_freq_mhz={"min": 921, "max": 921, "mean": 921.0},
        cpu_util_pct={"mean": 23.2, "max": 40, "per_core_mean": [27.667, 23.333, 23.5, 16.0]},
        emc_util_pct={"min": 0, "max": 22, "mean": 13.333},
        temps_c={"PLL": 28.0, "CPU": 31.0, "PMIC": 100.0, "GPU": 30.5, "AO": 35.5, "thermal": 30.25},
        power_mw={"POM_5V_IN": {"mean": 3978.667, "max": 5006}, "POM_5V_GPU": {"mean": 1011.333, "max": 1804},
                  "POM_5V_CPU": {"mean": 813.0, "max": 1078}},
        power_input_rail="POM_5V_IN", power_total_mw={"mean": 3978.667, "max": 5006},
        power_total_source="POM_5V_IN"),
    "jetpack4_tx2.txt": dict(
        samples=3, ram_used_mb={"min": 1840, "max": 2031, "mean": 1961.667}, ram_total_mb=7850,
        gpu_util_pct={"min": 0, "max": 91, "mean": 59.333}, gpu_freq_mhz={"min": 114, "max": 1300, "mean": 904.667},
        cpu_util_pct={"mean": 33.0, "max": 55, "per_core_mean": [35.667, None, None, 33.333, 28.667, 34.333]},
        power_input_rail="VDD_IN", power_total_mw={"mean": 7210.0, "max": 9780}, power_total_source="VDD_IN"),
    "jetpack4_xavier_nx.txt": dict(
        samples=3, ram_used_mb={"min": 1914, "max": 2544, "mean": 2329.333}, ram_total_mb=7772,
        gpu_util_pct={"min": 0, "max": 97, "mean": 63.333},
        cpu_util_pct={"mean": 17.25, "max": 38, "per_core_mean": [25.0, 16.0, 12.333, 15.667, None, None]},
        power_mw={"VDD_IN": {"mean": 7786.0, "max": 9342}, "VDD_CPU_GPU_CV": {"mean": 3673.0, "max": 5012},
                  "VDD_SOC": {"mean": 1777.333, "max": 1994}},
        power_input_rail="VDD_IN", power_total_mw={"mean": 7786.0, "max": 9342}),
    "jetpack4_agx_xavier.txt": dict(
        samples=3, ram_used_mb={"min": 3120, "max": 4402, "mean": 3970.0}, ram_total_mb=15692,
        gpu_util_pct={"min": 0, "max": 84, "mean": 54.0}, cpu_util_pct={"mean": 6.458, "max": 21, "per_core_mean":
                                                                     [14.0, 7.667, 8.333, 4.333, 7.667, 2.667, 5.0, 2.0]},
        # no input rail: GPU+CPU+SOC+CV+VDDRQ+SYS5V per sample = 4106, 13258, 13697 mW
        power_input_rail=None, power_total_mw={"mean": 10353.667, "max": 13697}, power_total_source="sum of rails"),
    "jetpack5_orin_nano.txt": dict(
        samples=3, ram_used_mb={"min": 2385, "max": 3027, "mean": 2807.667}, ram_total_mb=6481,
        gpu_util_pct={"min": 0, "max": 98, "mean": 64.667}, gpu_freq_mhz={"min": 305, "max": 624, "mean": 517.667},
        cpu_util_pct={"mean": 11.417, "max": 34, "per_core_mean": [21.333, 8.667, 7.333, 8.333, None, None]},
        emc_util_pct={"min": 0, "max": 29, "mean": 18.667},
        temps_c={"CPU": 53.156, "SOC2": 50.218, "SOC0": 51.062, "GPU": 54.031, "tj": 54.031, "SOC1": 50.562},
        power_input_rail="VDD_IN", power_total_mw={"mean": 6924.0, "max": 8452}),
    "jetpack5_agx_orin.txt": dict(
        samples=3, ram_used_mb={"min": 4105, "max": 6913, "mean": 5971.667}, ram_total_mb=62801,
        gpu_util_pct={"min": 0, "max": 92, "mean": 60.0}, gpu_freq_mhz={"min": 0, "max": 1300, "mean": 866.667},
        cpu_util_pct={"mean": 3.028, "max": 18, "per_core_mean":
                      [11.0, 5.0, 2.333, 5.0, 3.0, 0.333, 1.333, 2.667, 0.667, 0.667, 0.333, 4.0]},
        power_mw={"VDD_GPU_SOC": {"mean": 7471.333, "max": 10305}, "VDD_CPU_CV": {"mean": 923.333, "max": 1189},
                  "VIN_SYS_5V0": {"mean": 4429.333, "max": 4672}, "VDDQ_VDD2_1V8AO": {"mean": 435.0, "max": 518}},
        # NC channels left out; sums 6900, 16232, 16645 mW
        power_input_rail=None, power_total_mw={"mean": 13259.0, "max": 16645}, power_total_source="sum of rails"),
    "jetpack6_orin_nano.txt": dict(
        samples=3, ram_used_mb={"min": 3140, "max": 3602, "mean": 3444.0}, ram_total_mb=7620,
        gpu_util_pct={"min": 0, "max": 99, "mean": 52.0}, gpu_freq_mhz={"min": 1020, "max": 1020, "mean": 1020.0},
        cpu_util_pct={"mean": 15.444, "max": 29, "per_core_mean": [18.0, 13.0, 13.667, 19.0, 14.333, 14.667]},
        emc_util_pct={"min": 31, "max": 31, "mean": 31.0},
        temps_c={"cpu": 49.5, "soc2": 47.718, "soc0": 48.031, "gpu": 50.25, "tj": 50.25, "soc1": 48.5},
        power_input_rail="VDD_IN", power_total_mw={"mean": 6935.667, "max": 8306}),
    "jetpack6_agx_orin.txt": dict(
        samples=3, ram_used_mb={"min": 17640, "max": 19968, "mean": 19186.0}, ram_total_mb=62841,
        swap_used_mb={"min": 92, "max": 92, "mean": 92.0}, gpu_util_pct={"min": 0, "max": 99, "mean": 65.333},
        emc_util_pct={"min": 4, "max": 44, "mean": 29.667},
        temps_c={"cpu": 56.031, "soc2": 51.5, "soc0": 52.125, "tj": 58.375, "soc1": 52.687},
        power_input_rail=None, power_total_mw={"mean": 17629.333, "max": 22396}, power_total_source="sum of rails"),
}
SUMMARY_KEYS = {"samples", "skipped", "ram_used_mb", "ram_total_mb", "swap_used_mb", "gpu_util_pct", "gpu_freq_mhz",
                "cpu_util_pct", "emc_util_pct", "temps_c", "power_mw", "power_input_rail", "power_total_mw",
                "power_total_source"}


def test_every_fixture_has_expected_numbers():
    assert {p.name for p in FIXTURES.glob("*.txt")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_summary_of_each_fixture(name):
    lines = fixture_lines(name)
    summary = summarize(lines)
    assert set(summary) == SUMMARY_KEYS
    assert summary["skipped"] == 0
    for key, want in EXPECTED[name].items():
        assert summary[key] == want, key
    assert all(parse_line(ln) for ln in lines)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_power_only_when_asked(name):
    summary = summarize(fixture_lines(name), power=False)
    assert summary["power_mw"] is summary["power_total_mw"] is summary["power_input_rail"] is None
    assert summary["ram_used_mb"] == EXPECTED[name]["ram_used_mb"]


def test_jetpack4_nano_line():
    first = fixture_lines("jetpack4_nano.txt")[0]
    assert parse_line(first) == {
        "ram_used_mb": 2448, "ram_total_mb": 3964, "swap_used_mb": 0, "swap_total_mb": 1982, "swap_cached_mb": 0,
        "iram_used_kb": 0, "iram_total_kb": 252,
        "cpu": [{"util_pct": 12, "freq_mhz": 1479}, {"util_pct": 5, "freq_mhz": 1479}, None, None],
        "emc_util_pct": 0, "gpu_util_pct": 0,  # printed without clocks when tegrastats is not run as root
        "temps_c": {"PLL": 25.0, "CPU": 27.5, "PMIC": 100.0, "GPU": 26.0, "AO": 33.5, "thermal": 26.75},
        "power_mw": {"POM_5V_IN": {"now": 2410, "avg": 2410}, "POM_5V_GPU": {"now": 0, "avg": 0},
                     "POM_5V_CPU": {"now": 411, "avg": 411}},
    }


def test_jetpack5_orin_line_drops_off_sensors():
    line = fixture_lines("jetpack5_orin_nano.txt")[1]
    fields = parse_line(line)
    assert fields["gpu_util_pct"] == 96 and fields["gpu_freq_mhz"] == [624]
    assert fields["emc_util_pct"] == 27 and fields["emc_freq_mhz"] == 2133
    assert "CV0" not in fields["temps_c"] and fields["temps_c"]["tj"] == 53.125  # CV0@-256C: sensor off
    assert fields["power_mw"]["VDD_IN"] == {"now": 8213, "avg": 6160}
    assert fields["cpu"][4:] == [None, None]


def test_agx_orin_two_gpcs_and_nc_rails():
    fields = parse_line(fixture_lines("jetpack5_agx_orin.txt")[1])
    assert fields["gpu_freq_mhz"] == [1300, 1300] and len(fields["cpu"]) == 12
    assert set(fields["power_mw"]) == {"VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"}
    assert "GPU" not in parse_line(fixture_lines("jetpack5_agx_orin.txt")[0])["temps_c"]  # GPU@-256C when idle


def test_jetpack6_timestamp_and_clockless_gpu():
    first, _, third = fixture_lines("jetpack6_orin_nano.txt")
    fields = parse_line(first)
    assert fields["time"] == "11-25-2026 14:00:00"
    assert fields["gpu_util_pct"] == 0 and "gpu_freq_mhz" not in fields and "emc_util_pct" not in fields
    assert fields["temps_c"]["cpu"] == 45.5 and fields["power_mw"]["VDD_CPU_GPU_CV"] == {"now": 978, "avg": 978}
    assert parse_line(third)["gpu_freq_mhz"] == [1020]


def test_tk1_shared_frequency_and_blank_cores():
    fields = parse_line(fixture_lines("l4t21_tk1.txt")[1])
    assert fields["cpu"] == [{"util_pct": 58, "freq_mhz": 2065}, {"util_pct": 41, "freq_mhz": 2065}, None, None]
    assert fields["gpu_util_pct"] == 74 and fields["gpu_freq_mhz"] == [852]  # GR3D, not GR2D
    assert "power_mw" not in fields and "swap_used_mb" not in fields


def test_unknown_tokens_are_ignored():
    line = fixture_lines("jetpack6_orin_nano.txt")[1]
    noisy = line.replace(" GR3D_FREQ", " NEWENGINE 12%@[3,4] XYZ_FREQ off FOO 7 GR3D_FREQ") + " BAR@C FUTURE_FIELD 3x4"
    assert parse_line(noisy) == parse_line(line)


def test_lines_with_nothing_known_are_skipped_and_counted():
    lines = fixture_lines("jetpack4_tx2.txt")
    junk = ["", "tegrastats: cannot open /sys/kernel/debug/...", "Killed", "   "]
    summary = summarize(junk[:2] + lines + junk[2:])
    assert summary["samples"] == 3 and summary["skipped"] == 4
    assert summary["ram_used_mb"] == EXPECTED["jetpack4_tx2.txt"]["ram_used_mb"]


def test_power_uses_the_instantaneous_reading():
    # tegrastats' second number is its running average since it started: a short run would be diluted by idle
    lines = ["RAM 1/2MB VDD_IN 9000mW/3000mW", "RAM 1/2MB VDD_IN 7000mW/4000mW"]
    assert summarize(lines)["power_mw"] == {"VDD_IN": {"mean": 8000.0, "max": 9000}}


def test_no_samples():
    summary = summarize(["garbage"])
    assert summary["samples"] == 0 and summary["skipped"] == 1
    assert all(summary[k] is None for k in SUMMARY_KEYS - {"samples", "skipped"})


def test_memory_units():
    assert parse_line("RAM 2/4GB SWAP 512/1024kB")["ram_total_mb"] == 4096
    assert parse_line("RAM 2/4GB SWAP 512/1024kB")["swap_used_mb"] == 0.5
