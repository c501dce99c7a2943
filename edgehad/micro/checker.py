"""``edgehad micro``: does a .tflite file run under TFLite Micro, with what, in how much RAM.

Steps: read the op list and map it to MicroMutableOpResolver entries
(edgehad.micro.ops; ops TFLM has no kernel for stop here, exit 1); draw
seeded sample inputs and run them under TFLM (edgehad.micro.probe) and under
LiteRT (edgehad.micro.reference), each in a time-limited child process;
compare (edgehad.micro.samples); size the tensor arena (edgehad.micro.arena);
check arena and file size against a target's RAM and flash.

Outcomes that are results, not bad input, land in ``problems`` (the CLI exits
1 after printing the document): outputs that differ from LiteRT, a requested
arena that is too small, a model that does not fit the target. A model TFLM
cannot run at all (missing kernels, no arena up to the cap) raises an
EdgehadError with exit code 1. Bad arguments and bad files raise
UserInputError (exit 2): unreadable or corrupt flatbuffers, opcodes TFLite does
not have, a model that LiteRT refuses too (so the file, not TFLM, is at fault),
and a run that does not finish within the time limit (it loops).
"""

from __future__ import annotations

import math
import tempfile
from importlib import metadata
from pathlib import Path

import numpy as np

from edgehad.core.errors import EdgehadError, UserInputError
from edgehad.core.validation import check_setting
from edgehad.micro import arena as arena_mod
from edgehad.micro import samples as samples_mod
from edgehad.micro.ops import model_ops, resolver_entries, unsupported_ops

START_MIN_BYTES = 64 * 1024  # the first arena tried: at least this, more for large activations
MAX_ARENA_KB = arena_mod.CAP_BYTES // 1024  # the cap of the arena search: more than any MCU has
# Every sample is held in memory in each process (and in two .npz files): enough to judge parity,
# bounded so that a typo cannot ask for gigabytes.
MAX_SAMPLES = 1000
MAX_SAMPLE_BYTES = 1 << 30
MAX_TIMEOUT_S = 86_400
# The numeric options, checked with the project's one schema library (edgehad.core.validation).
OPTIONS_SCHEMA = {
    "type": "object",
    "properties": {
        "arena_kb": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_ARENA_KB},
        "samples": {"type": "integer", "minimum": 1, "maximum": MAX_SAMPLES},
        "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_TIMEOUT_S},
    },
}
OPTION_LIMITS = {
    "arena_kb": f"KiB; {MAX_ARENA_KB:,} KiB = 256 MiB, the cap of the arena search, is more RAM than any MCU has",
    "samples": "seeded inputs compared with LiteRT; a few are enough",
    "timeout": "seconds each TFLM or LiteRT run may take",
}
FLOAT_WARNING = ("the model is float: TFLM runs it, but most MCUs want int8 (no FPU, or a slow one, and 4x the "
                 "flash): convert with `quantize='int8'`")


class NoKernelError(EdgehadError):
    """The model uses ops TFLM has no kernel for (exit 1: the file is fine, TFLM cannot run it)."""

    def __init__(self, message: str, ops=()):
        super().__init__(message)  # args stay (message,), so the error pickles like any other
        self.ops = list(ops)  # the ops without a kernel, sorted: a caller (edgehad.bundle) words its own refusal


def tflm_version() -> str:
    try:
        return metadata.version("tflite-micro")
    except metadata.PackageNotFoundError:
        raise EdgehadError("the tflite-micro package is not installed: pip install tflite-micro") from None


def _check_option(key: str, value) -> None:
    """One option against OPTIONS_SCHEMA; the error names the option, the range and why the range ends there."""
    if isinstance(value, float) and repr(value).endswith(".0"):
        value = int(value)  # shown as the user typed it (999999999999, not 999999999999.0); the same check
    check_setting(f"`{key}`", value, OPTIONS_SCHEMA["properties"][key], OPTION_LIMITS[key])


def _validate(path, arena_kb, find_arena, samples, timeout) -> Path:
    if arena_kb is not None and find_arena:
        raise UserInputError("`arena_kb` and `find_arena` exclude each other: pass `arena_kb` N to try one size, "
                             "or `find_arena=True` to search for the smallest")
    if arena_kb is not None:
        _check_option("arena_kb", arena_kb)
    _check_option("samples", samples)
    _check_option("timeout", timeout)
    p = Path(path)
    if p.suffix.lower() != ".tflite":
        hint = " (convert it first: edgehad convert MODEL, then pass its model.tflite)" \
            if p.suffix.lower() in (".onnx", ".pt", ".pt2", ".py") else ""
        raise UserInputError(f"{path} is not a .tflite file: TFLite Micro runs TFLite flatbuffers{hint}")
    return p


