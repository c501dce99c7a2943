"""Target descriptions: the shipped ones load, and every kind of mistake is named."""

import re
import tomllib

import pytest

from edgehad import targets
from edgehad.core.errors import UserInputError
from edgehad.targets import BUILTIN_DIR, ENV_VAR, list_targets, load_schema, load_target, validate_target

# A complete description (an x86 VM with AVX-512: what local.toml said before issue #15, when it held one
# machine's numbers): the template the schema tests edit. Named "local" so that write() can rename it.
LOCAL = """name = "local"
description = "An x86 VM: 2 cores of an Intel Xeon (AVX-512, VNNI, AMX)"
runtime = "ort"
execution_provider = "CPUExecutionProvider"
memory_bandwidth_gbs = 25.0
ram_kb = 24684084

[cpu]
cores = 2
clock_ghz = 2.6
isa = ["x86-64-v4", "avx2", "fma", "avx512f", "avx512_vnni"]
arch = "x86_64"
model = "Intel Xeon"

[peak]
fp32_gops = 332.8
int8_gops = 1331.2

[match]
arch = ["x86_64", "amd64"]
"""


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """An empty targets folder that load_target / list_targets look in."""
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    return tmp_path


def write(folder, name, text):
    path = folder / f"{name}.toml"
    path.write_text(text.replace('name = "local"', f'name = "{name}"'))
    return path


