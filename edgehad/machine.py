"""This machine: its CPU as the operating system describes it, and the peak throughput that follows.

What the ``local`` target says is read here each time it is loaded, never copied from another
machine. On Linux: ``/proc/cpuinfo`` (model name, ISA flags or ARM ``Features``, ARM ``CPU
part``, ``cpu MHz``, ``physical id`` / ``core id``), each core's cpufreq maximum
(``/sys/devices/system/cpu/cpuN/cpufreq/cpuinfo_max_freq``, kHz), the logical CPUs this process
may run on (``os.sched_getaffinity``) and ``MemTotal`` of ``/proc/meminfo``. Elsewhere the
``platform`` module gives the architecture and a model name, and the clock stays unknown.

Peak: the roofline's compute roof (Williams, Waterman & Patterson, CACM 52(4), 2009), a ceiling,
summed over the usable physical cores (SMT siblings share their core's units, so a core counts
once however many of its hardware threads are usable)::

    fp32 Gop/s = sum over cores of clock_GHz x fp32 ops per cycle
    x86:     ops per cycle = FMA units x fp32 SIMD lanes x 2 (a fused multiply-add is 2 ops)
             lanes 16 with AVX-512F, 8 with AVX, 4 with SSE only; 2 FMA units, the most an x86
             core has (Intel since Haswell, AMD since Zen 2); without FMA, one add and one
             multiply port count as one unit
    AArch64: ops per cycle from the Arm core's part number (ARM_FP32_PER_CYCLE: FMA pipes x
             4 lanes x 2), else 16: two 128-bit NEON FMA pipes, the Cortex-A76 class
    int8 = 8 x fp32 with Arm i8mm (SMMLA: 32 multiply-adds per 128-bit instruction where FMLA does 4)
           4 x fp32 with AVX-512 VNNI / AVX-VNNI (vpdpbusd: 4 int8 multiply-adds per 32-bit lane)
                    or Arm dot product (SDOT: 16 per 128-bit instruction)
           2 x fp32 otherwise (widening multiply-adds: vpmaddubsw + vpmaddwd, SMLAL)
    fp16 = 2 x fp32 with AVX512-FP16 or Arm FP16 arithmetic (asimdhp); none otherwise (F16C only converts)

It is an estimate: cores with fewer units than the formula assumes (Zen 4 runs AVX-512 on 256-bit
units, Xeon Bronze/Silver have one 512-bit FMA unit) or a clock that drops under vector load reach
less, and AMX tiles and SVE vector lengths are not counted. ``edgehad targets calibrate local``
measures instead (edgehad.profiling.calibrate). With no readable clock the peak is unknown.
"""

from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
MEMINFO = Path("/proc/meminfo")
SYS_CPU = Path("/sys/devices/system/cpu")

X86 = ("x86_64", "amd64", "i386", "i686")
ARM = ("aarch64", "arm64", "armv7l", "armv8l")

# x86 flags (as Linux spells them in /proc/cpuinfo) that matter to the kernels runtimes pick.
X86_ISA = ("sse2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
           "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16")
# ARM Features -> the names targets/*.toml use (rpi5.toml: "neon", "dotprod", "fp16").
ARM_ISA = {"asimd": "neon", "neon": "neon", "asimddp": "dotprod", "i8mm": "i8mm", "asimdhp": "fp16",
           "bf16": "bf16", "sve": "sve", "sve2": "sve2"}

# Arm Ltd. (implementer 0x41) cores: part -> (name, fp32 ops per cycle per core = FMA pipes x 4 lanes x 2).
# The same per-cycle figures as the shipped targets (generic-aarch64: A53 class 4, rpi4 / jetson-nano:
# A72 / A57 8, rpi5 / jetson-orin-nano: A76 / A78AE 16); the rest from Arm's Software Optimization Guides
# (FP/ASIMD pipes that each issue a 128-bit FMLA per cycle: two on N1 / A77 / N2, four on X1 / V1 / V2).
ARM_FP32_PER_CYCLE = {
    0xd03: ("Cortex-A53", 4), 0xd04: ("Cortex-A35", 4), 0xd05: ("Cortex-A55", 4),
    0xd07: ("Cortex-A57", 8), 0xd08: ("Cortex-A72", 8),
    0xd0b: ("Cortex-A76", 16), 0xd0c: ("Neoverse-N1", 16), 0xd0d: ("Cortex-A77", 16),
    0xd41: ("Cortex-A78", 16), 0xd42: ("Cortex-A78AE", 16), 0xd49: ("Neoverse-N2", 16),
    0xd44: ("Cortex-X1", 32), 0xd40: ("Neoverse-V1", 32), 0xd4f: ("Neoverse-V2", 32),
}
ARM_DEFAULT_PER_CYCLE = 16
ARM_LTD = 0x41
_GHZ_IN_NAME = re.compile(r"@\s*([0-9.]+)\s*GHz", re.IGNORECASE)


