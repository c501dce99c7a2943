"""Stage ``osr``: attach the COSTARR open-set head (edgehad.osr.head) to the model.

It runs after every stage that changes the model's function (rewrite 10,
prune 20, finetune 30) and before quantization (40): the exported files then
have two outputs, the logits and ``known_score``. Statistics fitted before
those stages describe another function and are refused as stale; ``fit``
refits them on the train split of --data, on the model as it is here.

int8: the head stays float (this stage adds the ``osr_head`` module to
``Artifact.keep_float``, which the quantize stage keeps float): the cosine's squares, sum, rsqrt and division would lose the score in
int8; only the body is quantized.

The report's ``osr`` entry: where the stats came from, their fingerprint, the
classifier, and (``measure``) the ops the head adds and its added latency,
measured on float exports with and without the head (counted in the files,
timed in the same process, 1 thread, interleaved rounds, medians).
"""

from __future__ import annotations

from edgehad.core.errors import UserInputError
from edgehad.core.stage import Context, Option, Stage, register

FIT = "fit"
CHANGES_FUNCTION = ("rewrite", "prune", "finetune")


@register
class Osr(Stage):
    name = "osr"
    order = 35
    summary = "osr: add the COSTARR open-set head; the files gain a second output, known_score"
    reads = ("model", "example_inputs", "data", "sample_inputs", "original_outputs", "stages", "is_exported_program")
    writes = ("model", "output_names", "keep_float", "original_outputs")
    options = {
        "stats": Option({"type": "string", "minLength": 1}, FIT,
                        "a stats .npz from `edgehad osr fit`, or 'fit' (fit on the train split of --data)"),
        "classifier": Option({"type": "string"}, "",
                             "fit: the final nn.Linear's module name (default: found automatically)"),
        "measure": Option({"type": "boolean"}, True,
                          "export with and without the head (float) to count the added ops and time them"),
    }

    def __init__(self, **options):
        super().__init__(**options)
        self.stats = None
        if self.config["stats"] != FIT:  # a missing or bad file fails before any model is loaded
            from edgehad.osr.stats import load_stats

            if not self.config["stats"]:
                raise UserInputError("`osr` needs a stats .npz (from `edgehad osr fit`) or 'fit'")
            self.stats = load_stats(self.config["stats"])

    @property
    def needs_data(self) -> bool:
        return self.config["stats"] == FIT

    def run(self, artifact, ctx: Context):
        from edgehad.osr.head import HEAD_MODULE, OUTPUT_NAMES, OSRHead

        if artifact.is_exported_program:
            raise UserInputError("`osr` needs the model as Python code (an nn.Module with its final nn.Linear), "
                                 "not a torch.export .pt2 program")
        model = artifact.model
        if self.stats is None:
            stats, source = self._fit(artifact, ctx)
        else:
            stats, source = self.stats, self.config["stats"]
            self._check_fresh(stats, artifact)
        head = OSRHead(model, stats, example_inputs=artifact.example_inputs)
        artifact.model = head
        artifact.output_names = list(OUTPUT_NAMES)
        artifact.keep_float[HEAD_MODULE] = "COSTARR head: its cosine and division stay float (int8 would break them)"
        self._extend_original_outputs(artifact, head)
        info = {"stats": source, "fingerprint": stats["fingerprint"], "classifier": stats["classifier"],
                "classes": int(stats["mu"].shape[0]), "features": int(stats["mu"].shape[1]),
                "z_range": [round(float(stats["z_min"]), 6), round(float(stats["z_max"]), 6)],
                "excluded_classes": [int(c) for c, k in enumerate(stats["known"]) if not k],
                "outputs": list(OUTPUT_NAMES), "float_module": HEAD_MODULE}
        if self.config["measure"]:
            from edgehad.osr.head import measure_head

            ctx.progress("osr: exporting with and without the head to count its ops and time it")
            info["added"] = measure_head(model, head, artifact.example_inputs)
        ctx.record("osr", info)
        return artifact

    def _fit(self, artifact, ctx) -> tuple[dict, str]:
        import numpy as np

        from edgehad.osr.stats import fit_stats

        if artifact.data is None:
            raise UserInputError("`osr` fit needs `data`: the statistics are fitted on its train split")
        x, y = artifact.data.train
        ctx.progress(f"osr: fitting COSTARR statistics on {artifact.data.spec} train split")
        stats = fit_stats(artifact.model, np.asarray(x), None if y is None else np.asarray(y),
                          classifier=self.config["classifier"] or None,
                          warn=lambda msg: ctx.progress(f"warning: osr: {msg}"))
        return stats, f"fit on {artifact.data.spec} train split ({stats['samples']} correctly classified samples)"

    def _check_fresh(self, stats, artifact) -> None:
        """Stats must belong to the model as it is now: after rewrite/prune/finetune, stats from before are stale."""
        from edgehad.osr.stats import check_stats

        path = self.config["stats"]
        try:
            check_stats(stats, artifact.model, path=f"the stats in {path}")
        except UserInputError:
            changed = [s["name"] for s in artifact.stages if s["name"] in CHANGES_FUNCTION]
            if not changed:
                raise
            raise UserInputError(
                f"`osr` {path}: stale statistics: {', '.join(changed)} ran before the head and changed the model, "
                f"so they no longer match it ({_mismatch(stats, artifact.model)}); "
                "use `osr` fit with `data` to fit them on the model after those stages"
            ) from None

    @staticmethod
    def _extend_original_outputs(artifact, head) -> None:
        """The original model has no score: for "vs original" figures its score is the float head's."""
        from edgehad.export.verify import torch_outputs

        original = artifact.original_outputs
        if original is None or artifact.sample_inputs is None:
            return
        now = torch_outputs(head, artifact.sample_inputs)
        artifact.original_outputs = [list(o[:1]) + list(n[1:]) for o, n in zip(original, now)]


def _mismatch(stats, model) -> str:
    """What differs between ``stats`` and ``model``, in a few words."""
    from torch import nn

    from edgehad.osr.stats import fingerprint

    name = stats["classifier"]
    module = dict(model.named_modules()).get(name)
    if not isinstance(module, nn.Linear):
        return f"no nn.Linear {name!r} any more"
    C, D = stats["mu"].shape
    if tuple(module.weight.shape) != (C, D):
        return f"classes x features {C}x{D} in the stats, {module.weight.shape[0]}x{module.weight.shape[1]} now"
    return f"fingerprint {stats['fingerprint'][:12]} in the stats, {fingerprint(model, name)[:12]} now"
