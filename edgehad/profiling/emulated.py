"""The ``emulated-aarch64`` target: the agent on ARM builds of the runtimes, here, under qemu user-mode emulation.

What it is for: checking that a model *loads and runs correctly* on the
aarch64 wheels of numpy, onnxruntime and LiteRT before a board is at hand. Its
timings mean nothing: every ARM instruction is translated by qemu on the host
CPU (tens of times slower than a real board, and not in a constant ratio), so
documents carry ``"emulated": true``, the report says "emulated" and no
roofline is drawn.

The pieces, and why each is there:

* **An arm64 Debian userland** (bookworm: python 3.11, glibc 2.36), made once by
  ``edgehad targets setup emulated-aarch64`` (:func:`setup_emulated`).
  ``debootstrap --download-only`` fetches the .debs of a minimal system plus
  python (it needs no root in that mode, unlike ``--foreign``, which also
  unpacks the base system and wants root), and ``dpkg-deb -x`` unpacks only the
  packages python and the runtimes' C++ code need (the dependency closure of
  python3.11-minimal, libpython3.11-stdlib and libstdc++6) into ``root/``. No
  maintainer script ever runs: they are arm64 programs and nothing here needs them.
* **aarch64 wheels** of numpy, onnxruntime and ai-edge-litert, installed by the
  host's pip with ``--platform manylinux_2_X_aarch64 --python-version 3.11
  --only-binary=:all: --no-deps`` into ``root/opt/edgehad-site``, pinned to the
  host venv's versions where such a wheel exists (so both sides run the same
  release). These three are all the agent imports; setup proves it by importing
  them under emulation before the folder counts as ready. pip's ``--platform``
  does not widen a manylinux_2_X tag to older glibcs, so every tag from
  manylinux_2_17 (manylinux2014) up to bookworm's glibc 2.36 is passed.
* **qemu-aarch64-static -L ROOT**: user-mode emulation of one ARM process. ``-L``
  makes qemu look up absolute paths in ROOT first (the ELF interpreter
  ``/lib/ld-linux-aarch64.so.1``, libc, libpython), and fall back to the host's
  file system for paths ROOT does not hold: the model, the agent and temporary
  files keep their host paths. To be sure no file of the userland shadows them,
  the model, the inputs and a copy of the agent are placed in a fresh temporary
  folder (ROOT has no such folder).
* **A fake ARM /proc/cpuinfo and a bare /sys/devices/system/cpu**: onnxruntime
  and LiteRT probe the CPU at import (pytorch/cpuinfo inside them parses
  /proc/cpuinfo and the per-core sysfs folders). qemu passes the host's x86
  files through, and both runtimes then die with SIGSEGV (measured: ``import
  onnxruntime`` exits 139 under plain qemu). With a Cortex-A76-like cpuinfo
  bind-mounted over /proc/cpuinfo and a tmpfs over /sys/devices/system/cpu
  holding only ``possible``, ``present`` and ``online``, both load and run models.
* **unshare -m** (root) or **unshare -rm** (anyone, where unprivileged user
  namespaces are allowed): those two mounts are made in a private mount
  namespace of the one emulated process, so the host's /proc and /sys are
  never touched and nothing is left mounted when it exits.

The ready folder is ``~/.cache/edgehad/emulated-aarch64`` (``$EDGEHAD_EMULATED_DIR``
overrides) with ``root/`` and ``manifest.json`` (what was installed, when).
Setup builds it in a sibling folder and renames it into place at the end, so
a failed setup leaves nothing half-made. After setup the target runs offline.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from edgehad.core.children import run_child
from edgehad.core.errors import EdgehadError, UserInputError
from edgehad.profiling.job import Job, check_file
from edgehad.profiling.local import AGENT_FILES, parse_agent_output

NAME = "emulated-aarch64"
ENV_DIR = "EDGEHAD_EMULATED_DIR"
SETUP_HINT = f"run `edgehad targets setup {NAME}` first"
MANIFEST = "manifest.json"
FORMAT = 1  # bump when the folder's layout changes; an older folder then asks for setup again

SUITE = "bookworm"                 # Debian 12: python 3.11 (edgehad's floor), glibc 2.36
MIRROR = "http://deb.debian.org/debian"
PYTHON = "usr/bin/python3.11"      # inside root/
SITE = "opt/edgehad-site"          # inside root/: the aarch64 wheels
GLIBC_MINOR = 36                   # bookworm's glibc 2.36: the newest manylinux tag its wheels may carry
# Time limits of the programs run here (edgehad.core.children: every child has one). Generous: they
# stop a hang (a stalled download, a loop under emulation), not a slow network or a slow model.
CHECK_TIMEOUT_S = 60.0             # the mount-namespace check, dpkg-deb on one .deb
DOWNLOAD_TIMEOUT_S = 1800.0        # debootstrap's download, pip fetching one wheel
RUN_TIMEOUT_S = 4 * 3600.0         # the agent under emulation without --timeout (tens of times slower than a board)
# python itself, its stdlib's C extensions' libraries, and the C++ runtime onnxruntime and LiteRT link.
ROOT_PACKAGES = ("python3.11-minimal", "libpython3.11-stdlib", "libstdc++6")
# Dependencies that only installing needs (no maintainer script runs here), so they are not unpacked.
INSTALL_ONLY = frozenset({"dpkg"})
WHEELS = ("numpy", "onnxruntime", "ai-edge-litert")
WHEEL_MODULES = {"numpy": "numpy", "onnxruntime": "onnxruntime", "ai-edge-litert": "ai_edge_litert.interpreter"}

# Prerequisite programs and the Debian package that has each.
PROGRAMS = {"qemu-aarch64-static": "qemu-user-static", "debootstrap": "debootstrap",
            "dpkg-deb": "dpkg", "unshare": "util-linux", "mount": "mount"}

# A Cortex-A76-like core as an aarch64 kernel lists it (ARMv8.2-A with dotprod; implementer 0x41 = Arm,
# part 0xd0b = Cortex-A76, from Arm's MIDR table). Only its shape matters: the runtimes' probing
# must find ARM fields; the kernels they pick follow qemu's HWCAPs, not this text.
_CPUINFO_CORE = ("processor\t: {i}\nBogoMIPS\t: 50.00\n"
                 "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid "
                 "asimdrdm lrcpc dcpop asimddp\n"
                 "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x4\nCPU part\t: 0xd0b\n"
                 "CPU revision\t: 1\n")

# Run by `unshare`, already in a private mount namespace: $1 the fake cpuinfo, $2 the cpu list
# ("0-1"), the rest the command. `exec` keeps one process, so a timeout's kill reaches qemu.
_LAUNCHER = r"""set -e
mount --bind "$1" /proc/cpuinfo
mount -t tmpfs -o size=64k,mode=0755 edgehad-cpu /sys/devices/system/cpu
for f in possible present online; do printf '%s\n' "$2" > "/sys/devices/system/cpu/$f"; done
shift 2
exec "$@"
"""


# -- where ------------------------------------------------------------------
def emulated_dir() -> Path:
    """The ready folder: ``$EDGEHAD_EMULATED_DIR``, else ``~/.cache/edgehad/emulated-aarch64``."""
    override = os.environ.get(ENV_DIR)
    return Path(override).expanduser() if override else Path.home() / ".cache" / "edgehad" / NAME


def read_manifest(folder: Path | None = None) -> dict | None:
    """The folder's manifest if it is a complete, current setup, else None."""
    folder = folder or emulated_dir()
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return None
    return manifest if (folder / "root" / PYTHON).is_file() else None


