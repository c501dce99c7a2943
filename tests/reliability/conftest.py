"""The reliability lane's real seed files, made once per session, and its tally of cases.

Seeds (``seeds`` fixture, a dict of name -> Path): the tiny conv net of
tests/conftest.py converted by edgehad itself to ``float.onnx``,
``float.tflite`` and ``int8.tflite``; the same net as a torch.export program
``model.pt2``, its weights as ``weights.safetensors``, COSTARR statistics as
``stats.npz`` and a labelled data set as ``data.npz``. Under pytest-xdist the
workers share one copy (a lock file decides who makes it), so the ~30 s of
conversion is paid once. ``EDGEHAD_RELIABILITY_SEEDS=DIR`` keeps them in DIR
between runs (while working on the lane).

Every test of the lane records ``("reliability", {"tried": N, "clean": M})``;
tests/conftest.py's terminal summary adds them up: the "N tried, M handled cleanly" line
(there, because under pytest-xdist only the root conftest runs in the controller).
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

import pytest

from tests.conftest import TINY_MODEL


def _make_seeds(folder: Path) -> None:
    import numpy as np
    import torch
    from safetensors.torch import save_file

    import edgehad
    from edgehad.osr.stats import save_stats

    model_file = folder / "tiny.py"
    model_file.write_text(TINY_MODEL)
    edgehad.convert(f"{model_file}:net", out=folder / "float", samples=2)
    edgehad.convert(f"{model_file}:net", out=folder / "int8", samples=2, quantize="int8", calib="random",
                    formats="tflite")
    (folder / "float" / "model.onnx").rename(folder / "float.onnx")
    (folder / "float" / "model.tflite").rename(folder / "float.tflite")
    (folder / "int8" / "model.tflite").rename(folder / "int8.tflite")

    from edgehad.loading import load_model

    loaded = load_model(f"{model_file}:net")
    torch.export.save(torch.export.export(loaded.module, loaded.example_inputs), str(folder / "model.pt2"))
    save_file(loaded.module.state_dict(), str(folder / "weights.safetensors"))
    rng = np.random.default_rng(0)
    C, D = 10, 8 * 64
    save_stats(folder / "stats.npz", {
        "z_min": -3.0, "z_max": 4.0, "mu": rng.standard_normal((C, D)).astype(np.float32),
        "eta": rng.standard_normal((C, D)).astype(np.float32), "known": np.ones(C, bool),
        "counts": np.full(C, 5, np.int64), "classifier": "body.3", "fingerprint": "0" * 32, "samples": 50,
        "version": 1})
    np.savez(folder / "data.npz", x=rng.random((40, 1, 8, 8), dtype=np.float32), y=np.arange(40) % 4)


SEED_NAMES = ("float.onnx", "float.tflite", "int8.tflite", "model.pt2", "weights.safetensors", "stats.npz",
              "data.npz", "tiny.py")


@pytest.fixture(scope="session")
def seeds(tmp_path_factory) -> dict[str, Path]:
    if os.environ.get("EDGEHAD_RELIABILITY_SEEDS"):  # a folder kept between runs, while working on the lane
        base = Path(os.environ["EDGEHAD_RELIABILITY_SEEDS"])
        base.mkdir(parents=True, exist_ok=True)
    else:
        base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER") and not os.environ.get("EDGEHAD_RELIABILITY_SEEDS"):
        base = base.parent  # shared by the workers of this run
    folder = base / "reliability-seeds"
    folder.mkdir(exist_ok=True)
    with open(base / "reliability-seeds.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "done").exists():
            _make_seeds(folder)
            (folder / "done").write_text("ok")
    return {name: folder / name for name in SEED_NAMES}


@pytest.fixture
def tally(record_property):
    """``tally(tried, clean)``: this test's counts, for the lane's summary line."""
    def record(tried: int, clean: int, kind: str = "fuzzed") -> None:
        record_property("reliability", json.dumps({"tried": tried, "clean": clean, "kind": kind}))
    return record
