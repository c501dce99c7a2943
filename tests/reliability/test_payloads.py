"""Files that carry a pickle payload: reading them must never run it.

Every payload is built here: an object whose ``__reduce__`` is
``os.system("touch MARKER")``. It is placed in each pickled member a reader
might unpickle, and the file goes through the library call and the CLI
command that read it. What must hold: the MARKER file does not exist
afterwards, and the reader returned or refused the file cleanly (exit 0 or 2,
one ``error:`` line).

Carriers:
- ``.pt2`` (torch.export.save): ``data/sample_inputs/model.pt`` (torch.export
  falls back to ``torch.load(weights_only=False)`` when the safe load fails), a
  weight marked ``use_pickle`` in ``model_weights_config.json``, constants of
  the pickled kinds (``tensor_constant`` with ``use_pickle``, ``custom_obj``,
  ``opaque_obj``), and the legacy ``data/weights/model.pt`` member;
- ``.npz``: an object array, as a data set and as OSR statistics;
- ``.pt`` / ``.pth`` weights holding a pickled object (refused today: kept tested).
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli
from tests.reliability.harness import CLEAN, run_batch
from tests.reliability.test_files_fuzz import check_cli_result

pytestmark = [pytest.mark.reliability, pytest.mark.slow]  # a lane of its own, not the fast lane


class Payload:
    """Unpickling this runs ``touch MARKER``."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _torch_save(obj) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _rewrite_zip(src: Path, dst: Path, replace: dict[str, bytes]) -> Path:
    """``src`` with members replaced or added (names ending in a replace key's text)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        names = zin.namelist()
        prefix = names[0].split("/", 1)[0] + "/"
        done = set()
        for name in names:
            key = next((k for k in replace if name == prefix + k), None)
            zout.writestr(name, replace[key] if key else zin.read(name))
            if key:
                done.add(key)
        for key, data in replace.items():
            if key not in done:
                zout.writestr(prefix + key, data)
    return dst


def _pt2_carriers(seed: Path, folder: Path, marker: Path) -> dict[str, Path]:
    """One .pt2 per pickled member torch.export's loader may unpickle."""
    pickled = _torch_save(Payload(marker))
    raw = __import__("pickle").dumps(Payload(marker), protocol=2)
    with zipfile.ZipFile(seed) as z:
        prefix = z.namelist()[0].split("/", 1)[0] + "/"
        weights = json.loads(z.read(prefix + "data/weights/model_weights_config.json"))
    first = next(iter(weights["config"]))
    weights["config"][first]["use_pickle"] = True
    path_name = weights["config"][first]["path_name"]
    meta = {"is_param": False, "use_pickle": True, "tensor_meta": None}
    constants = {"config": {"c_tensor": {**meta, "path_name": "tensor_constant_0"},
                            "c_custom": {**meta, "path_name": "custom_obj_0"},
                            "c_opaque": {**meta, "path_name": "opaque_obj_0"}}}
    carriers = {
        "sample_inputs": {"data/sample_inputs/model.pt": pickled},
        "pickled_weight": {"data/weights/model_weights_config.json": json.dumps(weights).encode(),
                           f"data/weights/{path_name}": pickled},
        "pickled_constants": {"data/constants/model_constants_config.json": json.dumps(constants).encode(),
                              "data/constants/tensor_constant_0": pickled,
                              "data/constants/custom_obj_0": raw,
                              "data/constants/opaque_obj_0": raw},
        "legacy_weights": {"data/weights/model.pt": pickled},
    }
    return {name: _rewrite_zip(seed, folder / f"{name}.pt2", replace) for name, replace in carriers.items()}


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "MARKER"
    yield path
    assert not path.exists(), "a payload ran: the MARKER file exists"


def test_payload_builder_works(tmp_path):
    """The payload itself does run when unpickled plainly: the marker tests below are not vacuous."""
    import pickle

    marker = tmp_path / "MARKER"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()