@dataclass(frozen=True)
class Core:
    """One physical core this process may run on."""

    cpus: tuple[int, ...]          # its usable logical CPUs (hardware threads)
    clock_ghz: float | None        # its maximum clock
    part: tuple[int, int] | None   # ARM (implementer, part) from /proc/cpuinfo


@dataclass(frozen=True)
class Machine:
    """What the OS says about this machine's CPU and memory."""

    arch: str
    model: str | None
    cores: tuple[Core, ...]
    flags: frozenset = field(default_factory=frozenset)  # ISA flags common to the usable CPUs, as the OS names them
    clock_source: str | None = None
    ram_kb: int | None = None

    @property
    def cpus(self) -> int:
        """Usable logical CPUs (what os.sched_getaffinity allows)."""
        return sum(len(c.cpus) for c in self.cores)

    @property
    def clock_ghz(self) -> float | None:
        clocks = [c.clock_ghz for c in self.cores if c.clock_ghz]
        return max(clocks) if clocks else None

    @property
    def isa(self) -> list[str]:
        """The extensions kernels use, named as in targets/*.toml, in a fixed order."""
        if self.arch in X86:
            return [f for f in X86_ISA if f in self.flags]
        if self.arch in ARM:
            return list(dict.fromkeys(ARM_ISA[f] for f in ARM_ISA if f in self.flags))
        return []

    def fingerprint(self) -> dict:
        """What must match for a measurement to be this machine's: a calibration stores it."""
        return {"arch": self.arch, "model": self.model, "cores": len(self.cores), "cpus": self.cpus, "isa": self.isa}


# -- reading --------------------------------------------------------------------------------------
def parse_cpuinfo(text: str) -> dict[int, dict[str, str]]:
    """/proc/cpuinfo as {processor number: {key: value}}; blocks without a processor line are dropped."""
    out = {}
    for block in re.split(r"\n\s*\n", text):
        entry = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                entry[key.strip().lower()] = value.strip()
        if entry.get("processor", "").isdigit():
            out[int(entry["processor"])] = entry
    return out


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def usable_cpus() -> list[int]:
    """The logical CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def _cpufreq_ghz(cpu: int, sys_cpu: Path) -> float | None:
    text = _read(sys_cpu / f"cpu{cpu}" / "cpufreq" / "cpuinfo_max_freq")
    try:
        khz = int(text.strip()) if text else 0
    except ValueError:
        return None
    return khz / 1e6 if khz > 0 else None


def _mhz(entry: dict) -> float | None:
    try:
        mhz = float(entry.get("cpu mhz", ""))
    except ValueError:
        return None
    return mhz / 1e3 if mhz > 0 else None


def _part(entry: dict) -> tuple[int, int] | None:
    try:
        return int(entry["cpu implementer"], 16), int(entry["cpu part"], 16)
    except (KeyError, ValueError):
        return None


def ram_kb(meminfo: Path = MEMINFO) -> int | None:
    """Total RAM, KiB: MemTotal of /proc/meminfo, else the POSIX page count."""
    found = re.search(r"^MemTotal:\s+(\d+)\s*kB", _read(meminfo) or "", re.MULTILINE)
    if found:
        return int(found[1])
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 1024 or None
    except (AttributeError, ValueError, OSError):
        return None


def this_machine(cpuinfo: Path = CPUINFO, sys_cpu: Path = SYS_CPU, meminfo: Path = MEMINFO,
                 cpus: list[int] | None = None, arch: str | None = None) -> Machine:
    """This machine as the OS describes it (the arguments exist so that tests can point it at other files)."""
    arch = (arch or platform.machine() or "unknown").lower()
    cpus = usable_cpus() if cpus is None else cpus
    blocks = parse_cpuinfo(_read(cpuinfo) or "")
    if not blocks:  # not Linux: no per-core facts; the clock stays unknown
        flags = frozenset({"asimd"}) if arch in ("arm64", "aarch64") else frozenset()  # ASIMD is part of ARMv8-A
        return Machine(arch=arch, model=platform.processor() or None,
                       cores=tuple(Core((c,), None, None) for c in cpus), flags=flags, ram_kb=ram_kb(meminfo))
    first = blocks[min(blocks)]
    by_core: dict[tuple, list[int]] = {}
    for cpu in cpus:
        entry = blocks.get(cpu, first)
        # x86 names the core each hardware thread belongs to; ARM kernels list one core per processor
        key = (entry["physical id"], entry["core id"]) if "core id" in entry and "physical id" in entry else (cpu,)
        by_core.setdefault(key, []).append(cpu)
    sources, cores = set(), []
    for members in by_core.values():
        entry = blocks.get(members[0], first)
        clock, source = _cpufreq_ghz(members[0], sys_cpu), "cpufreq cpuinfo_max_freq"
        if clock is None and _GHZ_IN_NAME.search(entry.get("model name", "")):
            clock, source = float(_GHZ_IN_NAME.search(entry["model name"])[1]), "the model name's nominal clock"
        if clock is None:
            clock, source = _mhz(entry), "/proc/cpuinfo cpu MHz"
        if clock is not None:
            sources.add(source)
        cores.append(Core(tuple(members), clock, _part(entry)))
    flag_sets = [set((blocks.get(c, first).get("flags") or blocks.get(c, first).get("features") or "").split())
                 for c in cpus]
    flags = frozenset(set.intersection(*flag_sets)) if flag_sets else frozenset()
    return Machine(arch=arch, model=_model(first, cores), cores=tuple(cores), flags=flags,
                   clock_source=", ".join(sorted(sources)) or None, ram_kb=ram_kb(meminfo))


def _model(entry: dict, cores: list[Core]) -> str | None:
    """The Arm core names from the part numbers where known (an ARM kernel's model name, if any, is a generic
    "ARMv8 Processor rev 1 (v8l)"), else cpuinfo's model name (x86), else the part numbers themselves."""
    names = []
    for core in cores:
        if core.part is not None:
            impl, part = core.part
            known = ARM_FP32_PER_CYCLE.get(part) if impl == ARM_LTD else None
            names.append(known[0] if known else f"implementer {impl:#x} part {part:#05x}")
    if entry.get("model name") and not any(n in (v[0] for v in ARM_FP32_PER_CYCLE.values()) for n in names):
        return entry["model name"]
    counted = {n: names.count(n) for n in dict.fromkeys(names)}
    joined = " + ".join(f"{k}x {n}" if len(counted) > 1 else n for n, k in counted.items())
    return joined or platform.processor() or None


