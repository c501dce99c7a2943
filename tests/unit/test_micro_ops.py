"""edgehad.micro.ops (op list -> MicroMutableOpResolver entries) and the child-process probe, on the
small float model the tflite-micro wheel ships (sine_float.tflite: one FULLY_CONNECTED chain)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgehad.micro.ops import RESOLVER_METHODS, model_ops, resolver_entries, unsupported_ops


@pytest.fixture(scope="module")
def sine() -> Path:
    import tflite_micro

    return Path(tflite_micro.__file__).parent / "python" / "tflite_micro" / "sine_float.tflite"


def test_table_spells_tflm_methods():
    methods = list(RESOLVER_METHODS.values())
    assert len(methods) == len(set(methods)) == 118  # every Add* of micro_mutable_op_resolver.h, once
    assert all(m.startswith("Add") and m.isidentifier() for m in methods)
    assert all(op == op.upper() or op.startswith("CUSTOM:") for op in RESOLVER_METHODS)
    # the ones a CNN needs, spelled as the header spells them (note Conv2D, MaxPool2D, HardSwish)
    expected = {"CONV_2D": "AddConv2D", "FULLY_CONNECTED": "AddFullyConnected",
                "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D", "QUANTIZE": "AddQuantize", "DEQUANTIZE": "AddDequantize",
                "RESHAPE": "AddReshape", "MEAN": "AddMean", "LOGISTIC": "AddLogistic", "HARD_SWISH": "AddHardSwish",
                "MUL": "AddMul", "ADD": "AddAdd", "MAX_POOL_2D": "AddMaxPool2D", "AVERAGE_POOL_2D": "AddAveragePool2D",
                "SOFTMAX": "AddSoftmax", "PAD": "AddPad", "PADV2": "AddPadV2", "TRANSPOSE": "AddTranspose",
                "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
                "CUSTOM:TFLite_Detection_PostProcess": "AddDetectionPostprocess"}
    assert {op: RESOLVER_METHODS[op] for op in expected} == expected


def test_entries_follow_the_ops_and_skip_what_tflm_lacks():
    ops = ["CONV_2D", "RELU_0_TO_1", "FULLY_CONNECTED", "CONV_2D", "CUSTOM:MyOp"]
    assert resolver_entries(ops) == ["AddConv2D", "AddFullyConnected"]
    assert unsupported_ops(ops) == ["CUSTOM:MyOp", "RELU_0_TO_1"]
    assert resolver_entries([]) == [] and unsupported_ops([]) == []
    # ops TFLM really lacks (no Add* in the header): the reason micro exits 1 for them
    assert unsupported_ops(["RELU_0_TO_1", "GELU", "STABLEHLO_ADD", "ADD"]) == ["GELU", "RELU_0_TO_1", "STABLEHLO_ADD"]


def test_model_ops_reads_the_flatbuffer(sine):
    assert model_ops(sine) == ["FULLY_CONNECTED"]
    assert resolver_entries(model_ops(sine)) == ["AddFullyConnected"]


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    (b"", "the file is empty"),
    (b"\x10\x00\x00\x00TFL3" + b"\xff" * 8, "is not a valid TFLite file"),
    (b"not a flatbuffer at all", "no TFL3 identifier"),
])
def test_model_ops_bad_files(content, message, tmp_path):
    from edgehad.core.errors import UserInputError

    path = tmp_path / "m.tflite"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UserInputError, match=message):
        model_ops(path)


def test_probe_in_a_child_process(sine, tmp_path):
    """Too small: TFLM fails (an error or a SIGSEGV) and the parent lives on; large enough: outputs come back."""
    from edgehad.micro.arena import run_probe

    x = np.linspace(0, 6, 5, dtype=np.float32).reshape(5, 1, 1)
    inputs = tmp_path / "in.npz"
    np.savez(inputs, in_0=x, n_outputs=np.array(1))
    small = run_probe(sine, 64, inputs)
    assert not small.works and small.allocation_failure
    assert "Failed to allocate" in small.reason or "crashed with SIGSEGV" in small.reason
    out = tmp_path / "out.npz"
    big = run_probe(sine, 64 * 1024, inputs, out)
    assert big.works and big.reason == "" and big.recorded_bytes > 0
    y = np.load(out)["out_0"]
    assert y.shape == (5, 1, 1)
    # the sine model approximates sin(x) on [0, 2*pi]: a model that runs gives numbers near it
    assert np.max(np.abs(y.ravel() - np.sin(x.ravel()))) < 0.2


def test_check_on_the_sine_model(sine):
    import edgehad.micro

    r = edgehad.micro.check(sine, find_arena=True, samples=4)
    assert r["ops"] == ["FULLY_CONNECTED"] and r["resolver"] == ["AddFullyConnected"] and r["unsupported"] == []
    assert r["float_model"] is True and "most MCUs want int8" in r["warning"]
    assert r["parity"]["passed"] and r["parity"]["max_steps"] is None
    assert r["parity"]["max_abs"] <= r["parity"]["outputs"][0]["tolerance"]
    a = r["arena"]
    assert a["resolution_bytes"] <= 256 and a["min_bytes"] % 16 == 0
    assert a["recommended_bytes"] >= a["min_bytes"] * 1.1 and a["recommended_bytes"] % 1024 == 0
    worked = {p["bytes"] for p in a["probes"] if p["works"]}
    failed = {p["bytes"] for p in a["probes"] if not p["works"]}
    assert a["min_bytes"] in worked and a["min_bytes"] - a["resolution_bytes"] in failed | {a["lower_bound_bytes"]}
    assert max(failed) < a["min_bytes"] <= min(worked)


def test_check_stays_callable_after_its_module_is_imported(sine):
    """``edgehad.micro.check`` is a function; a submodule of the same name used to replace it after the
    first call, so a second call in one process (bundle after micro) failed with 'module is not callable'."""
    import edgehad.micro

    first = edgehad.micro.check(sine, arena_kb=64, samples=2)
    second = edgehad.micro.check(sine, arena_kb=64, samples=2)
    assert callable(edgehad.micro.check)
    assert first["arena"]["works"] is True and second["arena"]["works"] is True
    assert first["ops"] == second["ops"] == ["FULLY_CONNECTED"]
