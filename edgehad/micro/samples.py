"""Sample inputs for a TFLM run, LiteRT's outputs for them, and how far TFLM's outputs are from those.

Inputs (seeded, so two runs see the same numbers):
- an int8/uint8/int16 input: uniform integers over the dtype's whole range
  (every value a quantized input can hold);
- a float input that feeds a QUANTIZE op (an int8 model with float I/O): uniform
  over what that op's output can represent, ``[(qmin - zp) * s, (qmax - zp) * s]``;
- any other float input: standard normal, the range of a normalised image or feature;
- bool / other integer inputs: 0 or 1.

Parity, per output, TFLM ``y'`` against LiteRT ``y`` on the same raw inputs. The reference ``y``
comes from LiteRT's reference kernels, from which TFLM's are ported: on the zoo's
int8 models they agree bit for bit (measured: max_abs 0), while LiteRT's default
XNNPACK kernels round some requantizations differently and land up to 2 output
steps away (resnet8, ds_cnn), so those are reported beside, not judged:
- a quantized output (scale ``s``): ``steps = max|q' - q|`` in integer steps;
- a float output made by DEQUANTIZE from an int8 tensor of scale ``s``:
  ``steps = max|y' - y| / s``;
- either passes when ``steps <= 1`` (the bar issue #7 sets: equal, or one
  rounding apart);
- a float output: passes when ``max|y' - y| <= 1e-4 * max(1, max|y|)``, the
  float-export tolerance of DESIGN.md (kernels sum in different orders).
"""

from __future__ import annotations

import numpy as np

FLOAT_RTOL = 1e-4
MAX_STEPS = 1.0
_STEP_SLACK = 1e-3  # float rounding of (y' - y) / s for an exact one-step difference
_QUANT_DTYPES = ("int8", "uint8", "int16")


def graph(path):
    """Subgraph 0 of a .tflite file as edgehad.inspection reads it (validated: corrupt files raise
    UserInputError): tensors (name, shape, dtype, quant), ops (name, inputs, outputs), inputs, outputs."""
    from edgehad.inspection.tflite_file import read  # the validated flatbuffer reader, shared with inspect

    _, data, (_, _, subgraphs, _) = read(path)
    return data, subgraphs[0]


def _scale(quant) -> float | None:
    if not quant:
        return None
    s = quant["scale"]
    return float(s if np.isscalar(s) else s[0]) if (np.isscalar(s) or len(s) == 1) else None


def _zero_point(quant) -> int:
    z = quant.get("zero_point", 0)
    return int(z if np.isscalar(z) else z[0])


def _consumer(sub, tensor: int, op_name: str):
    for name, ins, outs, _ in sub.ops:
        if name == op_name and ins and ins[0] == tensor:
            return outs[0]
    return None


def _producer(sub, tensor: int):
    for name, ins, outs, _ in sub.ops:
        if tensor in outs:
            return name, ins
    return None, []


def make_inputs(sub, samples: int, seed: int = 0) -> tuple[list, list]:
    """One ``[samples, *shape]`` array per model input (in the model's input order) and how each was drawn."""
    rng = np.random.default_rng(seed)
    arrays, how = [], []
    for idx in sub.inputs:
        t = sub.tensors[idx]
        shape = (samples, *[max(int(d), 1) for d in t.shape])
        if t.dtype in _QUANT_DTYPES:
            info = np.iinfo(t.dtype)
            arrays.append(rng.integers(info.min, info.max, size=shape, endpoint=True).astype(t.dtype))
            how.append(f"uniform {t.dtype} over [{info.min}, {info.max}]")
            continue
        if t.dtype in ("float32", "float16"):
            q_out = _consumer(sub, idx, "QUANTIZE")
            quant = sub.tensors[q_out].quant if q_out is not None else None
            scale = _scale(quant)
            if scale and sub.tensors[q_out].dtype in _QUANT_DTYPES:
                info, zp = np.iinfo(sub.tensors[q_out].dtype), _zero_point(quant)
                low, high = (info.min - zp) * scale, (info.max - zp) * scale
                arrays.append(rng.uniform(low, high, size=shape).astype(t.dtype))
                how.append(f"uniform over the input quantizer's range [{low:.4g}, {high:.4g}]")
            else:
                arrays.append(rng.standard_normal(shape).astype(t.dtype))
                how.append("standard normal")
            continue
        arrays.append(rng.integers(0, 1, size=shape, endpoint=True).astype(t.dtype))
        how.append(f"{t.dtype} 0 or 1")
    return arrays, how


