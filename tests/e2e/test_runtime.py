"""edgehad.runtime.Session against the runtimes themselves, in this venv and in a clean one without torch.

Real files (digits_cnn converted float, int8 with float I/O, int8 with int8 I/O),
real onnxruntime and LiteRT. The reference side calls the runtime directly and
does the int8 quantize/dequantize of the TFLite affine scheme by hand:
``q = clip(round(x / s) + z, -128, 127)``, ``x = (q - z) * s``.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

RUNTIME_FILE = Path(__file__).resolve().parents[2] / "edgehad" / "runtime.py"
VENV_PACKAGES = ("numpy", "onnxruntime", "ai-edge-litert")
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"OMP_WAIT_POLICY": "PASSIVE", "PYTHONNOUSERSITE": "1"}


@pytest.fixture(scope="session")
def samples():
    from edgehad.data import load_data

    x = load_data("digits").val[0][:6].astype(np.float32)
    assert x.shape == (6, 1, 8, 8)
    return x


@pytest.fixture(scope="session")
def clean_venv(tmp_path_factory):
    """A venv with only numpy, onnxruntime and ai-edge-litert (this venv's versions): no torch, no edgehad."""
    venv = tmp_path_factory.mktemp("cleanvenv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=ENV)
    python = venv / "bin" / "python"
    pins = [f"{p}=={importlib.metadata.version(p)}" for p in VENV_PACKAGES]
    proc = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *pins],
                          capture_output=True, text=True, env=ENV, timeout=600)
    assert proc.returncode == 0, f"pip install {' '.join(pins)} failed in a clean venv:\n{proc.stderr[-3000:]}"
    probe = subprocess.run([str(python), "-c", "import torch"], capture_output=True, text=True, env=ENV)
    assert probe.returncode != 0 and "No module named 'torch'" in probe.stderr
    probe = subprocess.run([str(python), "-c", "import edgehad"], capture_output=True, text=True, env=ENV,
                           cwd=venv)
    assert probe.returncode != 0 and "No module named 'edgehad'" in probe.stderr
    return python


def direct_onnx(path, x):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(None, {sess.get_inputs()[0].name: x[i:i + 1]})[0] for i in range(len(x))])


