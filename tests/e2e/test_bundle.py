"""``edgehad bundle`` for real: the CLI, gcc on the C array, TFLM's op list from edgehad.micro,
the Python part in a clean venv without torch, and every bad input."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli
from tests.e2e.test_cli_convert import assert_clean_error
from tests.e2e.test_runtime import ENV, clean_venv  # noqa: F401  (a session fixture)

LABELS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
C_FILES = {"model_data.h", "model_data.c", "main.cc", "Makefile"}
ALL_FILES = {"model.tflite", "manifest.json", "edgehad_runtime.py", "run_model.py", "README.md"} | C_FILES

MCU_TARGET = """
name = "{name}"
description = "A test microcontroller"
runtime = "tflite"
memory_bandwidth_gbs = 0.5
ram_kb = {ram_kb}
flash_kb = {flash_kb}

[cpu]
cores = 1
clock_ghz = 0.48
isa = ["armv7e-m"]

[peak]
fp32_gops = 0.96
int8_gops = 1.92
"""


def mcu(tmp_path, name, ram_kb, flash_kb) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(MCU_TARGET.format(name=name, ram_kb=ram_kb, flash_kb=flash_kb))
    return path


def leftovers(parent: Path) -> list[str]:
    """Hidden staging folders a bundle could leave beside its output."""
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def int8_model(digits_files):
    return digits_files["int8io"] / "model.tflite"


@pytest.fixture(scope="module")
def bundled(int8_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("bundle")
    (root / "labels.txt").write_text("\n".join(LABELS) + "\n\n")  # a trailing blank line is fine
    out = root / "b"
    target = mcu(root, "mcu-big", ram_kb=256, flash_kb=1024)
    result = run_cli("bundle", int8_model, "--out", out, "--labels", root / "labels.txt", "--name", "g_digits",
                     "--target", target, "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    return out, json.loads(result.stdout)


def test_files_and_manifest(bundled, int8_model):
    from edgehad.bundle import validate_manifest
    from edgehad.inspection import inspect_file

    out, doc = bundled
    assert set(doc["files"]) == ALL_FILES == {p.name for p in out.iterdir()}
    assert leftovers(out.parent) == []
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest == doc["manifest"]
    validate_manifest(out / "manifest.json")
    data = int8_model.read_bytes()
    assert (out / "model.tflite").read_bytes() == data
    assert manifest["model"]["size_bytes"] == len(data)
    import hashlib

    assert manifest["model"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert manifest["model"]["float_model"] is False and manifest["model"]["quantized"] is True
    info = inspect_file(int8_model)
    (inp,), (outp,) = manifest["inputs"], manifest["outputs"]
    # channels-last by default: the manifest states it per tensor and in the preprocessing
    assert inp["shape"] == [1, 8, 8, 1] and inp["dtype"] == "int8" and outp["shape"] == [1, 10]
    assert inp["layout"] == "nhwc" and "layout" not in outp
    assert inp["quantization"] == info["inputs"][0]["quantization"]
    assert outp["quantization"] == info["outputs"][0]["quantization"]
    assert inp["quantization"]["scale"] > 0
    assert manifest["labels"] == LABELS
    report = json.loads((int8_model.parent / "report.json").read_text())
    assert manifest["preprocessing"] == report["preprocessing"] and manifest["preprocessing"]["mean"] == [0.0]
    assert manifest["preprocessing"]["tflite_layout"] == "nhwc"
    assert manifest["c_array"]["symbol"] == "g_digits" and manifest["c_array"]["length_symbol"] == "g_digits_len"
    assert manifest["target"] == {"name": "mcu-big", "ram_kb": 256, "flash_kb": 1024, "model_fits_flash": True,
                                  "arena_fits_ram": True}
    assert (out / "edgehad_runtime.py").read_bytes() == (Path(__file__).parents[2] / "edgehad/runtime.py").read_bytes()


def test_op_list_and_arena_match_micro(bundled, int8_model):
    import edgehad.micro
    from edgehad.bundle.tflm_program import resolver_calls
    from edgehad.micro.ops import model_ops, resolver_entries

    out, doc = bundled
    tflm = doc["manifest"]["tflm"]
    ops = model_ops(int8_model)
    assert doc["manifest"]["ops"] == ops and "CONV_2D" in ops and "QUANTIZE" not in ops  # int8 I/O: no boundary ops
    assert tflm["resolver"] == resolver_entries(ops) and "AddConv2D" in tflm["resolver"]
    main_cc = (out / "main.cc").read_text()
    assert resolver_calls(main_cc) == tflm["resolver"]  # exactly the ops, each once
    assert tflm["resolver_size"] == len(ops) == len(tflm["resolver"])
    assert f"constexpr int kOpCount = {len(ops)};" in main_cc
    assert "tflite::MicroMutableOpResolver<kOpCount> resolver;" in main_cc
    checked = edgehad.micro.check(str(int8_model), find_arena=True)
    assert checked["resolver"] == tflm["resolver"]
    arena = tflm["arena"]
    # the search is deterministic: the same model gives the same figures
    assert (arena["min_bytes"], arena["recommended_bytes"]) == (checked["arena"]["min_bytes"],
                                                                checked["arena"]["recommended_bytes"])
    assert 0 < arena["min_bytes"] < arena["recommended_bytes"] <= 256 * 1024
    assert f"constexpr size_t kArenaSize = {arena['recommended_bytes']};" in main_cc
    assert "64-bit host" in arena["note"] and "64-bit host" in (out / "README.md").read_text()
    assert f"{arena['recommended_bytes']} bytes" in (out / "README.md").read_text()
    for label in LABELS:
        assert f'"{label}"' in main_cc


def test_model_data_compiles_c99_and_reads_back_the_file(bundled, tmp_path):
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed (apt-get install gcc)")
    out, _ = bundled
    for name in ("model_data.h", "model_data.c"):
        shutil.copy(out / name, tmp_path)
    proc = subprocess.run(["gcc", "-Wall", "-Werror", "-std=c99", "-c", "model_data.c"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    (tmp_path / "reader.c").write_text(r"""
