"""Stage ``prune``: structured channel pruning with masks, then compaction (edgehad.prune).

The torch model is replaced by a physically smaller copy whose outputs equal
the masked model's; the report states exactly what was removed, the cost
before/after and, with data, the accuracy right after pruning (before any
fine-tuning).
"""

from __future__ import annotations

from edgehad.core.stage import Context, Option, Stage, register


@register
class Prune(Stage):
    name = "prune"
    order = 20
    summary = "prune: remove output channels of coupled layer groups (masks, then compaction)"
    reads = ("model", "example_inputs", "sample_inputs", "data", "original_model", "is_exported_program")
    writes = ("model", "sparse_layers")
    options = {
        "ratio": Option({"type": "number", "minimum": 0, "exclusiveMaximum": 1}, 0.5,
                        "fraction to remove, in [0, 1): of channels, MACs or params (see target)"),
        "criterion": Option({"type": "string", "minLength": 1}, "magnitude",
                            "magnitude, bn-scale, taylor or learned (the last two need data)"),
        "scope": Option({"enum": ["layer", "global"]}, "layer",
                        "layer: the same ratio in every group; global: rank all channels together"),
        "target": Option({"enum": ["channels", "macs", "params"]}, "channels",
                         "what the ratio counts: channels, macs or params"),
        "round_to": Option({"type": "integer", "minimum": 1}, 8, "kept channels per group: a multiple of this"),
        "unsafe": Option({"enum": ["skip", "stop"]}, "skip",
                         "a group whose removal breaks the model: skip it (warning) or stop"),
        "structure": Option({"enum": ["channels", "elements"]}, "channels",
                            "channels (smaller, faster layers) or elements (zeros: size only)"),
        "steps": Option({"type": "integer", "minimum": 1}, 1,
                        "1: one-shot; N > 1: gradual, N rounds with fine-tuning between them"),
        "step_epochs": Option({"type": "integer", "minimum": 0}, 2,
                              "gradual: fine-tuning epochs after each round but the last (needs data)"),
        "latency": Option({"type": "boolean"}, True,
                          "measure original vs pruned exports (fp32) in onnxruntime and LiteRT"),
        "samples": Option({"type": "integer", "minimum": 1}, 256, "train samples a data-driven criterion uses"),
        "seed": Option({"type": "integer", "minimum": 0}, 0, "seed for the samples a criterion draws"),
    }

    def __init__(self, **options):
        super().__init__(**options)
        # the criterion is checked by its registry (not an enum in the schema: a new criterion is one new
        # file), before any model is loaded
        self.settings().check()
        from edgehad.core.errors import UserInputError

        if self.config["structure"] == "elements" and self.config["criterion"] != "magnitude":
            raise UserInputError("`prune_structure` elements ranks weights by magnitude only: "
                                 "drop `prune_criterion` or use channels")

    @property
    def needs_data(self) -> bool:
        from edgehad.prune.criteria import get_criterion

        return get_criterion(self.config["criterion"]).needs_data

    def settings(self):
        from edgehad.prune import PruneSettings

        c = self.config
        return PruneSettings(ratio=c["ratio"], criterion=c["criterion"], scope=c["scope"], target=c["target"],
                             round_to=c["round_to"], samples=c["samples"], seed=c["seed"], unsafe=c["unsafe"])

    def run(self, artifact, ctx: Context):
        from edgehad.prune.schedule import prune_gradually

        settings = self.settings()
        if self.config["structure"] == "elements":
            return self._elements(artifact, ctx, settings)
        ctx.progress(f"prune: {settings.ratio:.0%} of {settings.target} by {settings.criterion} ({settings.scope})")
        result = prune_gradually(artifact.model, artifact.example_inputs, settings, steps=self.config["steps"],
                                 step_epochs=self.config["step_epochs"], sample_inputs=artifact.sample_inputs,
                                 data=artifact.data, teacher=artifact.original_model,
                                 progress=ctx.progress)
        artifact.model = result.model
        info = {
            "settings": {**{k: getattr(settings, k) for k in ("ratio", "criterion", "scope", "target", "round_to")},
                         "steps": self.config["steps"]},
            **({"rounds": result.rounds} if result.rounds else {}),
            "params": [result.before["params"], result.after["params"]],
            "macs": [result.before["macs"], result.after["macs"]],
            "params_ratio": round(result.after["params"] / max(result.before["params"], 1), 4),
            "macs_ratio": round(result.after["macs"] / max(result.before["macs"], 1), 4),
            "compaction_max_abs_error": result.masked_max_abs_error,
            "groups": result.groups,
            "layers": result.layers,
            "notes": result.notes,
        }
        accuracy = _val_accuracy(artifact, result.model)
        if accuracy is not None:
            info["val_accuracy_after_prune"] = accuracy
        if self.config["latency"] and not artifact.is_exported_program:
            from edgehad.prune.latency import compare_latency

            import tempfile
            from pathlib import Path

            ctx.progress("prune: timing the original and the pruned model in onnxruntime and LiteRT")
            # A temporary folder of its own: the staging folder's contents become --out, and these
            # throwaway exports must not land there.
            with tempfile.TemporaryDirectory(prefix="edgehad-prune-latency-") as tmp:
                info["latency"] = compare_latency(artifact.original_model or artifact.model,
                                                  result.model, artifact.example_inputs, Path(tmp))
        ctx.progress(f"prune: params {info['params_ratio']:.3f}x, MACs {info['macs_ratio']:.3f}x of the original")
        ctx.record("pruning", info)
        return artifact

    def _elements(self, artifact, ctx, settings):
        from edgehad.cost import count_macs, count_params
        from edgehad.prune.unstructured import prune_elements

        ctx.progress(f"prune: zeroing {settings.ratio:.0%} of the weights by magnitude ({settings.scope})")
        result = prune_elements(artifact.model, settings.ratio, settings.scope)
        artifact.model = result.model
        params = count_params(result.model)
        macs = count_macs(result.model, artifact.example_inputs)
        zero = sum(r["zero"] for r in result.layers)
        info = {"settings": {"ratio": settings.ratio, "structure": "elements", "criterion": "magnitude",
                             "scope": settings.scope, "target": "params", "round_to": 1, "steps": 1},
                "params": [params, params - zero], "macs": [macs, macs],
                "params_ratio": round((params - zero) / max(params, 1), 4), "macs_ratio": 1.0,
                "compaction_max_abs_error": 0.0, "groups": [], "layers": [
                    {"layer": r["layer"], "params": [r["weights"], r["weights"] - r["zero"]]} for r in result.layers],
                "notes": result.notes, "unstructured": True}
        accuracy = _val_accuracy(artifact, result.model)
        if accuracy is not None:
            info["val_accuracy_after_prune"] = accuracy
        for note in result.notes:
            ctx.progress(f"prune: {note}")
        ctx.record("pruning", info)
        artifact.sparse_layers = [r["layer"] for r in result.layers]
        return artifact


def _val_accuracy(artifact, model) -> float | None:
    """Top-1 on the val split (classifiers with --data), right after pruning: before any recovery."""
    import numpy as np
    import torch

    from edgehad.finetune import first_output, is_classifier, top1_accuracy

    if artifact.data is None or len(artifact.example_inputs) != 1:
        return None
    x, y = (np.asarray(a) for a in artifact.data.val)
    with torch.no_grad():
        out = first_output(model.eval()(torch.from_numpy(x).float()))
    if not isinstance(out, torch.Tensor) or not is_classifier(out.numpy(), y):
        return None
    return round(top1_accuracy(out, y), 6)
