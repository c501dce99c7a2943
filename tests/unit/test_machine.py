"""The local target is the machine it runs on: CPU facts from the OS, peaks from the ISA or measured (issue #15).

The facts are checked against /proc/cpuinfo read here independently of edgehad.machine; the peak formula
against the shipped boards' own derivations (a Raspberry Pi 5's /proc/cpuinfo at 2.4 GHz must give
rpi5.toml's 153.6 Gop/s); the calibration for real, with a small size, into a private config folder.
"""

from __future__ import annotations

import json
import os
import platform
import re
from pathlib import Path

import pytest

from edgehad import machine as machine_module
from edgehad.core.errors import UserInputError
from edgehad.machine import estimate_peaks, this_machine
from edgehad.targets import ENV_VAR, load_target
from tests.unit.test_targets import NANO, ORIN, RPI4, RPI5

CPUINFO = Path("/proc/cpuinfo")


@pytest.fixture
def config(tmp_path, monkeypatch):
    """A private XDG_CONFIG_HOME (no calibration yet) and the shipped targets."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv(ENV_VAR, raising=False)
    return tmp_path / "config" / "edgehad" / "local-calibration.json"


def _blocks(text):
    """/proc/cpuinfo per processor, parsed here without edgehad's parser."""
    out = {}
    for block in text.split("\n\n"):
        fields = dict((k.strip().lower(), v.strip()) for k, _, v in (line.partition(":") for line in block.splitlines())
                      if _)
        if fields.get("processor", "").isdigit():
            out[int(fields["processor"])] = fields
    return out


@pytest.mark.skipif(not CPUINFO.is_file() or not hasattr(os, "sched_getaffinity"), reason="Linux only")
def test_local_cpu_is_what_proc_cpuinfo_says(config):
    blocks = _blocks(CPUINFO.read_text())
    usable = sorted(os.sched_getaffinity(0))
    first = blocks[min(blocks)]
    cores = {(blocks[c].get("physical id"), blocks[c].get("core id", c)) for c in usable}
    flags = set.intersection(*(set((blocks[c].get("flags") or blocks[c].get("features")).split()) for c in usable))
    freq = Path(f"/sys/devices/system/cpu/cpu{usable[0]}/cpufreq/cpuinfo_max_freq")
    clock = int(freq.read_text()) / 1e6 if freq.is_file() else float(first["cpu mhz"]) / 1e3

    cpu = load_target("local")["cpu"]
    assert cpu["cores"] == len(cores)
    assert cpu["arch"] == platform.machine().lower()
    assert cpu["clock_ghz"] == pytest.approx(clock)
    if "model name" in first:
        assert cpu["model"] == first["model name"]
    assert cpu["isa"] and set(cpu["isa"]) <= {*flags, "neon", "dotprod", "fp16"}
    if "avx512f" in flags:
        assert "avx512f" in cpu["isa"]
    assert "x86-64-v4" not in cpu["isa"]  # nothing is copied from the old hand-written file


@pytest.mark.skipif(platform.machine() != "x86_64" or not CPUINFO.is_file(), reason="the x86 formula, on Linux")
def test_local_peak_is_the_formula_for_these_facts(config):
    t = load_target("local")
    cpu, peak = t["cpu"], t["peak"]
    flags = set(cpu["isa"])
    lanes = 16 if "avx512f" in flags else 8 if "avx" in flags else 4
    per_cycle = 2 * lanes * 2  # 2 FMA units x lanes x 2 ops
    fp32 = sum(core.clock_ghz * per_cycle for core in this_machine().cores)
    assert peak["source"] == "estimate" and "memory_bandwidth_gbs" not in t
    assert peak["fp32_gops"] == pytest.approx(fp32, abs=0.05)
    factor = 4 if flags & {"avx512_vnni", "avx_vnni"} else 2
    assert peak["int8_gops"] == pytest.approx(fp32 * factor, abs=0.05)
    assert f"{cpu['cores']} cores x {cpu['clock_ghz']:g} GHz x 2 FMA units x {lanes} fp32 lanes" in peak["formula"]
    assert f"= {peak['fp32_gops']:g} Gop/s" in peak["formula"]