def _tensor_bytes(t) -> int:
    try:
        item = np.dtype(t.dtype).itemsize
    except TypeError:
        item = 1
    return math.prod(max(int(d), 1) for d in t.shape) * item  # Python ints: a corrupt shape must not wrap


def _check_input_sizes(path, sub, samples: int) -> None:
    """Refuse inputs no arena up to the cap could hold, or samples that would need gigabytes here."""
    total = 0
    for idx in sub.inputs:
        t = sub.tensors[idx]
        n = _tensor_bytes(t)
        if n > arena_mod.CAP_BYTES:
            raise UserInputError(f"{path}: input {t.name!r} of shape {list(t.shape)} takes {n:,} bytes, more than "
                                 f"the {MAX_ARENA_KB:,} KiB arena cap: no MCU can run it (a corrupt file, or no "
                                 f"MCU model)")
        total += n
    if total * samples > MAX_SAMPLE_BYTES:
        raise UserInputError(f"`samples` {samples} would hold {total * samples:,} bytes of inputs "
                             f"(at most {MAX_SAMPLE_BYTES:,}): use fewer `samples`")


def _save_inputs(path: Path, arrays: list, n_outputs: int) -> Path:
    np.savez(path, **{f"in_{k}": a for k, a in enumerate(arrays)}, n_outputs=np.array(n_outputs))
    return path


def _kib(n: float) -> str:
    return f"{n / 1024:,.1f} KiB"


def target_check(target: dict, arena_bytes: int | None, arena_what: str, size_bytes: int) -> tuple[dict, list]:
    """Compare the arena with the target's RAM and the file with its flash; (entry, problems).

    ``arena_bytes`` None (no arena known, e.g. an ONNX file in a bundle): RAM is not checked, ``ram_fits`` None.
    """
    name, ram = target["name"], int(target["ram_kb"]) * 1024
    flash = target.get("flash_kb")
    entry = {"name": name, "ram_kb": target["ram_kb"], "arena_bytes": arena_bytes, "arena_is": arena_what,
             "ram_fits": None if arena_bytes is None else arena_bytes <= ram, "flash_kb": flash,
             "model_bytes": size_bytes, "flash_fits": None if flash is None else size_bytes <= flash * 1024}
    problems = []
    if entry["ram_fits"] is False:
        problems.append(f"the model does not fit target {name}: its arena needs {_kib(arena_bytes)} ({arena_what}) "
                        f"but {name} has {_kib(ram)} of RAM")
    if flash is None:
        entry["note"] = f"flash not checked: target {name} has no flash_kb (a board with a file system)"
    elif not entry["flash_fits"]:
        problems.append(f"the model does not fit target {name}: the file is {_kib(size_bytes)} but {name} has "
                        f"{_kib(flash * 1024)} of flash")
    return entry, problems


def _unknown_opcodes(ops) -> list[str]:
    """Builtin codes the TFLite schema does not define (the reader names them ``BUILTIN_<code>``)."""
    return [op for op in ops if op.startswith("BUILTIN_")]


def _refused_by_litert(path, inputs_npz, timeout: float, tflm_said: str) -> None:
    """TFLM failed for a reason other than the arena: if LiteRT refuses the file too, the file is at fault
    (exit 2); otherwise return and let the caller report TFLM's failure (exit 1)."""
    from edgehad.micro.reference import litert_reference

    with tempfile.TemporaryDirectory(prefix="edgehad-micro-ref-") as tmp:
        why = litert_reference(path, inputs_npz, Path(tmp) / "ref.npz", timeout)
    if why is not None:
        raise UserInputError(f"{path} is not a valid TFLite model: TFLM ({tflm_said}) and LiteRT ({why}) both "
                             f"refuse it; re-export it")