def test_local_file_holds_only_what_is_true_everywhere(monkeypatch):
    """local.toml states no machine's numbers; loading it adds this machine's (tests/unit/test_machine.py)."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    data = tomllib.loads((BUILTIN_DIR / "local.toml").read_text())
    assert set(data) == {"name", "description", "runtime", "execution_provider"}
    t = load_target("local")
    assert t["runtime"] == "ort" and "gpu" not in t and "match" not in t
    assert t["peak"]["source"] in ("estimate", "measured", "unknown")


def test_local_file_with_numbers_is_refused(folder):
    path = write(folder, "local", LOCAL)
    with pytest.raises(UserInputError, match=rf"^{re.escape(str(path))}: 'cpu' is not read from the file: the local "
                                             r"target describes the machine edgehad runs on; remove it"):
        load_target("local")


def test_every_shipped_target_is_valid(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    shipped = sorted(p.stem for p in BUILTIN_DIR.glob("*.toml") if p.name != "schema.toml")
    assert [t["name"] for t in list_targets()] == shipped
    assert "local" in shipped


def test_schema_documents_every_key():
    def walk(schema, prefix=""):
        for key, spec in schema.get("properties", {}).items():
            yield prefix + key, spec
            yield from walk(spec, f"{prefix}{key}.")

    schema = load_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"  # a JSON Schema, not a home-made one
    keys = dict(walk(schema))
    assert {"name", "runtime", "cpu.cores", "cpu.isa", "peak.fp32_gops", "peak.int8_gops", "ram_kb"} <= set(keys)
    assert [k for k, spec in keys.items() if not spec.get("description")] == []
    # every number has a declared range: nothing may be zero or negative
    numbers = {k: spec for k, spec in keys.items() if spec["type"] in ("number", "integer")}
    assert numbers and [k for k, spec in numbers.items() if not {"minimum", "exclusiveMinimum"} & set(spec)] == []


def test_load_by_path_and_env_override(folder):
    path = write(folder, "board", LOCAL)
    assert load_target(str(path))["name"] == "board"
    assert load_target(path)["name"] == "board"
    assert load_target("board")["cpu"]["cores"] == 2
    assert [t["name"] for t in list_targets()] == ["board"]
    with pytest.raises(UserInputError, match=r"unknown target 'local'; known targets: board"):
        load_target("local")


def test_float_takes_an_integer(folder):
    write(folder, "board", LOCAL.replace("fp32_gops = 332.8", "fp32_gops = 333"))
    value = load_target("board")["peak"]["fp32_gops"]
    assert value == 333.0 and isinstance(value, float)


@pytest.mark.parametrize(
    "old, new, message",
    [
        ('runtime = "ort"', 'runtime = "ort"\nrutime = "tflite"',
         r"unknown key 'rutime': valid keys are cpu, description, emulated,"),
        ("cores = 2", "cores = 2\nthreads = 4",
         r"unknown key 'cpu\.threads': valid keys are arch, clock_ghz, clock_source, cores"),
        ("int8_gops = 1331.2", "", r"peak: 'int8_gops' is a required property"),
        ('runtime = "ort"', "", r"'runtime' is a required property"),
        ("cores = 2", 'cores = "2"', r"cpu\.cores must be an integer in \[1, 4096\], got \"2\""),
        ("cores = 2", "cores = true", r"cpu\.cores must be an integer in \[1, 4096\], got true"),
        ("ram_kb = 24684084", "ram_kb = 0", r"ram_kb must be >= 1, got 0"),
        ('runtime = "ort"', 'runtime = "tensorflow"',
         r"runtime must be one of \"tflite\", \"ort\", got \"tensorflow\""),
        ('isa = ["x86-64-v4"', 'isa = [4, "x86-64-v4"', r"cpu\.isa\[0\] must be a non-empty string, got 4"),
        ('runtime = "ort"', 'runtime = "ort"\ngpu = "orin"', r"gpu must be a table, got \"orin\""),
        # defect 9: a peak that is not a finite positive number would print Infinity/NaN in profile --json
        ("fp32_gops = 332.8", "fp32_gops = inf", r"peak\.fp32_gops must be a finite number, got inf"),
        ("fp32_gops = 332.8", "fp32_gops = nan", r"peak\.fp32_gops must be a finite number, got nan"),
        ("fp32_gops = 332.8", "fp32_gops = -1.0", r"peak\.fp32_gops must be > 0, got -1\.0"),
        ("fp32_gops = 332.8", "fp32_gops = 0", r"peak\.fp32_gops must be > 0, got 0"),
        ("memory_bandwidth_gbs = 25.0", "memory_bandwidth_gbs = -inf",
         r"memory_bandwidth_gbs must be a finite number, got -inf"),
        ("clock_ghz = 2.6", "clock_ghz = 2600", r"cpu\.clock_ghz must be in \(0, 10\], got 2600"),
    ],
    ids=["unknown", "unknown-nested", "missing-nested", "missing", "type", "bool-not-int", "positive", "choices",
         "list", "table", "fp32-inf", "fp32-nan", "fp32-negative", "fp32-zero", "bandwidth-minus-inf", "ghz-range"],
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


# -- the shipped device descriptions --------------------------------------------------------------
DEVICES = ["rpi4", "rpi5", "jetson-nano", "jetson-orin-nano", "generic-aarch64"]


@pytest.mark.parametrize("name", DEVICES)
def test_device_targets_hold_together(name, monkeypatch):
    """Each peak agrees with its own derivation: cores x GHz x (ops per cycle per core)."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    t = load_target(name)
    cpu, peak = t["cpu"], t["peak"]
    assert cpu["arch"] == "aarch64" and "neon" in cpu["isa"]
    per_cycle = peak["fp32_gops"] / (cpu["cores"] * cpu["clock_ghz"])
    assert per_cycle in (pytest.approx(4), pytest.approx(8), pytest.approx(16))  # A53 / A57,A72 / A76,A78
    if "dotprod" in cpu["isa"]:
        assert peak["int8_gops"] == pytest.approx(4 * peak["fp32_gops"])  # SDOT: 16 MACs where FMLA does 4
    else:
        assert peak["int8_gops"] == pytest.approx(2 * peak["fp32_gops"])  # widening SMLAL: 8 MACs
    assert t["match"] and "python" in t["ssh"]
    text = (BUILTIN_DIR / f"{name}.toml").read_text()
    assert text.count("# ") > 10 and "estimate" in text  # figures are sourced and estimates say so
    assert ("gpu" in t) == name.startswith("jetson")
    if "gpu" in t:
        assert t["gpu"]["shared_memory"] is True


def test_jetson_gpu_peaks():
    nano, orin = load_target("jetson-nano")["gpu"], load_target("jetson-orin-nano")["gpu"]
    assert nano["fp32_gflops"] == pytest.approx(128 * 2 * 0.9216, abs=0.05)
    assert "int8_gops" not in nano  # sm_53 has no DP4A
    assert orin["fp32_gflops"] == 1024 * 2 * 0.625
    assert orin["int8_gops"] == 20480.0  # the data sheet's 20 dense TOPS


