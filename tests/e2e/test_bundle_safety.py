"""``edgehad bundle`` with hostile names and ONNX external data, through the real CLI.

A file name, a label or --name must not change the meaning of the generated
C, C++, Makefile, Python or README; a clashing name is refused or prefixed so
that the C builds; an ONNX model's external data travels with it, and never
from outside its folder. The models are small on purpose (TFLM's sine model,
a two-layer ONNX built here), so each case takes seconds.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli
from tests.e2e.test_cli_convert import assert_clean_error
from tests.unit.test_bundle_names import code_without_comments, compile_c_parts, needs_gcc, read_back

EVIL_NAME = "m\nstatic int injected_line = 1;\n#define X.tflite"
EVIL_LABEL = 'a"b\\c ??/ $(shell touch pwned) \'; import os # é'


def sine_model() -> Path:
    """TFLite Micro's own float sine model (one input, one output of one value), shipped in its wheel."""
    import tflite_micro

    return Path(tflite_micro.__file__).parent / "python" / "tflite_micro" / "sine_float.tflite"


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def python_blocks(markdown: str) -> list[str]:
    from markdown_it import MarkdownIt

    return [t.content for t in MarkdownIt("commonmark").parse(markdown) if t.type == "fence" and t.info == "python"]


@needs_gcc
def test_file_name_and_label_inject_nothing(tmp_path):
    model = tmp_path / EVIL_NAME
    shutil.copy(sine_model(), model)
    (tmp_path / "labels.txt").write_text(EVIL_LABEL + "\n", encoding="utf-8")
    out = tmp_path / "b"
    result = run_cli("bundle", model, "--out", out, "--labels", tmp_path / "labels.txt", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads(result.stdout)["manifest"]
    symbol = manifest["c_array"]["symbol"]
    assert symbol == "m_static_int_injected_line_1_define_X"
    assert manifest["model"]["file"] == EVIL_NAME and manifest["labels"] == [EVIL_LABEL]
    assert (out / EVIL_NAME).read_bytes() == sine_model().read_bytes()

    # C and C++: the file name stays in comments, the label is one string with its exact bytes
    build = tmp_path / "c"
    shutil.copytree(out, build)
    for name in ("main.cc", "model_data.c", "model_data.h"):
        code = code_without_comments(build, name)
        assert "static int injected_line" not in code and "#define X" not in code, name
    labels, length, first = read_back(build, symbol)
    assert labels == [EVIL_LABEL.encode("utf-8")]
    assert (length, first) == (len(sine_model().read_bytes()), sine_model().read_bytes()[0])

    # Makefile: no user string in it, so no recipe a name could add
    from edgehad.bundle.tflm_program import render_makefile

    assert (out / "Makefile").read_text() == render_makefile()

    # Python: both files parse; the labels reach the program as data (manifest.json), exactly
    for name in ("run_model.py", "edgehad_runtime.py"):
        ast.parse((out / name).read_text(), name)
    proc = subprocess.run([sys.executable, "run_model.py", "--json"], cwd=out, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["top"][0]["label"] == EVIL_LABEL
    assert not (out / "pwned").exists() and not (tmp_path / "pwned").exists()

    # README: the name adds no line of code and no heading; its Python snippet names the file exactly
    readme = (out / "README.md").read_text()
    assert not any(line.startswith(("static int", "#define")) for line in readme.splitlines())
    (snippet,) = python_blocks(readme)
    calls = [n for n in ast.walk(ast.parse(snippet)) if isinstance(n, ast.Call) and getattr(n.func, "id", "") ==
             "Session"]
    assert [c.args[0].value for c in calls] == [EVIL_NAME]
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").parse(readme)
    headings = [(t.tag, "".join(c.content for c in tokens[i + 1].children)) for i, t in enumerate(tokens)
                if t.type == "heading_open"]  # as rendered: the newlines shown as \x0a, in the one heading
    assert headings == [("h1", "m\\x0astatic int injected_line = 1;\\x0a#define X.tflite: edgehad bundle"),
                        ("h2", "Inputs and outputs"), ("h2", "Preprocessing"),
                        ("h2", "Python (numpy + one runtime, no torch)"), ("h2", "C / C++ with TensorFlow Lite Micro"),
                        ("h2", "Notes")]


@pytest.mark.parametrize("name, message", [
    ("NULL", "--name 'NULL' would clash with NULL from the C/C++ or TFLite Micro headers main.cc includes: "
             "pick another name (e.g. g_NULL)"),
    ("size_t", "--name 'size_t' would clash with size_t from"),
    ("kArenaSize", "--name 'kArenaSize' would clash with kArenaSize, which the bundle's main.cc or model_data.c "
                   "defines: pick another name (e.g. g_kArenaSize)"),
    ("EDGEHAD_ALIGNED", "--name 'EDGEHAD_ALIGNED' would clash with EDGEHAD_ALIGNED, which"),
    ("$(shell id)", "--name '$(shell id)' is not a C identifier"),
])
def test_clashing_name_exit_2(name, message, tmp_path):
    out = tmp_path / "b"
    result = run_cli("bundle", sine_model(), "--out", out, "--name", name)
    assert_clean_error(result, message)
    assert not out.exists() and leftovers(tmp_path) == []


@needs_gcc
def test_file_named_tflite_gets_a_prefixed_name_that_builds(tmp_path):
    model = tmp_path / "tflite.tflite"
    shutil.copy(sine_model(), model)
    result = run_cli("bundle", model, "--out", tmp_path / "b", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    c = json.loads(result.stdout)["manifest"]["c_array"]
    assert (c["symbol"], c["length_symbol"]) == ("g_tflite", "g_tflite_len")
    assert compile_c_parts(tmp_path / "b", "g_tflite").returncode == 0


@pytest.mark.parametrize("label", ["tab\there", "esc\x1b[31mred"])
def test_label_with_a_control_character_exit_2(label, tmp_path):
    (tmp_path / "labels.txt").write_text(label + "\n")
    result = run_cli("bundle", sine_model(), "--out", tmp_path / "b", "--labels", tmp_path / "labels.txt")
    assert_clean_error(result, f"label 1 ({label!r}) holds the control character")
    assert not (tmp_path / "b").exists()


# -- ONNX external data -----------------------------------------------------------

def onnx_with_external_data(folder: Path, location: str) -> Path:
    """x[1,8] -> MatMul W[8,4] -> Add b[4], the weights in ``folder/location``; returns the .onnx path."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((8, 4)).astype(np.float32), "W")
    b = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "B")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Add", ["h", "B"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = folder / "model.onnx"
    (folder / location).parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=location, size_threshold=0)
    return path


def run_onnx(path: Path) -> np.ndarray:
    import onnxruntime as ort

    x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(1, 8)
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.mark.parametrize("location", ["model.onnx.data", "weights/w.bin"])
def test_onnx_external_data_travels_with_the_model(location, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    model = onnx_with_external_data(src, location)
    want = run_onnx(model)
    out = tmp_path / "b"
    result = run_cli("bundle", model, "--out", out, "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    moved = tmp_path / "elsewhere"  # the bundle alone, without the source folder
    shutil.copytree(out, moved)
    shutil.rmtree(src)
    np.testing.assert_array_equal(run_onnx(moved / "model.onnx"), want)
    doc = json.loads(result.stdout)
    assert location.split("/")[0] in doc["files"]
    assert doc["manifest"]["model"]["external_data"] == [location]
    assert f"Its tensors' data is in `{location}`: keep it beside the model" in (out / "README.md").read_text()


@pytest.mark.parametrize("case, message", [
    ("parent", "keeps its data at '../outside.data', outside the model's folder"),
    ("absolute", "outside the model's folder"),
    ("symlink", "tensor 'W' keeps its data in 'link.data', which leads outside the model's folder"),
    ("missing", "keeps its data in 'gone.data', which is not there"),
    ("nul", "keeps its data in an external file with no usable name ('a\\x00b')"),
    ("generated", "keeps its data in 'README.md', a name the bundle writes a file of its own under"),
])
def test_onnx_external_data_outside_the_folder_exit_2(case, message, tmp_path):
    import onnx

    src = tmp_path / "src"
    src.mkdir()
    model = onnx_with_external_data(src, "model.onnx.data")
    outside = tmp_path / "outside.data"
    shutil.copy(src / "model.onnx.data", outside)
    location = {"parent": "../outside.data", "absolute": str(outside), "symlink": "link.data",
                "missing": "gone.data", "generated": "README.md", "nul": "a\x00b"}[case]
    if case == "symlink":
        os.symlink(outside, src / "link.data")
    if case == "generated":
        shutil.copy(outside, src / "README.md")
    proto = onnx.load(str(model), load_external_data=False)
    for tensor in proto.graph.initializer:  # point every tensor at the location, bytes unchanged
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    model.write_bytes(proto.SerializeToString())
    out = tmp_path / "b"
    result = run_cli("bundle", model, "--out", out)
    assert_clean_error(result, message)
    assert not out.exists() and leftovers(tmp_path) == []