def direct_tflite(path, x, raw=False):
    """LiteRT's Interpreter by tensor index; int8 I/O quantized/dequantized here by the formula."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=1)
    interp.allocate_tensors()
    (inp,), (out,) = interp.get_input_details(), interp.get_output_details()
    if list(inp["shape"]) == [1, 8, 8, 1]:  # an NHWC file (edgehad's default) takes the images channels-last
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    rows = []
    for i in range(len(x)):
        xi = x[i:i + 1]
        if inp["dtype"] == np.int8:
            s, z = inp["quantization"]
            xi = np.clip(np.round(xi / s) + z, -128, 127).astype(np.int8)
        interp.set_tensor(inp["index"], xi)
        interp.invoke()
        y = interp.get_tensor(out["index"])
        if out["dtype"] == np.int8 and not raw:
            s, z = out["quantization"]
            y = (y.astype(np.float32) - z) * np.float32(s)
        rows.append(y)
    return np.concatenate(rows)


def session_outputs(path, x, **kwargs):
    from edgehad.runtime import Session

    sess = Session(str(path), threads=1, layout="nchw")  # x is torch's NCHW; an NHWC .tflite gets it transposed
    return np.concatenate([sess.run([x[i:i + 1]], **kwargs)[0] for i in range(len(x))])


@pytest.mark.parametrize("variant", ["float", "int8", "int8io"])
@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_session_equals_the_runtime_itself(digits_files, samples, variant, fmt):
    path = digits_files[variant] / f"model.{fmt}"
    want = direct_onnx(path, samples) if fmt == "onnx" else direct_tflite(path, samples)
    got = session_outputs(path, samples)
    assert got.dtype == np.float32 and got.shape == (6, 10)
    np.testing.assert_array_equal(got, want)
    # and it is the digits classifier it claims to be: most of 6 real digits right
    from edgehad.data import load_data

    y = load_data("digits").val[1][:6]
    assert (got.argmax(1) == y).sum() >= 5


def test_int8_io_file_really_has_int8_io_and_raw_outputs_stay_int8(digits_files, samples):
    from edgehad.runtime import Session

    path = digits_files["int8io"] / "model.tflite"
    sess = Session(str(path), layout="nchw")
    assert [t["dtype"] for t in sess.inputs + sess.outputs] == ["int8", "int8"]
    qi, qo = sess.inputs[0]["quantization"], sess.outputs[0]["quantization"]
    assert qi["scale"] > 0 and qo["scale"] > 0
    raw = session_outputs(path, samples, dequantize=False)
    assert raw.dtype == np.int8
    np.testing.assert_array_equal(raw, direct_tflite(path, samples, raw=True))
    # an int8 array goes in as it is: the same as giving the float it encodes
    q = np.clip(np.round(samples[:1] / qi["scale"]) + qi["zero_point"], -128, 127).astype(np.int8)
    np.testing.assert_array_equal(sess.run([q])[0], sess.run([samples[:1]])[0])
    # float outputs are exactly (q - z) * s
    np.testing.assert_array_equal(session_outputs(path, samples),
                                  (raw.astype(np.float32) - qo["zero_point"]) * np.float32(qo["scale"]))


def test_float_io_int8_file_and_int8_io_file_agree(digits_files, samples):
    """Same weights, I/O quantized inside the file or by Session: within one output quantization step."""
    a = session_outputs(digits_files["int8"] / "model.tflite", samples)
    b = session_outputs(digits_files["int8io"] / "model.tflite", samples)
    from edgehad.runtime import Session

    step = Session(str(digits_files["int8io"] / "model.tflite")).outputs[0]["quantization"]["scale"]
    assert np.abs(a - b).max() <= step * 1.001
    assert (a.argmax(1) == b.argmax(1)).all()


def test_bad_calls_say_what_to_do(digits_files, samples):
    from edgehad.runtime import Session

    sess = Session(str(digits_files["int8io"] / "model.tflite"), layout="nchw")
    with pytest.raises(ValueError, match=r"takes 1 inputs \(args_0\), got 2 arrays$"):
        sess.run([samples[:1], samples[:1]])
    with pytest.raises(ValueError, match="unknown runtime 'tvm'"):
        Session(str(digits_files["float"] / "model.onnx"), runtime="tvm")
    by_name = sess.run({sess.inputs[0]["name"]: samples[:1]})[0]
    np.testing.assert_array_equal(by_name, sess.run([samples[:1]])[0])


def test_runtime_imports_only_stdlib_numpy_and_one_runtime():
    tree = ast.parse(RUNTIME_FILE.read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                 and node.module and node.level == 0}
    assert not any(isinstance(node, ast.ImportFrom) and node.level for node in ast.walk(tree)), "relative import"
    assert imported - set(sys.stdlib_module_names) == {"numpy", "onnxruntime", "ai_edge_litert", "tflite_runtime"}


COMPARE = r"""
import json, sys
import numpy as np
from edgehad_runtime import Session

x = np.load(sys.argv[1])
results = {}
for path in sys.argv[2:]:
    sess = Session(path, threads=1, layout="nchw")
    results[path] = {"out": np.concatenate([sess.run([x[i:i + 1]])[0] for i in range(len(x))]).tolist(),
                     "inputs": sess.inputs, "outputs": sess.outputs, "torch": "torch" in sys.modules}
print(json.dumps(results))
"""


def test_clean_venv_without_torch_gives_the_same_outputs(clean_venv, digits_files, samples, tmp_path):
    """edgehad_runtime.py alone (a copy of edgehad/runtime.py) in a venv with numpy + onnxruntime + LiteRT."""
    shutil.copyfile(RUNTIME_FILE, tmp_path / "edgehad_runtime.py")
    (tmp_path / "compare.py").write_text(COMPARE)
    np.save(tmp_path / "x.npy", samples)
    files = [digits_files[v] / f"model.{f}" for v in ("float", "int8", "int8io") for f in ("onnx", "tflite")]
    proc = subprocess.run([str(clean_venv), "compare.py", "x.npy", *map(str, files)], cwd=tmp_path,
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout)
    for path in files:
        r = results[str(path)]
        assert r["torch"] is False
        want = direct_onnx(path, samples) if path.suffix == ".onnx" else direct_tflite(path, samples)
        np.testing.assert_array_equal(np.asarray(r["out"], dtype=np.float32), want, err_msg=str(path))
    assert results[str(files[-1])]["inputs"][0]["dtype"] == "int8"