# -- closest_target: from what the agent reports on each board ----------------------------------
def _cpuinfo(cores, features, part, variant="0x0", revision=1, model_name=None, tail=""):
    """/proc/cpuinfo as an arm64 Linux kernel writes it (arch/arm64/kernel/cpuinfo.c), one block per core."""
    blocks = []
    for i in range(cores):
        lines = [f"processor\t: {i}"]
        if model_name:  # NVIDIA's L4T 4.9 kernel adds this line; mainline does not
            lines.append(f"model name\t: {model_name}")
        lines += ["BogoMIPS\t: 108.00", f"Features\t: {features}", "CPU implementer\t: 0x41",
                  "CPU architecture: 8", f"CPU variant\t: {variant}", f"CPU part\t: {part}",
                  f"CPU revision\t: {revision}"]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n\n" + tail


# Raspberry Pi OS (64-bit) kernels append the board's lines after the per-core blocks.
RPI4 = _cpuinfo(4, "fp asimd evtstrm crc32 cpuid", "0xd08", revision=3,
                tail="Hardware\t: BCM2835\nRevision\t: d03114\nSerial\t\t: 10000000a1b2c3d4\n"
                     "Model\t\t: Raspberry Pi 4 Model B Rev 1.4\n")
RPI5 = _cpuinfo(4, "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop "
                   "asimddp", "0xd0b", variant="0x4", revision=1,
                tail="Revision\t: d04170\nSerial\t\t: a1b2c3d4e5f60718\nModel\t\t: Raspberry Pi 5 Model B Rev 1.0\n")
NANO = _cpuinfo(4, "fp asimd evtstrm aes pmull sha1 sha2 crc32", "0xd07", variant="0x1",
                model_name="ARMv8 Processor rev 1 (v8l)")
ORIN = _cpuinfo(6, "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop "
                   "asimddp uscat ilrcpc flagm paca pacg", "0xd42", variant="0x0", revision=1)
PI4_MAINLINE = _cpuinfo(4, "fp asimd evtstrm crc32 cpuid", "0xd08", revision=3)  # Debian's own kernel
QUARTZ64 = _cpuinfo(4, "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc "
                       "dcpop asimddp", "0xd05", variant="0x2")  # Rockchip RK3566, 4x Cortex-A55
GRAVITON2 = _cpuinfo(2, "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc "
                        "dcpop asimddp ssbs", "0xd0c", variant="0x3")  # Neoverse N1 cloud VM, no device tree


def _agent_machine(monkeypatch, tmp_path, cpuinfo, dt_model, arch="aarch64"):
    """What the real agent's machine() reports when the board's files hold these contents."""
    import builtins
    import platform

    from edgehad.profiling import agent

    files = {"/proc/cpuinfo": tmp_path / "cpuinfo", "/proc/device-tree/model": tmp_path / "model"}
    files["/proc/cpuinfo"].write_text(cpuinfo)
    if dt_model is not None:  # the device tree stores the string NUL-terminated
        files["/proc/device-tree/model"].write_bytes(dt_model.encode() + b"\0")

    def board_open(path, *args, **kwargs):
        return builtins.open(files.get(path, path), *args, **kwargs)

    monkeypatch.setattr(agent, "open", board_open, raising=False)
    monkeypatch.setattr(platform, "machine", lambda: arch)
    return agent.machine()


@pytest.mark.parametrize("cpuinfo, dt_model, expected", [
    (RPI4, "Raspberry Pi 4 Model B Rev 1.4", "rpi4"),
    (RPI4, "Raspberry Pi 400 Rev 1.0", "rpi4"),
    (RPI4, "Raspberry Pi Compute Module 4 Rev 1.0", "rpi4"),
    (RPI5, "Raspberry Pi 5 Model B Rev 1.0", "rpi5"),
    (NANO, "NVIDIA Jetson Nano Developer Kit", "jetson-nano"),
    (ORIN, "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super", "jetson-orin-nano"),
    (ORIN, "NVIDIA Jetson Orin Nano Developer Kit", "jetson-orin-nano"),
    (PI4_MAINLINE, None, "rpi4"),  # no device tree readable: the A72's part number decides
    (ORIN, None, "jetson-orin-nano"),
    (QUARTZ64, "Pine64 RK3566 Quartz64-A Board", "generic-aarch64"),  # a little core
    (GRAVITON2, None, "generic-aarch64"),  # an unknown aarch64 machine
], ids=["pi4", "pi400", "cm4", "pi5", "nano", "orin-super", "orin-jp5", "pi4-part", "orin-part", "a55", "n1"])
def test_closest_target_from_board_files(monkeypatch, tmp_path, cpuinfo, dt_model, expected):
    monkeypatch.delenv(ENV_VAR, raising=False)
    machine = _agent_machine(monkeypatch, tmp_path, cpuinfo, dt_model)
    assert machine["arch"] == "aarch64"
    assert targets.closest_target(machine) == expected


