"""One inference session over onnxruntime, LiteRT and tflite-runtime.

This file is self-contained (stdlib + numpy + one runtime) on purpose: bundles
copy it next to the model as ``edgehad_runtime.py``, for apps on boards where
edgehad itself is not installed, and the profiler ships it beside its device
agent (edgehad/profiling/agent.py), which measures through it. Whichever runtime is
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

Symbolic dims (ONNX ``dim_param``, TFLite ``shape_signature`` -1) are never
guessed. ``input_shape`` states them ("images=1x3x640x640", a bare shape for a
one-input file, a tuple of ints, a list of those or a ``{name: shape}`` dict);
``inputs`` (an .npz file, loaded with ``allow_pickle=False``, or a dict of
arrays) gives the arrays themselves, by input name, and ``run()`` without
arguments feeds them. With either, every symbolic dim must be filled and each
shape and dtype must fit the file (``InputsError``, a ValueError, naming what
does not); TFLite inputs are resized to the stated shapes::

    sess = Session("detector.onnx", input_shape="images=1x3x640x640")
    sess = Session("stream.onnx", inputs="chunk.npz"); outputs = sess.run()

A runtime that raises while running is one ``RunError`` line: the file, the
shapes and dtypes fed, and the runtime's own first line.
"""

from __future__ import annotations

import os
import re
import sys

import numpy as np

_ONNX_TYPES = {
    "tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
    "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int16)": "int16", "tensor(int8)": "int8",
    "tensor(uint8)": "uint8", "tensor(bool)": "bool",
}


def import_backend(runtime: str):
    """``(module or Interpreter class, version)`` of the runtime for ``runtime`` ("ort" or "tflite"): onnxruntime;
    LiteRT (``ai-edge-litert``), else the slim ``tflite-runtime`` wheel of boards. ImportError saying what to
    install when there is none."""
    if runtime == "ort":
        try:
            import onnxruntime as ort
        except ImportError:
            raise ImportError(f"onnxruntime is not installed for {sys.executable}: pip install onnxruntime "
                              f"(onnxruntime-gpu for CUDA/TensorRT)") from None
        return ort, ort.__version__
    try:
        from ai_edge_litert import __version__ as version
        from ai_edge_litert.interpreter import Interpreter
        return Interpreter, version
    except ImportError:
        pass
    try:  # on boards: the slim tflite-runtime wheel
        from tflite_runtime import __version__ as version
        from tflite_runtime.interpreter import Interpreter
        return Interpreter, version
    except ImportError:
        raise ImportError(f"no TFLite runtime for {sys.executable}: pip install ai-edge-litert "
                          f"(or tflite-runtime on a board)") from None


