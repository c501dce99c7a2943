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
        "blocks": Option({"type": "number", "minimum": 0, "maximum": 1}, 0.0,
                         "fraction of the residual blocks (y = x + f(x)) to remove first, the least influential "
                         "(edgehad.prune.blocks); 0: none"),
        "criterion": Option({"type": "string", "minLength": 1}, "magnitude",
                            "magnitude, bn-scale, taylor or learned (the last two need data)"),
        "scope": Option({"enum": ["layer", "global"]}, "layer",
                        "layer: the same ratio in every group; global: rank all channels together"),
        "target": Option({"enum": ["channels", "macs", "params", "latency"]}, "channels",
                         "what the ratio counts: channels, macs, params or latency (the fraction of latency "
                         "removed, measured on this machine at 1 thread in the recipe's ONNX scheme: "
                         "per-layer table, edgehad.prune.allocate)"),
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
                          "measure original vs pruned exports (fp32) in onnxruntime and LiteRT (target latency: "
                          "in onnxruntime, in the recipe's scheme; off: the table alone, no whole-model timing)"),
        "latency_cache": Option({"type": "string"}, "",
                                "target latency: folder of the per-layer latency cache (default "
                                "$EDGEHAD_LATENCY_CACHE, else $XDG_CACHE_HOME/edgehad/latency, "
                                "else ~/.cache/edgehad/latency)"),
        "samples": Option({"type": "integer", "minimum": 1}, 256, "train samples a data-driven criterion uses"),
        "seed": Option({"type": "integer", "minimum": 0}, 0, "seed for the samples a criterion draws"),
    }

    def __init__(self, **options):
        super().__init__(**options)
        # the criterion is checked by its registry (not an enum in the schema: a new criterion is one new
        # file), before any model is loaded
        self.settings().check()
        from edgehad.core.errors import UserInputError

        if self.config["structure"] == "elements" and self.config["blocks"] > 0:
            raise UserInputError("`prune_blocks` removes whole blocks, and `prune_structure` elements only zeroes "
                                 "weights: use channels")
        if self.config["structure"] == "elements" and self.config["criterion"] != "magnitude":
            raise UserInputError("`prune_structure` elements ranks weights by magnitude only: "
                                 "drop `prune_criterion` or use channels")
        if self.config["target"] == "latency":
            if self.config["structure"] == "elements":
                raise UserInputError("`prune_target='latency'` needs `prune_structure='channels'`: zeroed "
                                     "elements leave every layer as slow as before")
            if self.config["steps"] > 1:
                raise UserInputError("`prune_target='latency'` allocates the whole latency in one step: "
                                     f"use `prune_steps=1` (got {self.config['steps']})")
        # target latency: the format and scheme the per-layer table is measured in; see_pipeline() sets them
        # from the stages that follow (the recipe's ONNX export and its quantize scheme)
        self.latency_on = {"format": "onnx", "scheme": "fp32", "note": ""}

    def see_pipeline(self, stage_list) -> None:
        """Learn what the pipeline exports and how it quantizes: a latency target is measured on that."""
        from edgehad.core.errors import UserInputError

        if self.config["target"] != "latency":
            return
        names = {s.name: s for s in stage_list}
        if "export-onnx" not in names:
            raise UserInputError("`prune_target='latency'` times layers in onnxruntime, and this conversion writes "
                                 "no ONNX file (per-layer LiteRT tables are not measured): add onnx to `formats`")
        scheme = names["quantize"].config["scheme"] if "quantize" in names else "none"
        note = "" if scheme in ("int8", "none") else \
            f"the {scheme} scheme's layers are timed as fp32 (its convs run as float on the CPU)"
        keep_float = names["quantize"].config.get("keep_float", "") if scheme == "int8" else ""
        if keep_float and keep_float != "speed":
            note = f"`keep_float` {keep_float!r} is not modelled: every layer is timed int8"
        # keep_float speed: the leading convs that run faster in fp32 stay float (edgehad.quantize.speed), so
        # the table times those in both schemes and the timings keep the same prefix float
        self.latency_on = {"format": "onnx", "scheme": "int8" if scheme == "int8" else "fp32", "note": note,
                           "float_prefix": keep_float == "speed"}

    @property
    def needs_data(self) -> bool:
        from edgehad.prune.criteria import get_criterion

        return get_criterion(self.config["criterion"]).needs_data

    def settings(self):
        from edgehad.prune import PruneSettings

        c = self.config
        on = getattr(self, "latency_on", {"format": "onnx", "scheme": "fp32"})
        return PruneSettings(ratio=c["ratio"], criterion=c["criterion"], scope=c["scope"], target=c["target"],
                             round_to=c["round_to"], samples=c["samples"], seed=c["seed"], unsafe=c["unsafe"],
                             latency_format=on["format"], latency_scheme=on["scheme"],
                             latency_float_prefix=on.get("float_prefix", False),
                             latency_calibrate=c["latency"],
                             latency_cache=c["latency_cache"] or None)

    def run(self, artifact, ctx: Context):
        from edgehad.prune.schedule import prune_gradually

        settings = self.settings()
        if self.config["structure"] == "elements":
            return self._elements(artifact, ctx, settings)
        if settings.target == "latency" and artifact.is_exported_program:
            from edgehad.core.errors import UserInputError

            raise UserInputError("`prune_target='latency'` times the model's layers and the model itself, and a "
                                 "torch.export program is timed as it is: give the model as a module or factory, "
                                 "or use `prune_target='macs'`")
        start, blocks = artifact.model, None
        if self.config["blocks"] > 0:
            blocks = self._drop_blocks(artifact, ctx, settings)
            start = blocks.model
        if settings.ratio > 0 or blocks is None:
            how = "per-group widths from a latency table" if settings.target == "latency" else settings.scope
            ctx.progress(f"prune: {settings.ratio:.0%} of {settings.target} by {settings.criterion} ({how})")
            # a latency ratio counts from the model this stage was given, blocks included
            result = prune_gradually(start, artifact.example_inputs, settings, steps=self.config["steps"],
                                     step_epochs=self.config["step_epochs"], sample_inputs=artifact.sample_inputs,
                                     data=artifact.data, teacher=artifact.original_model,
                                     progress=ctx.progress, reference=artifact.model if blocks else None)
        else:  # blocks only: no channel is removed
            from edgehad.prune import PruneResult

            result = PruneResult(start)
        if blocks is not None:
            from edgehad.cost import count_macs, count_params
            from edgehad.prune import layer_shapes, layer_table

            # the costs count from the model the stage was given, before any block went
            result.before = {"params": count_params(artifact.model),
                             "macs": count_macs(artifact.model, artifact.example_inputs)}
            result.layers = layer_table(layer_shapes(artifact.model), layer_shapes(result.model))
            if settings.ratio == 0:
                result.after = {"params": count_params(start), "macs": count_macs(start, artifact.example_inputs)}
        artifact.model = result.model
        info = {
            "settings": {**{k: getattr(settings, k) for k in ("ratio", "criterion", "scope", "target", "round_to")},
                         "steps": self.config["steps"]},
            **({"rounds": result.rounds} if result.rounds else {}),
            **({"blocks": blocks.as_dict()} if blocks is not None else {}),
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

            ctx.progress("prune: timing the original and the pruned model in "
                         + (f"onnxruntime ({settings.latency_scheme})" if settings.target == "latency"
                            else "onnxruntime and LiteRT"))
            # A temporary folder of its own: the staging folder's contents become --out, and these
            # throwaway exports must not land there.
            with tempfile.TemporaryDirectory(prefix="edgehad-prune-latency-") as tmp:
                if settings.target == "latency":  # the ratio asked for, in the format and scheme it was asked in
                    from edgehad.prune.allocate import TIMED_RUNS

                    info["latency"] = compare_latency(artifact.original_model or artifact.model, result.model,
                                                      artifact.example_inputs, Path(tmp),
                                                      formats=(settings.latency_format,),
                                                      scheme=settings.latency_scheme, runs=TIMED_RUNS,
                                                      float_prefix=result.latency_plan.get("float_prefix"))
                else:
                    info["latency"] = compare_latency(artifact.original_model or artifact.model,
                                                      result.model, artifact.example_inputs, Path(tmp))
        if result.latency_plan:
            plan = {**result.latency_plan, "measured": None}
            if self.latency_on.get("note"):
                plan["note"] = self.latency_on["note"]
            if info.get("latency"):
                plan["measured"] = info["latency"][settings.latency_format]["ratio"]
            info["latency_target"] = plan
            ctx.progress(f"prune: latency {plan['asked']:.3f}x asked, {plan['predicted']:.3f}x predicted by the table"
                         + ("" if plan["measured"] is None else f", {plan['measured']:.3f}x measured"))
        ctx.progress(f"prune: params {info['params_ratio']:.3f}x, MACs {info['macs_ratio']:.3f}x of the original")
        ctx.record("pruning", info)
        return artifact

    def _drop_blocks(self, artifact, ctx, settings):
        """Remove the residual blocks of least influence, measured on train samples when there is data."""
        from edgehad.core.errors import UserInputError
        from edgehad.core.pipeline import statistics_inputs
        from edgehad.prune.blocks import drop_blocks

        inputs, _ = statistics_inputs(artifact, self.config["samples"])
        inputs = inputs or artifact.example_inputs
        cost = None
        if settings.target == "latency":  # blocks buy time: least influence per table microsecond first
            from functools import partial

            from edgehad.prune.allocate import block_latency

            cost = partial(block_latency, artifact.model, artifact.example_inputs, settings=settings,
                           progress=ctx.progress)
        drop = drop_blocks(artifact.model, self.config["blocks"], inputs, cost=cost)
        if not drop.candidates:
            raise UserInputError("`prune_blocks`: this model has no residual block (a module returning x + f(x) of "
                                 "its input) to remove; drop `prune_blocks`")
        ctx.progress(f"prune: removed {len(drop.removed)} of {drop.candidates} residual blocks "
                     f"({', '.join(drop.removed) or 'none'}), least block influence "
                     f"{'per table microsecond ' if drop.cost_us else ''}first")
        return drop

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
