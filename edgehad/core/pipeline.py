"""Run a list of stages over an artifact, in a staging folder, and report.

Everything is written into a staging folder beside ``out``; only when every
stage (verification included) passed do the files move into ``out``, each by
an atomic rename. A failed run leaves ``out`` exactly as it was.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from edgehad.core.artifact import FIELDS, Artifact
from edgehad.core.errors import UserInputError
from edgehad.core.files import staging_dir
from edgehad.core.stage import Context, Stage

DEFAULT_SAMPLES = 16


def sample_inputs(example_inputs: tuple, data=None, n: int = DEFAULT_SAMPLES, seed: int = 0) -> list[tuple]:
    """Inputs for verification: the first ``n`` validation samples, or seeded random like the example."""
    import torch

    if data is not None:
        columns = fitting_samples(example_inputs, data, "val")
        dtypes = [t.numpy().dtype for t in example_inputs]
        return [tuple(c[i].astype(d) for c, d in zip(columns, dtypes)) for i in range(min(n, len(columns[0])))]
    gen = torch.Generator().manual_seed(seed)
    samples = []
    for _ in range(n):
        args = []
        for t in example_inputs:
            if t.is_floating_point():
                # the example's own mean and spread: an image model fed N(0, 1) instead of
                # [0, 1) pixels is tested off the inputs it will see
                mean, std = float(t.float().mean()), float(t.float().std()) if t.numel() > 1 else 1.0
                noise = torch.randn(t.shape, generator=gen) * (std or 1.0) + mean
                args.append(noise.to(t.dtype).numpy())
            else:
                high = max(2, int(t.max()) + 1) if t.numel() else 2
                args.append(torch.randint(0, high, t.shape, generator=gen).to(t.dtype).numpy())
        samples.append(tuple(args))
    return samples


def fitting_samples(example_inputs: tuple, data, split: str) -> tuple[np.ndarray, ...]:
    """The ``split`` ("train" or "val") inputs of ``data``, one array per model input, checked to fit the
    model at batch 1; row ``i`` of each is sample ``i``'s whole input tensor (``[N, *example.shape]``).
    Named data must have been bound to the model (:func:`bind_data`)."""
    x = getattr(data, split)[0]
    if isinstance(x, dict):
        if len(x) != len(example_inputs):
            raise UserInputError(f"`data` {data.spec} gives {len(x)} inputs ({', '.join(x)}) but the model "
                                 f"takes {len(example_inputs)}")
        return tuple(x.values())
    if len(example_inputs) != 1:
        raise UserInputError(f"`data` feeds one input, but the model takes {len(example_inputs)}: drop `data`")
    x = np.asarray(x)
    want = tuple(example_inputs[0].shape)
    got = (1, *x.shape[1:])
    if got != want:
        raise UserInputError(
            f"`data` {data.spec} gives inputs of shape {_shape(got)} but the model takes {_shape(want)}: "
            "choose data options that match (e.g. digits?size=32&channels=3) or another `input_shape`"
        )
    return (x[:, None],)


def statistics_inputs(artifact, count: int) -> tuple:
    """(a batch of up to ``count`` train samples, or None; what they are, in words) for statistics a stage
    takes on the model (fold-se's mean gates, block influence). Drawn with seed 0, not the first rows (a
    file sorted by class would give one class); one-input models only: otherwise None, and the caller
    uses the example inputs."""
    import torch

    if artifact.data is None:
        return None, "the example inputs (no data)"
    if len(artifact.example_inputs) != 1:
        return None, f"the example inputs (the model takes {len(artifact.example_inputs)} inputs)"
    column = fitting_samples(artifact.example_inputs, artifact.data, "train")[0]  # [N, *example.shape]
    pick = np.sort(np.random.default_rng(0).permutation(len(column))[:count])
    example = artifact.example_inputs[0]
    x = torch.from_numpy(np.ascontiguousarray(column[pick])).to(example.dtype).flatten(0, 1)
    return (x,), f"{len(pick)} train samples"


def model_input_names(module, count: int) -> list[str]:
    """forward()'s names for the model's ``count`` positional inputs, which are also the ONNX file's input
    names (``input_<i>`` where forward takes ``*args``). An ExportedProgram's module keeps the names."""
    import inspect

    try:
        params = [p.name for p in inspect.signature(module.forward).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError, AttributeError):
        params = []
    return [params[i] if i < len(params) else f"input_{i}" for i in range(count)]


