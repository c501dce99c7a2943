"""Stage ``verify``: run every exported file in its real runtime and compare with torch.

Each file is compared with the torch model it was exported from (the
reference recorded at export time) and, for the report, with the original
model. Over tolerance fails the conversion with the numbers. A channels-last
(NHWC) TFLite file is fed the transposed inputs and its NHWC outputs are
transposed back before comparing (the file's ``layout``), here and for top-1.

Accuracy is judged, not only parity: with data and a classifier, top-1 on the
validation split is measured for the original model and for every file, and a
file more than ``max_accuracy_drop`` points below the original fails the run
(a pruned model can match its own torch graph exactly and still have lost
its accuracy).

A file written with a dynamic batch (``dynamic_batch``, edgehad.export.batch)
is run a second time, on its first 4 samples as one batch, against the torch
model at that batch, by the same rule; the report has both (``parity`` over
the samples at batch 1, ``parity.batch_4``, ``parity.batch_sizes``).
"""

import dataclasses

from edgehad.core.errors import ConversionError
from edgehad.core.stage import Context, Option, Stage, register
from edgehad.export.batch import BATCH, batched
from edgehad.export.verify import FLOAT_RTOL, compare, runtime_outputs


@register
class Verify(Stage):
    name = "verify"
    order = 60
    summary = "run each exported file in onnxruntime / LiteRT and compare with the torch model"
    reads = ("files", "sample_inputs", "original_outputs", "original_model", "data", "model", "variant", "stages")
    writes = ("files",)  # each file's parity and task accuracy
    options = {
        "rtol": Option({"type": "number", "minimum": 0}, FLOAT_RTOL,
                       "float tolerance: max_abs <= rtol * max(1, max|y|)"),
        "threads": Option({"type": "integer", "minimum": 1}, 1, "runtime threads while verifying"),
        # defaults measured on trained models fed real inputs (examples/measure_floors.py, README "Verification
        # floors"): every int8 / int8-dynamic file that works reaches 0.9936 or more, fp16 files 0.999999
        "min_cosine": Option({"type": "number", "minimum": 0, "maximum": 1}, 0.99,
                             "int8 and int8-dynamic files: least output cosine against the quantized torch model"),
        "min_cosine_fp16": Option({"type": "number", "minimum": 0, "maximum": 1}, 0.999,
                                  "fp16 files: least output cosine against the torch model"),
        "metric_samples": Option({"type": "integer", "minimum": 1}, 1000,
                                 "with data: validation samples for the task metric"),
        "max_accuracy_drop": Option({"type": "number", "minimum": 0, "maximum": 100}, 1.0,
                                    "with data: most top-1 points a file may lose against the original model"),
    }

    def run(self, artifact, ctx: Context):
        failures = []
        original = artifact.original_outputs
        for f in artifact.files:
            if f.parity is not None:
                continue
            ctx.progress(f"verify: {f.path.name} in {'onnxruntime' if f.format == 'onnx' else 'LiteRT'}")
            actual = runtime_outputs(str(f.path), artifact.sample_inputs, threads=self.config["threads"],
                                     layout=f.layout)
            parity = compare(f.reference, actual, rtol=self.config["rtol"])
            f.parity = parity.to_dict()
            key = floor_key(f.variant)  # the floor this file is judged by
            if f.variant != "float":
                # a quantized file is judged against the quantized torch model by cosine
                # ... and so is each output of a multi-output file on its own (a [0, 1] known_score would
                # hide under the logits' scale in the overall cosine)
                f.parity["passed"] = self._cosines_pass(parity, key)
                f.parity["rule"] = f"cosine >= {self.config[key]}" + (" for every output" if parity.outputs else "")
                if original is not None:
                    f.parity["vs_original"] = compare(original, actual, rtol=self.config["rtol"]).to_dict()
            if not f.parity["passed"]:
                worst = ""
                if f.variant != "float" and parity.outputs:  # the output that failed, when the overall cosine hides it
                    k = min(range(len(parity.outputs)), key=lambda i: parity.outputs[i]["cosine"])
                    worst = f", output {k} cosine={parity.outputs[k]['cosine']:.6f}"
                failures.append(f"{f.format} ({f.variant}): {parity.describe()}{worst} (floor: [verify] {key})")
            if f.batch_reference is not None:
                failure = self._at_batch(f, artifact.sample_inputs)
                if failure:
                    f.parity["passed"] = False
                    failures.append(f"{f.format} ({f.variant}) at batch {BATCH}: {failure}"
                                    + (f" (floor: [verify] {key})" if f.parity[f"batch_{BATCH}"] else ""))
        if failures:
            raise ConversionError("verification failed: " + "; ".join(failures))
        metric = task_metric(artifact, self.config["metric_samples"], self.config["threads"])
        ctx.record("task_metric", metric)
        if metric.get("measured"):
            check_accuracy(artifact, metric, self.config["max_accuracy_drop"])
        return artifact

    def _cosines_pass(self, parity, key: str) -> bool:
        """The quantized rule: the overall cosine and every output's at least the floor ``key``."""
        return min([parity.cosine] + [o["cosine"] for o in parity.outputs or []]) >= self.config[key]

    def _at_batch(self, f, sample_inputs) -> str:
        """Run a dynamic-batch file on the first BATCH samples as one batch and judge it as at batch 1;
        its parity goes to ``f.parity["batch_4"]`` (None when the runtime could not run it). Returns what
        failed, or ""."""
        f.parity["batch_sizes"] = [1, BATCH]
        f.parity[f"batch_{BATCH}"] = None
        try:
            actual = runtime_outputs(str(f.path), [batched(sample_inputs)], threads=self.config["threads"],
                                     layout=f.layout)
        except Exception as exc:  # the runtime refused the batch: a file that does not take it, with the reason
            said = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
            return f"the runtime could not run it ({said[:300]})"
        parity = dataclasses.replace(compare(f.batch_reference, actual, rtol=self.config["rtol"]), samples=BATCH)
        entry = parity.to_dict()
        if f.variant != "float":
            entry["passed"] = self._cosines_pass(parity, floor_key(f.variant))
        f.parity[f"batch_{BATCH}"] = entry
        return "" if entry["passed"] else parity.describe()


