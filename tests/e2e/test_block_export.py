"""Every catalogued Hadamard block exports to ONNX and TFLite with builtin ops and float parity."""

from __future__ import annotations

import pytest
import torch

from edgehad.blocks.catalogue import DOMAINS, catalogue
from edgehad.core.capture import captured
from edgehad.export.verify import compare, runtime_outputs, torch_outputs

ENTRIES = catalogue()


def layout_transposes(path) -> list[int]:
    """TFLite TRANSPOSE ops that neither read a model input nor write a model output."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(str(path))
    inputs = {d["index"] for d in it.get_input_details()}
    outputs = {d["index"] for d in it.get_output_details()}
    return [op["index"] for op in it._get_ops_details() if op["op_name"] == "TRANSPOSE"
            and not (set(op["inputs"]) & inputs) and not (set(op["outputs"]) & outputs)]


def test_catalogue_covers_the_four_domains():
    assert {e.domain for e in ENTRIES.values()} == set(DOMAINS)


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_block_parity_in_both_formats(name, tmp_path):
    from edgehad.export.onnx import export_onnx
    from edgehad.export.tflite import export_tflite
    from edgehad.inspection import inspect_file

    entry = ENTRIES[name]
    model, example = entry.example()
    gen = torch.Generator().manual_seed(1)
    samples = [tuple(torch.randn(t.shape, generator=gen) * 2 for t in example) for _ in range(3)]
    samples = [tuple(t.numpy() for t in s) for s in samples]
    reference = torch_outputs(model, samples)
    with captured():
        onnx_path = export_onnx(model, example, tmp_path / "block.onnx")
        tflite_path = export_tflite(model, example, tmp_path / "block.tflite")
    for path in (onnx_path, tflite_path):
        parity = compare(reference, runtime_outputs(str(path), samples))
        assert parity.passed, (path.suffix, parity)
        ops = inspect_file(path)["ops"]
        assert not [op for op in ops if op.startswith("Flex") or op in ("CUSTOM", "custom")], ops
    assert layout_transposes(tflite_path) == [], inspect_file(tflite_path)["ops"]
