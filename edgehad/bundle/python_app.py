"""The Python part of a bundle: ``edgehad_runtime.py`` (a copy of edgehad/runtime.py)
and ``run_model.py``, a script that needs only numpy and one runtime.

run_model.py reads the manifest for the model file, labels and
preprocessing, runs one input (a .npy file, else uniform random numbers
in [0, 1)) through ``edgehad_runtime.Session`` and prints the top-k.
"""

from __future__ import annotations

from pathlib import Path

RUNTIME_SOURCE = Path(__file__).resolve().parent.parent / "runtime.py"

RUN_MODEL = '''#!/usr/bin/env python3
"""Run the bundled model once and print the top-k classes.

    python run_model.py                  # a random input of the model's shape
    python run_model.py sample.npy -k 3  # an input saved with numpy.save, already preprocessed

An image input is fed in the order manifest.json states for it ("layout": nhwc is channels-last,
[1, H, W, C]); a 4-D sample in the other order (PyTorch's [1, C, H, W]) is transposed to it.
Needs numpy and one runtime: onnxruntime for .onnx; ai-edge-litert or tflite-runtime for .tflite.
Inputs and outputs are float: edgehad_runtime quantizes and dequantizes int8 I/O itself.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from edgehad_runtime import Session

HERE = Path(__file__).resolve().parent


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", nargs="?", help="a .npy array of the model's input shape (default: random)")
    parser.add_argument("-k", "--top", type=int, default=5, help="how many classes to print (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random input")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    args = parser.parse_args(argv)

    manifest = json.loads((HERE / "manifest.json").read_text())
    session = Session(str(HERE / manifest["model"]["file"]), threads=1)
    spec = session.inputs[0]
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in spec["shape"]]
    layout = (manifest["inputs"][0].get("layout") if manifest.get("inputs") else None) or spec.get("layout")
    if args.input:
        x = np.load(args.input).astype(np.float32)
        if x.ndim != len(shape) and x.size == int(np.prod(shape)):  # a flat array, or one without its batch dim
            x = x.reshape(shape)
        perm = {"nhwc": (0, 2, 3, 1), "nchw": (0, 3, 1, 2)}.get(layout)
        if perm and list(x.shape) != shape and x.ndim == 4 and [x.shape[i] for i in perm] == shape:
            x = x.transpose(perm)  # the image in the other channel order than the model's stated one
        if list(x.shape) != shape:
            said = f" ({layout})" if layout else ""
            sys.exit(f"error: {args.input} has shape {list(x.shape)}; the model takes {shape}{said}")
    else:
        x = np.random.default_rng(args.seed).random(shape, dtype=np.float32)
    scores = session.run([x])[0].reshape(-1)
    labels = manifest.get("labels") or [str(i) for i in range(scores.size)]
    top = np.argsort(-scores, kind="stable")[: max(1, args.top)]
    rows = [{"index": int(i), "label": labels[i] if i < len(labels) else str(i), "score": float(scores[i])}
            for i in top]
    if args.json:
        print(json.dumps({"model": manifest["model"]["file"], "top": rows, "output": scores.tolist()}))
    else:
        for r in rows:
            print(f"{r['index']:>5}  {r['score']:>10.4f}  {r['label']}")


if __name__ == "__main__":
    main()
'''