# a stage that trains on the data or scores it by its labels takes one input x and labels y
LABELLED_USE = {"finetune": "fine-tuning trains on its labels (pass `finetune_epochs=0` to skip it)",
                "osr": "`osr` fit fits on its labelled train split",
                "prune": "pruning scores channels or accuracy on its labels"}


def bind_data(data, module, example_inputs: tuple, stages=()):
    """``data`` matched to the model's inputs, or a UserInputError naming what differs.

    One array x feeds a one-input model, whatever its argument is called. Named data (edgehad.data) must
    name exactly the model's inputs (:func:`model_input_names`); its arrays are put in the model's order,
    each checked to hold the input's sample shape and cast to the input's dtype (an integer input is
    never fed floats: token ids cast from float would silently change). A row is a sample along the
    batch dim ([N, 16] token ids for a [1, 16] input) or, for an input whose first dim is no batch (a
    recurrent state [2, 1, 128]), the whole tensor ([N, 2, 1, 128]); bound, every row is the whole
    tensor. A one-input model gets one array of batch rows back, so everything that reads x reads it
    as before. ``stages``: the pipeline's; one that trains on labels needs one input and labels.
    """
    if data is None:
        return None
    names = model_input_names(module, len(example_inputs))
    given = data.input_names
    if given is None and len(names) != 1:
        raise UserInputError(f"`data` {data.spec} gives one input x, but the model takes {len(names)} "
                             f"({', '.join(names)}): save one array per input, named {', '.join(names)} "
                             "(and y for labels, if any)")
    if given is not None:
        key = {n: n for n in names}
        if given == ["x"] and len(names) == 1:
            key = {names[0]: "x"}  # the generic name of a one-input model's input
        elif sorted(given) != sorted(names):
            hint = "; labels go in an array named y" if set(given) & {"label", "labels", "target", "targets"} else ""
            raise UserInputError(f"`data` {data.spec} gives inputs {', '.join(given)} but the model takes "
                                 f"{', '.join(names)} (its forward arguments): name the arrays so{hint}")
        bound = {}
        for split in ("train", "val"):
            x, y = getattr(data, split)
            arrays = [_fit_input(x[key[n]], t, n, data.spec) for n, t in zip(names, example_inputs)]
            one = len(names) == 1 and example_inputs[0].shape[0] == 1
            bound[split] = (arrays[0][:, 0] if one else dict(zip(names, arrays)), y)
        data = dataclasses.replace(data, **bound)
    for stage in stages:
        if stage.name in LABELLED_USE and (stage.needs_data or (stage.name == "prune" and not data.labelled)):
            problem = "has no labels (an array y)" if not data.labelled else \
                f"feeds {len(names)} inputs" if data.input_names else ""
            if problem:
                raise UserInputError(f"{stage.name} needs labelled data with one input: `data` {data.spec} "
                                     f"{problem}; {LABELLED_USE[stage.name]}")
    return data


def _fit_input(array: np.ndarray, example, name: str, spec: str) -> np.ndarray:
    """One named input's arrays checked against the model's example input: sample shape, dtype (cast).
    Returned as whole-tensor rows, ``[N, *example.shape]``."""
    full, want = tuple(example.shape), example.numpy().dtype
    row = full[1:] if full[:1] == (1,) else full
    if tuple(array.shape[1:]) != row and tuple(array.shape[1:]) != full:
        raise UserInputError(f"`data` {spec}: input {name} has samples of shape {_shape(array.shape[1:]) or 'scalar'} "
                             f"but the model takes {_shape(row) or 'scalar'} per sample: give arrays of that "
                             "shape (pad or cut token ids to the model's length) or another `input_shape`")
    if tuple(array.shape[1:]) != full:
        array = array[:, None]  # batch rows: each the batch-1 tensor
    if array.dtype.kind == "f" and want.kind in "iub":
        raise UserInputError(f"`data` {spec}: input {name} holds {array.dtype} values but the model takes "
                             f"{want}: save it as integers")
    if array.dtype.kind in "iu" and want.kind in "iu" and array.size:
        info = np.iinfo(want)
        if array.min() < info.min or array.max() > info.max:
            raise UserInputError(f"`data` {spec}: input {name} holds values {array.min()}..{array.max()}, outside "
                                 f"the model's {want}")
    return np.ascontiguousarray(array.astype(want, copy=False))