#include <stdint.h>
#include <stdio.h>
#include "model_data.h"
int main(int argc, char** argv) {
  FILE* f = fopen(argv[1], "wb");
  if (argc != 2 || !f) return 2;
  fwrite(g_digits, 1, g_digits_len, f);
  fclose(f);
  printf("%u %u\n", g_digits_len, (unsigned)((uintptr_t)g_digits % 16u));
  return 0;
}
""")
    subprocess.run(["gcc", "-Wall", "-Werror", "-std=c99", "-o", "reader", "reader.c", "model_data.o"],
                   cwd=tmp_path, check=True)
    proc = subprocess.run(["./reader", "back.bin"], cwd=tmp_path, capture_output=True, text=True, check=True)
    length, misalign = map(int, proc.stdout.split())
    data = (out / "model.tflite").read_bytes()
    assert (length, misalign) == (len(data), 0)
    assert (tmp_path / "back.bin").read_bytes() == data


def test_tflm_program_builds_and_runs_under_tflm_dir(bundled, tmp_path):
    """Compiles main.cc against a TFLM checkout's microlite library and runs it: only where TFLM_DIR is set."""
    tflm = os.environ.get("TFLM_DIR")
    if not tflm:
        pytest.skip("TFLM_DIR is not set: neither PyPI nor Debian ships the TFLite Micro sources; point TFLM_DIR "
                    "at a tflite-micro checkout where `make -f tensorflow/lite/micro/tools/make/Makefile microlite` "
                    "has run")
    out, doc = bundled
    build = tmp_path / "b"
    shutil.copytree(out, build)
    proc = subprocess.run(["make", f"TFLM_DIR={tflm}"], cwd=build, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    proc = subprocess.run(["./run_model"], cwd=build, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = proc.stdout + proc.stderr
    values = [float(v) for v in re.findall(r"output 0\[\d+\] = (-?[\d.]+)", text)]
    assert len(values) == 10
    # the same zeros input through the Python runtime (LiteRT): equal within one output quantization step
    from edgehad.runtime import Session

    sess = Session(str(out / "model.tflite"))
    want = sess.run([np.zeros((1, 8, 8, 1), np.float32)])[0].reshape(-1)
    step = sess.outputs[0]["quantization"]["scale"]
    assert np.abs(np.array(values) - want).max() <= step * 1.001 + 1e-5
    used = int(re.search(r"arena: (\d+) of (\d+) bytes used", text)[1])
    assert used <= doc["manifest"]["tflm"]["arena"]["recommended_bytes"]
    assert f"({LABELS[int(np.argmax(values))]})" in text


def test_run_model_in_a_venv_without_torch(bundled, clean_venv, digits_files, tmp_path):  # noqa: F811
    from edgehad.data import load_data
    from edgehad.runtime import Session

    out, _ = bundled
    x = load_data("digits").val[0][:1].astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    proc = subprocess.run([str(clean_venv), str(out / "run_model.py"), str(tmp_path / "x.npy"), "-k", "3", "--json"],
                          cwd=tmp_path, capture_output=True, text=True, env=ENV, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    # the sample is NCHW, the model NHWC (its manifest says so): run_model.py transposes it, as layout= does
    want = Session(str(out / "model.tflite"), layout="nchw").run([x])[0].reshape(-1)
    np.testing.assert_allclose(doc["output"], want, rtol=0, atol=1e-6)
    np.save(tmp_path / "x_nhwc.npy", x.transpose(0, 2, 3, 1))  # the model's own order goes in as it is
    proc = subprocess.run([str(clean_venv), str(out / "run_model.py"), str(tmp_path / "x_nhwc.npy"), "--json"],
                          cwd=tmp_path, capture_output=True, text=True, env=ENV, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    np.testing.assert_allclose(json.loads(proc.stdout)["output"], want, rtol=0, atol=1e-6)
    top = list(np.argsort(-want, kind="stable")[:3])
    assert [r["index"] for r in doc["top"]] == top and [r["label"] for r in doc["top"]] == [LABELS[i] for i in top]
    # no input: a random one; text output names labels
    proc = subprocess.run([str(clean_venv), "run_model.py"], cwd=out, capture_output=True, text=True, env=ENV,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(proc.stdout.splitlines()) == 5 and any(label in proc.stdout for label in LABELS)


def test_onnx_bundle_has_no_c_parts(digits_files, tmp_path):
    out = tmp_path / "onnx"
    result = run_cli("bundle", digits_files["int8"] / "model.onnx", "--out", out, "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    doc = json.loads(result.stdout)
    assert set(doc["files"]) == {"model.onnx", "manifest.json", "edgehad_runtime.py", "run_model.py", "README.md"}
    m = doc["manifest"]
    assert m["tflm"] is None and m["c_array"] is None and m["model"]["format"] == "onnx"
    assert "QuantizeLinear" in m["ops"] and m["preprocessing"]["source"] == "digits"
    assert "TensorFlow Lite Micro runs .tflite files only" in (out / "README.md").read_text()


def test_float_model_is_bundled_with_a_warning(digits_files, tmp_path):
    out = tmp_path / "f"
    result = run_cli("bundle", digits_files["float"] / "model.tflite", "--out", out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "warning:" in result.stderr and "most microcontrollers want an int8 model" in result.stderr
    m = json.loads((out / "manifest.json").read_text())
    assert m["model"]["float_model"] is True and m["inputs"][0]["dtype"] == "float32"
    assert any("int8" in n for n in m["notes"])
    assert m["c_array"]["symbol"] == "model"  # from the file name
    assert m["tflm"]["arena"]["min_bytes"] > 0


def test_no_report_means_no_preprocessing(int8_model, tmp_path):
    lone = tmp_path / "lone.tflite"
    shutil.copy(int8_model, lone)
    result = run_cli("bundle", lone, "--out", tmp_path / "b", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    m = json.loads(result.stdout)["manifest"]
    assert m["preprocessing"] is None and any("no report.json" in n for n in m["notes"])
    assert m["c_array"]["symbol"] == "lone" and m["model"]["file"] == "lone.tflite"
    assert "Unknown" in (tmp_path / "b" / "README.md").read_text()


def test_existing_folder_needs_force(int8_model, tmp_path):
    out = tmp_path / "b"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = run_cli("bundle", int8_model, "--out", out)
    assert_clean_error(result, "exists and is not empty: pick a new folder, or pass --force")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    result = run_cli("bundle", int8_model, "--out", out, "--force")
    assert result.returncode == 0, result.stderr[-3000:]
    assert {p.name for p in out.iterdir()} == ALL_FILES and leftovers(tmp_path) == []
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_cli("bundle", int8_model, "--out", empty).returncode == 0


@pytest.mark.parametrize("case, message", [
    ("missing", "missing.tflite: no such file"),
    ("txt", "bundle takes .tflite or .onnx files"),
    ("corrupt", "corrupt.tflite"),
    ("labels", "has 3 labels but the model's output"),
    ("labels_missing", "--labels"),
    ("name_digit", "--name '9lives' is not a C identifier"),
    ("name_keyword", "--name 'static' is a C/C++ keyword"),
    ("flash", "of flash"),
    ("ram", "tensor arena"),
    ("out_is_file", "is a file: give a folder path"),
])
def test_bad_input_exit_2_and_no_folder(case, message, int8_model, tmp_path):
    model, extra = int8_model, []
    if case == "missing":
        model = tmp_path / "missing.tflite"
    elif case == "txt":
        model = tmp_path / "notes.txt"
        model.write_text("hello")
    elif case == "corrupt":
        model = tmp_path / "corrupt.tflite"
        model.write_bytes(int8_model.read_bytes()[:200])
    elif case == "labels":
        (tmp_path / "l.txt").write_text("a\nb\nc\n")
        extra = ["--labels", tmp_path / "l.txt"]
    elif case == "labels_missing":
        extra = ["--labels", tmp_path / "nope.txt"]
    elif case == "name_digit":
        extra = ["--name", "9lives"]
    elif case == "name_keyword":
        extra = ["--name", "static"]
    elif case == "flash":  # the ~36 KiB model, 16 KiB of flash
        extra = ["--target", mcu(tmp_path, "mcu-tiny-flash", ram_kb=512, flash_kb=16)]
    elif case == "ram":  # a ~9 KiB arena, 4 KiB of RAM
        extra = ["--target", mcu(tmp_path, "mcu-tiny-ram", ram_kb=4, flash_kb=1024)]
    out = tmp_path / "out"
    if case == "out_is_file":
        out.write_text("x")
    result = run_cli("bundle", model, "--out", out, *extra)
    assert_clean_error(result, message)
    if case != "out_is_file":
        assert not out.exists()
    assert [n for n in leftovers(tmp_path)] == []
    if case == "flash":
        size = int8_model.stat().st_size
        assert f"{size} bytes ({size / 1024:.1f} KiB) but target mcu-tiny-flash has 16 KiB" in result.stderr
    if case == "ram":
        assert "4 KiB of RAM" in result.stderr and "minimum" in result.stderr


def test_ops_tflm_lacks_exit_1_listing_them(tmp_path):
    """GELU has no TFLM kernel: refused with exit 1 (the C program could not run), nothing written."""
    (tmp_path / "gelu.py").write_text(
        "import torch\n"
        "class G(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.fc = torch.nn.Linear(8, 4)\n"
        "        self.example_inputs = (torch.randn(1, 8),)\n"
        "    def forward(self, x):\n"
        "        return self.fc(torch.nn.functional.gelu(x))\n"
        "def net():\n"
        "    torch.manual_seed(0)\n"
        "    return G()\n")
    import edgehad

    edgehad.convert(f"{tmp_path / 'gelu.py'}:net", formats=["tflite"], out=tmp_path / "conv")
    out = tmp_path / "out"
    result = run_cli("bundle", tmp_path / "conv" / "model.tflite", "--out", out)
    assert_clean_error(result, "uses ops TensorFlow Lite Micro has no kernel for: GELU;", code=1)
    assert "no bundle was written" in result.stderr
    assert not out.exists() and leftovers(tmp_path) == []


def test_failed_bundle_keeps_the_old_folder(int8_model, tmp_path):
    """--force with a bad input: the previous bundle stays exactly as it was."""
    out = tmp_path / "b"
    assert run_cli("bundle", int8_model, "--out", out).returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    result = run_cli("bundle", int8_model, "--out", out, "--force", "--target",
                     mcu(tmp_path, "mcu-small", ram_kb=4, flash_kb=1024))
    assert_clean_error(result, "tensor arena")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert leftovers(tmp_path) == []


def test_broken_manifest_fails_validation_with_the_key(bundled, tmp_path):
    from edgehad.bundle import validate_manifest
    from edgehad.core.errors import UserInputError

    good = json.loads((bundled[0] / "manifest.json").read_text())
    missing = json.loads(json.dumps(good))
    del missing["model"]["sha256"]
    with pytest.raises(UserInputError, match=r"at model: 'sha256' is a required property"):
        validate_manifest(missing)
    wrong = json.loads(json.dumps(good))
    wrong["model"]["size_bytes"] = "38 KiB"
    with pytest.raises(UserInputError, match=r"at model/size_bytes: '38 KiB' is not of type 'integer'"):
        validate_manifest(wrong)
    wrong = json.loads(json.dumps(good))
    wrong["inputs"][0]["quantization"]["scale"] = -1.0
    with pytest.raises(UserInputError, match=r"at inputs/0/quantization"):
        validate_manifest(wrong)
    (tmp_path / "m.json").write_text("{not json")
    with pytest.raises(UserInputError, match=r"m.json cannot be read as JSON"):
        validate_manifest(tmp_path / "m.json")


def test_shipped_schema_accepts_a_real_manifest_and_refuses_a_wrong_one(bundled):
    """The schema file in the installed package, read on its own, is what a bundle's manifest is checked against."""
    from importlib import resources

    import jsonschema

    from edgehad.bundle import validate_manifest
    from edgehad.bundle.manifest import load_schema
    from edgehad.core.errors import UserInputError

    shipped = resources.files("edgehad.bundle").joinpath("manifest.schema.json")
    schema = json.loads(shipped.read_text(encoding="utf-8"))
    assert load_schema() == schema
    jsonschema.validators.validator_for(schema).check_schema(schema)
    out, _ = bundled
    manifest = json.loads((out / "manifest.json").read_text())
    jsonschema.validate(manifest, schema)  # a manifest bundle wrote is valid by the shipped file itself
    for key, value, where in [("schema_version", 2, "at schema_version"), ("inputs", [], "at inputs")]:
        wrong = dict(manifest, **{key: value})
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(wrong, schema)
        with pytest.raises(UserInputError, match=where):
            validate_manifest(wrong)


def test_a_manifest_with_a_non_finite_number_is_refused(bundled, tmp_path):
    """JSON Schema's "number" admits NaN (Python's json reads the NaN token): the manifest check does not."""
    from edgehad.bundle import validate_manifest
    from edgehad.core.errors import UserInputError

    out, _ = bundled
    text = (out / "manifest.json").read_text()
    doc = json.loads(text)
    doc["inputs"][0]["quantization"]["scale"] = float("nan")
    bad = tmp_path / "manifest.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(UserInputError, match=r"at inputs\[0\].quantization.scale: nan is not a finite number"):
        validate_manifest(bad)
