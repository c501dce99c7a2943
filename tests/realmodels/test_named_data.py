"""all-MiniLM-L6-v2 verified on real sentences: ``--data`` an .npz of token ids by input name.

ONNX Runtime's dynamic int8 is the standard recipe for such encoders. On seeded random token ids (what
verification uses without data) its ONNX file misses the default floor, ``[verify] min_cosine`` 0.99; on
real sentences, tokenized by the package's own tokenizer, it passes it. The fix is data, not a lower
floor: these tests hold both sides.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import run_cli
from tests.realmodels import nets
from tests.realmodels.conftest import NETS

pytestmark = [pytest.mark.realmodels, pytest.mark.slow]


def sentences_npz(path, **renamed):
    """8 sentences to calibrate on, 32 to verify on (explicit splits), tokenized by the package's tokenizer."""
    ids, mask = (t.numpy() for t in nets.minilm_tokens(nets.CORPUS))
    arrays = {"input_ids": ids, "attention_mask": mask}
    arrays = {renamed.get(k, k): v for k, v in arrays.items()}
    np.savez(path, **{f"{k}_train": v[:8] for k, v in arrays.items()},
             **{f"{k}_val": v[8:] for k, v in arrays.items()})
    return path


def test_minilm_int8_dynamic_passes_the_default_floor_on_real_sentences(tmp_path):
    data = sentences_npz(tmp_path / "sentences.npz")
    out = tmp_path / "out"
    result = run_cli("convert", f"{NETS}:minilm", "--quantize", "int8-dynamic", "--data", data, "--samples", "32",
                     "--out", out, "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["samples"] == 32 and report["data"] == str(data)
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx", "model.tflite", "report.json", "report.md"]
    for a in report["artifacts"]:
        parity = a["parity"]
        assert parity["passed"] and parity["rule"] == "cosine >= 0.99" and parity["samples"] == 32, a
        assert parity["cosine"] >= 0.99, a
    (metric,) = [s["task_metric"] for s in report["stages"] if "task_metric" in s]
    assert metric == {"measured": False, "reason": "no labels"}  # the summary: "accuracy: not measured (no labels)"


def test_minilm_int8_dynamic_on_random_token_ids_fails_the_floor_and_names_its_key(tmp_path):
    out = tmp_path / "out"
    result = run_cli("convert", f"{NETS}:minilm", "--quantize", "int8-dynamic", "--format", "onnx",
                     "--samples", "32", "--out", out)
    assert result.returncode == 1, result.stderr[-3000:]
    (line,) = [ln for ln in result.stderr.splitlines() if ln.startswith("error: ")]
    assert line.startswith("error: verification failed: onnx (int8-dynamic): max_abs=")
    assert line.endswith("over 32 samples (floor: [verify] min_cosine)")
    cosine = float(line.split("cosine=")[1].split(",")[0])
    assert cosine < 0.99
    assert not out.exists()


def test_minilm_data_with_other_names_is_one_line_naming_both(tmp_path):
    data = sentences_npz(tmp_path / "renamed.npz", attention_mask="mask")
    result = run_cli("convert", f"{NETS}:minilm", "--quantize", "int8-dynamic", "--data", data,
                     "--out", tmp_path / "out")
    assert result.returncode == 2, result.stderr[-3000:]
    (line,) = [ln for ln in result.stderr.splitlines() if ln.strip()][-1:]
    assert line == (f"error: --data {data} gives inputs input_ids, mask but the model takes input_ids, "
                    "attention_mask (its forward arguments): name the arrays so")
    assert "Traceback" not in result.stderr