def _board(tmp_path, cpuinfo, khz=None, cpus=4, arch="aarch64"):
    """edgehad.machine reading a board's /proc/cpuinfo and cpufreq (``khz`` per core; None: no cpufreq)."""
    (tmp_path / "cpuinfo").write_text(cpuinfo)
    sys_cpu = tmp_path / "sys"
    for cpu in range(cpus):
        if khz is not None:
            folder = sys_cpu / f"cpu{cpu}" / "cpufreq"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "cpuinfo_max_freq").write_text(f"{khz[cpu] if isinstance(khz, list) else khz}\n")
    return this_machine(cpuinfo=tmp_path / "cpuinfo", sys_cpu=sys_cpu, meminfo=tmp_path / "none",
                        cpus=list(range(cpus)), arch=arch)


@pytest.mark.parametrize("name, cpuinfo, khz, cpus", [
    ("rpi4", RPI4, 1800000, 4), ("rpi5", RPI5, 2400000, 4), ("jetson-nano", NANO, 1430000, 4),
    ("jetson-orin-nano", ORIN, 1500000, 6),
])
def test_board_files_give_the_shipped_targets_peaks(tmp_path, monkeypatch, name, cpuinfo, khz, cpus):
    """The same formula on a board's own files lands on the figures its target file derives by hand."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    m = _board(tmp_path, cpuinfo, khz, cpus)
    peak, why = estimate_peaks(m)
    shipped = load_target(name)
    assert why == "" and len(m.cores) == shipped["cpu"]["cores"] and m.clock_ghz == shipped["cpu"]["clock_ghz"]
    assert m.model == shipped["cpu"]["model"]
    for key in ("fp32_gops", "int8_gops", "fp16_gops"):
        assert peak.get(key) == pytest.approx(shipped["peak"].get(key)) if key in shipped["peak"] else key not in peak


def test_big_little_sums_each_core(tmp_path):
    text = "\n".join(f"processor\t: {i}\nFeatures\t: fp asimd asimddp asimdhp\nCPU implementer\t: 0x41\n"
                     f"CPU part\t: {part}\n" for i, part in enumerate(["0xd05"] * 4 + ["0xd0b"] * 4))
    m = _board(tmp_path, text, [1800000] * 4 + [2400000] * 4, cpus=8)
    peak, _ = estimate_peaks(m)
    assert peak["fp32_gops"] == pytest.approx(4 * 1.8 * 4 + 4 * 2.4 * 16)  # 28.8 + 153.6
    assert peak["int8_gops"] == pytest.approx(4 * peak["fp32_gops"])
    assert "4 cores x 1.8 GHz x 4 fp32 ops/cycle (Cortex-A55) + 4 cores x 2.4 GHz x 16" in peak["formula"]
    assert m.model == "4x Cortex-A55 + 4x Cortex-A76"


X86_SMT = "".join(f"processor\t: {i}\nmodel name\t: Test CPU @ 3.00GHz\nphysical id\t: 0\ncore id\t\t: {i // 2}\n"
                  f"cpu MHz\t\t: 800.000\nflags\t\t: fpu sse2 avx avx2 fma\n\n" for i in range(4))


def test_hardware_threads_of_one_core_count_once(tmp_path):
    m = _board(tmp_path, X86_SMT, None, cpus=4, arch="x86_64")
    assert (len(m.cores), m.cpus) == (2, 4)
    # no cpufreq: the model name's nominal clock, not an idle "cpu MHz"
    assert (m.clock_ghz, m.clock_source) == (3.0, "the model name's nominal clock")
    peak, _ = estimate_peaks(m)
    assert peak["fp32_gops"] == 2 * 3.0 * 2 * 8 * 2  # 2 cores x 3 GHz x 2 FMA units x 8 lanes x 2 ops = 192
    assert peak["int8_gops"] == 2 * 192.0  # no VNNI: widening multiply-adds
    assert "fp16_gops" not in peak


def test_no_clock_means_no_peak_and_says_how_to_measure(tmp_path, config, monkeypatch):
    text = X86_SMT.replace(" @ 3.00GHz", "").replace("cpu MHz\t\t: 800.000\n", "")
    m = _board(tmp_path, text, None, cpus=4, arch="x86_64")
    assert m.clock_ghz is None
    assert estimate_peaks(m) == (None, "the CPU clock is not readable here (no cpufreq, no cpu MHz in /proc/cpuinfo)")
    monkeypatch.setattr(machine_module, "this_machine", lambda: m)
    t = load_target("local")
    assert "clock_ghz" not in t["cpu"] and t["peak"]["source"] == "unknown"
    assert t["peak"]["note"].endswith("run `edgehad targets calibrate local` to measure it")
    from edgehad.profiling.roofline import roofline
    with pytest.raises(UserInputError, match=r"^target local: peak unknown: the CPU clock is not readable"):
        roofline(_matmul(tmp_path), t, 1.0, 1)


def _matmul(tmp_path):
    """X[1,64] @ W[64,64]: 4096 MACs, 256 + 16384 + 256 bytes."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper, save

    w = numpy_helper.from_array(np.ones((64, 64), np.float32), "W")
    graph = helper.make_graph([helper.make_node("MatMul", ["X", "W"], ["Y"])], "mm",
                              [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 64])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    save(model, tmp_path / "mm.onnx")
    return tmp_path / "mm.onnx"


