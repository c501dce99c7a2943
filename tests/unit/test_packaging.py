"""The package as users get it: the wheel's contents, a non-editable install, an ARM board's install (issue #14)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# glibc 2.17 (manylinux2014) .. 2.39: Raspberry Pi OS bookworm has 2.36, JetPack 6 (Ubuntu 22.04) 2.35
AARCH64_TAGS = ["manylinux2014_aarch64", *(f"manylinux_2_{v}_aarch64" for v in range(17, 40))]


def test_listed_packages_are_every_package_folder():
    """pyproject lists packages by hand (two are mapped from the top-level folders): none may be missed."""
    found = {p.parent.relative_to(ROOT).as_posix().replace("/", ".") for p in (ROOT / "edgehad").rglob("__init__.py")
             if "__pycache__" not in p.parts}
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    assert listed == found | {"edgehad.converters", "edgehad.target_files"}
    assert PYPROJECT["tool"]["setuptools"]["package-dir"] == {"edgehad.converters": "converters",
                                                              "edgehad.target_files": "targets"}
    assert (ROOT / "edgehad" / "py.typed").is_file()


def test_recipes_and_targets_come_from_the_package():
    from importlib import resources

    from edgehad.core.recipe import CONVERTERS_DIR
    from edgehad.targets import BUILTIN_DIR

    assert sorted(p.name for p in resources.files("edgehad.converters").iterdir() if p.name.endswith(".toml")) \
        == sorted(p.name for p in (ROOT / "converters").glob("*.toml"))
    assert {p.name for p in BUILTIN_DIR.glob("*.toml")} == {p.name for p in (ROOT / "targets").glob("*.toml")}
    assert (CONVERTERS_DIR / "float.toml").is_file()


def _aarch64_requirements() -> list[str]:
    """The base dependencies whose environment markers hold on Linux aarch64 (pip would judge them by this host)."""
    from packaging.requirements import Requirement

    env = {"platform_machine": "aarch64", "sys_platform": "linux", "platform_system": "Linux",
           "python_version": "3.11", "python_full_version": "3.11.7", "implementation_name": "cpython",
           "os_name": "posix", "platform_python_implementation": "CPython", "extra": ""}
    kept = []
    for text in PYPROJECT["project"]["dependencies"]:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate(env):
            req.marker = None
            kept.append(str(req))
    return kept


@pytest.mark.slow
def test_the_base_install_resolves_for_linux_aarch64(tmp_path):
    """pip's resolver, against the real index, for a Raspberry Pi / Jetson: binary wheels only."""
    reqs = _aarch64_requirements()
    assert not any(r.startswith(("litert-torch", "tflite-micro")) for r in reqs)
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed", "--only-binary=:all:",
           "--python-version", "3.11", "--implementation", "cp", "--target", str(tmp_path / "t"),
           *(f"--platform={tag}" for tag in AARCH64_TAGS), *reqs]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    said = proc.stdout + proc.stderr
    if proc.returncode != 0 and any(s in said for s in ("NewConnectionError", "Temporary failure in name resolution",
                                                        "Network is unreachable", "ProxyError")):
        pytest.skip(f"the package index is not reachable from here: {said.strip().splitlines()[-1]}")
    assert proc.returncode == 0, said[-3000:]


@pytest.mark.slow
def test_a_wheel_install_works_like_a_checkout(tmp_path):
    """Build the wheel, install it (no -e) into a fresh venv, and run convert --recipe int8, targets and profile.

    The fresh venv sees this environment's third-party packages through a .pth line (so no
    multi-GB download), never the checkout: it runs from tmp_path, and a .pth line adds a
    folder without running the .pth files in it (the editable install's finder stays off).
    """
    wheels = tmp_path / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(wheels), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = wheels.glob("edgehad-*.whl")
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"edgehad/converters/int8.toml", "edgehad/target_files/rpi4.toml", "edgehad/target_files/schema.toml",
            "edgehad/py.typed", "edgehad/bundle/manifest.schema.json"} <= names

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    py = venv / "bin" / "python"
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q",
                              str(wheel)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-2000:]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "EDGEHAD_TARGETS_DIR")}

    def run(*args):
        return subprocess.run([str(py), *args], capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)

    where = run("-c", "import edgehad; print(edgehad.__file__)")
    assert where.stdout.strip().startswith(str(site)), where
    out = tmp_path / "out"
    converted = run("-m", "edgehad", "convert", "zoo:digits_cnn", "--recipe", "int8", "--data", "digits",
                    "--out", str(out), "--json")
    assert converted.returncode == 0, converted.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx", "model.tflite", "report.json", "report.md"]
    targets = run("-m", "edgehad", "targets", "--json")
    assert targets.returncode == 0, targets.stderr[-2000:]
    assert "rpi4" in targets.stdout and "local" in targets.stdout
    profiled = run("-m", "edgehad", "profile", str(out / "model.tflite"), "--runs", "5", "--warmup", "1", "--json")
    assert profiled.returncode == 0, profiled.stderr[-2000:]


@pytest.mark.parametrize("module, command, said", [
    ("tflite_micro", "micro", "TFLite Micro (edgehad micro, edgehad bundle) needs the Python package 'tflite_micro', "
                              "which is not installed: pip install 'edgehad[micro]'"),
    ("litert_torch", "tflite", "TFLite export and int8 quantization needs the Python package 'litert_torch', "
                               "which is not installed: pip install litert-torch"),
])
def test_a_missing_optional_package_names_its_extra(monkeypatch, tmp_path, module, command, said):
    """As on an ARM board: the package is absent (blocked in sys.modules), the error says how to get it."""
    from edgehad.core.errors import UserInputError

    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(UserInputError, match=__import__("re").escape(said)):
        if command == "micro":
            from edgehad.api import micro

            micro(str(tmp_path / "m.tflite"))
        else:
            import torch

            from edgehad.export.tflite import export_tflite

            export_tflite(torch.nn.Linear(2, 2), (torch.randn(1, 2),), tmp_path / "m.tflite")
    assert not (tmp_path / "m.tflite").exists()
