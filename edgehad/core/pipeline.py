"""Run a list of stages over an artifact, in a staging folder, and report.

Everything is written into a staging folder beside ``out``; only when every
stage (verification included) passed do the files move into ``out``, each by
an atomic rename. A failed run leaves ``out`` exactly as it was.
"""

from __future__ import annotations

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
        x_val = fitting_samples(example_inputs, data, "val")
        dtype = example_inputs[0].numpy().dtype
        return [(x_val[i:i + 1].astype(dtype),) for i in range(min(n, len(x_val)))]
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


def fitting_samples(example_inputs: tuple, data, split: str) -> np.ndarray:
    """The ``split`` ("train" or "val") inputs of ``data``, checked to fit the model's one input at batch 1."""
    if len(example_inputs) != 1:
        raise UserInputError(f"`data` feeds one input, but the model takes {len(example_inputs)}: drop `data`")
    x = np.asarray(getattr(data, split)[0])
    want = tuple(example_inputs[0].shape)
    got = (1, *x.shape[1:])
    if got != want:
        raise UserInputError(
            f"`data` {data.spec} gives inputs of shape {_shape(got)} but the model takes {_shape(want)}: "
            "choose data options that match (e.g. digits?size=32&channels=3) or another `input_shape`"
        )
    return x


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
