"""The bundle's target check on an ONNX file: edgehad.micro's target_check, the manifest's own key names.

An ONNX bundle has no TFLM arena, so RAM is not judged (``arena_fits_ram`` null); its flash size counts the
external data file, which the bundle carries beside the model. No TFLM run: quick.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import edgehad.bundle
from edgehad.core.errors import UserInputError
from edgehad.micro.checker import target_check

TARGET = """name = "{name}"
description = "a made-up microcontroller for tests"
runtime = "tflite"
memory_bandwidth_gbs = 0.5
ram_kb = 64
flash_kb = {flash_kb}
[cpu]
cores = 1
clock_ghz = 0.1
isa = ["armv7e-m"]
[peak]
fp32_gops = 0.2
int8_gops = 0.4
"""


def onnx_with_big_data(folder: Path) -> Path:
    """y = x @ W with W[256, 256] float32 (256 KiB) in ``model.onnx.data``; the .onnx itself is tiny."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((256, 256)).astype(np.float32), "W")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 256])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 256])], [w])
    path = folder / "model.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path),
                    save_as_external_data=True, all_tensors_to_one_file=True, location="model.onnx.data",
                    size_threshold=0)
    return path


def target(tmp_path: Path, name: str, flash_kb: int) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(TARGET.format(name=name, flash_kb=flash_kb))
    return path


def test_onnx_target_counts_external_data_and_leaves_ram_unjudged(tmp_path):
    model = onnx_with_big_data(tmp_path)
    assert model.stat().st_size < 1024 and (tmp_path / "model.onnx.data").stat().st_size == 256 * 256 * 4
    doc = edgehad.bundle.build(model, tmp_path / "fits", target=target(tmp_path, "mcu-1m", 1024), warn=print)
    assert doc["manifest"]["target"] == {"name": "mcu-1m", "ram_kb": 64, "flash_kb": 1024,
                                         "model_fits_flash": True, "arena_fits_ram": None}
    size = model.stat().st_size + 256 * 256 * 4  # the model alone would fit 256 KiB; with its data it does not
    with pytest.raises(UserInputError, match=rf"^model.onnx is {size} bytes \({size / 1024:.1f} KiB\) but target "
                                             r"mcu-256k has 256 KiB of flash: quantize it"):
        edgehad.bundle.build(model, tmp_path / "too-big", target=target(tmp_path, "mcu-256k", 256))
    assert not (tmp_path / "too-big").exists()


def test_target_check_without_an_arena_judges_flash_only():
    entry, problems = target_check({"name": "m", "ram_kb": 4, "flash_kb": 1}, None, "recommended", 2048)
    assert entry["ram_fits"] is None and entry["arena_bytes"] is None and entry["flash_fits"] is False
    assert problems == ["the model does not fit target m: the file is 2.0 KiB but m has 1.0 KiB of flash"]
    entry, problems = target_check({"name": "m", "ram_kb": 4, "flash_kb": 1}, 8192, "requested", 512)
    assert entry["ram_fits"] is False and entry["flash_fits"] is True
    assert problems == ["the model does not fit target m: its arena needs 8.0 KiB (requested) but m has 4.0 KiB "
                        "of RAM"]