def test_pt2_payloads_in_process(seeds, tmp_path, marker, tally):
    carriers = _pt2_carriers(seeds["model.pt2"], tmp_path, marker)
    results = run_batch("pt2", list(carriers.values()), case_limit=60, cwd=tmp_path)
    ran = marker.exists()
    marker.unlink(missing_ok=True)
    bad = [f"{Path(r.path).stem}: {r.outcome}: {r.message[:200]}" for r in results if r.outcome not in CLEAN]
    tally(len(results), len(results) - len(bad) - (1 if ran else 0), kind="payload")
    assert not ran, "a .pt2 payload ran through edgehad.loading.load_model: " + \
        ", ".join(Path(r.path).stem for r in results)
    assert not bad, "\n".join(bad)


# all four carriers run in-process above; the CLI, which costs a torch import each, takes two
@pytest.mark.parametrize("carrier", ["sample_inputs", "pickled_weight"])
def test_pt2_payloads_through_cli(carrier, seeds, tmp_path, marker, tally):
    path = _pt2_carriers(seeds["model.pt2"], tmp_path, marker)[carrier]
    result = run_cli("inspect", path, cwd=tmp_path, timeout=180)
    problem = check_cli_result(result)
    ran = marker.exists()
    marker.unlink(missing_ok=True)
    tally(1, int(not ran and problem is None), kind="payload")
    assert not ran, f"edgehad inspect {path.name} ran the payload in {carrier} (exit {result.returncode})"
    assert problem is None, f"{problem}: {result.stderr[-500:]}"


def _object_npz(path: Path, marker: Path, names: list[str]) -> Path:
    arrays = {name: np.array([Payload(marker)], dtype=object) for name in names}
    np.savez(path, **arrays)  # numpy pickles object arrays when saving
    return path


@pytest.mark.parametrize("kind", ["data", "stats"])
def test_npz_object_arrays(kind, seeds, tmp_path, marker, tally):
    if kind == "data":
        path = _object_npz(tmp_path / "data.npz", marker, ["x", "y"])
        argv = ["osr", "fit", f"{seeds['tiny.py']}:net", "--data", path, "--out", tmp_path / "s.npz"]
    else:
        with np.load(seeds["stats.npz"]) as archive:
            arrays = {k: archive[k] for k in archive.files}
        arrays["mu"] = np.array([Payload(marker)], dtype=object)
        path = tmp_path / "stats.npz"
        np.savez(path, **arrays)
        argv = ["osr", "eval", f"{seeds['tiny.py']}:net", "--stats", path, "--known", "digits", "--unknown",
                "digits?classes=0-3"]
    results = run_batch(kind, [path], case_limit=60, cwd=tmp_path)
    result = run_cli(*argv, cwd=tmp_path, timeout=180)
    ran = marker.exists()
    marker.unlink(missing_ok=True)
    problem = check_cli_result(result)
    tally(2, int(results[0].outcome in CLEAN) + int(problem is None) - 2 * int(ran), kind="payload")
    assert not ran
    assert results[0].outcome == "user", results[0]
    assert result.returncode == 2 and problem is None, (problem, result.stderr[-500:])
    assert "object array" in result.stderr, result.stderr


def test_pickled_weights_refused(seeds, tmp_path, marker, tally):
    paths = []
    for suffix in (".pt", ".pth"):
        paths.append(tmp_path / f"weights{suffix}")
        paths[-1].write_bytes(_torch_save({"body.0.weight": Payload(marker)}))
    results = run_batch("weights", paths, case_limit=60, extra={"model_file": str(seeds["tiny.py"])}, cwd=tmp_path)
    # one CLI run: both suffixes take the same path (torch.load with weights_only=True)
    result = run_cli("inspect", f"{seeds['tiny.py']}:net", "--weights", paths[0], cwd=tmp_path, timeout=180)
    ran = marker.exists()
    marker.unlink(missing_ok=True)
    problem = check_cli_result(result)
    clean = sum(r.outcome == "user" for r in results) + int(problem is None and result.returncode == 2)
    tally(3, 0 if ran else clean, kind="payload")
    assert not ran
    assert [r.outcome for r in results] == ["user", "user"], results
    assert result.returncode == 2 and problem is None, (problem, result.stderr[-500:])
    assert "refused without running" in result.stderr, result.stderr