def _shape(shape) -> str:
    return "x".join(str(d) for d in shape)


def model_cost(model, example_inputs) -> tuple[int | None, int | None]:
    """(params, MACs) of a torch model; None where it cannot be counted."""
    try:
        from edgehad import cost

        params = cost.count_params(model)
    except Exception:
        params = None
    try:
        from edgehad import cost

        macs = cost.count_macs(model, example_inputs)
    except Exception:
        macs = None
    return params, macs


def run_pipeline(artifact: Artifact, stage_list: list[Stage], out: str | Path, *, keep_intermediate=False,
                 progress=lambda msg: None, write_report=None) -> dict:
    """Run the stages; on success move the results into ``out`` and return the report."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserInputError(f"`out` {out} is a file, not a folder: pick a folder path")
    last_cost_key, cost_now = None, (None, None)
    with staging_dir(out) as work:
        ctx = Context(workdir=work, progress=progress)
        for stage in stage_list:
            progress(f"stage {stage.name}")
            t0 = time.perf_counter()
            before = _field_ids(artifact)
            ctx.entry = {}
            artifact = stage.run(artifact, ctx)
            seconds = time.perf_counter() - t0
            _check_writes(stage, before, artifact)
            key = (id(artifact.model), artifact.variant)
            if key != last_cost_key:  # counting MACs traces the model: only when it changed
                cost_now, last_cost_key = model_cost(artifact.model, artifact.example_inputs), key
            entry = {"name": stage.name, "seconds": round(seconds, 3), "params": cost_now[0], "macs": cost_now[1]}
            entry.update(ctx.entry)
            artifact.stages.append(entry)
        finals = _name_files(artifact, keep_intermediate)
        report = build_report(artifact, out, finals)
        if write_report is not None:
            write_report(report, work)
    return report


def _field_ids(artifact: Artifact) -> dict[str, int]:
    return {name: id(getattr(artifact, name)) for name in FIELDS}


def _check_writes(stage: Stage, before: dict[str, int], artifact: Artifact) -> None:
    """The stage contract: a field a stage replaced must be one it declares in ``writes``.

    Only replacement is seen (an object changed in place keeps its id), which is
    what catches a stage handing the next one state it did not announce.
    """
    changed = sorted(name for name, ident in _field_ids(artifact).items()
                     if ident != before[name] and name not in stage.writes)
    if changed:
        raise RuntimeError(f"stage {stage.name!r} replaced {changed} without declaring them in its writes")


def _name_files(artifact: Artifact, keep_intermediate: bool) -> list:
    """The last file of each format becomes ``model.<ext>``; the others are dropped or kept as variants."""
    last = {}
    for f in artifact.files:
        last[f.format] = f
    finals = []
    for f in artifact.files:
        if last[f.format] is f:
            f.final_name = f"model{f.path.suffix}"
            finals.append(f)
        elif keep_intermediate:
            f.final_name = f.path.name
            finals.append(f)
        else:
            f.path.unlink(missing_ok=True)
    for f in finals:
        if f.final_name != f.path.name:
            target = f.path.with_name(f.final_name)
            if target.exists():   # an intermediate of the same name: keep it under its variant name
                continue
            f.path.rename(target)
            f.path = target
    return finals


def build_report(artifact: Artifact, out: Path, finals: list) -> dict:
    import edgehad

    source = dict(artifact.source)
    files = [f.to_report(out) for f in finals]
    if artifact.sparse_layers:  # element pruning: zeros shrink only a compressed file
        import zlib

        for entry, f in zip(files, finals):
            entry["size_zipped_bytes"] = len(zlib.compress(Path(f.path).read_bytes(), 6))
    return {
        "edgehad_version": edgehad.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source": source,
        "preprocessing": artifact.preprocessing,
        "data": getattr(artifact.data, "spec", None),
        "samples": len(artifact.sample_inputs or []),
        "stages": artifact.stages,
        "artifacts": files,
        "verified": all(f.parity is not None for f in finals),
        "out": str(out),
    }