def _fed(path, p, sub, input_shape, inputs):
    """The file's inputs (edgehad.inspection.inputs). TFLM runs the shapes stored in the file and cannot
    resize, so those are the shapes, stated or not: a dynamic signature (-1, e.g. the batch of the sine
    model tflite-micro ships) is not a guess here, since the stored shape is what the MCU will run."""
    from edgehad.inspection.inputs import file_inputs
    from edgehad.runtime import shape_text

    if input_shape is None and inputs is None:
        input_shape = [f"{sub.tensors[i].name}={shape_text(list(sub.tensors[i].shape))}"
                       for i in sub.inputs if i >= 0]
    fed = file_inputs(path, input_shape, inputs)
    for i, shape in zip([i for i in sub.inputs if i >= 0], fed.shapes):
        t = sub.tensors[i]
        if list(t.shape) != list(shape):
            raise UserInputError(f"{path}: TFLite Micro runs the input shapes stored in the file and cannot resize "
                                 f"them: {t.name} is {shape_text(list(t.shape))} there, not {shape_text(shape)}; "
                                 f"re-export the model at that shape")
    if fed.dynamic:
        # TFLM takes every tensor's stored shape; an exporter stores its example's sizes inside a dynamic
        # graph (torch.export's dynamic dims start from an example of 2 or more), which LiteRT recomputes
        import copy

        from edgehad.inspection.tflite_file import at_input_shapes

        derived = copy.deepcopy(sub)
        at_input_shapes(p, derived, fed.by_name())
        for t, d in zip(sub.tensors, derived.tensors):
            if not t.constant and list(t.shape) != list(d.shape):
                raise UserInputError(f"{path} has dynamic dims, and TFLite Micro runs the shapes stored in it, "
                                     f"which do not follow from its inputs: {t.name} is stored as "
                                     f"{shape_text(list(t.shape))}, {shape_text(list(d.shape))} at "
                                     f"{', '.join(f'{k}={shape_text(v)}' for k, v in fed.by_name().items())}; "
                                     f"re-export the model with static shapes")
    return fed