def litert_outputs(path, sub, inputs: list, reference: bool = True) -> list:
    """LiteRT's outputs for ``inputs`` (model input order), one ``[samples, ...]`` array per model output.

    ``reference``: LiteRT's reference kernels (``OpResolverType.BUILTIN_REF``), the code TFLM's
    kernels were ported from; else its default kernels (optimized, with the XNNPACK delegate),
    what an application on a phone or a Pi runs.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kind = OpResolverType.BUILTIN_REF if reference else OpResolverType.AUTO
    interp = Interpreter(model_path=str(path), num_threads=1, experimental_op_resolver_type=kind)
    interp.allocate_tensors()
    by_index_in = {d["index"]: d for d in interp.get_input_details()}
    by_index_out = {d["index"]: d for d in interp.get_output_details()}
    n = inputs[0].shape[0] if inputs else 1
    outs = [[] for _ in sub.outputs]
    for s in range(n):
        interp.reset_all_variables()
        for idx, arr in zip(sub.inputs, inputs):
            interp.set_tensor(by_index_in[idx]["index"], np.ascontiguousarray(arr[s]))
        interp.invoke()
        for j, idx in enumerate(sub.outputs):
            outs[j].append(np.array(interp.get_tensor(by_index_out[idx]["index"]), copy=True))
    return [np.stack(o) for o in outs]


def compare(sub, reference: list, got: list) -> dict:
    """The ``parity`` entry: per output and overall (rules in the module docstring)."""
    per_output, passed, max_abs, max_steps = [], True, 0.0, None
    for j, (idx, y, y2) in enumerate(zip(sub.outputs, reference, got)):
        t = sub.tensors[idx]
        if y.shape != y2.shape:
            per_output.append({"name": t.name, "passed": False,
                               "reason": f"TFLM gave shape {list(y2.shape[1:])}, LiteRT {list(y.shape[1:])}"})
            passed = False
            continue
        entry = {"name": t.name, "dtype": t.dtype}
        scale = _scale(t.quant)
        if t.dtype in _QUANT_DTYPES and scale:
            diff = np.abs(y2.astype(np.int64) - y.astype(np.int64))
            steps = float(diff.max()) if diff.size else 0.0
            abs_err = steps * scale
            entry.update(scale=scale, max_steps=steps, max_abs=abs_err, passed=steps <= MAX_STEPS)
        else:
            diff = np.abs(y2.astype(np.float64) - y.astype(np.float64))
            abs_err = float(diff.max()) if diff.size else 0.0
            producer, p_ins = _producer(sub, idx)
            src_scale = _scale(sub.tensors[p_ins[0]].quant) if producer == "DEQUANTIZE" and p_ins else None
            if src_scale:
                steps = abs_err / src_scale
                entry.update(scale=src_scale, max_steps=round(steps, 4), max_abs=abs_err,
                             passed=steps <= MAX_STEPS + _STEP_SLACK)
            else:
                steps = None
                tol = FLOAT_RTOL * max(1.0, float(np.abs(y).max()) if y.size else 1.0)
                entry.update(max_abs=abs_err, tolerance=tol, passed=abs_err <= tol)
        if steps is not None:
            max_steps = steps if max_steps is None else max(max_steps, steps)
        max_abs = max(max_abs, abs_err)
        passed = passed and entry["passed"]
        per_output.append(entry)
    return {
        "max_abs": max_abs,
        "max_steps": None if max_steps is None else round(max_steps, 4),
        "passed": passed,
        "rule": f"quantized outputs within {MAX_STEPS:g} quantization step; float outputs within "
                f"{FLOAT_RTOL:g} * max(1, max|y|)",
        "outputs": per_output,
    }
