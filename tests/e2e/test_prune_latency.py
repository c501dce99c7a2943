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


def _blocks_convert(tmp_path, ratio, blocks):
    recipe = tmp_path / "blocks.toml"
    recipe.write_text(f'name = "blocks-latency"\n[stages.prune]\nratio = {ratio}\ntarget = "latency"\n'
                      f'blocks = {blocks}\nlatency = false\n[stages.export-onnx]\n')
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGEHAD_LATENCY_CACHE", str(tmp_path / "cache"))
        return run_cli("convert", "zoo:mobilenet_v2", "--model-arg", "width_mult=0.35", "--model-arg",
                       "input_size=64", "--model-arg", "num_classes=10", "--recipe", str(recipe),
                       "--out", str(tmp_path / "out"), "--json")


def test_blocks_and_a_latency_target_count_from_the_original(tmp_path):
    """--prune-blocks with --prune-target latency: blocks ranked per table microsecond, the ratio of the original."""
    result = _blocks_convert(tmp_path, 0.35, 0.5)
    assert result.returncode == 0, result.stderr[-3000:]
    info = next(s for s in json.loads(result.stdout)["stages"] if s["name"] == "prune")["pruning"]
    blocks, target = info["blocks"], info["latency_target"]
    assert blocks["candidates"] == 10 and len(blocks["removed"]) == 5
    assert blocks["ranked_by"] == "influence per table microsecond"
    ratio = {b: blocks["influence"][b] / blocks["table_us"][b] for b in blocks["influence"]}
    assert sorted(blocks["removed"], key=ratio.get) == sorted(ratio, key=ratio.get)[:5]
    gone = target["removed_blocks"]
    assert gone["layers"] == 15 and gone["table_us"] == pytest.approx(
        sum(blocks["table_us"][b] for b in blocks["removed"]), abs=0.2)
    # the widths pay only the part of the asked 0.35 the blocks did not: a table ratio of the original
    # (this 64x64 model's thinnest widths reach ~0.5 of it: fixed per-layer cost, so 0.4 asked came within
    # noise of that floor beside a parallel test worker), within the 3% the stage allows before it warns
    from edgehad.prune.allocate import CLOSE

    assert 0.15 < gone["share"] < 0.35 and target["asked"] == 0.65
    assert 0.45 <= target["table_ratio"] <= 0.65 * (1 + CLOSE) + 1e-6
    assert info["macs"][1] < info["macs"][0] and any(g.get("removed") for g in info["groups"])


def test_blocks_that_already_remove_the_asked_latency_are_one_line(tmp_path):
    result = _blocks_convert(tmp_path, 0.1, 1.0)
    assert_clean_error(result, "--prune-blocks alone removes")
    assert "already the --prune 0.1 asked: raise --prune above 0." in result.stderr
    assert not (tmp_path / "out").exists()
