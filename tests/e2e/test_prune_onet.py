"""edgehad convert --prune on an ONet-shaped network (PReLU per channel, permute before the flatten), for real."""

from __future__ import annotations

import json

from tests.conftest import run_cli
from tests.unit.test_prune_real_architectures import ONET_SOURCE


def test_convert_prunes_onet_exactly_and_verifies_both_files(tmp_path):
    path = tmp_path / "onet.py"
    path.write_text(ONET_SOURCE)
    out = tmp_path / "out"
    result = run_cli("convert", f"{path}:onet", "--prune", "0.3", "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "warning: prune: skipping" not in result.stderr and "please report" not in result.stderr.lower()
    report = json.loads(result.stdout)
    pruning = next(s for s in report["stages"] if s["name"] == "prune")["pruning"]
    assert pruning["compaction_max_abs_error"] <= 1e-5
    assert pruning["params"] == [389040, 191640]
    layers = {row["layer"]: row for row in pruning["layers"]}
    assert layers["conv4"]["out"] == [128, 88] and layers["dense5"]["in"] == [1152, 88 * 9]
    assert [layers[h]["out"] for h in ("dense6_1", "dense6_2", "dense6_3")] == [[2, 2], [4, 4], [10, 10]]
    assert sorted(a["format"] for a in report["artifacts"]) == ["onnx", "tflite"]
    assert all(a["parity"]["passed"] for a in report["artifacts"])
    assert {p.name for p in out.iterdir()} >= {"model.onnx", "model.tflite", "report.json"}
