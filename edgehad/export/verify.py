"""Parity of an exported file against the torch model, in the file's real runtime.

For reference outputs y (torch) and y' (runtime) over all sample inputs:

    max_abs        = max |y - y'|
    max_rel        = max_abs / max(1, max |y|)
    cosine         = <y, y'> / (|y| |y'|)          (flattened over all samples)
    top1_agreement = mean(argmax y == argmax y')  (for [1, C] outputs with C > 1)
    sqnr_db        = 10 log10(sum y^2 / sum (y - y')^2)   (signal-to-quantization-noise ratio)

Quantized files are judged by cosine against the quantized torch model they
came from (the verify stage's ``min_cosine``); the float rule below would
always fail them.

Float tolerance (DESIGN.md): max_abs <= 1e-4 * max(1, max|y|), and top-1 must
agree on every sample whose reference top-2 gap exceeds that bound (a near tie
may flip without the model being wrong).

A model with several outputs (e.g. ``(logits, known_score)`` of the OSR head)
also gets the metrics per output (``outputs``, in output order), and the float
rule must hold for each output on its own scale: a [0, 1] score must not hide
under the tolerance of logits ten times larger.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

FLOAT_RTOL = 1e-4


@dataclass
class Parity:
    max_abs: float
    max_rel: float
    cosine: float
    top1_agreement: float | None
    sqnr_db: float
    samples: int
    tolerance: float
    top1_disagreements_outside_ties: int
    passed: bool
    outputs: list | None = None     # per output, when there are several: max_abs, tolerance, cosine, sqnr_db, within_tolerance

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        top1 = "n/a" if self.top1_agreement is None else f"{self.top1_agreement:.4f}"
        return (f"max_abs={self.max_abs:.3g} (tolerance {self.tolerance:.3g}), max_rel={self.max_rel:.3g}, "
                f"cosine={self.cosine:.6f}, top1_agreement={top1} over {self.samples} samples")


def torch_outputs(model, inputs: list[tuple]) -> list[list[np.ndarray]]:
    """Run ``model`` on each input tuple; outputs flattened to a list of arrays."""
    import torch

    results = []
    with torch.no_grad():
        for args in inputs:
            out = model(*[torch.as_tensor(a) for a in args])
            results.append([o.detach().cpu().numpy() for o in _flatten(out)])
    return results


def _flatten(out):
    """The tensors of a model's output (nested tuples, lists, dicts: torch's pytree), in order."""
    import torch
    from torch.utils._pytree import tree_leaves

    leaves = tree_leaves(out)
    for leaf in leaves:
        if not isinstance(leaf, torch.Tensor):
            raise TypeError(f"model output of type {type(leaf).__name__} is not a tensor, tuple or dict")
    return leaves


def compare(reference: list[list[np.ndarray]], actual: list[list[np.ndarray]], rtol: float = FLOAT_RTOL) -> Parity:
    """Parity metrics of ``actual`` against ``reference`` (per sample, per output)."""
    ref_flat = np.concatenate([np.asarray(o, np.float64).ravel() for s in reference for o in s])
    act_flat = np.concatenate([np.asarray(o, np.float64).ravel() for s in actual for o in s])
    if ref_flat.shape != act_flat.shape:
        raise ValueError(f"output sizes differ: {ref_flat.size} vs {act_flat.size}")
    diff = np.abs(ref_flat - act_flat)
    max_abs = float(diff.max()) if diff.size else 0.0
    scale = max(1.0, float(np.abs(ref_flat).max()) if ref_flat.size else 1.0)
    tol = rtol * scale
    denom = float(np.linalg.norm(ref_flat) * np.linalg.norm(act_flat))
    cosine = float(ref_flat @ act_flat / denom) if denom > 0 else float(np.array_equal(ref_flat, act_flat))

    agree, total, bad = 0, 0, 0
    for ref_s, act_s in zip(reference, actual):
        y, y2 = np.asarray(ref_s[0], np.float64), np.asarray(act_s[0], np.float64)
        if y.ndim < 1 or y.shape[-1] < 2 or y.size != y.shape[-1] * int(np.prod(y.shape[:-1])):
            continue
        for row, row2 in zip(y.reshape(-1, y.shape[-1]), y2.reshape(-1, y.shape[-1])):
            total += 1
            same = int(np.argmax(row) == np.argmax(row2))
            agree += same
            top2 = np.sort(row)[-2:]
            if not same and (top2[1] - top2[0]) > tol:
                bad += 1
    top1 = agree / total if total else None
    passed = max_abs <= tol and bad == 0
    noise = float(((ref_flat - act_flat) ** 2).sum())
    signal = float((ref_flat ** 2).sum())
    sqnr = float("inf") if noise == 0 else (10 * np.log10(signal / noise) if signal > 0 else float("-inf"))
    sqnr = min(sqnr, 999.0)  # JSON has no infinity; 999 dB means "identical"
    per_output = None
    counts = {len(s) for s in reference} | {len(s) for s in actual}
    if len(counts) == 1 and counts.pop() > 1:
        per_output = [_one_output([s[k] for s in reference], [s[k] for s in actual], rtol)
                      for k in range(len(reference[0]))]
        passed = passed and all(o["within_tolerance"] for o in per_output)
    return Parity(max_abs, max_abs / scale, cosine, top1, sqnr, len(reference), tol, bad, passed, per_output)


def _one_output(reference: list, actual: list, rtol: float) -> dict:
    """The float rule and cosine / SQNR of one output over all samples."""
    y = np.concatenate([np.asarray(o, np.float64).ravel() for o in reference])
    y2 = np.concatenate([np.asarray(o, np.float64).ravel() for o in actual])
    if y.shape != y2.shape:
        raise ValueError(f"output sizes differ: {y.size} vs {y2.size}")
    max_abs = float(np.abs(y - y2).max()) if y.size else 0.0
    tol = rtol * max(1.0, float(np.abs(y).max()) if y.size else 1.0)
    denom = float(np.linalg.norm(y) * np.linalg.norm(y2))
    cosine = float(y @ y2 / denom) if denom > 0 else float(np.array_equal(y, y2))
    noise, signal = float(((y - y2) ** 2).sum()), float((y ** 2).sum())
    sqnr = float("inf") if noise == 0 else (10 * np.log10(signal / noise) if signal > 0 else float("-inf"))
    return {"max_abs": max_abs, "tolerance": tol, "cosine": cosine, "sqnr_db": min(sqnr, 999.0),
            "within_tolerance": max_abs <= tol}


def runtime_outputs(path: str, inputs: list[tuple], threads: int | None = None,
                    layout: dict | None = None) -> list[list[np.ndarray]]:
    """Run each input tuple (torch's layout) through the file in its real runtime; outputs in torch's layout.

    The Session is opened with ``layout="nchw"``: the image tensors the file states as NHWC (its
    ``edgehad`` entry, edgehad.export.layout) are fed the transposed arrays and come back transposed,
    so they compare with torch's element by element. ``layout``: the record the export wrote for the
    file; the file must state the same NHWC tensors, else feeding it torch's arrays would be wrong (a
    ValueError says so).
    """
    from edgehad.core.capture import captured
    from edgehad.runtime import Session

    with captured():
        session = Session(str(path), threads=threads, layout="nchw")
        for kind, specs in (("inputs", session.inputs), ("outputs", session.outputs)):
            stated = [s.get("layout") == "nhwc" for s in specs]
            recorded = [lay == "nhwc" for lay in (layout or {}).get(kind) or []]
            if any(recorded) and stated != recorded:
                raise ValueError(f"{path} states NHWC {kind} {stated}, the export recorded {recorded}: "
                                 "its layout entry is missing or out of date")
        return [session.run([np.asarray(a) for a in args], dequantize=True) for args in inputs]
