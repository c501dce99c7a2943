"""--out ends as exactly one run's output or as it was: reruns, foreign files, bad places, signals (issue #13, defects 4, 10, 11)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli

MARKING_FACTORY = '''
import pathlib, torch

def net():
    pathlib.Path(__file__).with_name("FACTORY_RAN").touch()
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    m.example_inputs = (torch.randn(1, 1, 8, 8),)
    return m
'''


@pytest.fixture(scope="module")
def good_run(tmp_path_factory, model_file):
    """A finished two-format run: what a rerun must replace whole or leave byte-identical."""
    out = tmp_path_factory.mktemp("good") / "out"
    result = run_cli("convert", f"{model_file}:net", "--out", out)
    assert result.returncode == 0, result.stderr
    return out


def _snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _copy(good: Path, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(good, out)
    return out


def test_rerun_with_other_formats_leaves_only_its_own_files(cli, tmp_path, good_run, model_file):
    out = _copy(good_run, tmp_path)
    assert sorted(os.listdir(out)) == ["model.onnx", "model.tflite", "report.json", "report.md"]
    result = cli("convert", f"{model_file}:net", "--format", "onnx", "--out", out)
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(out)) == ["model.onnx", "report.json", "report.md"]
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_foreign_files_refused_before_the_model_loads(cli, tmp_path, good_run):
    factory = tmp_path / "marking.py"
    factory.write_text(MARKING_FACTORY)
    out = _copy(good_run, tmp_path)
    (out / "my-notes.txt").write_text("keep me")
    before = _snapshot(out)
    result = cli("convert", f"{factory}:net", "--format", "onnx", "--out", out)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: --out {out} holds 'my-notes.txt', which no edgehad run wrote: the folder is replaced whole by "
        "the new run, so move your files out of it or pick an empty or new folder"]
    assert _snapshot(out) == before
    assert not (tmp_path / "FACTORY_RAN").exists()


@pytest.mark.parametrize("where, message", [
    ("/proc/edgehad-out", "is under a virtual file system: pick a folder on a disk"),
    ("{file}/out", "which is a file: pick a path in a folder"),
])
def test_out_in_a_place_that_cannot_hold_it(cli, tmp_path, where, message):
    factory = tmp_path / "marking.py"
    factory.write_text(MARKING_FACTORY)
    result = cli("convert", f"{factory}:net", "--out", where.format(file=factory))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: --out ")
    assert lines[0].endswith(message)
    assert not (tmp_path / "FACTORY_RAN").exists()


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare for a read-only mount")
def test_out_on_a_read_only_file_system(tmp_path):
    """A real read-only mount (tmpfs -o ro in a private mount namespace), not a chmod that root ignores."""
    factory = tmp_path / "marking.py"
    factory.write_text(MARKING_FACTORY)
    ro = tmp_path / "ro"
    ro.mkdir()
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"unprivileged mount namespaces are off here: {probe.stderr.decode().strip()}")
    script = (f"mount -t tmpfs -o ro tmpfs {ro} && exec {sys.executable} -m edgehad convert "
              f"{factory}:net --out {ro}/out")
    result = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [f"error: --out {ro}/out: {ro} is not writable: "
                                                  "pick a folder you can write to"]
    assert not (tmp_path / "FACTORY_RAN").exists()


def _start_convert(model_file, out, *extra) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edgehad", "convert", f"{model_file}:net", "--out", str(out),
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))


def _wait_for_partial(parent: Path, proc: subprocess.Popen, timeout=240) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [p for p in parent.iterdir() if p.name.endswith(".partial")]
        if found:
            return found[0]
        assert proc.poll() is None, f"convert ended before staging: {proc.communicate()}"
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("no staging folder appeared")


def _wait_for_line(proc: subprocess.Popen, text: str, timeout=240) -> list[str]:
    """The stderr lines up to and including the first holding ``text`` (the run is then at that step)."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            raise AssertionError(f"convert ended before {text!r}: {''.join(seen)}")
        seen.append(line)
        if text in line:
            return seen
    proc.kill()
    raise AssertionError(f"no {text!r} on stderr")


# When the signal lands: just after the staging folder appears, or while the ONNX file is being exported
# (waiting for its progress line, not for a fixed time: on an idle machine this small model's whole run
# can end within a few seconds, and a signal after the end tests nothing).
@pytest.mark.parametrize("sig, when, code, said", [
    (signal.SIGTERM, "staging", 143, "terminated"),
    (signal.SIGTERM, "export-onnx: writing", 143, "terminated"),
    (signal.SIGINT, "export-onnx: writing", 130, "interrupted"),
])
def test_a_signal_mid_convert_leaves_the_folder_as_it_was(tmp_path, good_run, model_file, sig, when, code, said):
    out = _copy(good_run, tmp_path)
    before = _snapshot(out)
    proc = _start_convert(model_file, out, "--format", "onnx")
    seen = []
    if when == "staging":
        _wait_for_partial(tmp_path, proc)
    else:
        seen = _wait_for_line(proc, when)
    proc.send_signal(sig)
    _, rest = proc.communicate(timeout=120)
    stderr = "".join(seen) + rest
    assert proc.returncode == code, stderr
    assert stderr.strip().splitlines()[-1] == f"error: {said}: nothing was written to the output folder"
    assert sorted(os.listdir(tmp_path)) == ["out"]        # no .out.*.partial left
    assert _snapshot(out) == before


def test_a_killed_run_is_cleaned_up_by_the_next(tmp_path, good_run, model_file):
    out = _copy(good_run, tmp_path)
    before = _snapshot(out)
    proc = _start_convert(model_file, out, "--format", "onnx")
    partial = _wait_for_partial(tmp_path, proc)
    proc.kill()
    proc.communicate(timeout=60)
    assert partial.exists() and _snapshot(out) == before  # SIGKILL: nothing can clean up, nothing was published
    result = run_cli("convert", f"{model_file}:net", "--format", "onnx", "--out", out)
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(tmp_path)) == ["out"]
    assert sorted(os.listdir(out)) == ["model.onnx", "report.json", "report.md"]
