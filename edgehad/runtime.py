"""One inference session over onnxruntime, LiteRT and tflite-runtime.

This file is self-contained (stdlib + numpy + one runtime) on purpose: bundles
copy it next to the model as ``edgehad_runtime.py``, for apps on boards where
edgehad itself is not installed (the profiler's device agent,
edgehad/profiling/agent.py, has runners of its own). Whichever runtime is
installed is used: onnxruntime for ``.onnx``; for ``.tflite`` LiteRT
(``ai-edge-litert``), else the slim ``tflite-runtime`` wheel of boards.

    sess = Session("model.tflite", threads=1)
    outputs = sess.run([x])            # list of float numpy arrays, in output order
    sess.inputs / sess.outputs         # [{name, shape, dtype, quantization}]

Floats in, floats out, whatever the file's I/O types: a float array given to
an int8/uint8/int16 input is quantized with that input's own parameters,
``q = clip(round(x / scale) + zero_point, qmin, qmax)``, and quantized outputs
are dequantized, ``x = (q - zero_point) * scale`` (the TFLite affine scheme).
An integer array given to a quantized input is passed as it is, and
``run(..., dequantize=False)`` returns the raw integer outputs.

TFLite inputs and outputs are ordered by the model's signature (``args_0``,
``args_1``, ... as litert-torch names them), not by tensor index, which can
differ.
"""

from __future__ import annotations

import os
import re

import numpy as np

_ONNX_TYPES = {
    "tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
    "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int8)": "int8",
    "tensor(uint8)": "uint8", "tensor(bool)": "bool",
}


def _natural_key(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


class Session:
    """Run a ``.onnx`` or ``.tflite`` file. ``runtime`` is picked from the suffix unless given."""

    def __init__(self, path: str, threads: int | None = None, runtime: str | None = None,
                 providers: list | None = None):
        self.path = str(path)
        if runtime is None:
            runtime = "ort" if self.path.endswith(".onnx") else "tflite"
        self.runtime = runtime
        if runtime == "ort":
            self._init_ort(threads, providers)
        elif runtime == "tflite":
            self._init_tflite(threads)
        else:
            raise ValueError(f"unknown runtime {runtime!r}: use 'ort' or 'tflite'")

    # -- onnxruntime ---------------------------------------------------------
    def _init_ort(self, threads, providers):
        try:
            import onnxruntime as ort
        except ImportError:
            raise ImportError(f"{self.path}: running .onnx files needs onnxruntime: pip install onnxruntime") from None

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        self._ort = ort.InferenceSession(self.path, sess_options=opts,
                                         providers=providers or ["CPUExecutionProvider"])
        self.inputs = [{"name": i.name, "shape": list(i.shape), "dtype": _ONNX_TYPES.get(i.type, i.type),
                        "quantization": None} for i in self._ort.get_inputs()]
        self.outputs = [{"name": o.name, "shape": list(o.shape), "dtype": _ONNX_TYPES.get(o.type, o.type),
                         "quantization": None} for o in self._ort.get_outputs()]

    # -- LiteRT / tflite-runtime --------------------------------------------
    def _init_tflite(self, threads):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:  # on boards: the slim tflite-runtime wheel
            try:
                from tflite_runtime.interpreter import Interpreter
            except ImportError:
                raise ImportError(f"{self.path}: running .tflite files needs LiteRT or tflite-runtime: "
                                  "pip install ai-edge-litert (or tflite-runtime on a board)") from None
        self._interp = Interpreter(model_path=self.path, num_threads=threads or os.cpu_count() or 1)
        self._interp.allocate_tensors()
        signatures = self._interp.get_signature_list()
        by_name_in = {d["name"]: d for d in self._interp.get_input_details()}
        by_name_out = {d["name"]: d for d in self._interp.get_output_details()}
        self._sig = None
        if signatures:
            key = "serving_default" if "serving_default" in signatures else next(iter(signatures))
            runner = self._interp.get_signature_runner(key)
            in_names = sorted(signatures[key]["inputs"], key=_natural_key)
            out_names = sorted(signatures[key]["outputs"], key=_natural_key)
            in_details = runner.get_input_details()
            out_details = runner.get_output_details()
            self._sig = (runner, in_names, out_names)
            ins = [(n, in_details[n]) for n in in_names]
            outs = [(n, out_details[n]) for n in out_names]
        else:
            ins = sorted(by_name_in.items(), key=lambda kv: kv[1]["index"])
            outs = sorted(by_name_out.items(), key=lambda kv: kv[1]["index"])
        self._in_details = [d for _, d in ins]
        self._out_details = [d for _, d in outs]
        self.inputs = [self._describe(n, d) for n, d in ins]
        self.outputs = [self._describe(n, d) for n, d in outs]

    @staticmethod
    def _describe(name, d):
        scale, zero = d.get("quantization", (0.0, 0))
        quant = {"scale": float(scale), "zero_point": int(zero)} if scale else None
        return {"name": name, "shape": [int(s) for s in d["shape"]], "dtype": np.dtype(d["dtype"]).name,
                "quantization": quant}

    # -- running -------------------------------------------------------------
    def _prepare(self, arrays):
        if isinstance(arrays, dict):
            arrays = [arrays[i["name"]] for i in self.inputs]
        arrays = list(arrays)
        if len(arrays) != len(self.inputs):
            raise ValueError(f"{self.path} takes {len(self.inputs)} inputs, got {len(arrays)}")
        prepared = []
        for arr, spec in zip(arrays, self.inputs):
            arr = np.asarray(arr)
            q = spec["quantization"]
            if np.issubdtype(arr.dtype, np.floating) and spec["dtype"] in ("int8", "uint8", "int16"):
                if not q:  # a cast would silently truncate 0.7 to 0
                    raise ValueError(f"{self.path}: input {spec['name']!r} is {spec['dtype']} without quantization "
                                     "parameters: pass an integer array")
                info = np.iinfo(spec["dtype"])
                arr = np.clip(np.round(arr / q["scale"]) + q["zero_point"], info.min, info.max)
            prepared.append(np.ascontiguousarray(arr.astype(spec["dtype"], copy=False)))
        return prepared

    def run(self, arrays, dequantize: bool = True) -> list:
        """Run once; ``arrays`` is a list in input order or a dict by input name.

        Returns the outputs in order, quantized ones dequantized to float32
        unless ``dequantize=False`` (then the file's raw integers).
        """
        prepared = self._prepare(arrays)
        if self.runtime == "ort":
            feed = {spec["name"]: a for spec, a in zip(self.inputs, prepared)}
            outs = self._ort.run(None, feed)
        elif self._sig is not None:
            runner, in_names, out_names = self._sig
            result = runner(**dict(zip(in_names, prepared)))
            outs = [result[n] for n in out_names]
        else:
            for d, a in zip(self._in_details, prepared):
                self._interp.set_tensor(d["index"], a)
            self._interp.invoke()
            outs = [self._interp.get_tensor(d["index"]) for d in self._out_details]
        if dequantize:
            outs = [self._dequantize(o, spec) for o, spec in zip(outs, self.outputs)]
        return [np.array(o) for o in outs]

    @staticmethod
    def _dequantize(arr, spec):
        q = spec["quantization"]
        if not q:
            return arr
        return (arr.astype(np.float32) - q["zero_point"]) * q["scale"]
