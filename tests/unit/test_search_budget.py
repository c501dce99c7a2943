"""MCU budgets of the search (issue #16): ram_kb and flash_kb, the ram and flash objectives, and where they apply.

What TFLite Micro measures is tests/e2e/test_search.py's (a real search on an MCU target); here, the keys,
the constraints they make, and the refusals that come before any trial.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edgehad.core.errors import UserInputError
from edgehad.search import objectives as obj

MCU = """name = "{name}"
description = "a made-up Cortex-M4 board for tests"
runtime = "tflite"
memory_bandwidth_gbs = 0.4
ram_kb = 256
{flash}
[cpu]
cores = 1
clock_ghz = 0.08
isa = ["armv7e-m"]
[peak]
fp32_gops = 0.16
int8_gops = 0.32
"""
ONNX_ONLY = "[stages.quantize]\nscheme = \"int8\"\n[stages.export-onnx]\n"


def _target(tmp_path: Path, flash: bool = True) -> Path:
    name = "mcu" if flash else "board"
    path = tmp_path / f"{name}.toml"
    path.write_text(MCU.format(name=name, flash="flash_kb = 1024" if flash else ""))
    return path


def test_ram_and_flash_bounds_parse_and_constrain_like_the_others():
    assert obj.parse_budget("ram_kb=256,flash_kb=1024") == {"ram_kb": 256.0, "flash_kb": 1024.0}
    assert obj.parse_budget({"ram_kb": 64}) == {"ram_kb": 64.0}
    metrics = {"ram_kb": 300.5, "flash_kb": 40.0, "accuracy": 0.97}
    budget = {"ram_kb": 256.0, "flash_kb": 1024.0}
    assert obj.constraints(metrics, budget) == {"ram_kb": 44.5, "flash_kb": -984.0}
    assert obj.broken_bounds(metrics, budget) == ["ram_kb 300.5 > 256"]
    for bad, said in [("ram_kb=-1", "`budget` ram_kb must be >= 0, got -1"),
                      ("flash_kb=inf", "`budget` flash_kb must be a finite number"),
                      ("ram=256", "unknown `budget` key 'ram': use latency_ms, size_kb, ram_kb, flash_kb, accuracy")]:
        with pytest.raises(UserInputError, match=re.escape(said)):
            obj.parse_budget(bad)


def test_ram_and_flash_objectives_read_the_micro_metrics():
    names = obj.parse_objectives("accuracy,ram,flash")
    assert names == ("accuracy", "ram", "flash")
    assert [obj.OBJECTIVES[n] for n in names[1:]] == [("ram_kb", "minimize"), ("flash_kb", "minimize")]
    assert obj.values({"accuracy": 0.9, "ram_kb": 9.0, "flash_kb": 37.7}, names) == [0.9, 9.0, 37.7]
    assert obj.values({"accuracy": 0.9, "ram_kb": None, "flash_kb": 37.7}, names) is None  # not measured
    assert obj.needs_micro(names, {"ram_kb": 1.0, "size_kb": 2.0}) == ["ram", "flash", "ram_kb"]
    assert obj.needs_micro(("accuracy", "size"), {"latency_ms": 5.0}) == []


def test_an_mcu_is_a_target_with_flash(tmp_path):
    from edgehad.targets import load_target

    assert obj.is_mcu(load_target(_target(tmp_path)))
    assert not obj.is_mcu(load_target(_target(tmp_path, flash=False)))
    assert not obj.is_mcu(load_target("rpi4"))


@pytest.mark.parametrize("kwargs, said", [
    ({"budget": "ram_kb=256"}, "`budget` key ram_kb is TFLite Micro's figure for a microcontroller: give `target` "
                               "an MCU description (a target .toml with ram_kb and flash_kb)"),
    ({"objectives": "accuracy,flash"}, "objective flash is TFLite Micro's figure for a microcontroller: give "
                                       "`target` an MCU description"),
    ({"budget": "flash_kb=1024", "target": "rpi4"}, "`budget` key flash_kb is TFLite Micro's figure"),
    ({"budget": "ram_kb=256", "target": "board"}, "`budget` key ram_kb is TFLite Micro's figure"),
    ({"target": "mcu", "space": "onnx"}, "target mcu is a microcontroller, which runs a .tflite file: add "
                                         "[stages.export-tflite] to the search space"),
], ids=["no-target", "objective", "board-with-os", "no-flash", "onnx-only"])
def test_micro_figures_need_an_mcu_target_and_a_tflite_file_before_any_trial(tmp_path, kwargs, said):
    from edgehad import api

    kwargs = dict(kwargs)
    if kwargs.get("target") in ("mcu", "board"):
        kwargs["target"] = str(_target(tmp_path, flash=kwargs["target"] == "mcu"))
    if kwargs.get("space") == "onnx":
        (tmp_path / "onnx.toml").write_text(ONNX_ONLY)
        kwargs["space"] = str(tmp_path / "onnx.toml")
    with pytest.raises(UserInputError) as raised:
        api.search("zoo:digits_cnn", data="digits", out=tmp_path / "o", **kwargs)
    assert str(raised.value).startswith(said)
    assert not (tmp_path / "o").exists()  # refused before the study, the model or the data


def test_weights_and_model_args_are_checked_before_any_trial(tmp_path):
    from edgehad import api

    with pytest.raises(UserInputError, match=re.escape(f"`weights` {tmp_path / 'no.pt'}: no such file")):
        api.search("zoo:digits_cnn", data="digits", out=tmp_path / "o", weights=tmp_path / "no.pt")
    with pytest.raises(UserInputError, match="`model_args` must hold plain values"):
        api.search("zoo:digits_cnn", data="digits", out=tmp_path / "o", model_args={"act": object()})
    assert not (tmp_path / "o").exists()
