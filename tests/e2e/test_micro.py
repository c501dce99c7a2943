"""``edgehad micro`` on int8 zoo models and a float one, through real subprocesses and the real TFLM kernels."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli
from tests.e2e.test_cli_convert import assert_clean_error

KEYS = {"path", "tflm_version", "size_bytes", "ops", "resolver", "unsupported", "float_model", "warning", "samples",
        "inputs_drawn", "input_shapes", "parity", "arena", "target", "problems"}
FOUND_KEYS = {"min_bytes", "recommended_bytes", "margin", "resolution_bytes", "lower_bound_bytes",
              "tflm_recorded_bytes", "probes", "host_note"}
# the NHWC file (the default layout): no TRANSPOSE at the input, none left before the MEAN (folded into its
# axes), and the [N, C, 1, 1] -> [N, C] reshape gone with them
DIGITS_RESOLVER = ["AddConv2D", "AddDepthwiseConv2D", "AddDequantize", "AddFullyConnected", "AddMaxPool2D",
                   "AddMean", "AddQuantize"]
DIGITS32 = "digits?size=32&channels=3"
# How each zoo model becomes an int8 file here, at a size small enough for a test. Every registered
# model is tested (test_every_int8_zoo_model enumerates the zoo); one not listed gets DEFAULT_INT8. calib="random"
# where the random-weight model survives the converter's int8 check; the gated models use their digits
# weights and real data. "loose": the random-weight MobileNets miss the converter's bar (file against the
# quantized torch model, cosine >= 0.99; measured 0.975-0.98 for mobilenet_v1_025, 0.94 for mobilenet_v2 at
# width 0.35, 64 px), so they are converted with LOOSE_RECIPE: these tests are about TFLM, not that bar.
DEFAULT_INT8 = {"calib": "random"}
INT8 = {
    "digits_cnn": {"data": "digits"},
    "resnet8": {"calib": "random"},
    "ds_cnn": {"calib": "random"},
    "mobilenet_v3_small": {"model_args": {"pretrained": "digits"}, "data": DIGITS32},
    "efficientnet_b0": {"model_args": {"pretrained": "digits"}, "data": DIGITS32},
    "fc_autoencoder": {"calib": "random"},
    "mobilenet_v1_025": {"loose": True, "formats": ["tflite"]},
    "mobilenet_v2": {"loose": True, "formats": ["tflite"],
                     "model_args": {"width_mult": 0.35, "num_classes": 10, "input_size": 64}},
    "transformer_encoder": {"calib": "random", "formats": ["tflite"],
                            "model_args": {"seq_len": 16, "dim": 32, "heads": 4, "depth": 1}},
    "digits_transformer": {"data": "digits", "formats": ["tflite"]},
}
LOOSE_RECIPE = """name = "int8-loose"
description = "int8 for the micro tests: random calibration, a lower cosine bar"
[stages.quantize]
scheme = "int8"
calib = "random"
[stages.export-tflite]
[stages.verify]
min_cosine = 0.9
"""
# int8 zoo files with ops TFLM has no kernel for (measured): micro names them and exits 1
TFLM_LACKS = {"transformer_encoder": ["GELU"], "digits_transformer": ["GELU"]}
# TFLM against LiteRT's reference kernels, beyond the one-step bar (measured): on fc_autoencoder the two round
# one requantization of its 4th FULLY_CONNECTED differently on some inputs (one step), and the 7 layers
# after it grow that to 2 steps at the output. Asserted, so that a fix (or a worse drift) shows here.
PARITY_STEPS = {"fc_autoencoder": 2.0}


@pytest.fixture(scope="session")
def zoo(tmp_path_factory, request):
    """Converted files on demand, each converted once per session: zoo("resnet8") -> path of model.tflite."""
    import edgehad

    root, done = tmp_path_factory.mktemp("micro"), {}

    def get(name: str, quantize: str | None = "int8", int8_io: bool = False) -> Path:
        key = (name, quantize, int8_io)
        if name == "digits_cnn":  # the session's shared digits_cnn conversions (tests/conftest.py)
            variant = "float" if quantize is None else "int8io" if int8_io else "int8"
            return request.getfixturevalue("digits_files")[variant] / "model.tflite"
        if key not in done:
            out = root / f"{name}-{quantize or 'float'}{'-io' if int8_io else ''}"
            kwargs = (dict(INT8.get(name, DEFAULT_INT8)) if quantize
                      else {"data": "digits"} if name == "digits_cnn" else {})
            if kwargs.pop("loose", False):
                (root / "loose.toml").write_text(LOOSE_RECIPE)
                kwargs["recipe"] = str(root / "loose.toml")
            edgehad.convert(f"zoo:{name}", quantize=quantize, int8_io=int8_io or None, out=out, **kwargs)
            done[key] = out / "model.tflite"
        return done[key]

    return get


@pytest.fixture(scope="session")
def digits8(zoo):
    return zoo("digits_cnn")


@pytest.fixture(scope="session")
def digits8_found(digits8):
    result = run_cli("micro", digits8, "--find-arena", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def _inputs(path: Path, tmp: Path, samples: int = 4) -> Path:
    """Inputs for the probe, drawn the way micro draws them (seeded), in the probe's .npz layout."""
    from edgehad.micro.samples import graph, make_inputs

    _, sub = graph(path)
    arrays, _ = make_inputs(sub, samples, seed=1)
    npz = tmp / "inputs.npz"
    np.savez(npz, **{f"in_{k}": a for k, a in enumerate(arrays)}, n_outputs=np.array(len(sub.outputs)))
    return npz