def ready_dir() -> Path:
    """The set-up folder, or a UserInputError telling the user to run the setup."""
    folder = emulated_dir()
    if read_manifest(folder) is None:
        raise UserInputError(f"the {NAME} target is not set up in {folder}: {SETUP_HINT}")
    return folder


# -- prerequisites ----------------------------------------------------------
def _missing_program(names) -> None:
    for program in names:
        if shutil.which(program) is None:
            raise UserInputError(f"{NAME} needs {program}, which is not installed: "
                                 f"sudo apt-get install {PROGRAMS[program]}")


def _unshare_flags() -> list[str]:
    """``-m`` as root; otherwise ``-rm``: a user namespace where we are root, and a mount namespace in it."""
    return ["-m"] if os.geteuid() == 0 else ["-rm"]


def _check_namespace() -> None:
    """The launcher's two mounts, for real, on a trivial command: a clear error now beats a crash later."""
    with tempfile.TemporaryDirectory(prefix="edgehad-emulated-check-") as tmp:
        cpuinfo = Path(tmp) / "cpuinfo"
        cpuinfo.write_text(_cpuinfo(1))
        cmd = ["unshare", *_unshare_flags(), "sh", "-c", _LAUNCHER, "edgehad-emulated", str(cpuinfo), "0", "true"]
        try:
            proc = run_child(cmd, timeout=CHECK_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc = subprocess.CompletedProcess(cmd, -9, "", f"no answer in {CHECK_TIMEOUT_S:g} s")
    if proc.returncode != 0:
        why = " ".join(proc.stderr.split())[-300:] or f"exit code {proc.returncode}"
        raise UserInputError(f"{NAME} needs a private mount namespace, and `unshare {' '.join(_unshare_flags())}` "
                             f"failed ({why}): run as root, or allow unprivileged user namespaces "
                             f"(sysctl kernel.unprivileged_userns_clone=1; on Ubuntu also "
                             f"kernel.apparmor_restrict_unprivileged_userns=0)")


def check_prerequisites(setup: bool = True) -> None:
    """Each missing prerequisite as a UserInputError naming the Debian package to install (exit 2)."""
    programs = PROGRAMS if setup else {p: PROGRAMS[p] for p in ("qemu-aarch64-static", "unshare", "mount")}
    _missing_program(programs)
    if setup and importlib.util.find_spec("pip") is None:  # the wheels are fetched by this python's pip
        raise UserInputError(f"{NAME} setup needs pip in {sys.executable}: run `{sys.executable} -m ensurepip`")
    _check_namespace()


# -- setup ------------------------------------------------------------------
def _cpuinfo(cores: int) -> str:
    return "\n".join(_CPUINFO_CORE.format(i=i) for i in range(cores)) + "\n"


def _run(cmd, what: str, timeout: float = CHECK_TIMEOUT_S) -> subprocess.CompletedProcess:
    try:
        proc = run_child(cmd, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise EdgehadError(f"{NAME} setup: {what} did not finish in {timeout:g} s; check the network and run the "
                           f"setup again") from None
    if proc.returncode != 0:
        tail = " ".join((proc.stderr or proc.stdout).split())[-600:]
        raise EdgehadError(f"{NAME} setup: {what} failed (exit code {proc.returncode}): {tail}; "
                           f"check the network and run the setup again")
    return proc


def _remove(path: Path) -> None:
    """rmtree that also removes what a .deb unpacked read-only (a non-root user cannot delete from a 0555 folder)."""
    def retry(func, p, _exc):
        os.chmod(os.path.dirname(p), stat.S_IRWXU)
        func(p)

    if path.exists() or path.is_symlink():
        handler = {"onexc": retry} if sys.version_info >= (3, 12) else {"onerror": retry}  # onerror: deprecated in 3.12
        shutil.rmtree(path, **handler)


def _control(deb: Path) -> dict:
    proc = _run(["dpkg-deb", "-f", str(deb), "Package", "Version", "Depends", "Pre-Depends"], f"reading {deb.name}")
    fields, key = {}, None
    for line in proc.stdout.splitlines():
        if line[:1].isspace() and key:  # a folded continuation line
            fields[key] += " " + line.strip()
        elif ":" in line:
            key, value = line.split(":", 1)
            fields[key.strip()] = value.strip()
    return fields


def _alternatives(depends: str) -> list[list[str]]:
    """``"a (>= 1) | b:any, c"`` as ``[["a", "b"], ["c"]]``: versions and arch qualifiers dropped."""
    groups = []
    for group in filter(None, (g.strip() for g in depends.split(","))):
        groups.append([re.split(r"[\s(:\[]", alt.strip(), maxsplit=1)[0] for alt in group.split("|")])
    return groups


def _closure(debs: dict[str, Path], wanted) -> dict[str, dict]:
    """The packages ``wanted`` needs (Depends and Pre-Depends, first available alternative), name -> control."""
    found, todo = {}, list(wanted)
    while todo:
        name = todo.pop()
        if name in found:
            continue
        if name not in debs:
            raise EdgehadError(f"{NAME} setup: debootstrap did not download {name}; run the setup again")
        found[name] = control = _control(debs[name])
        for group in _alternatives(control.get("Pre-Depends", "") + "," + control.get("Depends", "")):
            present = [alt for alt in group if alt in debs and alt not in INSTALL_ONLY]
            if present:  # a virtual package nothing here provides (debconf-2.0) is not needed to run python
                todo.append(present[0])
    return found


def _host_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _install_wheels(site: Path, progress) -> dict[str, str]:
    """The aarch64 wheels into ``site``: the host's version of each where it has an aarch64 wheel, else the newest."""
    platforms = [a for m in range(GLIBC_MINOR, 16, -1) for a in ("--platform", f"manylinux_2_{m}_aarch64")]
    base = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
            "--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
            *platforms, "--platform", "manylinux2014_aarch64", "--target", str(site)]
    for name in WHEELS:
        pinned = _host_version(name)
        specs = [f"{name}=={pinned}", name] if pinned else [name]
        for spec in specs:
            progress(f"installing the aarch64 wheel of {spec}")
            try:
                proc = run_child([*base, spec], timeout=DOWNLOAD_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc = subprocess.CompletedProcess(spec, -9, "", f"pip did not finish in {DOWNLOAD_TIMEOUT_S:g} s")
            if proc.returncode == 0:
                break
            if spec != specs[-1]:
                progress(f"no aarch64 wheel of {spec}; taking the newest {name} instead")
        else:
            tail = " ".join(proc.stderr.split())[-600:]
            raise EdgehadError(f"{NAME} setup: pip could not install an aarch64 wheel of {name} "
                               f"(exit code {proc.returncode}): {tail}; check the network and run the setup again")
    return {name: _site_version(site, name) for name in WHEELS}


def _site_version(site: Path, name: str) -> str:
    """The version pip put in ``site``, from its .dist-info folder's name."""
    stem = name.replace("-", "_").lower()
    for info in site.glob("*.dist-info"):
        dist, _, version = info.name[: -len(".dist-info")].partition("-")
        if dist.lower() == stem:
            return version
    raise EdgehadError(f"{NAME} setup: pip reported success but {name} is not in {site}; run the setup again")


def setup_emulated(force: bool = False, progress: Callable[[str], None] | None = None) -> Path:
    """Make the ready folder (see the module docstring) and return it; a no-op when it is already there.

    Downloads about 90 MB (Debian .debs and three wheels) from deb.debian.org and PyPI.
    """
    progress = progress or (lambda message: None)
    folder = emulated_dir()
    if not force and read_manifest(folder) is not None:
        progress(f"{NAME} is already set up in {folder} (`force=True` downloads it again)")
        return folder
    made_here = (folder / MANIFEST).exists() or (folder / "root").exists()  # an older or broken setup: replaced
    if folder.exists() and not made_here and (not folder.is_dir() or any(folder.iterdir())):
        raise UserInputError(f"{folder} exists and is not an {NAME} folder edgehad made: remove it, or point "
                             f"{ENV_DIR} at another folder")
    check_prerequisites(setup=True)

    started = time.monotonic()
    folder.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(folder)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.partial-{os.getpid()}-", dir=folder.parent))
    staging.chmod(0o755)  # mkdtemp's 0700 would hide a shared cache from other users
    try:
        manifest = _build(staging, progress)
        manifest["setup_seconds"] = round(time.monotonic() - started, 1)
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        old = None
        if folder.exists() or folder.is_symlink():
            old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
            folder.rename(old)
        try:
            staging.rename(folder)
        except OSError:
            if old is not None:
                old.rename(folder)  # put the previous setup back
            raise
        if old is not None:
            _remove(old)
    except BaseException:
        _remove(staging)
        raise
    progress(f"done in {manifest['setup_seconds']:.0f} s")
    return folder


def _remove_abandoned(folder: Path) -> None:
    """Staging and old folders of setups that were killed (SIGKILL, a cancelled CI job): their pid is gone."""
    for stale in folder.parent.glob(f".{folder.name}.*-*"):
        match = re.fullmatch(rf"\.{re.escape(folder.name)}\.(?:partial|old)-(\d+)(?:-.*)?", stale.name)
        if not match:
            continue
        try:
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:
            _remove(stale)
        except PermissionError:
            pass  # alive, someone else's


def _build(staging: Path, progress) -> dict:
    """Download, unpack, install and smoke-test everything inside ``staging``; the manifest."""
    downloads, root = staging / "debootstrap", staging / "root"
    downloads.mkdir()
    root.mkdir()
    progress(f"downloading an arm64 Debian {SUITE} userland from {MIRROR} (debootstrap)")
    _run(["debootstrap", "--download-only", "--arch=arm64", "--variant=minbase",
          f"--include={','.join(ROOT_PACKAGES)}", SUITE, str(downloads), MIRROR], "debootstrap",
         timeout=DOWNLOAD_TIMEOUT_S)
    debs = {}
    for line in (downloads / "debootstrap" / "debpaths").read_text().splitlines():
        name, _, where = line.partition(" ")
        debs[name] = downloads / where.lstrip("/")
    packages = _closure(debs, ROOT_PACKAGES)
    progress(f"unpacking {len(packages)} of {len(debs)} packages (python and what it links)")
    for name in sorted(packages):
        _run(["dpkg-deb", "-x", str(debs[name]), str(root)], f"unpacking {debs[name].name}", timeout=600)
    _remove(downloads)
    if not (root / PYTHON).is_file():
        raise EdgehadError(f"{NAME} setup: {PYTHON} is missing after unpacking; run the setup again")

    site = root / SITE
    wheels = _install_wheels(site, progress)

    progress("checking that python and the runtimes start under emulation")
    probe = "import json, platform, sys; " + "; ".join(f"import {m}" for m in WHEEL_MODULES.values()) + \
            "; print(json.dumps({'arch': platform.machine(), 'python': platform.python_version()}))"
    try:
        proc = _emulated(staging, ["-c", probe], timeout=600)
    except subprocess.TimeoutExpired:
        raise EdgehadError(f"{NAME} setup: python and the runtimes did not start under emulation in 600 s") from None
    try:
        seen = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        seen = None
    if proc.returncode != 0 or not isinstance(seen, dict) or seen.get("arch") != "aarch64":
        tail = " ".join((proc.stderr + proc.stdout).split())[-600:]
        raise EdgehadError(f"{NAME} setup: the runtimes do not start under emulation "
                           f"(exit code {proc.returncode}): {tail}")
    return {"format": FORMAT, "target": NAME, "suite": SUITE, "mirror": MIRROR, "python": seen["python"],
            "packages": {n: c.get("Version") for n, c in sorted(packages.items())}, "wheels": wheels,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


# -- running ----------------------------------------------------------------
def _emulated(folder: Path, args, timeout: float | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python3.11 ARGS`` of ``folder/root`` under qemu, in its own mount namespace with an ARM CPU view.

    ``timeout`` (None: RUN_TIMEOUT_S): past it, subprocess.TimeoutExpired, with qemu killed.
    """
    root = folder / "root"
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="edgehad-emulated-run-") as tmp:
        cpuinfo = Path(tmp) / "cpuinfo"
        cpuinfo.write_text(_cpuinfo(cores))
        # A clean environment: nothing of the host's python setup (PYTHONHOME, user site) leaks in.
        # HOME too: whatever the runtimes persist (onnxruntime's telemetry id) stays in the temporary folder.
        run_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp, "LANG": "C.UTF-8",
                   "TMPDIR": tmp, "PYTHONPATH": str(root / SITE), "PYTHONNOUSERSITE": "1",
                   "PYTHONDONTWRITEBYTECODE": "1", "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
                   **(env or {})}
        cmd = ["unshare", *_unshare_flags(), "sh", "-c", _LAUNCHER, "edgehad-emulated", str(cpuinfo),
               f"0-{cores - 1}", shutil.which("qemu-aarch64-static") or "qemu-aarch64-static",
               "-L", str(root), str(root / PYTHON), *map(str, args)]
        return run_child(cmd, timeout=timeout or RUN_TIMEOUT_S, env=run_env)


def run_emulated_python(args, timeout: float | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the emulated aarch64 python with ``args`` (e.g. ``["script.py", "x"]``); stdout/stderr captured as text.

    Paths in ``args`` are host paths; keep them outside the userland's folders (a temporary folder is safe).
    """
    folder = ready_dir()
    check_prerequisites(setup=False)
    return _emulated(folder, args, timeout=timeout, env=env)


def _place(path: Path, folder: Path, name: str | None = None) -> Path:
    """``path`` inside ``folder`` under ``name`` (default its own): a hard link where possible, else a copy."""
    folder.mkdir(parents=True, exist_ok=True)
    placed = folder / (name or path.name)
    try:
        os.link(path, placed)
    except OSError:
        shutil.copyfile(path, placed)
    return placed


def profile_emulated(path, job: Job) -> dict:
    """Measure one file with the agent under emulation; the agent's document, marked emulated."""
    folder = ready_dir()
    check_prerequisites(setup=False)
    path = shown = check_file(path)  # str(shown): the file as the user typed it
    with tempfile.TemporaryDirectory(prefix="edgehad-emulated-") as tmp:
        tmp = Path(tmp)
        model = _place(path.resolve(), tmp / "model")
        inputs = _place(Path(job.inputs).resolve(), tmp / "inputs") if job.inputs else None
        agent, *_ = [_place(source, tmp / "agent", name) for name, source in AGENT_FILES.items()]
        args = [str(agent), *job.agent_args(str(model), str(inputs) if inputs else None)]
        limit = job.timeout or RUN_TIMEOUT_S
        try:
            proc = _emulated(folder, args, timeout=limit)
        except subprocess.TimeoutExpired:
            raise UserInputError(f"{shown}: profiling under emulation took longer than {limit:g} s; "
                                 f"use fewer `runs` (emulation is tens of times slower than a board)") from None
        rename = {str(model): str(shown)}
        if inputs:
            rename[str(inputs)] = str(job.inputs)
    document = parse_agent_output(proc.stdout, proc.stderr, proc.returncode, shown, rename)
    arch = (document.get("machine") or {}).get("arch")
    if arch != "aarch64":
        raise EdgehadError(f"{shown}: the emulated agent ran as {arch!r}, not aarch64: the folder "
                           f"{folder} is broken; run `edgehad targets setup {NAME}` with `force=True`")
    document["path"] = str(shown)
    document["host"] = NAME
    document["emulated"] = True
    return document
