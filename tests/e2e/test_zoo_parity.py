"""Every zoo model converts to ONNX and TFLite and matches torch in onnxruntime and LiteRT.

Small sizes keep the suite fast; full-size models run in examples/bench_convert.py.
"""

from __future__ import annotations

import pytest

from edgehad import zoo

SMALL = {
    "mobilenet_v2": {"width_mult": 0.35, "num_classes": 10, "input_size": 64},
    "resnet8": {},
    "ds_cnn": {},
    "mobilenet_v1_025": {"input_size": 64},
    "fc_autoencoder": {},
    "mobilenet_v3_small": {"width_mult": 0.5, "num_classes": 10, "input_size": 32},
    "efficientnet_b0": {"width_mult": 0.25, "num_classes": 10, "input_size": 64},
    "transformer_encoder": {"seq_len": 16, "dim": 32, "heads": 4, "depth": 1},
    "digits_cnn": {"pretrained": False},
    "digits_transformer": {"pretrained": False},
}
TRAINED = [
    ("digits_cnn", {"act": "relu", "gate": None}, "digits"),
    ("digits_cnn", {"act": "silu", "gate": "se"}, "digits"),
    ("digits_cnn", {"act": "relu", "gate": "glu"}, "digits"),
    ("mobilenet_v3_small", {"width_mult": 0.5, "pretrained": "digits"}, "digits?size=32&channels=3"),
    ("efficientnet_b0", {"width_mult": 0.5, "pretrained": "digits"}, "digits?size=32&channels=3"),
]


def test_every_registered_model_has_a_small_size_here():
    assert sorted(SMALL) == sorted(zoo.list_models())


def _check(report):
    formats = sorted(a["format"] for a in report["artifacts"])
    assert formats == ["onnx", "tflite"]
    for a in report["artifacts"]:
        p = a["parity"]
        assert p["passed"], (a["format"], p)
        assert p["max_abs"] <= p["tolerance"]
        assert p["cosine"] > 0.99999
        if p["top1_agreement"] is not None:
            assert p["top1_agreement"] >= 1.0 - p["top1_disagreements_outside_ties"] / p["samples"]


@pytest.mark.parametrize("name", sorted(SMALL))
def test_zoo_model_parity_in_both_runtimes(name, tmp_path):
    import edgehad

    report = edgehad.convert(f"zoo:{name}", model_args=SMALL[name], out=tmp_path, samples=4)
    _check(report)
    assert report["source"]["params"] > 0


@pytest.mark.parametrize("name, args, data", TRAINED, ids=[f"{n}-{'-'.join(map(str, a.values()))}" for n, a, _ in TRAINED])
def test_trained_zoo_model_parity_on_real_digits(name, args, data, tmp_path):
    import edgehad

    report = edgehad.convert(f"zoo:{name}", model_args=args, data=data, out=tmp_path, samples=16)
    _check(report)
    for a in report["artifacts"]:
        assert a["parity"]["top1_agreement"] == 1.0