def check(path, arena_kb: float | None = None, find_arena: bool = False, target: str | None = None,
          samples: int = 8, seed: int = 0, progress=None, timeout: float = arena_mod.PROBE_TIMEOUT_S,
          input_shape=None, inputs=None) -> dict:
    """Run ``path`` under TFLite Micro; returns one dict (keys below; the CLI's --json prints it).

    ``path, tflm_version, size_bytes, ops, resolver, unsupported, float_model, warning, samples,
    inputs_drawn, parity {max_abs, max_steps, passed, rule, outputs, vs_default_kernels}, arena
    (with find_arena: {min_bytes, recommended_bytes, margin, resolution_bytes, lower_bound_bytes,
    tflm_recorded_bytes, probes, host_note}; else {requested_bytes, works, reason, tflm_recorded_bytes,
    host_note} with ``auto`` when no size was given), target (None, or see target_check), problems``.

    ``target`` (a name in targets/ or a .toml path) implies ``find_arena`` unless ``arena_kb`` is given.
    ``timeout``: seconds each child run (TFLM or LiteRT) may take; past it, ProbeTimeoutError (exit 2).
    ``input_shape`` / ``inputs`` (edgehad.inspection.inputs): a file with symbolic input dims needs them, at
    the shapes stored in it; ``inputs``' arrays are then the one sample compared (``samples`` 1).
    ``input_shapes``: ``{input name: shape}`` run.
    """
    from edgehad.inspection.tflite_file import inspect_tflite
    from edgehad.targets import load_target

    progress = progress or (lambda msg: None)
    p = _validate(path, arena_kb, find_arena, samples, timeout)
    tgt = load_target(target) if target else None
    version = tflm_version()
    info = inspect_tflite(p)  # validates the flatbuffer: a corrupt file is a UserInputError here
    ops = model_ops(p)
    unknown = _unknown_opcodes(ops)
    if unknown:
        raise UserInputError(f"{path} is not a valid TFLite model: it uses opcode(s) TFLite does not define "
                             f"({', '.join(op.removeprefix('BUILTIN_') for op in unknown)}): the file is corrupt or "
                             f"from a newer TFLite; re-export it")
    missing = unsupported_ops(ops)
    if missing:
        raise NoKernelError(f"{path}: TFLM has no kernel for {', '.join(missing)}: replace those layers with ones "
                            f"TFLM supports (see edgehad inspect {path}), or run the model with LiteRT on a board "
                            f"with an OS", missing)
    float_model = not info["quantized"]
    _, sub = samples_mod.graph(p)
    fed = _fed(path, p, sub, input_shape, inputs)
    if fed.arrays is not None:  # the user's arrays are the sample compared
        samples = 1
    _check_input_sizes(path, sub, samples)
    if fed.arrays is not None:
        inputs = [np.asarray(a)[None] for a in fed.arrays]
        drawn = [f"from {fed.source or '`inputs`'}"] * len(inputs)
    else:
        inputs, drawn = samples_mod.make_inputs(sub, samples, seed)
    if tgt is not None and arena_kb is None:
        find_arena = True

    result = {"path": str(path), "tflm_version": version, "size_bytes": info["size_bytes"], "ops": ops,
              "resolver": resolver_entries(ops), "unsupported": missing, "float_model": float_model,
              "warning": FLOAT_WARNING if float_model else None, "samples": samples, "inputs_drawn": drawn,
              "input_shapes": fed.by_name()}
    problems = []
    activations = [_tensor_bytes(t) for t in sub.tensors if not t.constant]
    lower = max(activations, default=arena_mod.ALIGN)
    start = min(max(START_MIN_BYTES, 1 << int(2 * sum(activations) + 16 * 1024).bit_length()), arena_mod.CAP_BYTES)
    with tempfile.TemporaryDirectory(prefix="edgehad-micro-") as tmp:
        all_in = _save_inputs(Path(tmp) / "inputs.npz", inputs, len(sub.outputs))
        one_in = _save_inputs(Path(tmp) / "one.npz", [a[:1] for a in inputs], len(sub.outputs))
        out = Path(tmp) / "out.npz"
        try:
            if find_arena:
                progress("searching for the smallest arena (bisection, one child process per size)")
                arena = arena_mod.find_arena(p, one_in, lower, start, progress=progress, timeout=timeout)
                size = arena["recommended_bytes"]
            elif arena_kb is not None:
                size = int(round(arena_kb * 1024))
                arena = {"requested_bytes": size, "auto": False}
            else:
                top, _ = arena_mod.first_working(p, one_in, start, progress=progress, timeout=timeout)
                size = top.bytes
                arena = {"requested_bytes": size, "auto": True,
                         "note": "a generous size that works; `find_arena=True` finds the smallest"}
        except arena_mod.ArenaSearchError as exc:
            # A refusal or a crash may be the file's fault, not TFLM's: ask LiteRT. "Too large" is an answer.
            failed = exc.probe
            if failed is not None and (not failed.allocation_failure or failed.reason.startswith("crashed")):
                _refused_by_litert(path, one_in, timeout, failed.reason)
            raise
        progress(f"running {samples} sample(s) under TFLM with a {_kib(size)} arena")
        run = arena_mod.run_probe(p, size, all_in, out, timeout=timeout)
        if "min_bytes" not in arena:
            arena.update(works=run.works, reason=run.reason or None, tflm_recorded_bytes=run.recorded_bytes,
                         host_note=arena_mod.HOST_NOTE)
        if run.works:
            with np.load(out) as data:
                got = [data[f"out_{j}"] for j in range(len(sub.outputs))]
            progress("running the same samples under LiteRT")
            ref_out = Path(tmp) / "reference.npz"
            from edgehad.micro.reference import litert_reference

            why = litert_reference(p, all_in, ref_out, timeout)
            if why is not None and fed.arrays is not None:  # on the user's arrays: the run failed, not the file
                given = ", ".join(f"{name}: {a.dtype.name} {'x'.join(map(str, a.shape)) or 'scalar'}"
                                  for name, a in zip(fed.by_name(), fed.arrays))
                raise EdgehadError(f"{path}: LiteRT failed running it on the inputs given ({given}): {why}")
            if why is not None:
                raise UserInputError(f"{path} is not a valid TFLite model: TFLM ran it but LiteRT refuses it "
                                     f"({why}); re-export it")
            with np.load(ref_out) as data:
                reference = [data[f"ref_{j}"] for j in range(len(sub.outputs))]
                default_kernels = [data[f"default_{j}"] for j in range(len(sub.outputs))]
            parity = samples_mod.compare(sub, reference, got)
            default = samples_mod.compare(sub, default_kernels, got)
            parity["vs_default_kernels"] = {"max_abs": default["max_abs"], "max_steps": default["max_steps"]}
            if not parity["passed"]:
                problems.append(f"TFLM's outputs differ from LiteRT's reference kernels beyond the bar "
                                f"(max_abs={parity['max_abs']:.4g}, max_steps={parity['max_steps']}; "
                                f"{parity['rule']})")
        else:
            parity = None
            # TFLM's words are a hint: a failure is "does not fit" when the largest arena works (arena.py)
            if not run.allocation_failure and arena_kb is not None \
                    and not arena_mod.larger_works(p, run, one_in, timeout=timeout):
                _refused_by_litert(path, one_in, timeout, run.reason)
                raise EdgehadError(f"{path}: TFLM cannot run it with a {_kib(size)} arena, and not for lack of "
                                   f"memory: {run.reason}")
            problems.append(f"the model does not run with a {_kib(size)} arena ({run.reason}): "
                            f"try a larger `arena_kb`, or `find_arena=True`")
    result["parity"] = parity
    result["arena"] = arena
    result["target"] = None
    if tgt is not None:
        what = "recommended, with margin" if "min_bytes" in arena else "requested"
        result["target"], fit_problems = target_check(tgt, size, what, info["size_bytes"])
        problems += fit_problems
    result["problems"] = problems
    return result
