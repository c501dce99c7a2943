"""``edgehad profile`` and its agent, on small real .onnx/.tflite files, through real subprocesses."""

from __future__ import annotations

import ast
import json
import math
import shutil
import subprocess
import sys

import pytest

from tests.conftest import run_cli
from tests.e2e.test_cli_convert import assert_clean_error

LATENCY_KEYS = {"mean", "std", "min", "p50", "p90", "p99", "max"}
KEYS = {"latency_ms", "first_ms", "init_ms", "throughput_ips", "peak_rss_mb", "rss_delta_mb", "size_bytes",
        "runs", "threads", "runtime", "provider", "ops", "machine", "path", "emulated"}


@pytest.fixture(scope="session")
def models(digits_float_out):
    return digits_float_out / "model.onnx", digits_float_out / "model.tflite"


@pytest.fixture(scope="session")
def profiled(models):
    """Both files in one CLI call with --op-profile and --json."""
    result = run_cli("profile", *models, "--runs", "25", "--warmup", "3", "--op-profile", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    # progress on stderr with --json too: each file's phases and, off a terminal, its bar's label once
    for name in ("model.onnx", "model.tflite"):
        assert f"{name}: loaded in " in result.stderr and f"{name}: timing 25 runs" in result.stderr
        assert result.stderr.count(f"{name}: timing 25 runs") == 1
    return json.loads(result.stdout)


def check_document(doc, path, runs):
    assert KEYS <= set(doc), KEYS - set(doc)
    lat = doc["latency_ms"]
    assert set(lat) == LATENCY_KEYS and all(isinstance(v, float) and v > 0 for v in lat.values())
    assert lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert lat["min"] <= lat["mean"] <= lat["max"] and lat["std"] >= 0
    assert doc["runs"] == runs and doc["threads"] == 1
    for key in ("first_ms", "init_ms", "throughput_ips", "peak_rss_mb"):
        assert isinstance(doc[key], float) and doc[key] > 0, key
    assert doc["peak_rss_mb"] > doc["rss_delta_mb"] >= 0
    assert doc["size_bytes"] == path.stat().st_size
    assert doc["path"] == str(path) and doc["emulated"] is False and doc["provider"] == "cpu"
    assert isinstance(doc["machine"]["arch"], str) and doc["machine"]["arch"]


def test_two_files_give_one_json_list(profiled, models):
    assert isinstance(profiled, list) and len(profiled) == 2
    for doc, path, runtime in zip(profiled, models, ("ort", "tflite")):
        check_document(doc, path, runs=25)
        assert doc["runtime"] == runtime


def test_ort_op_profile_shares(profiled):
    ops = profiled[0]["ops"]
    assert ops and {"op", "calls", "ms", "share"} <= set(ops[0])
    assert "Conv" in {o["op"] for o in ops}
    assert math.isclose(sum(o["share"] for o in ops), 1.0, abs_tol=1e-6)
    assert [o["ms"] for o in ops] == sorted((o["ms"] for o in ops), reverse=True)
    assert all(o["ms"] >= 0 and o["calls"] >= 1 for o in ops)


def test_tflite_ops_note_and_counts(profiled):
    doc = profiled[1]
    assert "no per-op timing" in doc["ops_note"]
    assert doc["ops"] and all(o["ms"] is None and o["calls"] >= 1 for o in doc["ops"])
    assert "CONV_2D" in {o["op"] for o in doc["ops"]}


def test_table_has_one_row_per_file_and_ratio(models, tmp_path):
    result = run_cli("profile", *models, "--runs", "5", "--warmup", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert any("p50 ×" in ln for ln in lines)
    rows = [ln for ln in lines if ln.startswith(("model.onnx", str(models[0])))]
    assert len([ln for ln in lines if "(ort/cpu)" in ln]) == 1
    assert len([ln for ln in lines if "(tflite/cpu)" in ln]) == 1
    assert rows and rows[0].rstrip().endswith("1.00")


def test_seconds_budget_and_api(models):
    from edgehad.api import profile

    (doc,) = profile([models[1]], seconds=0.2, warmup=0)
    check_document(doc, models[1], runs=doc["runs"])
    assert doc["runs"] >= 1 and doc["ops"] is None


def test_agent_alone_prints_one_json_document(models):
    from edgehad.profiling import local

    proc = subprocess.run([sys.executable, str(local.AGENT), str(models[0]), "--runs", "7", "--warmup", "0"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["runs"] == 7 and doc["runtime"] == "ort"

    def imported(path):
        tree = ast.parse(path.read_text())
        names = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for alias in node.names}
        return names | {node.module.split(".")[0] for node in ast.walk(tree)
                        if isinstance(node, ast.ImportFrom) and node.module}

    # copied to devices as a pair: stdlib, numpy and a runtime; the runtimes imported by edgehad_runtime only
    agent_imports, runtime_imports = (imported(path) for path in local.AGENT_FILES.values())
    assert agent_imports - set(sys.stdlib_module_names) == {"numpy"}, agent_imports
    assert runtime_imports - set(sys.stdlib_module_names) == {"numpy", "onnxruntime", "ai_edge_litert",
                                                              "tflite_runtime"}, runtime_imports
    assert not (agent_imports | runtime_imports) & {"edgehad", "torch", "tests"}


def test_agent_runs_as_devices_get_it(models, tmp_path):
    """The two files alone in a folder, as SSH and emulated runs place them; without edgehad_runtime.py the agent
    says which file is missing."""
    from edgehad.profiling import local

    for name, source in local.AGENT_FILES.items():
        shutil.copy(source, tmp_path / name)
    run = [sys.executable, "-I", str(tmp_path / "agent.py"), str(models[1]), "--runs", "3", "--warmup", "0"]
    proc = subprocess.run(run, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    doc = json.loads(proc.stdout)
    assert doc["runs"] == 3 and doc["runtime"] == "tflite"
    assert doc["inputs"] == {"serving_default_args_0": {"shape": [1, 8, 8, 1], "dtype": "float32"}}  # NHWC
    (tmp_path / "edgehad_runtime.py").unlink()
    proc = subprocess.run(run, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert json.loads(proc.stdout)["error"] == (f"edgehad_runtime.py is missing beside {tmp_path / 'agent.py'}: "
                                                f"copy edgehad's runtime.py there under that name")


def test_agent_errors_are_json(tmp_path):
    from edgehad.profiling import local

    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not a model")
    proc = subprocess.run([sys.executable, str(local.AGENT), str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "cannot load this model" in json.loads(proc.stdout)["error"]
    proc = subprocess.run([sys.executable, str(local.AGENT), str(bad), "--runs", "0"], capture_output=True, text=True)
    assert proc.returncode == 2 and "--runs" in json.loads(proc.stdout)["error"]


@pytest.mark.parametrize("case, message", [
    ("missing", "missing.onnx: no such file"),
    ("txt", "profile supports .onnx (onnxruntime) and .tflite (LiteRT) files"),
    ("runs0", "--runs must be an integer in [1, 10000000], got 0"),
    ("corrupt", "corrupt.onnx is not a valid ONNX file"),  # read for its inputs before any agent starts
])
def test_bad_inputs_exit_2_with_one_error_line(case, message, models, tmp_path):
    if case == "missing":
        args = [tmp_path / "missing.onnx"]
    elif case == "txt":
        (tmp_path / "notes.txt").write_text("hello")
        args = [tmp_path / "notes.txt"]
    elif case == "runs0":
        args = [models[0], "--runs", "0"]
    else:
        (tmp_path / "corrupt.onnx").write_bytes(b"not a model")
        args = [tmp_path / "corrupt.onnx", "--runs", "1"]
    assert_clean_error(run_cli("profile", *args), message)


def test_data_feeds_real_samples_in_turn(models):
    result = run_cli("profile", *models, "--data", "digits", "--runs", "32", "--warmup", "0", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    docs = json.loads(result.stdout)
    for doc in docs:
        assert doc["input_source"] == "16 sample(s) from inputs.npz" and doc["runs"] == 32
    # each file got the samples in its own layout: the .tflite is channels-last (edgehad's default)
    assert [list(d["inputs"].values())[0]["shape"] for d in docs] == [[1, 1, 8, 8], [1, 8, 8, 1]]


def test_agent_quantizes_float_samples_for_an_int8_input(digits_files, tmp_path):
    """An int8-I/O TFLite file fed float samples: they are quantized with the input's own scale."""
    import numpy as np

    from edgehad.profiling import agent

    model = digits_files["int8io"] / "model.tflite"
    rt = agent.load_runtime()
    session = agent.open_session(rt, agent.parse_args([str(model)]), "tflite")
    (spec,) = session.inputs
    assert spec["dtype"] == "int8"
    scale, zero = spec["quantization"]["scale"], spec["quantization"]["zero_point"]
    samples = np.random.default_rng(0).uniform(0, 1, (3, 1, 8, 8, 1)).astype(np.float32)  # NHWC, as the file
    np.savez(tmp_path / "in.npz", samples)  # arr_0: the first input's samples
    feeds = agent.sample_feeds(rt, session, str(tmp_path / "in.npz"))
    assert len(feeds) == 3
    expected = np.clip(np.round(samples[1] / scale) + zero, -128, 127).astype(np.int8)
    (fed,) = session.prepare(feeds[1])
    np.testing.assert_array_equal(fed, expected)


@pytest.mark.parametrize("arrays, message", [
    ({"arr_0": (2, 1, 1, 4, 4)}, "bad.npz's array gives x the shape 1x1x4x4, which does not fit {model}: its "
                                 "input x is 1x1x8x8"),
    ({"other": (2, 1)}, "bad.npz holds 'other', which {model} has no input named; its inputs: x"),
    ({"x": (2, 1, 1, 8, 8), "arr_1": (3, 4)}, "bad.npz: every array needs the same number (>0) of samples along its "
                                               "first axis, got [2, 3]"),
])
def test_inputs_archive_errors(arrays, message, models, tmp_path):
    import numpy as np

    from edgehad.profiling import local

    np.savez(tmp_path / "bad.npz", **{k: np.zeros(shape, np.float32) for k, shape in arrays.items()})
    proc = subprocess.run([sys.executable, str(local.AGENT), str(models[0]), "--inputs", str(tmp_path / "bad.npz")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and message.format(model=models[0]) in json.loads(proc.stdout)["error"]


def test_bad_data_spec_is_one_clean_error(models):
    assert_clean_error(run_cli("profile", models[0], "--data", "nosuch.npz", "--runs", "1"), "nosuch.npz")