def test_calibrate_then_local_reports_measured(config, tmp_path):
    from edgehad import api
    from edgehad.profiling.html import render
    from edgehad.profiling.run import finish_document

    path = _matmul(tmp_path)
    (doc,) = api.profile([path], runs=5, warmup=1)
    roof = doc["roofline"]  # before calibration: an estimated peak and no memory roof
    assert (doc["target"], roof["peak_source"], roof["bandwidth_gbs"], roof["bound"]) == ("local", "estimate", None,
                                                                                       None)
    assert roof["bound_ms"] == roof["compute_ms"] == pytest.approx(2 * 4096 / (roof["peak_gops"] * 1e6))
    assert "compute roof only" in roof["note"] and "estimate: fp32 = " in roof["note"]
    page = render([doc])
    assert re.search(r'<path class="roof" d="M[\d.]+,([\d.]+) L[\d.]+,\1"', page)  # one flat line
    assert "GOP/s peak (estimate)" in page and "compute roof only, estimate peak" in page

    result = api.calibrate_target("local", size=32)
    stored = json.loads(config.read_text())
    assert result["file"] == str(config) and {k: result[k] for k in stored} == stored
    assert all(stored[k] > 0 for k in ("fp32_gops", "int8_gops", "memory_bandwidth_gbs"))
    assert stored["threads"] == len(os.sched_getaffinity(0)) and stored["size"] == 32
    t = load_target("local")
    assert t["peak"] == {"fp32_gops": stored["fp32_gops"], "int8_gops": stored["int8_gops"], "source": "measured",
                         "date": stored["date"], "threads": stored["threads"], "method": stored["method"]}
    assert t["memory_bandwidth_gbs"] == stored["memory_bandwidth_gbs"]

    finish_document(doc, None)  # the same measurement against the calibrated target
    roof = doc["roofline"]
    assert (roof["peak_source"], roof["bandwidth_gbs"]) == ("measured", stored["memory_bandwidth_gbs"])
    assert roof["peak_gops"] == pytest.approx(stored["fp32_gops"] / t["cpu"]["cores"])  # 1 thread of all cores
    assert roof["bound"] in ("compute", "memory") and "GOP/s peak (measured)" in render([doc])

    stored["machine"]["model"] = "Another CPU"  # the same file seen from another machine: not used
    config.write_text(json.dumps(stored))
    t = load_target("local")
    assert t["peak"]["source"] == "estimate" and "memory_bandwidth_gbs" not in t
    assert t["peak"]["note"].startswith(f"the calibration in {config} measured another machine (Another CPU, ")


def test_a_broken_calibration_file_is_named(config):
    config.parent.mkdir(parents=True)
    config.write_text("{")
    with pytest.raises(UserInputError, match=rf"^{re.escape(str(config))} is not valid JSON .*: delete it or run "):
        load_target("local")
    config.write_text(json.dumps({"machine": {}, "date": "x", "threads": 1, "size": 32, "runs": 5,
                                  "fp32_gops": -1, "int8_gops": 1, "memory_bandwidth_gbs": 1}))
    with pytest.raises(UserInputError, match=rf"^{re.escape(str(config))}: fp32_gops must be > 0, got -1$"):
        load_target("local")


def test_calibrate_refuses_other_targets_and_sizes(config):
    from edgehad import api

    with pytest.raises(UserInputError, match=r"^target 'rpi4' cannot be calibrated from here: only local"):
        api.calibrate_target("rpi4")
    with pytest.raises(UserInputError, match=r"^`size` must be an integer in \[16, 16384\], got 3 \(the side"):
        api.calibrate_target("local", size=3)
    assert not config.exists()
