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
