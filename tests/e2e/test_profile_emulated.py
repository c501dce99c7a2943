"""``--target emulated-aarch64``: the agent on aarch64 builds of the runtimes under qemu, through the real CLI.

The tests that run models need ``edgehad targets setup emulated-aarch64`` done beforehand (.ci/run does it).
They skip where qemu-aarch64-static is missing, or where the setup was not done and
``EDGEHAD_REQUIRE_EMULATED`` is unset; with ``EDGEHAD_REQUIRE_EMULATED=1`` a missing setup fails them.
The bad-input tests need neither and always run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from edgehad.profiling import emulated
from tests.conftest import run_cli
from tests.e2e.test_cli_convert import assert_clean_error

LATENCY_KEYS = {"mean", "std", "min", "p50", "p90", "p99", "max"}
REQUIRE = os.environ.get("EDGEHAD_REQUIRE_EMULATED", "") not in ("", "0")

# Runs the same way on the host python and on the emulated one: each model on fixed inputs, outputs as JSON.
OUTPUTS_SNIPPET = '''
import json, platform, sys
import numpy as np

model, inputs = sys.argv[1], np.load(sys.argv[2])
results = []
if model.endswith(".onnx"):
    import onnxruntime as ort
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    for x in inputs:
        results.append([y.tolist() for y in session.run(None, {name: x})])
else:
    from ai_edge_litert.interpreter import Interpreter
    interpreter = Interpreter(model_path=model)
    interpreter.allocate_tensors()
    (given,) = interpreter.get_input_details()
    for x in inputs:
        interpreter.set_tensor(given["index"], x)
        interpreter.invoke()
        results.append([interpreter.get_tensor(d["index"]).tolist() for d in interpreter.get_output_details()])
print(json.dumps({"arch": platform.machine(), "outputs": results}))
'''


@pytest.fixture(scope="module")
def ready():
    """The set-up folder; skip (or fail, under EDGEHAD_REQUIRE_EMULATED=1) where the target cannot run."""
    if shutil.which("qemu-aarch64-static") is None:
        message = "qemu-aarch64-static is missing (apt-get install qemu-user-static)"
        if REQUIRE:
            pytest.fail(message + " (EDGEHAD_REQUIRE_EMULATED is set)")
        pytest.skip(message)
    if emulated.read_manifest() is None:
        message = (f"the emulated-aarch64 target is not set up in {emulated.emulated_dir()}: "
                   f"run `edgehad targets setup emulated-aarch64`")
        if REQUIRE:
            pytest.fail(message + " (EDGEHAD_REQUIRE_EMULATED is set)")
        pytest.skip(message + ", or set EDGEHAD_REQUIRE_EMULATED=1 to make this a failure")
    return emulated.emulated_dir()


@pytest.fixture(scope="module")
def models(ready, digits_float_out):
    return digits_float_out / "model.onnx", digits_float_out / "model.tflite"


@pytest.fixture(scope="module")
def profiled(models):
    result = run_cli("profile", *models, "--target", "emulated-aarch64", "--runs", "3", "--warmup", "1", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def test_both_runtimes_profile_as_aarch64(profiled, models):
    assert isinstance(profiled, list) and len(profiled) == 2
    for doc, path, runtime in zip(profiled, models, ("ort", "tflite")):
        assert doc["runtime"] == runtime and doc["provider"] == "cpu"
        assert doc["emulated"] is True and doc["host"] == "emulated-aarch64" and doc["target"] == "emulated-aarch64"
        assert doc["machine"]["arch"] == "aarch64"
        assert doc["path"] == str(path) and doc["size_bytes"] == path.stat().st_size
        assert doc["runs"] == 3 and doc["threads"] == 1 and len(doc["samples_ms"]) == 3
        lat = doc["latency_ms"]
        assert set(lat) == LATENCY_KEYS and all(isinstance(v, float) and v > 0 for v in lat.values())
        assert lat["min"] <= lat["p50"] <= lat["max"]
        assert doc["init_ms"] > 0 and doc["first_ms"] > 0 and doc["peak_rss_mb"] > 0
        assert doc["roofline"] is None  # emulated timings are never compared with a device's roof


def test_runtime_versions_are_the_wheels_set_up(profiled, ready):
    wheels = emulated.read_manifest(ready)["wheels"]
    assert profiled[0]["runtime_version"] == wheels["onnxruntime"]
    assert profiled[1]["runtime_version"] == wheels["ai-edge-litert"]


@pytest.mark.parametrize("which", [0, 1], ids=["onnx", "tflite"])
def test_emulated_outputs_match_the_host_runtime(models, tmp_path, which):
    """The same snippet, the same fixed inputs: the aarch64 runtime agrees with the host's within 1e-4."""
    model = models[which]
    script = tmp_path / "outputs.py"
    script.write_text(OUTPUTS_SNIPPET)
    inputs = tmp_path / "inputs.npy"
    image = (1, 8, 8, 1) if which else (1, 1, 8, 8)  # the .tflite takes NHWC (edgehad's default)
    np.save(inputs, np.random.default_rng(7).standard_normal((4, *image)).astype(np.float32))

    emu = emulated.run_emulated_python([script, model, inputs], timeout=300)
    assert emu.returncode == 0, emu.stderr[-3000:]
    host = subprocess.run([sys.executable, str(script), str(model), str(inputs)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    assert host.returncode == 0, host.stderr[-3000:]
    emu_doc, host_doc = json.loads(emu.stdout.splitlines()[-1]), json.loads(host.stdout.splitlines()[-1])
    assert emu_doc["arch"] == "aarch64"

    emu_y, host_y = np.array(emu_doc["outputs"]), np.array(host_doc["outputs"])
    assert emu_y.shape == host_y.shape == (4, 1, 1, 10)
    assert np.isfinite(host_y).all() and np.ptp(host_y) > 0  # real logits, not a constant
    bound = 1e-4 * max(1.0, float(np.abs(host_y).max()))  # DESIGN.md's float tolerance
    assert float(np.abs(emu_y - host_y).max()) <= bound
    assert (emu_y.argmax(-1) == host_y.argmax(-1)).all()


def test_table_says_emulated(models):
    assert "emulated" not in str(models[1])  # the word must come from the table, not from the file's path
    result = run_cli("profile", models[1], "--target", "emulated-aarch64", "--runs", "2", "--warmup", "0")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "emulated" in result.stdout.lower()


def test_setup_again_is_a_no_op(ready):
    result = run_cli("targets", "setup", "emulated-aarch64")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "already set up" in result.stderr and f"ready in {ready}" in result.stdout


# -- bad input: no setup or prerequisites needed -----------------------------
@pytest.fixture
def junk_onnx(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"not looked at: the missing setup is reported first")
    return path


def test_profile_without_setup_says_run_setup(junk_onnx, tmp_path, monkeypatch):
    empty = tmp_path / "nothing-here"
    empty.mkdir()
    monkeypatch.setenv("EDGEHAD_EMULATED_DIR", str(empty))
    result = run_cli("profile", junk_onnx, "--target", "emulated-aarch64", "--runs", "1")
    assert_clean_error(result, "run `edgehad targets setup emulated-aarch64` first")
    assert str(empty) in result.stderr


def test_setup_refuses_a_folder_it_did_not_make(tmp_path, monkeypatch):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    monkeypatch.setenv("EDGEHAD_EMULATED_DIR", str(foreign))
    result = run_cli("targets", "setup", "emulated-aarch64")
    assert_clean_error(result, "is not an emulated-aarch64 folder edgehad made")
    assert (foreign / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("program, package", [("qemu-aarch64-static", "qemu-user-static"),
                                              ("debootstrap", "debootstrap"), ("dpkg-deb", "dpkg")])
def test_setup_names_the_missing_debian_package(program, package, tmp_path, monkeypatch):
    """A PATH holding every prerequisite but one: setup stops before downloading, naming the package."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    order = list(emulated.PROGRAMS)
    for other in order[: order.index(program)]:  # the ones checked before it must be found
        found = shutil.which(other)
        if found is None:
            pytest.skip(f"{other} is not installed here, so {program} cannot be the first one missing")
        (bin_dir / other).symlink_to(found)
    target = tmp_path / "emulated"
    monkeypatch.setenv("EDGEHAD_EMULATED_DIR", str(target))
    monkeypatch.setenv("PATH", str(bin_dir))
    result = run_cli("targets", "setup", "emulated-aarch64")
    assert_clean_error(result, f"needs {program}, which is not installed: sudo apt-get install {package}")
    assert not target.exists() and [p.name for p in tmp_path.iterdir()] == ["bin"]  # nothing half-made