# -- the peak estimate -----------------------------------------------------------------------------
def fp32_per_cycle(machine: Machine, core: Core) -> tuple[int, str] | None:
    """(fp32 ops per cycle of one core, how that number was reached), or None without a formula."""
    flags = machine.flags
    if machine.arch in X86:
        lanes, isa = (16, "AVX-512") if "avx512f" in flags else (8, "AVX") if "avx" in flags else (4, "SSE")
        units = 2 if "fma" in flags or "avx512f" in flags else 1
        what = "FMA units" if units == 2 else "add+multiply port pair"
        return units * lanes * 2, f"{units} {what} x {lanes} fp32 lanes ({isa}) x 2 ops"
    if machine.arch in ARM:
        if core.part is not None and core.part[0] == ARM_LTD and core.part[1] in ARM_FP32_PER_CYCLE:
            name, per_cycle = ARM_FP32_PER_CYCLE[core.part[1]]
            return per_cycle, f"{per_cycle} fp32 ops/cycle ({name})"
        if flags & {"asimd", "neon"}:
            return ARM_DEFAULT_PER_CYCLE, f"{ARM_DEFAULT_PER_CYCLE} fp32 ops/cycle (assumed: 2 NEON FMA pipes)"
    return None


def int8_factor(machine: Machine) -> tuple[int, str]:
    """int8 peak / fp32 peak, and why (see the module docstring)."""
    flags = machine.flags
    if machine.arch in ARM and "i8mm" in flags:
        return 8, "i8mm SMMLA"
    if flags & {"avx512_vnni", "avx_vnni", "asimddp"}:
        return 4, "VNNI" if machine.arch in X86 else "dot product"
    return 2, "widening multiply-adds"


def fp16_factor(machine: Machine) -> int | None:
    if ("avx512_fp16" in machine.flags and machine.arch in X86) or ("asimdhp" in machine.flags
                                                                     and machine.arch in ARM):
        return 2
    return None


def estimate_peaks(machine: Machine) -> tuple[dict | None, str]:
    """(peak table with ``fp32_gops``, ``int8_gops``, maybe ``fp16_gops``, ``formula``), or (None, why not).

    Gop/s rounded to 0.01; the formula is written out with this machine's numbers.
    """
    if not machine.cores:
        return None, "no usable core found"
    terms, fp32 = {}, 0.0
    for core in machine.cores:
        per_cycle = fp32_per_cycle(machine, core)
        if per_cycle is None:
            return None, f"no peak formula for the {machine.arch} architecture"
        if core.clock_ghz is None:
            return None, "the CPU clock is not readable here (no cpufreq, no cpu MHz in /proc/cpuinfo)"
        fp32 += core.clock_ghz * per_cycle[0]
        terms[(core.clock_ghz, per_cycle)] = terms.get((core.clock_ghz, per_cycle), 0) + 1
    formula = " + ".join(f"{n} core{'s' if n > 1 else ''} x {clock:g} GHz x {how}"
                         for (clock, (_, how)), n in terms.items())
    factor, why = int8_factor(machine)
    peak = {"fp32_gops": round(fp32, 2), "int8_gops": round(fp32 * factor, 2)}
    formula = f"fp32 = {formula} = {peak['fp32_gops']:g} Gop/s; int8 = {factor} x fp32 ({why})"
    half = fp16_factor(machine)
    if half:
        peak["fp16_gops"] = round(fp32 * half, 2)
        formula += f"; fp16 = {half} x fp32"
    peak["formula"] = formula
    return peak, ""
