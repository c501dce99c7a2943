"""Nothing lost: atomic writes and the staging folder."""

from __future__ import annotations

import os

import pytest

from edgehad.core.files import atomic_path, staging_dir, write_text


def test_atomic_path_replaces_only_on_success(tmp_path):
    dest = tmp_path / "model.onnx"
    dest.write_text("good")
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            tmp.write_text("half")
            raise RuntimeError("exporter crashed")
    assert dest.read_text() == "good"
    assert os.listdir(tmp_path) == ["model.onnx"]
    write_text(dest, "new")
    assert dest.read_text() == "new"
    assert oct(dest.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_staging_dir_moves_files_on_success_and_leaves_out_alone_on_failure(tmp_path):
    out = tmp_path / "out"
    with staging_dir(out) as work:
        (work / "model.onnx").write_text("v1")
        (work / "report.json").write_text("{}")
    assert sorted(os.listdir(out)) == ["model.onnx", "report.json"]
    with pytest.raises(ValueError):
        with staging_dir(out) as work:
            (work / "model.onnx").write_text("v2-broken")
            raise ValueError("verification failed")
    assert (out / "model.onnx").read_text() == "v1"
    assert sorted(os.listdir(tmp_path)) == ["out"]


def _run_folder(out, files, version="0.1.0"):
    """``out`` as an earlier edgehad run left it: its files and a report.json listing them."""
    import json

    out.mkdir(parents=True, exist_ok=True)
    for name in files:
        (out / name).write_text(f"old {name}")
    report = {"edgehad_version": version, "artifacts": [{"path": str(out / n)} for n in files]}
    (out / "report.json").write_text(json.dumps(report))


def test_a_second_run_replaces_the_whole_folder(tmp_path):
    """Defect 4: the earlier run's model.tflite must not stay beside the new run's report."""
    from edgehad.core.files import check_out_folder

    out = tmp_path / "out"
    _run_folder(out, ["model.onnx", "model.tflite", "model.onnx.data"])
    check_out_folder(out)
    with staging_dir(out) as work:
        (work / "model.onnx").write_text("new")
        (work / "report.json").write_text("{}")
    assert sorted(os.listdir(out)) == ["model.onnx", "report.json"]
    assert (out / "model.onnx").read_text() == "new"
    assert sorted(os.listdir(tmp_path)) == ["out"]
    assert oct(out.stat().st_mode & 0o777) == oct(0o777 & ~_umask())


@pytest.mark.parametrize("extra", ["notes.txt", "data/", "model.onnx.bak"])
def test_a_folder_with_foreign_files_is_refused_and_kept(tmp_path, extra):
    from edgehad.core.errors import UserInputError
    from edgehad.core.files import check_out_folder

    out = tmp_path / "out"
    _run_folder(out, ["model.onnx"])
    (out / extra.rstrip("/")).mkdir() if extra.endswith("/") else (out / extra).write_text("mine")
    before = sorted(os.listdir(out))
    with pytest.raises(UserInputError, match=f"holds '{extra.rstrip('/')}', which no edgehad run wrote"):
        check_out_folder(out)
    with pytest.raises(UserInputError, match="nothing was replaced"):
        with staging_dir(out) as work:
            (work / "model.onnx").write_text("new")
    assert sorted(os.listdir(out)) == before and (out / "model.onnx").read_text() == "old model.onnx"


def test_a_plain_folder_without_a_report_is_foreign(tmp_path):
    from edgehad.core.files import foreign_entries

    out = tmp_path / "out"
    out.mkdir()
    assert foreign_entries(out) == []
    (out / "model.onnx").write_text("someone's")
    assert foreign_entries(out) == ["model.onnx"]
    (out / "report.json").write_text('{"artifacts": []}')  # not edgehad's: no edgehad_version
    assert foreign_entries(out) == ["model.onnx", "report.json"]


def test_stale_partials_of_dead_writers_are_removed_live_ones_kept(tmp_path):
    """Defect 10: a killed run's .OUT.<pid>.*.partial goes at the next run into the same --out."""
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    out = tmp_path / "out"
    stale = tmp_path / f".out.{dead}.abc123.partial"
    stale_file = tmp_path / f".model.onnx.{dead}.x_y.tmp"
    live = tmp_path / f".out.{os.getppid()}.def456.partial"     # a live process's staging folder
    other = tmp_path / f".elsewhere.{dead}.abc123.partial"      # another --out's: not ours to judge
    for d in (stale, live, other):
        d.mkdir()
        (d / "model.onnx").write_text("half")
    stale_file.write_text("half")
    with staging_dir(out) as work:
        (work / "report.json").write_text("{}")
    write_text(tmp_path / "model.onnx", "whole")
    assert not stale.exists() and not stale_file.exists()
    assert live.exists() and other.exists()


@pytest.mark.parametrize("where, message", [
    ("/proc/edgehad-out", "is under a virtual file system"),
    ("/sys/kernel/out", "is under a virtual file system"),
    ("FILE/out", "which is a file"),
    ("FILE", "is a file, not a folder"),
])
def test_check_out_folder_refuses_unwritable_places(tmp_path, where, message):
    from edgehad.core.errors import UserInputError
    from edgehad.core.files import check_out_folder

    (tmp_path / "FILE").write_text("x")
    with pytest.raises(UserInputError, match=message):
        check_out_folder(where.replace("FILE", str(tmp_path / "FILE")))
