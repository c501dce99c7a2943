"""edgehad convert --prune-target latency: a real model, a real per-layer table, the report's three ratios."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli
from tests.e2e.test_cli_convert import assert_clean_error


def _convert(out, cache):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGEHAD_LATENCY_CACHE", str(cache))
        result = run_cli("convert", "zoo:resnet8", "--prune", "0.5", "--prune-target", "latency", "--format", "onnx",
                         "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    return report, next(s for s in report["stages"] if s["name"] == "prune")["pruning"]


@pytest.fixture(scope="module")
def pruned(tmp_path_factory):
    root = tmp_path_factory.mktemp("latency")
    return (*_convert(root / "out", root / "cache"), root)


def test_files_and_the_three_ratios(pruned):
    from edgehad.prune.allocate import calibrated

    report, info, root = pruned
    assert {p.name for p in (root / "out").iterdir()} == {"model.onnx", "report.json", "report.md"}
    target = info["latency_target"]
    assert target["asked"] == 0.5 and info["settings"]["target"] == "latency"
    assert (target["format"], target["scheme"], target["threads"]) == ("onnx", "fp32", 1)
    # the prediction is the table's ratio through the calibration the timings in the report fitted
    assert 0 < target["table_ratio"] <= 1
    points = [(c["table"], c["measured"]) for c in target["calibration"]]
    assert len(points) <= 2 and all(0 < r for _, r in points)
    assert target["predicted"] == pytest.approx(calibrated(points, target["table_ratio"]), abs=1e-3)
    assert target["measured"] == info["latency"]["onnx"]["ratio"] > 0
    assert set(info["latency"]) == {"method", "onnx"}          # timed in the table's format only
    table = target["table"]
    assert table["layers"] == 10 and table["entries_used"] == 10 and table["measured_now"] >= 10
    assert (root / "cache").is_dir() and table["cache"].startswith(str(root / "cache"))
    kept = {g["group"]: g["kept"] for g in info["groups"] if "kept" in g}
    assert kept and all(k % 8 == 0 and k >= 8 for k in kept.values())   # round_to 8
    assert any(k < g["channels"] for g in info["groups"] if "kept" in g for k in [g["kept"]])
    md = (root / "out" / "report.md").read_text()
    line = next(ln for ln in md.splitlines() if ln.startswith("- latency target"))
    assert f"{target['asked']:.3f}x asked" in line and f"{target['predicted']:.3f}x predicted" in line
    assert f"{target['measured']:.3f}x measured" in line


def test_a_second_run_measures_no_layer(tmp_path):
    # without whole-model timings (`[stages.prune] latency = false`) the allocation follows the table alone,
    # so the second run asks for exactly the widths the first measured (with them, the calibration's
    # timings may steer it to widths not measured yet)
    recipe = tmp_path / "latency.toml"
    recipe.write_text('name = "latency"\n[stages.prune]\nratio = 0.5\ntarget = "latency"\nlatency = false\n'
                      '[stages.export-onnx]\n')
    firsts = []
    for out in ("first", "second"):
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("EDGEHAD_LATENCY_CACHE", str(tmp_path / "cache"))
            result = run_cli("convert", "zoo:resnet8", "--recipe", str(recipe), "--out", str(tmp_path / out), "--json")
        assert result.returncode == 0, result.stderr[-3000:]
        info = next(s for s in json.loads(result.stdout)["stages"] if s["name"] == "prune")["pruning"]
        target = info["latency_target"]
        assert target["calibration"] == [] and target["measured"] is None and "latency" not in info
        assert target["predicted"] == target["table_ratio"]
        firsts.append((target["table"]["measured_now"], {g["group"]: g.get("kept") for g in info["groups"]}))
    (measured_first, kept_first), (measured_second, kept_second) = firsts
    assert measured_first >= 10 and measured_second == 0
    assert kept_second == kept_first


@pytest.mark.parametrize("args, message", [
    (["--prune-structure", "elements"], "--prune-target latency needs --prune-structure channels"),
    (["--prune-steps", "2"], "use --prune-steps 1"),
    (["--format", "tflite"], "writes no ONNX file"),
], ids=["elements", "steps", "tflite-only"])
def test_bad_combinations_are_one_line_exit_2(tmp_path, args, message):
    result = run_cli("convert", "zoo:resnet8", "--prune", "0.5", "--prune-target", "latency", *args,
                     "--out", str(tmp_path / "out"))
    assert_clean_error(result, message)
    assert not (tmp_path / "out").exists()
