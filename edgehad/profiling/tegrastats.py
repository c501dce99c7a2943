"""Parse NVIDIA Jetson ``tegrastats`` lines and summarise a run's samples.

The agent runs ``tegrastats --interval 100`` on the device during the timed runs
and returns its lines raw; this module turns them into numbers on the host.
tegrastats prints one line per interval; its fields changed across JetPack
releases and boards, and every variant below is parsed (formats from NVIDIA's
L4T / Jetson Linux developer guides, "tegrastats Utility", and the sample lines
of jetson-stats; tests/fixtures/tegrastats/ holds one file per variant):

- ``MM-DD-YYYY HH:MM:SS`` first on the line (JetPack 6; JetPack 5 from 35.x on
  some boards): kept as ``time``.
- ``RAM X/YMB (lfb NxZMB)``: used / total RAM in MB. On a Jetson this memory is
  shared by CPU and GPU, so it includes the GPU's buffers.
- ``SWAP X/YMB (cached ZMB)``, ``IRAM X/YkB(lfb ZkB)`` (JetPack 4 only).
- ``CPU [X%@F,Y%@F,off,...]`` per core (load %, MHz; ``off``: core powered
  down) or the older ``cpu [X%,Y%,,]@F`` (L4T 21, Jetson TK1: one shared
  frequency).
- ``EMC_FREQ X%@F`` or ``EMC_FREQ X%`` (memory controller load), ``EMC`` on
  the oldest releases.
- ``GR3D_FREQ X%@F`` (JetPack 4), ``GR3D_FREQ X%@[F0,F1]`` (JetPack 5/6, one
  frequency per GPC), ``GR3D_FREQ X%`` (JetPack 6 when the clock is not
  readable): GPU load % and MHz.
- ``name@TC`` temperatures in Celsius (``CPU@27.5C`` in JetPack 4/5,
  ``cpu@45.5C`` in JetPack 6). ``-256C`` is how tegrastats prints a sensor that
  is powered off (``CV0@-256C`` on Orin): left out.
- Power rails ``NAME NOW/AVG``: milliwatts, bare in JetPack 4
  (``POM_5V_IN 2410/2410``, ``VDD_IN 4982/4982``, ``GPU 0/0`` on AGX Xavier),
  with units from JetPack 5 (``VDD_IN 4107mW/4107mW``). ``NOW`` is the
  instantaneous reading; ``AVG`` is tegrastats' own running average since it
  started, so only ``NOW`` is used. Rails named ``NC`` (not connected, AGX Orin)
  are left out.

Anything else on a line (``APE 150``, ``NVENC off``, ``VIC 36%@115``,
``MTS fg 0% bg 0%``, fields of a future release) is ignored; a line where
nothing is recognised counts as skipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_TIME = re.compile(r"^\s*(\d{2}-\d{2}-\d{4} \d{2}:\d{2}:\d{2})\b")
_MEMORY = re.compile(r"\b(RAM|SWAP|IRAM) (\d+)/(\d+)([kMG]?)B")
_SWAP_CACHED = re.compile(r"\bSWAP \d+/\d+[kMG]?B ?\(cached (\d+)([kMG]?)B\)")
_CPU = re.compile(r"\b(?:CPU|cpu) \[([^\]]*)\](?:@(\d+))?")  # lower case on L4T 21 (TK1)
_CORE = re.compile(r"^(\d+)%(?:@(\d+))?$")
_EMC = re.compile(r"\bEMC(?:_FREQ)? (\d+)%(?:@(\d+))?")
_GR3D = re.compile(r"\bGR3D(?:_FREQ)? (?:(\d+)%)?(?:@\[?([\d,]+)\]?)?")
# a sensor name starts with a letter: "12%@1479" (a core's load) never matches
_TEMP = re.compile(r"(?<![\w%@.])([A-Za-z][\w]*)@(-?\d+(?:\.\d+)?)C\b")
# NAME NOW/AVG with optional mW; the lookahead keeps "RAM 2448/3964MB" out
_RAIL = re.compile(r"(?<![\w/])([A-Z][A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?=\s|$)")
_NOT_RAILS = {"RAM", "SWAP", "IRAM"}
_OFF_SENSOR_C = -256.0
# Rails that measure the whole module's input, per board family (NVIDIA's power guides, jetson-stats):
# POM_5V_IN on Nano/TX1 (JetPack 4), VDD_IN on TX2, Xavier NX and Orin NX/Nano. AGX Xavier and AGX Orin
# have none; there the total is the sum of the rails they do monitor.
INPUT_RAILS = ("VDD_IN", "POM_5V_IN")
_TO_MB = {"k": 1 / 1024, "M": 1.0, "G": 1024.0, "": 1 / (1024 * 1024)}


def _mb(value: str, prefix: str) -> float:
    mb = int(value) * _TO_MB[prefix]
    return int(mb) if mb == int(mb) else mb


def parse_line(line: str) -> dict:
    """The fields of one tegrastats line that this module knows; ``{}`` when there are none.

    Keys, each present only when its field is on the line: ``time`` (str), ``ram_used_mb``,
    ``ram_total_mb``, ``swap_used_mb``, ``swap_total_mb``, ``swap_cached_mb``, ``iram_used_kb``,
    ``iram_total_kb``, ``cpu`` (one entry per core: ``{"util_pct", "freq_mhz"}`` or None when off),
    ``emc_util_pct``, ``emc_freq_mhz``, ``gpu_util_pct``, ``gpu_freq_mhz`` (a list, one per GPC),
    ``temps_c`` ({sensor: Celsius}), ``power_mw`` ({rail: {"now", "avg"}}, milliwatts).
    """
    out: dict = {}
    m = _TIME.search(line)
    if m:
        out["time"] = m.group(1)
    for name, used, total, prefix in _MEMORY.findall(line):
        if name == "IRAM":  # kB-sized video memory: kept in kB, as printed
            out["iram_used_kb"], out["iram_total_kb"] = int(used), int(total)
        else:
            key = name.lower()
            out[f"{key}_used_mb"], out[f"{key}_total_mb"] = _mb(used, prefix), _mb(total, prefix)
    m = _SWAP_CACHED.search(line)
    if m:
        out["swap_cached_mb"] = _mb(m.group(1), m.group(2))
    m = _CPU.search(line)
    if m:
        shared = int(m.group(2)) if m.group(2) else None
        cores = []
        for field in m.group(1).split(","):
            core = _CORE.match(field.strip())
            if core is None:  # "off", or the blank of an idle core in the old "[X%,Y%, , ]@F" form
                cores.append(None)
            else:
                freq = int(core.group(2)) if core.group(2) else shared
                cores.append({"util_pct": int(core.group(1)), "freq_mhz": freq})
        out["cpu"] = cores
    m = _EMC.search(line)
    if m:
        out["emc_util_pct"] = int(m.group(1))
        if m.group(2):
            out["emc_freq_mhz"] = int(m.group(2))
    m = _GR3D.search(line)
    if m and (m.group(1) or m.group(2)):
        if m.group(1):
            out["gpu_util_pct"] = int(m.group(1))
        if m.group(2):
            out["gpu_freq_mhz"] = [int(f) for f in m.group(2).split(",") if f]
    temps = {name: float(t) for name, t in _TEMP.findall(line) if float(t) > _OFF_SENSOR_C}
    if temps:
        out["temps_c"] = temps
    rails = {name: {"now": int(now), "avg": int(avg)} for name, now, avg in _RAIL.findall(line)
             if name not in _NOT_RAILS and name != "NC"}
    if rails:
        out["power_mw"] = rails
    return out


def _spread(values: list, keys=("min", "max", "mean")) -> dict | None:
    if not values:
        return None
    every = {"min": min(values), "max": max(values), "mean": round(sum(values) / len(values), 3)}
    return {k: every[k] for k in keys}


def summarize(lines: Iterable[str], power: bool = True) -> dict:
    """Summary of one run's tegrastats lines (all keys always present; None when no sample had the field).

    - ``samples``: lines with at least one recognised field; ``skipped``: lines with none.
    - ``ram_used_mb`` {min, max, mean}, ``ram_total_mb`` (the largest total seen; RAM is shared with the GPU
      on a Jetson, so this is the memory the model's CPU and GPU buffers both come from).
    - ``swap_used_mb`` {min, max, mean}.
    - ``gpu_util_pct`` {min, max, mean}; ``gpu_freq_mhz`` {min, max, mean} of each sample's fastest GPC.
    - ``cpu_util_pct``: ``mean`` over every (online core, sample) reading, ``max`` the busiest single core
      reading, ``per_core_mean`` one mean per core (None for a core that was off in every sample).
    - ``emc_util_pct`` {min, max, mean}: memory-controller load.
    - ``temps_c``: {sensor: the highest reading}.
    - With ``power``: ``power_mw`` {rail: {mean, max}} of the instantaneous readings; ``power_input_rail``
      the rail that measures the module's input (VDD_IN / POM_5V_IN) or None where the board has none;
      ``power_total_mw`` {mean, max} of that rail, else of the per-sample sum of the monitored rails;
      ``power_total_source`` the input rail's name or ``"sum of rails"``. Without ``power`` these are None.
    """
    parsed, skipped = [], 0
    for line in lines:
        fields = parse_line(line)
        if fields:
            parsed.append(fields)
        else:
            skipped += 1

    def column(key):
        return [p[key] for p in parsed if key in p]

    n_cores = max((len(p["cpu"]) for p in parsed if "cpu" in p), default=0)
    per_core = [[p["cpu"][i]["util_pct"] for p in parsed if "cpu" in p and i < len(p["cpu"]) and p["cpu"][i]]
                for i in range(n_cores)]
    readings = [u for core in per_core for u in core]
    temps: dict = {}
    for p in parsed:
        for sensor, celsius in p.get("temps_c", {}).items():
            temps[sensor] = max(celsius, temps.get(sensor, celsius))
    summary = {
        "samples": len(parsed),
        "skipped": skipped,
        "ram_used_mb": _spread(column("ram_used_mb")),
        "ram_total_mb": max(column("ram_total_mb"), default=None),
        "swap_used_mb": _spread(column("swap_used_mb")),
        "gpu_util_pct": _spread(column("gpu_util_pct")),
        "gpu_freq_mhz": _spread([max(f) for f in column("gpu_freq_mhz") if f]),
        "cpu_util_pct": None if not readings else {
            "mean": round(sum(readings) / len(readings), 3),
            "max": max(readings),
            "per_core_mean": [round(sum(c) / len(c), 3) if c else None for c in per_core],
        },
        "emc_util_pct": _spread(column("emc_util_pct")),
        "temps_c": temps or None,
        "power_mw": None,
        "power_input_rail": None,
        "power_total_mw": None,
        "power_total_source": None,
    }
    samples = column("power_mw")
    if power and samples:
        rails: dict = {}
        for sample in samples:
            for rail, reading in sample.items():
                rails.setdefault(rail, []).append(reading["now"])
        summary["power_mw"] = {rail: _spread(now, ("mean", "max")) for rail, now in rails.items()}
        source = next((r for r in INPUT_RAILS if r in rails), None)
        summary["power_input_rail"] = source
        if source:
            total = rails[source]
        else:  # no input rail on this board: the sum of what it monitors, sample by sample
            total = [sum(reading["now"] for reading in sample.values()) for sample in samples]
        summary["power_total_mw"] = _spread(total, ("mean", "max"))
        summary["power_total_source"] = source or "sum of rails"
    return summary