def floor_key(variant: str) -> str:
    """The ``[verify]`` key whose floor judges a file of ``variant``: fp16 rounds weights to 11 significant
    bits and keeps a cosine of 0.999999 on trained models, so it gets a floor of its own, tighter than int8's."""
    return {"float": "rtol", "fp16": "min_cosine_fp16"}.get(variant, "min_cosine")


def check_accuracy(artifact, metric: dict, max_drop: float) -> None:
    """Fail when a file's top-1 is more than ``max_drop`` points below the original model's."""
    original = metric.get("original")
    if original is None:
        return
    metric["max_drop_points"] = max_drop
    worst = min(artifact.files, key=lambda f: f.parity["task_accuracy"], default=None)
    if worst is None:
        return
    drop = 100 * (original - worst.parity["task_accuracy"])
    if drop <= max_drop + 1e-9:
        return
    changed = [s["name"] for s in artifact.stages if s["name"] in ("rewrite", "prune")]
    finetuned = any(s["name"] == "finetune" for s in artifact.stages)
    if changed and not finetuned:
        fix = "recover it with `finetune_epochs` N"
    elif changed:
        fix = "fine-tune longer (`finetune_epochs`), prune less (`prune`)"
    else:
        fix = "keep the layers that lose it float (`keep_float` auto)"
    raise ConversionError(
        f"accuracy: {worst.format} ({worst.variant}) has top-1 {100 * worst.parity['task_accuracy']:.1f}% on "
        f"{metric['samples']} {metric['data']} val samples against {100 * original:.1f}% for the original model, "
        f"{drop:.1f} points lower (allowed: {max_drop:g}); {fix}, or allow more with `max_accuracy_drop` "
        "([verify] max_accuracy_drop)")


def task_metric(artifact, limit: int, threads: int) -> dict:
    """Top-1 accuracy on the validation split of the original model, the current torch model and each file.

    Only for classifiers fed by labelled data (one input x, or named inputs): a [1, C] first output and
    labels below C. Otherwise ``{"measured": False, "reason": ...}``.
    """
    import numpy as np

    from edgehad.core.pipeline import fitting_samples
    from edgehad.export.verify import runtime_outputs, torch_outputs
    from edgehad.finetune import top1_accuracy

    if artifact.data is None:
        return {"measured": False, "reason": "no data given"}
    if not artifact.data.labelled:
        return {"measured": False, "reason": "no labels"}
    y = np.asarray(artifact.data.val[1])[:limit]
    columns = fitting_samples(artifact.example_inputs, artifact.data, "val")
    dtypes = [t.numpy().dtype for t in artifact.example_inputs]
    inputs = [tuple(c[i].astype(d) for c, d in zip(columns, dtypes)) for i in range(len(y))]
    current = torch_outputs(artifact.model, inputs[:1])  # enough to tell whether it is a classifier
    first = current[0][0]
    if first.ndim != 2 or first.shape[0] != 1 or first.shape[1] <= int(y.max()):
        return {"measured": False, "reason": f"not a classifier of the data's labels (first output {list(first.shape)})"}
    current += torch_outputs(artifact.model, inputs[1:])

    def accuracy(outputs) -> float:
        return round(top1_accuracy(np.stack([np.ravel(o[0]) for o in outputs]), y), 6)

    result = {"measured": True, "name": "top1_accuracy", "split": "val", "samples": len(inputs),
              "data": artifact.data.spec}
    original = artifact.original_model
    if original is not None:
        result["original"] = accuracy(torch_outputs(original, inputs))
    result[f"torch_{artifact.variant}"] = accuracy(current)
    for f in artifact.files:
        acc = accuracy(runtime_outputs(str(f.path), inputs, threads=threads, layout=f.layout))
        result[f"{f.format}_{f.variant}"] = acc
        f.parity["task_accuracy"] = acc
    return result