def test_what_the_agent_reports_per_board(monkeypatch, tmp_path):
    # pins the machine-dict formats closest_target reads
    assert _agent_machine(monkeypatch, tmp_path, PI4_MAINLINE, None)["cpu"] == "implementer 0x41 part 0xd08"
    nano = _agent_machine(monkeypatch, tmp_path, NANO, "NVIDIA Jetson Nano Developer Kit")
    assert (nano["cpu"], nano["device_model"]) == ("ARMv8 Processor rev 1 (v8l)", "NVIDIA Jetson Nano Developer Kit")


def test_closest_target_on_this_machine(monkeypatch):
    from edgehad.profiling import agent

    monkeypatch.delenv(ENV_VAR, raising=False)
    machine = agent.machine()  # this x86_64 development machine, read for real
    assert machine["arch"] == "x86_64"
    # local describes the machine edgehad runs on, so no device reached with --host is matched to it
    assert targets.closest_target(machine) is None


@pytest.mark.parametrize("machine, expected", [
    ({"arch": "aarch64", "cpu": "implementer 0x41 part 0xd0b"}, "rpi5"),
    ({"arch": "aarch64", "cpu": "ARMv8 Processor rev 1 (v8l)", "cpu_implementer": "0x41", "cpu_part": "0xd07"},
     "jetson-nano"),
    ({"arch": "aarch64", "cpu": "implementer 0x51 part 0xd08"}, "generic-aarch64"),  # not Arm's 0xd08
    ({"arch": "aarch64", "cpu": "Cortex-A72", "device_model": None}, "rpi4"),
    ({"arch": "arm64"}, "generic-aarch64"),
    ({"arch": "AMD64", "cpu": "AMD Ryzen 9"}, None),  # an x86 host is not this machine
    ({"arch": "riscv64", "cpu": None, "device_model": "StarFive VisionFive 2 v1.3B"}, None),
    ({}, None),
    (None, None),
])
def test_closest_target_from_machine_dicts(monkeypatch, machine, expected):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert targets.closest_target(machine) == expected


def test_a_new_device_is_one_file(folder):
    """A board described only by its new TOML is recognised, and the longest match wins over a shorter one."""
    match = '\n[match]\ndevice_model = ["{}"]\narch = ["aarch64"]\n'
    write(folder, "anyboard", LOCAL.split("\n[match]")[0] + match.format("Board"))
    write(folder, "myboard", LOCAL.split("\n[match]")[0] + match.format("My Board v2"))
    assert targets.closest_target({"arch": "aarch64", "device_model": "Acme My Board v2 rev A"}) == "myboard"
    assert targets.closest_target({"arch": "aarch64", "device_model": "Other Board"}) == "anyboard"
    assert targets.closest_target({"arch": "aarch64"}) == "anyboard"  # a tie: by name
    assert targets.closest_target({"arch": "x86_64"}) is None


def test_match_table_is_checked(folder):
    path = write(folder, "board", LOCAL.replace('arch = ["x86_64", "amd64"]', 'arch = "x86_64"'))
    with pytest.raises(UserInputError, match=rf"^{re.escape(str(path))}: match\.arch must be a list, got \"x86_64\""):
        load_target("board")
    write(folder, "board", LOCAL.replace('arch = ["x86_64", "amd64"]', 'model = ["x"]'))
    with pytest.raises(UserInputError,
                       match=r"unknown key 'match\.model': valid keys are arch, cpu, cpu_part, device_model"):
        targets.closest_target({"arch": "x86_64"})