def assert_found_arena_is_tight(path: Path, arena: dict, tmp: Path):
    """The found minimum works, and 10% less (no margin) fails, each in its own TFLM child process."""
    from edgehad.micro.arena import run_probe

    assert FOUND_KEYS <= set(arena)
    assert 0 < arena["resolution_bytes"] <= 256 and arena["margin"] == 0.10
    assert arena["recommended_bytes"] == math.ceil(arena["min_bytes"] * 1.1 / 1024) * 1024
    assert "64-bit host" in arena["host_note"]
    npz = _inputs(path, tmp)
    ok = run_probe(path, arena["min_bytes"], npz)
    assert ok.works, ok.reason
    less = run_probe(path, int(arena["min_bytes"] * 0.9), npz)
    assert not less.works, less  # in TFLM's words or others (fc_autoencoder's are "kernel_util.cc:516 ...")
    # and the bisection's last failing size, just below the minimum, fails too
    below = run_probe(path, arena["min_bytes"] - arena["resolution_bytes"], npz)
    assert not below.works, below


def test_digits_int8_find_arena(digits8_found, digits8, tmp_path):
    r = digits8_found
    assert set(r) == KEYS
    assert r["path"] == str(digits8) and r["size_bytes"] == digits8.stat().st_size
    assert r["ops"] == ["CONV_2D", "DEPTHWISE_CONV_2D", "DEQUANTIZE", "FULLY_CONNECTED", "MAX_POOL_2D", "MEAN",
                        "QUANTIZE"]
    assert r["resolver"] == DIGITS_RESOLVER and r["unsupported"] == []
    assert r["float_model"] is False and r["warning"] is None and r["problems"] == [] and r["target"] is None
    assert r["tflm_version"].startswith("0.dev")
    p = r["parity"]
    assert p["passed"] and p["max_steps"] <= 1 and r["samples"] == 8
    out = p["outputs"][0]
    assert out["scale"] > 0 and math.isclose(out["max_abs"], out["max_steps"] * out["scale"], rel_tol=1e-6, abs_tol=1e-9)
    assert set(p["vs_default_kernels"]) == {"max_abs", "max_steps"}
    assert_found_arena_is_tight(digits8, r["arena"], tmp_path)


