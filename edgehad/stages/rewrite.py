"""Stage ``rewrite``: apply rewrite rules (edgehad.rewrite) to the torch model.

The report lists, per rule, what was rewritten and what was skipped and why,
the cost before/after, and how far the outputs moved from the original (before
any fine-tuning; the finetune stage reports where they end up).

Rules that measure statistics (``fold-se``'s mean gates) take them on up to
``STATS_SAMPLES`` train samples when the conversion has data and the model one
input, else on the example inputs; the report says which (``statistics``).
"""

from __future__ import annotations

from edgehad.core.stage import Context, Option, Stage, register

# enough for a stable mean gate: fold-se on EfficientNet-B0 (digits) gives the same top-1 (97.5%) and output
# cosine (0.951-0.952) from 64 train samples as from all 1437, in 4 batches of forward passes
STATS_SAMPLES = 64


@register
class Rewrite(Stage):
    name = "rewrite"
    order = 10
    summary = "rewrite: replace structures with Hadamard-product blocks (attention -> AFT, FFN -> GLU, ...)"
    reads = ("model", "example_inputs", "sample_inputs", "original_outputs", "data")
    writes = ("model",)
    options = {
        "rules": Option({"type": "string"}, "", "rule names, comma-separated (edgehad rewrite --list)"),
        "strict": Option({"type": "boolean"}, False, "fail when a rule matched nothing (otherwise a warning says why)"),
    }

    def __init__(self, **options):
        super().__init__(**options)
        from edgehad.rewrite import get_rules

        self.rule_list = get_rules(self.config["rules"])  # unknown names fail before any model is loaded

    def run(self, artifact, ctx: Context):
        from edgehad.core.errors import UserInputError
        from edgehad.cost import count_macs, count_params
        from edgehad.rewrite import apply_rules

        before = {"params": count_params(artifact.model), "macs": count_macs(artifact.model, artifact.example_inputs)}
        stats_inputs, statistics = None, None
        if any(r.measures for r in self.rule_list):
            from edgehad.core.pipeline import statistics_inputs

            stats_inputs, statistics = statistics_inputs(artifact, STATS_SAMPLES)
            if stats_inputs is None:
                hint = "; give `data` for real ones" if artifact.data is None else ""
                ctx.progress(f"warning: rewrite: statistics are taken on {statistics}{hint}")
        model, reports = apply_rules(artifact.model, artifact.example_inputs, self.rule_list,
                                     stats_inputs=stats_inputs)
        for r in reports:
            if r.rewritten:
                ctx.progress(f"rewrite: {r.rule}: {len(r.rewritten)} module(s) rewritten")
                continue
            why = r.note or "; ".join(f"{n}: {reason}" for n, reason in list(r.skipped.items())[:3])
            if self.config["strict"]:
                raise UserInputError(f"rule {r.rule} matched nothing it could rewrite ({why}); "
                                     "drop `strict` to go on without it")
            ctx.progress(f"warning: rewrite: {r.rule} rewrote nothing ({why})")
        artifact.model = model
        after = {"params": count_params(model), "macs": count_macs(model, artifact.example_inputs)}
        info = {"rules": [r.as_dict() for r in reports], "params": [before["params"], after["params"]],
                "macs": [before["macs"], after["macs"]], "moved": moved_from_original(artifact),
                **({"statistics": statistics} if statistics else {})}
        ctx.record("rewrite", info)
        return artifact


def moved_from_original(artifact) -> dict | None:
    """Cosine and max abs error of the current torch model against the original, on the sample inputs."""
    from edgehad.export.verify import compare, torch_outputs

    original = artifact.original_outputs
    if original is None:
        return None
    p = compare(original, torch_outputs(artifact.model, artifact.sample_inputs))
    return {"cosine": round(p.cosine, 6), "max_abs": p.max_abs, "top1_agreement": p.top1_agreement}