def _natural_key(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


# -- the shapes and arrays given for a file's inputs ---------------------------
# Functions over input specs, ``{"name", "shape", "dtype", "quantization"?, "aliases"?}`` with shape entries
# an int (static), a str (a named symbolic dim) or None (an unknown one): the same for a Session's inputs and
# for edgehad's own reading of a file (edgehad.inspection.inputs), so inspect, profile, micro and this
# Session accept and refuse the same things with the same words. Messages name the options as the Python
# keywords `input_shape` and `inputs`; edgehad's CLI shows them as its flags.
class InputsError(ValueError):
    """Shapes or arrays given for a file's inputs that do not fit it (edgehad reports it as bad input, exit 2)."""


class RunError(RuntimeError):
    """The runtime raised while running the file on the inputs fed; one line naming the file, the inputs and
    the runtime's own first line."""


def shape_text(shape) -> str:
    """``[1, 3, 8, 8]`` -> "1x3x8x8"; ``[]`` -> "scalar"; a symbolic dim by its name, an unknown one "?"."""
    if shape is None:
        return "?"
    if len(shape) == 0:
        return "scalar"
    return "x".join("?" if d is None else str(d) for d in shape)


def _static(d) -> bool:
    return isinstance(d, (int, np.integer)) and not isinstance(d, bool) and int(d) >= 0


def _names(specs) -> str:
    return ", ".join(str(s["name"]) for s in specs)


def _positions(specs) -> dict:
    """Every name an input answers to (its name; a TFLite input also its tensor or signature name) -> index."""
    index = {}
    for i, spec in enumerate(specs):
        for key in (spec["name"], *spec.get("aliases", ())):
            index.setdefault(str(key), i)
    return index


def parse_dims(text, what: str) -> list[int]:
    """"1x3x640x640" -> [1, 3, 640, 640]; "scalar" (or nothing) -> [] for a 0-d input."""
    text = str(text).strip().lower()
    if text in ("", "scalar"):
        return []
    parts = [p.strip() for p in text.split("x")]
    if not all(re.fullmatch(r"[0-9]+", p) and int(p) >= 1 for p in parts):
        raise InputsError(f"{what}: {text!r} is not a shape; write whole numbers >= 1 joined by x, "
                          f"e.g. 1x3x224x224")
    return [int(p) for p in parts]


def _int_dims(value) -> bool:
    return isinstance(value, (tuple, list)) and all(
        isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in value)


def _example(spec) -> str:
    """A stated shape for ``spec`` in the syntax `input_shape` takes (its symbolic dims given example sizes)."""
    dims = [int(d) if _static(d) else (1 if i == 0 else 16) for i, d in enumerate(spec["shape"] or [1])]
    return f"{spec['name']}={shape_text(dims)}"


def _check_fits(spec, dims, label, source) -> None:
    """``dims`` given for ``spec`` by ``source`` keep its rank and static dims; only symbolic dims are free."""
    shape = spec["shape"]
    if shape is None:
        return
    if len(dims) != len(shape) or any(_static(d) and int(d) != g for d, g in zip(shape, dims)):
        raise InputsError(f"{source} gives {spec['name']} the shape {shape_text(dims)}, which does not fit "
                          f"{label}: its input {spec['name']} is {shape_text(shape)} and only symbolic dims "
                          f"can be chosen")


def stated_shapes(input_shape, specs, label) -> dict:
    """``input_shape`` as ``{input index: dims}``, each name and shape checked against ``specs``.

    Takes "NAME=1x3x8x8", a bare "1x3x8x8" or ``(1, 3, 8, 8)`` for a file with one input, a list of
    those, or a ``{name: shape}`` dict (shape as text or ints).
    """
    if input_shape is None:
        return {}
    if isinstance(input_shape, dict):
        items = [(str(k), v) for k, v in input_shape.items()]
    else:
        entries = [input_shape] if isinstance(input_shape, str) or _int_dims(input_shape) else list(input_shape)
        items = []
        for entry in entries:
            if isinstance(entry, str):
                name, sep, dims = entry.rpartition("=")
                items.append((name.strip() if sep else None, dims))
            elif _int_dims(entry):
                items.append((None, entry))
            else:
                raise InputsError(f"`input_shape` {entry!r}: give NAME=1x3x224x224 (a bare shape for a file "
                                  f"with one input), a tuple of ints, or a {{name: shape}} dict")
    index, out = _positions(specs), {}
    for name, dims in items:
        shown = dims if isinstance(dims, str) else shape_text(list(dims))
        what = f"`input_shape` {name + '=' if name else ''}{shown}"
        if isinstance(dims, str):
            dims = parse_dims(dims, what)
        elif _int_dims(dims) and all(int(d) >= 1 for d in dims):
            dims = [int(d) for d in dims]
        else:
            raise InputsError(f"{what}: dims must be whole numbers >= 1")
        if name is None:
            if len(specs) != 1:
                example = next((s for s in specs if s["shape"] is None or not all(map(_static, s["shape"]))),
                               specs[0]) if specs else None
                hint = f", e.g. `input_shape` {_example(example)}" if example else ""
                raise InputsError(f"{what}: {label} has {len(specs)} inputs ({_names(specs)}); name the input "
                                  f"each shape is for{hint}")
            pos = 0
        elif name in index:
            pos = index[name]
        else:
            raise InputsError(f"{what}: {label} has no input {name!r}; its inputs: {_names(specs)}")
        if pos in out:
            raise InputsError(f"`input_shape` gives input {specs[pos]['name']} twice: give each input once")
        _check_fits(specs[pos], dims, label, "`input_shape`")
        out[pos] = dims
    return out


def load_inputs(inputs) -> tuple[dict, str]:
    """``inputs`` (an .npz path, or a dict of arrays) as ``({name: array}, what to call it in messages)``.

    An .npz is read with ``allow_pickle=False``: an archive holding objects is refused, never unpickled.
    """
    if isinstance(inputs, dict):
        return {str(k): np.asarray(v) for k, v in inputs.items()}, "`inputs`"
    path = os.fspath(inputs)
    if not os.path.isfile(path):
        raise InputsError(f"`inputs` {path}: no such file; give an .npz of arrays by input name "
                          f"(numpy.savez(path, name=array, ...))")
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as exc:  # not a zip, a pickle refused, truncated: all mean "not an .npz of arrays"
        archive, why = None, " ".join(str(exc).split())[:200] or type(exc).__name__
    if archive is not None and not hasattr(archive, "files"):  # a lone .npy array: no names
        archive, why = None, "a single .npy array, not an .npz of named arrays"
    if archive is None:
        raise InputsError(f"`inputs` {path} is not a readable .npz of arrays ({why}); write it with "
                          f"numpy.savez(path, name=array, ...)")
    with archive:
        try:
            arrays = {k: archive[k] for k in archive.files}
        except Exception as exc:  # an object array (allow_pickle=False), a corrupt member
            raise InputsError(f"`inputs` {path}: an array cannot be read ({' '.join(str(exc).split())[:200]}); "
                              f"save plain numeric arrays with numpy.savez") from None
    return arrays, path


def _dtype_fits(array, spec) -> bool:
    try:
        want = np.dtype(spec["dtype"])
    except TypeError:  # a type numpy has no name for (bfloat16 ...): the runtime will judge
        return True
    if array.dtype == want:
        return True
    # floats for a quantized integer input: quantized with its own scale and zero point (see Session.run)
    return bool(spec.get("quantization")) and np.issubdtype(array.dtype, np.floating) and \
        np.issubdtype(want, np.integer)


def fit_inputs(specs, label, shapes: dict | None = None, arrays: dict | None = None,
               source: str = "`inputs`") -> tuple[list, list | None]:
    """The shape of every input, and the arrays in input order (None without ``arrays``).

    ``shapes``: ``{index: dims}`` from :func:`stated_shapes`; ``arrays``: ``{name: array}`` from
    :func:`load_inputs` (``source`` names them in messages). A symbolic dim named alike in several
    inputs takes one value; every dim not static, stated or so implied is an InputsError listing
    each of them: none is guessed.
    """
    shapes = dict(shapes or {})
    feed = None
    if arrays is not None:
        index = _positions(specs)
        extra = [k for k in arrays if k not in index]
        if extra:
            raise InputsError(f"{source} holds {', '.join(map(repr, extra))}, which {label} has no input named; "
                              f"its inputs: {_names(specs)}")
        by_pos = {}
        for key, array in arrays.items():
            if index[key] in by_pos:
                raise InputsError(f"{source} holds two arrays for input {specs[index[key]]['name']}: keep one")
            by_pos[index[key]] = np.asarray(array)
        missing = [str(s["name"]) for i, s in enumerate(specs) if i not in by_pos]
        if missing:
            raise InputsError(f"{source} has no array for input(s) {', '.join(missing)} of {label}: give one "
                              f"array per input, named for it")
        for pos, array in sorted(by_pos.items()):
            spec = specs[pos]
            if not _dtype_fits(array, spec):
                raise InputsError(f"{source}: {spec['name']} is {array.dtype.name} but {label} takes "
                                  f"{spec['dtype']} there; save it as {spec['dtype']}")
            _check_fits(spec, list(array.shape), label, f"{source}'s array")
            if pos in shapes and shapes[pos] != list(array.shape):
                raise InputsError(f"`input_shape` says {spec['name']}={shape_text(shapes[pos])} but {source} "
                                  f"holds {shape_text(list(array.shape))}: give one of them")
            shapes[pos] = list(array.shape)
        feed = [by_pos[i] for i in range(len(specs))]
    def named_dim(d) -> bool:
        # "?" (PaddlePaddle's dim_param for every unknown dim), "" or "-1" name no dim: never unified
        return isinstance(d, str) and any(c.isalpha() or c == "_" for c in d)

    named: dict = {}  # a symbolic dim's name -> (size, where it was given)
    for pos, dims in sorted(shapes.items()):
        for i, (d, size) in enumerate(zip(specs[pos]["shape"] or [], dims)):
            if named_dim(d):
                seen = named.setdefault(d, (size, f"{specs[pos]['name']}[{i}]"))
                if seen[0] != size:
                    raise InputsError(f"{label}: dim {d} is {seen[0]} in {seen[1]} but {size} in "
                                      f"{specs[pos]['name']}[{i}]; one name, one size")
    result, unfilled, first = [], [], None
    for pos, spec in enumerate(specs):
        if pos in shapes:
            result.append(list(shapes[pos]))
            continue
        if spec["shape"] is None:
            unfilled.append(f"{spec['name']} (rank unknown)")
            first = first or spec
            continue
        dims = []
        for i, d in enumerate(spec["shape"]):
            if _static(d):
                dims.append(int(d))
            elif named_dim(d) and d in named:
                dims.append(named[d][0])
            else:
                unfilled.append(f"{spec['name']}[{i}]" + (f"={d}" if named_dim(d) else ""))
                first = first or spec
        result.append(dims)
    if unfilled:
        raise InputsError(f"{label} has symbolic dims: {', '.join(unfilled)}; give them with `input_shape` "
                          f"(e.g. {_example(first)}) or `inputs` (an .npz of arrays by input name)")
    return result, feed


# -- the layout an edgehad .tflite states for its image tensors -----------------
# edgehad writes it into the file as a TFLite metadata entry named "edgehad" holding
# {"layout": {"inputs": [...], "outputs": [...]}}: per input and output in signature order, "nchw", "nhwc"
# or null (no image); edgehad/export/layout.py writes it. Read here with a few lines of FlatBuffers
# arithmetic (https://flatbuffers.dev/internals/) rather than a schema package: boards running the slim
# tflite-runtime wheel have none.
LAYOUTS = ("nchw", "nhwc")
LAYOUT_ENTRY = "edgehad"
TO_NHWC = (0, 2, 3, 1)  # x_nhwc = transpose(x_nchw, TO_NHWC)
TO_NCHW = (0, 3, 1, 2)  # x_nchw = transpose(x_nhwc, TO_NCHW)
_MODEL_BUFFERS, _MODEL_METADATA = 4, 6  # field slots of tflite's schema: table Model
_MAX_ENTRY = 1 << 20  # a layout record is a few hundred bytes; a larger "edgehad" entry is not one


def _read(data, at: int, size: int) -> int:
    """The little-endian unsigned int of ``size`` bytes at ``at``; IndexError outside ``data`` (a damaged
    file's offsets point anywhere: a slice past the end would read as 0 and send the walk elsewhere)."""
    if at < 0 or at + size > len(data):
        raise IndexError(at)
    return int.from_bytes(data[at:at + size], "little")


def _field(data, table: int, slot: int) -> int | None:
    """Where field ``slot`` of the table at ``table`` lies, or None when the table omits it."""
    vtable = table - int.from_bytes(data[table:table + 4], "little", signed=True) if table + 4 <= len(data) else -1
    size = _read(data, vtable, 2)
    if 4 + 2 * slot + 2 > size:
        return None
    offset = _read(data, vtable + 4 + 2 * slot, 2)
    return table + offset if offset else None


def _target(data, at: int) -> int:
    """The table, vector or string an offset field at ``at`` points to."""
    return at + _read(data, at, 4)


def _vector(data, at: int | None, item: int = 4) -> tuple[int, int]:
    """(first element, count) of the vector of ``item``-byte elements the field at ``at`` points to; (0, 0)
    for an absent one; IndexError when its count runs past the end of ``data``."""
    if at is None:
        return 0, 0
    start = _target(data, at)
    count = _read(data, start, 4)
    if start + 4 + item * count > len(data):
        raise IndexError(count)
    return start + 4, count


def tflite_metadata(data, name: str) -> bytes | None:
    """The bytes of the .tflite ``data``'s metadata entry ``name`` (None without one, or in a damaged file)."""
    try:
        root = int.from_bytes(data[0:4], "little")
        entries, count = _vector(data, _field(data, root, _MODEL_METADATA))
        buffers, n_buffers = _vector(data, _field(data, root, _MODEL_BUFFERS))
        for k in range(count):
            meta = _target(data, entries + 4 * k)
            name_at = _field(data, meta, 0)
            start, length = _vector(data, name_at, item=1)
            if name_at is None or bytes(data[start:start + length]) != name.encode():
                continue
            buffer_at = _field(data, meta, 1)
            index = _read(data, buffer_at, 4) if buffer_at is not None else 0
            if index >= n_buffers:
                return None
            start, length = _vector(data, _field(data, _target(data, buffers + 4 * index), 0), item=1)
            return bytes(data[start:start + length]) if 0 < length <= _MAX_ENTRY else None
    except (IndexError, ValueError, OverflowError):
        pass
    return None


def parse_layout(raw: bytes | None) -> dict | None:
    """The ``{"inputs": [...], "outputs": [...]}`` layout record in an ``edgehad`` entry's bytes, or None."""
    import json

    try:
        doc = json.loads(bytes(raw).decode("utf-8")) if raw else None
    except (UnicodeDecodeError, ValueError):
        return None
    layout = doc.get("layout") if isinstance(doc, dict) else None
    if not isinstance(layout, dict):
        return None
    record = {}
    for kind in ("inputs", "outputs"):
        entries = layout.get(kind)
        if not isinstance(entries, list) or any(e is not None and e not in LAYOUTS for e in entries):
            return None
        record[kind] = list(entries)
    return record


def read_layout(path) -> dict | None:
    """The layout record of the .tflite at ``path``; None for a file without one (PyTorch's NCHW throughout)."""
    import mmap

    with open(path, "rb") as f:
        try:
            view = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # an empty file
            return None
        with view:
            return parse_layout(tflite_metadata(view, LAYOUT_ENTRY))


def _order_hint(got, spec) -> str:
    """The NHWC/NCHW hint when ``got`` is the expected 4-D shape in the other channel order."""
    want = spec["shape"]
    if len(got) != 4 or want is None or len(want) != 4:
        return ""
    fits = lambda shape: all(not _static(d) or int(d) == g for d, g in zip(want, shape))  # noqa: E731
    for order, perm, other in (("channels-last (NHWC)", TO_NHWC, "nchw"), ("channels-first (NCHW)", TO_NCHW, "nhwc")):
        if fits([got[i] for i in perm]):
            # layout= transposes only tensors whose layout the file states
            hint = f' or open the Session with layout="{other}" to have it done' if spec.get("layout") else ""
            return f" - it takes {order} images: transpose yours with x.transpose{perm}{hint}"
    return ""


class Session:
    """Run a ``.onnx`` or ``.tflite`` file. ``runtime`` is picked from the suffix unless given.

    ``input_shape`` / ``inputs``: the shapes, or the arrays, to run at (module docstring); then
    ``inputs`` lists those shapes and ``feed`` holds the arrays (None without ``inputs``).
    ``providers``: onnxruntime's execution providers (default: the CPU one); ``profile_prefix``: switch
    onnxruntime's profiler on, its trace written under this prefix when ``backend.end_profiling()`` is called.
    ``backend`` is the runtime's own object (an ``InferenceSession`` or an ``Interpreter``) and
    ``version`` its package's version, for what this class does not wrap.

    ``layout``: the order of the image arrays you pass and get back, "nchw" (PyTorch's) or "nhwc"; where
    the file states another for a tensor (an edgehad channels-last .tflite does, each spec's ``layout``)
    it is transposed for you. Tensors of a file that states none (ONNX, PyTorch's own order) are fed as
    given. None (default): every array as the file takes it.
    """

    def __init__(self, path: str, threads: int | None = None, runtime: str | None = None,
                 providers: list | None = None, *, input_shape=None, inputs=None, profile_prefix: str | None = None,
                 layout: str | None = None):
        if layout not in (None, *LAYOUTS):
            raise ValueError(f"layout {layout!r}: give 'nchw', 'nhwc' or None (arrays as the file takes them)")
        self.path = str(path)
        self.layout = layout
        if runtime is None:
            runtime = "ort" if self.path.endswith(".onnx") else "tflite"
        self.runtime = runtime
        if runtime == "ort":
            self._init_ort(threads, providers, profile_prefix)
        elif runtime == "tflite":
            self._init_tflite(threads)
        else:
            raise ValueError(f"unknown runtime {runtime!r}: use 'ort' or 'tflite'")
        self.feed = None
        if input_shape is not None or inputs is not None:
            arrays, source = load_inputs(inputs) if inputs is not None else (None, "`inputs`")
            shapes, self.feed = fit_inputs(self.inputs, self.path, stated_shapes(input_shape, self.inputs, self.path),
                                           arrays, source)
            for spec, shape in zip(self.inputs, shapes):
                spec["shape"] = list(shape)
            if runtime == "tflite":
                self._resize(shapes, strict=True)

    # -- onnxruntime ---------------------------------------------------------
    def _init_ort(self, threads, providers, profile_prefix):
        try:
            ort, self.version = import_backend("ort")
        except ImportError as exc:
            raise ImportError(f"{self.path}: {exc}") from None
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        if profile_prefix:
            opts.enable_profiling = True
            opts.profile_file_prefix = profile_prefix
        self.backend = ort.InferenceSession(self.path, sess_options=opts,
                                            providers=providers or ["CPUExecutionProvider"])
        self.inputs = [{"name": i.name, "shape": list(i.shape), "dtype": _ONNX_TYPES.get(i.type, i.type),
                        "quantization": None, "layout": None} for i in self.backend.get_inputs()]
        self.outputs = [{"name": o.name, "shape": list(o.shape), "dtype": _ONNX_TYPES.get(o.type, o.type),
                         "quantization": None, "layout": None} for o in self.backend.get_outputs()]

    # -- LiteRT / tflite-runtime --------------------------------------------
    def _init_tflite(self, threads):
        try:
            Interpreter, self.version = import_backend("tflite")
        except ImportError as exc:
            raise ImportError(f"{self.path}: {exc}") from None
        interp = self.backend = Interpreter(model_path=self.path, num_threads=threads or os.cpu_count() or 1)
        interp.allocate_tensors()
        signatures = interp.get_signature_list()
        primary_in = sorted(interp.get_input_details(), key=lambda d: d["index"])
        primary_out = sorted(interp.get_output_details(), key=lambda d: d["index"])
        self._sig = None
        ins = [(d["name"], d) for d in primary_in]
        outs = [(d["name"], d) for d in primary_out]
        if signatures:
            key = "serving_default" if "serving_default" in signatures else next(iter(signatures))
            runner = interp.get_signature_runner(key)
            in_names = sorted(signatures[key]["inputs"], key=_natural_key)
            out_names = sorted(signatures[key]["outputs"], key=_natural_key)
            in_details, out_details = runner.get_input_details(), runner.get_output_details()
            ins = [(n, in_details[n]) for n in in_names]
            outs = [(n, out_details[n]) for n in out_names]
            if {d["index"] for _, d in ins} != {d["index"] for d in primary_in}:
                self._sig = (runner, in_names, out_names)  # another subgraph's signature: only its runner runs it
            # else the signature names the main subgraph's own tensors: the interpreter runs them directly
            # (set_tensor, invoke), as TFLite's benchmark_model does. A live runner would forbid that: it holds
            # a reference the interpreter counts as unsafe internal data, so it is not kept.
            del runner
        self._in_details = [d for _, d in ins]
        self._allocated = [list(d["shape"]) for d in self._in_details]  # the input shapes allocated for
        self._out_details = [d for _, d in outs]
        self.inputs = [self._describe(n, d) for n, d in ins]
        self.outputs = [self._describe(n, d) for n, d in outs]
        record = read_layout(self.path)  # in signature order, as these lists are
        for kind, specs in (("inputs", self.inputs), ("outputs", self.outputs)):
            stated = (record or {}).get(kind) or []
            for k, spec in enumerate(specs):
                spec["layout"] = stated[k] if k < len(stated) and len(stated) == len(specs) else None

    @staticmethod
    def _describe(name, d):
        scale, zero = d.get("quantization", (0.0, 0))
        quant = {"scale": float(scale), "zero_point": int(zero)} if scale else None
        shape = [int(s) for s in d["shape"]]
        signature = d.get("shape_signature")
        if signature is not None and len(signature) == len(shape):  # -1: a dynamic dim, unknown until stated
            shape = [s if int(sig) >= 0 else None for s, sig in zip(shape, signature)]
        entry = {"name": name, "shape": shape, "dtype": np.dtype(d["dtype"]).name, "quantization": quant}
        if d.get("name") and d["name"] != name:  # a signature input also answers to its tensor's name
            entry["aliases"] = [d["name"]]
        return entry

    def _resize(self, shapes, strict=False):
        """Give each TFLite input the shape fed and allocate for it (``strict``: only dynamic dims may change)."""
        shapes = [list(shape) for shape in shapes]
        if self._sig is not None or shapes == self._allocated:  # a signature runner resizes to each call's arrays
            return
        for d, shape in zip(self._in_details, shapes):
            self.backend.resize_tensor_input(d["index"], shape, strict=strict)
        self.backend.allocate_tensors()
        self._allocated = shapes

    # -- running -------------------------------------------------------------
    def prepare(self, arrays) -> list:
        """``arrays`` (one array for a one-input file, a list in input order, or a dict by any name an input
        answers to) as the file takes them, in input order: image arrays transposed to the file's layout
        (``layout``), float arrays for a quantized input quantized with its parameters, each cast to its dtype.
        An InputsError (a ValueError) names an input whose array does not fit: its name, the shape and dtype
        it takes and those given, and the NHWC/NCHW hint when only the channel order differs."""
        if isinstance(arrays, np.ndarray) or np.isscalar(arrays):
            if len(self.inputs) != 1:
                raise InputsError(f"{self.path} takes {len(self.inputs)} inputs ({_names(self.inputs)}): pass a "
                                  f"list in that order or a dict by name, not one array")
            arrays = [arrays]
        if isinstance(arrays, dict):
            index = _positions(self.inputs)
            unknown = [str(k) for k in arrays if str(k) not in index]
            if unknown:
                raise InputsError(f"{self.path} has no input {', '.join(map(repr, unknown))}; its inputs: "
                                  f"{_names(self.inputs)}")
            by_pos = {index[str(k)]: v for k, v in arrays.items()}
            missing = [str(s["name"]) for i, s in enumerate(self.inputs) if i not in by_pos]
            if missing:
                raise InputsError(f"{self.path}: no array for input(s) {', '.join(missing)}")
            arrays = [by_pos[i] for i in range(len(self.inputs))]
        arrays = list(arrays)
        if len(arrays) != len(self.inputs):
            raise InputsError(f"{self.path} takes {len(self.inputs)} inputs ({_names(self.inputs)}), got "
                              f"{len(arrays)} arrays")
        prepared = []
        for arr, spec in zip(arrays, self.inputs):
            arr = np.asarray(arr)
            self._check(arr, spec)
            arr = self._to_file(arr, spec)
            q = spec["quantization"]
            if np.issubdtype(arr.dtype, np.floating) and spec["dtype"] in ("int8", "uint8", "int16"):
                info = np.iinfo(spec["dtype"])
                arr = np.clip(np.round(arr / q["scale"]) + q["zero_point"], info.min, info.max)
            # np.asarray(order="C"), not np.ascontiguousarray, which makes a 0-d input (a sample rate) 1-d
            prepared.append(np.asarray(arr.astype(spec["dtype"], copy=False), order="C"))
        return prepared

    def _transposes(self, arr, spec) -> bool:
        """Whether ``layout`` asks for ``arr`` in another order than the one the file states for ``spec``."""
        return bool(self.layout and spec.get("layout") and arr.ndim == 4 and self.layout != spec["layout"])

    def _to_file(self, arr, spec):
        if not self._transposes(arr, spec):
            return arr
        return np.transpose(arr, TO_NHWC if spec["layout"] == "nhwc" else TO_NCHW)

    def _from_file(self, arr, spec):
        if not self._transposes(arr, spec):
            return arr
        return np.transpose(arr, TO_NCHW if spec["layout"] == "nhwc" else TO_NHWC)

    def _check(self, arr, spec) -> None:
        """An InputsError when ``arr`` (as the caller gave it) cannot be fed to ``spec``: rank or a static dim
        differs, or floats for an integer input that has no quantization parameters (a cast would truncate
        0.7 to 0). With ``layout``, shapes are compared and named in the caller's order."""
        want, got = spec["shape"], list(arr.shape)
        if want is not None and self._transposes(arr, spec):
            want = [want[i] for i in (TO_NCHW if spec["layout"] == "nhwc" else TO_NHWC)]
            spec = {**spec, "shape": want, "layout": self.layout}
        if want is not None and (len(want) != len(got) or any(_static(d) and int(d) != g
                                                                for d, g in zip(want, got))):
            order = f" ({self.layout}, as `layout` asks)" if spec.get("layout") == self.layout and self.layout else ""
            raise InputsError(f"{self.path}: input {spec['name']} takes {shape_text(want)} {spec['dtype']}{order}, "
                              f"got {shape_text(got)} {arr.dtype.name}{_order_hint(got, spec)}")
        integer = spec["dtype"] in ("int8", "uint8", "int16", "int32", "int64", "bool")
        if integer and np.issubdtype(arr.dtype, np.floating) and not spec["quantization"]:
            raise InputsError(f"{self.path}: input {spec['name']} takes {spec['dtype']} (not quantized), got "
                              f"{arr.dtype.name}: pass {spec['dtype']} values")

    def run_error(self, exc, arrays, source: str | None = None) -> RunError:
        """The RunError for the runtime raising ``exc`` on ``arrays`` (as run() takes them): the file, each input's
        dtype and shape, the runtime's first line; ``source`` says where the arrays came from."""
        try:
            fed = ", ".join(f"{spec['name']}: {a.dtype.name} {shape_text(list(a.shape))}"
                            for spec, a in zip(self.inputs, self.prepare(arrays)))
        except ValueError:  # InputsError included
            fed = "arrays that do not fit its inputs"
        said = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
        said = said if len(said) <= 400 else said[:400] + "..."
        return RunError(f"{self.path}: {self.runtime} failed running it on "
                        f"{f'{source} ({fed})' if source else fed}: {said}")

    def run(self, arrays=None, dequantize: bool = True) -> list:
        """Run once; ``arrays`` is a list in input order or a dict by input name (None: the ``inputs``
        given to the Session).

        Returns the outputs in order, quantized ones dequantized to float32
        unless ``dequantize=False`` (then the file's raw integers). The runtime raising is a RunError.
        """
        if arrays is None:
            if self.feed is None:
                raise ValueError(f"{self.path}: no arrays to run on; pass them to run(), or `inputs` to Session")
            arrays = self.feed
        prepared = self.prepare(arrays)
        try:
            outs = self._invoke(prepared)
        except Exception as exc:  # the runtime's own error: one line with what it was fed
            raise self.run_error(exc, prepared) from exc
        if dequantize:
            outs = [self._dequantize(o, spec) for o, spec in zip(outs, self.outputs)]
        return [np.array(self._from_file(np.asarray(o), spec), order="C") for o, spec in zip(outs, self.outputs)]

    def bind(self, arrays=None, fixed: bool = True, source: str | None = None):
        """A no-argument call that runs one inference on ``arrays`` (prepared here once, as run() prepares
        them) and returns nothing: what a benchmark times. Outputs stay in the runtime.

        ``fixed``: these are the only arrays, so a TFLite file's input tensors are set here once and the
        call is the interpreter's ``invoke()`` alone, as TFLite's benchmark_model times it; with
        ``fixed=False`` (several inputs fed in turn) each call sets its own first. A RunError (``source``
        saying where the arrays came from) when the runtime refuses their shapes.
        """
        prepared = self.prepare(self.feed if arrays is None else arrays)
        if self.runtime == "ort":
            ort_run, feed = self.backend.run, {spec["name"]: a for spec, a in zip(self.inputs, prepared)}
            return lambda: ort_run(None, feed)
        if self._sig is not None:
            runner, in_names, _ = self._sig
            kwargs = dict(zip(in_names, prepared))
            return lambda: runner(**kwargs)
        try:
            self._resize([a.shape for a in prepared])
        except Exception as exc:
            raise self.run_error(exc, prepared, source) from exc
        set_tensor, invoke = self.backend.set_tensor, self.backend.invoke
        items = [(d["index"], a) for d, a in zip(self._in_details, prepared)]
        if fixed:
            for index, array in items:
                set_tensor(index, array)
            return invoke

        def run():
            for index, array in items:
                set_tensor(index, array)
            invoke()

        return run

    def _invoke(self, prepared) -> list:
        if self.runtime == "ort":
            return self.backend.run(None, {spec["name"]: a for spec, a in zip(self.inputs, prepared)})
        if self._sig is not None:  # the signature runner resizes its inputs to the arrays' shapes
            runner, in_names, out_names = self._sig
            result = runner(**dict(zip(in_names, prepared)))
            return [result[n] for n in out_names]
        self._resize([a.shape for a in prepared])
        for d, a in zip(self._in_details, prepared):
            self.backend.set_tensor(d["index"], a)
        self.backend.invoke()
        return [self.backend.get_tensor(d["index"]) for d in self._out_details]

    @staticmethod
    def _dequantize(arr, spec):
        q = spec["quantization"]
        if not q:
            return arr
        return (arr.astype(np.float32) - q["zero_point"]) * q["scale"]