def test_int8_io_model(zoo, tmp_path):
    """int8 in and out, as an MCU application feeds it: integer inputs, parity counted in output steps."""
    path = zoo("digits_cnn", int8_io=True)
    result = run_cli("micro", path, "--find-arena", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    r = json.loads(result.stdout)
    assert "QUANTIZE" not in r["ops"] and "DEQUANTIZE" not in r["ops"]
    assert r["resolver"] == [m for m in DIGITS_RESOLVER if m not in ("AddQuantize", "AddDequantize")]
    assert r["inputs_drawn"] == ["uniform int8 over [-128, 127]"]
    out = r["parity"]["outputs"][0]
    assert out["dtype"] == "int8" and out["max_steps"] in (0.0, 1.0) and r["parity"]["passed"]
    assert_found_arena_is_tight(path, r["arena"], tmp_path)


def test_tflm_outputs_equal_litert_reference_kernels(digits8, tmp_path):
    """Independent of micro's comparison: the probe's outputs against LiteRT's reference kernels, by hand."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from edgehad.micro.arena import run_probe

    npz, out = _inputs(digits8, tmp_path, samples=6), tmp_path / "out.npz"
    assert run_probe(digits8, 64 * 1024, npz, out).works
    tflm = np.load(out)["out_0"]
    interp = Interpreter(model_path=str(digits8), experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    interp.allocate_tensors()
    x = np.load(npz)["in_0"]
    for s in range(len(x)):
        interp.set_tensor(interp.get_input_details()[0]["index"], x[s])
        interp.invoke()
        ref = interp.get_tensor(interp.get_output_details()[0]["index"])
        assert tflm[s].shape == ref.shape == (1, 10)
        np.testing.assert_array_equal(tflm[s], ref)  # the same integer arithmetic: bit for bit


def _zoo_models() -> list[str]:
    from edgehad.zoo import list_models

    return list_models()


@pytest.mark.slow
@pytest.mark.parametrize("name", _zoo_models())
def test_every_int8_zoo_model(name, zoo, tmp_path):
    """Every zoo model as int8: TFLM has its kernels (or micro names the missing ones), --find-arena finds an
    arena that runs while one resolution step less does not, and the outputs match LiteRT's (issue #15)."""
    from edgehad.micro.ops import model_ops, resolver_entries, unsupported_ops

    path = zoo(name)
    ops = model_ops(path)
    # a folded hard-sigmoid gate used to leave a RELU_0_TO_1, which TFLM has no kernel for:
    # quantize/pt2e.drop_saturating_gate_clamps removes it
    assert unsupported_ops(ops) == TFLM_LACKS.get(name, []), ops
    result = run_cli("micro", path, "--find-arena", "--json")
    if name in TFLM_LACKS:
        assert_clean_error(result, f"TFLM has no kernel for {', '.join(TFLM_LACKS[name])}:", code=1)
        return
    r = json.loads(result.stdout)  # the document comes with exit 1 too
    assert r["ops"] == ops and r["resolver"] == resolver_entries(ops) and len(r["resolver"]) == len(ops)
    assert r["float_model"] is False
    assert_found_arena_is_tight(path, r["arena"], tmp_path)
    p = r["parity"]
    if name in PARITY_STEPS:
        assert not p["passed"] and p["max_steps"] == PARITY_STEPS[name], p
        assert result.returncode == 1 and len(r["problems"]) == 1
        assert r["problems"][0].startswith("TFLM's outputs differ from LiteRT's reference kernels beyond the bar")
    else:
        assert result.returncode == 0, result.stderr[-3000:]
        assert p["passed"] and p["max_steps"] <= 1 and r["problems"] == [], p


@pytest.mark.slow
def test_a_failure_in_other_words_below_a_working_size_does_not_fit(zoo, tmp_path):
    """Issue #15: the int8 fc_autoencoder works with 64 KiB, and at TFLM's own count of that run (19,968 bytes)
    it fails with a kernel's check, not an allocator message. The search takes that for "does not fit"."""
    from edgehad.micro.arena import find_arena, run_probe

    path = zoo("fc_autoencoder")
    npz = _inputs(path, tmp_path, samples=1)
    top = run_probe(path, 64 * 1024, npz)
    assert top.works and top.recorded_bytes == 19_968
    p = run_probe(path, top.recorded_bytes, npz)
    assert not p.works and not p.allocation_failure, p
    assert p.reason == ("tensorflow/lite/micro/kernels/kernel_util.cc:516 false was not true. / tflm error: TFLM "
                        "failed to allocate tensors")
    said = []
    arena = find_arena(path, npz, lower=640, start=64 * 1024, progress=said.append)
    assert arena["min_bytes"] == 22_288 and arena["recommended_bytes"] == 24 * 1024, arena
    assert said[:2] == ["arena 65,536 bytes (64.0 KiB): works", "arena 19,968 bytes (19.5 KiB): does not fit"]
    assert run_probe(path, 22_288 - 16, npz).works is False  # the minimum to the byte alignment
    # one size, asked for: too small, not "TFLM cannot run it" (the cap, probed once, works)
    result = run_cli("micro", path, "--arena-kb", "19.5", "--json")
    assert result.returncode == 1 and "not for lack of memory" not in result.stderr
    r = json.loads(result.stdout)
    assert r["arena"] == {**r["arena"], "requested_bytes": 19_968, "works": False} and r["parity"] is None
    assert r["problems"][0].startswith(f"the model does not run with a 19.5 KiB arena ({p.reason}): try a larger")


def test_a_model_fault_is_told_at_the_largest_size(tmp_path):
    """A failure at every size is the model's: one probe at the cap decides, and TFLM's message is reported."""
    from edgehad.micro.arena import ArenaSearchError, first_working
    from tests.e2e.test_micro_bad_input import _mutated

    path = tmp_path / "scales.tflite"
    path.write_bytes(_mutated("weight_scales"))  # two weight scales for one output channel: TFLM refuses it
    said = []
    with pytest.raises(ArenaSearchError) as caught:
        first_working(path, _inputs(path, tmp_path, samples=1), start=4096, cap=1024 * 1024, progress=said.append)
    assert [m.split(":")[0] for m in said] == ["arena 4,096 bytes (4.0 KiB)", "arena 1,048,576 bytes (1,024.0 KiB)"]
    assert not caught.value.probe.allocation_failure and caught.value.probe.bytes == 1024 * 1024
    assert str(caught.value).startswith(f"{path}: TFLM cannot run it even with a 1,048,576 bytes (1,024.0 KiB) "
                                        f"arena (the largest tried), so not for lack of memory: ")
    assert caught.value.probe.reason in str(caught.value)


def test_float_model_runs_and_warns(zoo, tmp_path):
    path = zoo("digits_cnn", quantize=None)
    result = run_cli("micro", path, "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "warning: the model is float: TFLM runs it, but most MCUs want int8" in result.stderr
    r = json.loads(result.stdout)
    assert r["float_model"] is True and r["warning"].startswith("the model is float")
    assert "QUANTIZE" not in r["ops"] and r["resolver"] == [m for m in DIGITS_RESOLVER
                                                            if m not in ("AddQuantize", "AddDequantize")]
    p = r["parity"]
    assert p["passed"] and p["max_steps"] is None and p["max_abs"] <= 1e-4 * 10
    a = r["arena"]
    assert a["auto"] is True and a["works"] is True and a["requested_bytes"] >= 64 * 1024
    assert a["tflm_recorded_bytes"] < a["requested_bytes"]


def test_arena_kb_works_and_too_small(digits8, digits8_found):
    kib = digits8_found["arena"]["recommended_bytes"] // 1024
    result = run_cli("micro", digits8, "--arena-kb", kib, "--json", "--samples", "3")
    assert result.returncode == 0, result.stderr[-3000:]
    r = json.loads(result.stdout)
    assert r["arena"]["requested_bytes"] == kib * 1024 and r["arena"]["works"] is True
    assert r["parity"]["passed"] and r["samples"] == 3

    result = run_cli("micro", digits8, "--arena-kb", "1", "--json")
    assert result.returncode == 1
    r = json.loads(result.stdout)  # the document still comes, with the answer in it
    assert r["arena"] == {**r["arena"], "requested_bytes": 1024, "works": False} and r["parity"] is None
    assert r["arena"]["reason"]
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("error: ")]
    assert lines == [f"error: the model does not run with a 1.0 KiB arena ({r['arena']['reason']}): try a larger "
                     f"--arena-kb, or --find-arena"]


def _mcu(tmp_path: Path, ram_kb: int, flash_kb: int) -> Path:
    path = tmp_path / "tiny-mcu.toml"
    path.write_text(f'''name = "tiny-mcu"
description = "a made-up Cortex-M4 board for tests"
runtime = "tflite"
memory_bandwidth_gbs = 0.4
ram_kb = {ram_kb}
flash_kb = {flash_kb}
[cpu]
cores = 1
clock_ghz = 0.08
isa = ["armv7e-m"]
[peak]
fp32_gops = 0.16
int8_gops = 0.32
''')
    return path


def test_target_that_does_not_fit(digits8, digits8_found, tmp_path):
    arena = digits8_found["arena"]["recommended_bytes"]
    size = digits8.stat().st_size
    result = run_cli("micro", digits8, "--target", _mcu(tmp_path, ram_kb=4, flash_kb=16), "--json")
    assert result.returncode == 1
    t = json.loads(result.stdout)["target"]
    assert t == {**t, "name": "tiny-mcu", "ram_fits": False, "flash_fits": False, "arena_bytes": arena,
                 "model_bytes": size, "ram_kb": 4, "flash_kb": 16}
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1
    assert (f"its arena needs {arena / 1024:,.1f} KiB (recommended, with margin) but tiny-mcu has 4.0 KiB of RAM"
            in errors[0])
    assert f"the file is {size / 1024:,.1f} KiB but tiny-mcu has 16.0 KiB of flash" in errors[0]


def test_target_that_fits(digits8, tmp_path):
    result = run_cli("micro", digits8, "--target", _mcu(tmp_path, ram_kb=256, flash_kb=1024))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "vs 256 KiB RAM: fits" in result.stdout and "vs 1,024 KiB flash: fits" in result.stdout
    assert "smallest that works" in result.stdout  # --target implies --find-arena
    result = run_cli("micro", digits8, "--target", "rpi4", "--json", "--arena-kb", "64")
    assert result.returncode == 0, result.stderr[-3000:]
    t = json.loads(result.stdout)["target"]
    assert t["ram_fits"] and t["flash_fits"] is None and t["arena_bytes"] == 64 * 1024
    assert t["note"] == "flash not checked: target rpi4 has no flash_kb (a board with a file system)"


def test_no_arena_up_to_the_cap(digits8, tmp_path):
    from edgehad.micro.arena import ArenaSearchError, find_arena

    with pytest.raises(ArenaSearchError, match=r"no arena up to 4 KiB worked \(largest tried: 4,096 bytes"):
        find_arena(digits8, _inputs(digits8, tmp_path, 1), lower=16, start=1024, cap=4096)


def test_check_api_needs_no_torch(digits8):
    """The bundle helper calls edgehad.micro.check in-process; it must not pull in torch."""
    code = ("import sys, edgehad.micro\n"
            f"r = edgehad.micro.check({str(digits8)!r}, find_arena=True, samples=2)\n"
            "assert r['parity']['passed'] and r['arena']['min_bytes'] > 0\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.parametrize("args, message", [
    (["missing.tflite"], "missing.tflite: no such file: check the path"),
    (["model.onnx"], "model.onnx is not a .tflite file: TFLite Micro runs TFLite flatbuffers (convert it first"),
    (["corrupt.tflite"], "corrupt.tflite is not a valid TFLite file"),
    (["{digits}", "--arena-kb", "8", "--find-arena"], "--arena-kb and --find-arena exclude each other"),
    (["{digits}", "--arena-kb", "0"], "--arena-kb must be a number in (0, 262144], got 0 (KiB;"),
    (["{digits}", "--samples", "0"], "--samples must be an integer in [1, 1000], got 0"),
    (["{digits}", "--target", "no-such-board"], "unknown target 'no-such-board'; known targets:"),
])
def test_bad_input(args, message, digits8, tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    (tmp_path / "corrupt.tflite").write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(range(200)))
    args = [a.replace("{digits}", str(digits8)) for a in args]
    result = run_cli("micro", *args, cwd=tmp_path)
    assert_clean_error(result, message)


def test_ops_tflm_lacks_are_listed_and_exit_1(tmp_path):
    """A real GELU model: TFLM has no GELU kernel, so `micro` names it and exits 1 (no traceback)."""
    (tmp_path / "gelu.py").write_text(
        "import torch\n"
        "def net():\n"
        "    torch.manual_seed(0)\n"
        "    m = torch.nn.Sequential(torch.nn.GELU(), torch.nn.Linear(8, 4))\n"
        "    m.example_inputs = (torch.randn(1, 8),)\n"
        "    return m\n")
    import edgehad

    edgehad.convert(f"{tmp_path / 'gelu.py'}:net", formats=["tflite"], out=tmp_path / "conv")
    result = run_cli("micro", tmp_path / "conv" / "model.tflite")
    assert_clean_error(result, "TFLM has no kernel for GELU:", code=1)
