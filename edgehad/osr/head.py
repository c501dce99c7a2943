"""The COSTARR head inside the model: a wrapper whose forward returns ``(logits, known_score)``.

COSTARR: Rabinowitz, Cruz, Scheirer, Boult, "Consolidated Open Set Technique
with Attenuation for Robust Recognition", ICCV 2025. For penultimate features
f [D], logits z [C], final-layer weight W [C, D] and fitted statistics
(``edgehad.osr.stats``: z_min, z_max, mu [C, D], eta [C, D], known [C]):

    c = argmax z;  v = concat(f, f ⊙ w_c);  m = concat(mu_c, eta_c)
    S = (1 + cos(v, m)) / 2;  g = clip((z_c - z_min) / (z_max - z_min), 0, 1)
    score = g · S · known_c

Computed without building v or m (the algebra the exported graph runs):

    v · m   = f · mu_c + (f ⊙ w_c) · eta_c = f · (mu_c + w_c ⊙ eta_c) = f · A_c,   A = mu + W ⊙ eta
    |v|^2   = |f|^2 + |f ⊙ w_c|^2 = (f ⊙ f) · (1 + w_c ⊙ w_c)            = (f ⊙ f) · B_c,  B = 1 + W ⊙ W
    |m|     = sqrt(|mu_c|^2 + |eta_c|^2)                                  (a constant per class)
    S       = 1/2 + (f · A'_c) / sqrt(|v|^2 + eps),   A' = A · known / (2 |m|)   (0 where |m| = 0)
    g       = clip(z_c · s + t, 0, 1),  s = 1 / (z_max - z_min),  t = -z_min · s,   z_c = max z

So per input the head runs: one ARG_MAX, two row gathers (A'_c, B_c: O(D),
not O(C·D): a [1, D] x [D, C] product with all of A would read C·D weights,
as much as the classifier itself, which on mobilenet_v2 is 5 MB), two
multiplies and sums over D, an rsqrt and a handful of scalar ops. ``known_c``
is folded into A' (an excluded class then has S = 1/2): only when some class
is excluded does the graph gather ``known`` too, so that its inputs score 0.
eps = 1e-24 only keeps an all-zero f at score g/2 (cos 0) instead of NaN, as
the numpy reference's floor on |v||m| does; for any nonzero f it is below
float32 resolution.

Features without hooks (hooks do not export): the final Linear is replaced, in
a copy of the model, by ``_Tap``, which returns ``(f, W f + b)``. That tuple
reaches the model's output when the Linear's output *is* the output (what
``features.find_classifier`` establishes: a forward ending in the Linear, also
inside a ``Sequential(Dropout, Linear)`` head). Anything else is a clear
error.

The head is the submodule ``osr_head``: int8 quantization keeps it float
(``keep_float=["osr_head"]``): a cosine needs squares, a sum over D, an
rsqrt and a division, whose dynamic range int8 would crush; only the body's
f and z are quantized.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from edgehad.core.errors import UserInputError

HEAD_MODULE = "osr_head"        # the module name quantization keeps float
OUTPUT_NAMES = ("logits", "known_score")
EPS = 1e-24


class _Tap(torch.nn.Module):
    """Stands in for the final Linear: returns its input f and its output z, same parameters."""

    def __init__(self, linear):
        super().__init__()
        self.linear = linear

    def forward(self, f):
        return f, self.linear(f)


class KnownScore(torch.nn.Module):
    """``known_score(f, z)`` of COSTARR with the statistics as constant buffers (formulas: module docstring)."""

    def __init__(self, weight, stats: dict):
        super().__init__()
        W = np.asarray(weight, np.float64)
        mu = np.asarray(stats["mu"], np.float64)
        eta = np.asarray(stats["eta"], np.float64)
        if mu.shape != W.shape or eta.shape != W.shape:
            raise UserInputError(f"the stats are for another model: mu {list(mu.shape)}, eta {list(eta.shape)} "
                                 f"but the final Linear's weight is {list(W.shape)}; refit with `edgehad osr fit`")
        known = np.ones(len(W), bool) if stats.get("known") is None else np.asarray(stats["known"], bool)
        m_norm = np.sqrt((mu ** 2).sum(1) + (eta ** 2).sum(1))
        coef = np.where((m_norm > 0) & known, 0.5 / np.where(m_norm > 0, m_norm, 1.0), 0.0)
        a = (mu + W * eta) * coef[:, None]
        b = 1.0 + W * W
        z_min, z_max = float(stats["z_min"]), float(stats["z_max"])
        if not z_max > z_min:
            raise UserInputError(f"the stats have z_max {z_max} <= z_min {z_min}: refit with `edgehad osr fit`")
        scale = 1.0 / (z_max - z_min)
        self.register_buffer("a", torch.tensor(a, dtype=torch.float32))
        self.register_buffer("b", torch.tensor(b, dtype=torch.float32))
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32))
        self.register_buffer("shift", torch.tensor(-z_min * scale, dtype=torch.float32))
        # gathering `known` costs an op: only when a class is excluded
        self.all_known = bool(known.all())
        self.register_buffer("known", torch.tensor(known.astype(np.float32)).reshape(-1, 1))

    def forward(self, f, z):
        c = z.argmax(1)                                    # [N]
        # a row gather; embedding() lowers to one op in both formats (index_select and
        # indexing add bounds-check ops in TFLite: GATHER_ND + SELECT/LESS/...)
        a_c = torch.nn.functional.embedding(c, self.a)     # [N, D]
        b_c = torch.nn.functional.embedding(c, self.b)
        num = (f * a_c).sum(1, keepdim=True)               # f · A'_c
        norm2 = (f * f * b_c).sum(1, keepdim=True)         # |v|^2
        s = num * torch.rsqrt(norm2 + EPS) + 0.5           # (1 + cos(v, m)) / 2
        g = torch.clamp(z.amax(1, keepdim=True) * self.scale + self.shift, 0.0, 1.0)
        score = g * s
        if not self.all_known:
            score = score * torch.nn.functional.embedding(c, self.known)
        return score                                       # [N, 1]


class OSRHead(torch.nn.Module):
    """The user's model with the COSTARR head: ``forward(x) -> (logits, known_score)``.

    ``model`` is copied (the caller's module is not changed); its final Linear
    ``classifier`` becomes a ``_Tap``; ``osr_head`` is the ``KnownScore``.
    ``known_score`` has shape [N, 1].
    """

    def __init__(self, model, stats: dict, classifier: str | None = None, example_inputs=None):
        super().__init__()
        name = classifier or stats.get("classifier")
        modules = dict(model.named_modules())
        linear = modules.get(name) if name else None
        if not isinstance(linear, torch.nn.Linear):
            raise UserInputError(f"the stats name the final Linear {name!r}, which this model does not have as an "
                                 "nn.Linear: refit with `edgehad osr fit` (or pass `classifier`)")
        body = copy.deepcopy(model)
        parent_name, _, leaf = name.rpartition(".")
        parent = body.get_submodule(parent_name) if parent_name else body
        setattr(parent, leaf, _Tap(getattr(parent, leaf)))
        self.model = body.eval()
        self.classifier = name
        setattr(self, HEAD_MODULE, KnownScore(linear.weight.detach().float().numpy(), stats))
        self.eval()
        if example_inputs is not None:
            self.check(example_inputs, model)

    @property
    def head(self) -> KnownScore:
        return getattr(self, HEAD_MODULE)

    def forward(self, *args):
        f, z = self.model(*args)
        return z, self.head(f, z)

    def check(self, example_inputs, original) -> None:
        """Fail clearly unless the tapped copy returns (f, z) with z equal to the original model's output."""
        args = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
        why = None
        with torch.no_grad():
            try:
                out = self.model(*args)
                want = original(*args)
            except Exception as exc:
                out, why = None, (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if why is None and not (isinstance(out, tuple) and len(out) == 2 and isinstance(want, torch.Tensor)
                                and out[1].shape == want.shape and torch.equal(out[1], want)):
            why = "the model does more after it"
        if why is None and out[0].ndim != 2:
            why = f"its input has shape {list(out[0].shape)}, not [N, D]"
        if why is not None:
            raise UserInputError(
                f"cannot attach the COSTARR head: the final Linear {self.classifier!r} must produce the model's "
                f"output ({why}); name the final Linear with `classifier`, or end forward() in it"
            )


def measure_head(plain, with_head, example_inputs, formats=("onnx", "tflite"), threads: int = 1,
                 seconds: float = 1.0) -> dict:
    """The ops the head adds and its added latency, per format, on float exports of both models.

    Ops: counted in the files (``inspect_file``), with-head minus plain, by op
    type. Latency: both files in one process (edgehad.runtime.Session), 20
    warm-up runs each, then 10 rounds alternating which file goes first, about
    ``seconds`` of runs per file in all; medians in microseconds. A format that
    fails to export is reported with its error, not raised: the conversion's
    own export stages decide about formats.
    """
    import tempfile
    import time
    from collections import Counter

    from edgehad.export.side_by_side import export_sessions, interleaved_medians
    from edgehad.inspection import inspect_file

    feed = [np.asarray(t.detach().numpy()) for t in example_inputs]
    result = {"method": f"float exports with and without the head; median of interleaved runs, {threads} thread(s)"}
    with tempfile.TemporaryDirectory(prefix="edgehad-osr-") as tmp:
        for fmt in formats:
            try:
                paths, sessions = export_sessions({"plain": plain, "head": with_head}, example_inputs, fmt, tmp, threads)
                ops = {key: Counter(inspect_file(path)["ops"]) for key, path in paths.items()}
            except Exception as exc:  # noqa: BLE001 - reported, the export stages judge the format
                result[fmt] = {"error": (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]}
                continue
            for s in sessions.values():
                for _ in range(20):
                    s.run(feed)
            t0 = time.perf_counter()
            sessions["head"].run(feed)
            per_round = max(1, min(2000, int(seconds / 10 / max(time.perf_counter() - t0, 1e-6))))
            us = {key: v * 1e6 for key, (v, _) in interleaved_medians(sessions, feed, 10, per_round).items()}
            added = ops["head"] - ops["plain"]
            result[fmt] = {
                "ops_added": dict(sorted(added.items(), key=lambda kv: (-kv[1], kv[0]))),
                "ops_added_total": sum(added.values()),
                "ops_plain_total": sum(ops["plain"].values()), "ops_head_total": sum(ops["head"].values()),
                "plain_us": round(us["plain"], 2), "head_us": round(us["head"], 2),
                "added_us": round(us["head"] - us["plain"], 2),
                "added_percent": round(100 * (us["head"] - us["plain"]) / us["plain"], 2),
                "runs": 10 * per_round,
            }
    return result


__all__ = ["OSRHead", "KnownScore", "measure_head", "HEAD_MODULE", "OUTPUT_NAMES"]

