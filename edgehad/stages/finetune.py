"""Stage ``finetune``: recover accuracy after rewrite/prune with distillation (edgehad.finetune).

It runs once, after every stage that changed the function (rewrite, prune),
and before quantization. The teacher is the original model as loaded.
"""

from __future__ import annotations

from edgehad.core.stage import Context, Option, Stage, register


@register
class Finetune(Stage):
    name = "finetune"
    order = 30
    summary = "finetune: recover accuracy on data with knowledge distillation from the original"
    needs_data = True
    reads = ("model", "data", "original_model", "sparse_layers", "sample_inputs", "original_outputs")
    writes = ("model",)  # trained in place
    options = {
        "epochs": Option({"type": "integer", "minimum": 1}, 20,
                        "most training epochs (the best validation epoch is kept; patience stops earlier)"),
        "distill": Option({"type": "boolean"}, True, "distil from the original model's logits (else labels only)"),
        "lr": Option({"type": "number", "exclusiveMinimum": 0}, 1e-3, "Adam learning rate (cosine decay)"),
        "batch_size": Option({"type": "integer", "minimum": 1}, 64, "batch size"),
        "temperature": Option({"type": "number", "exclusiveMinimum": 0}, 4.0, "distillation temperature T"),
        "alpha": Option({"type": "number", "minimum": 0, "maximum": 1}, 0.7,
                        "weight of the distillation term against cross-entropy"),
        "patience": Option({"type": "integer", "minimum": 1}, 5,
                           "stop after this many epochs without a better validation score"),
        "seed": Option({"type": "integer", "minimum": 0}, 0, "seed for initialisation order and shuffling"),
    }

    def run(self, artifact, ctx: Context):
        from edgehad.core.errors import UserInputError
        from edgehad.finetune import finetune

        if artifact.data is None:
            raise UserInputError("`finetune_epochs` needs `data`: fine-tuning trains on its train split")
        c = self.config
        sparse = artifact.sparse_layers
        if sparse:  # unstructured pruning ran: train under W ⊙ (W != 0) so the zeros stay zeros
            from edgehad.prune.masks import apply_element_mask

            modules = dict(artifact.model.named_modules())
            for name in sparse:
                apply_element_mask(modules[name], (modules[name].weight.detach() != 0).float())
        result = finetune(artifact.model, artifact.data, artifact.original_model, epochs=c["epochs"],
                          lr=c["lr"], batch_size=c["batch_size"], distill=c["distill"],
                          temperature=c["temperature"], alpha=c["alpha"], patience=c["patience"], seed=c["seed"],
                          progress=ctx.progress)
        if sparse:
            from edgehad.prune.masks import remove_masks

            remove_masks(artifact.model, keep_masked=True)
        from edgehad.stages.rewrite import moved_from_original

        ctx.record("finetune", {"distill": c["distill"], **result.as_dict(), "moved": moved_from_original(artifact)})
        return artifact
