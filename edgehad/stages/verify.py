"""Stage ``verify``: run every exported file in its real runtime and compare with torch.

Each file is compared with the torch model it was exported from (the
reference recorded at export time) and, for the report, with the original
model. Over tolerance fails the conversion with the numbers.
"""

from edgehad.core.errors import ConversionError
from edgehad.core.stage import Context, Option, Stage, register
from edgehad.export.verify import FLOAT_RTOL, compare, runtime_outputs


@register
class Verify(Stage):
    name = "verify"
    order = 60
    summary = "run each exported file in onnxruntime / LiteRT and compare with the torch model"
    options = {
        "rtol": Option({"type": "number", "minimum": 0}, FLOAT_RTOL,
                       "float tolerance: max_abs <= rtol * max(1, max|y|)"),
        "threads": Option({"type": "integer", "minimum": 1}, 1, "runtime threads while verifying"),
        "min_cosine": Option({"type": "number", "minimum": 0, "maximum": 1}, 0.99,
                             "quantized files: least output cosine against the quantized torch model"),
        "metric_samples": Option({"type": "integer", "minimum": 1}, 1000,
                                 "with --data: validation samples for the task metric"),
    }

    def run(self, artifact, ctx: Context):
        failures = []
        original = artifact.extra.get("original_outputs")
        for f in artifact.files:
            if f.parity is not None:
                continue
            ctx.progress(f"verify: {f.path.name} in {'onnxruntime' if f.format == 'onnx' else 'LiteRT'}")
            actual = runtime_outputs(str(f.path), artifact.sample_inputs, threads=self.config["threads"])
            parity = compare(f.reference, actual, rtol=self.config["rtol"])
            f.parity = parity.to_dict()
            if f.variant != "float":
                # a quantized file is judged against the quantized torch model by cosine
                # ... and so is each output of a multi-output file on its own (a [0, 1] known_score would
                # hide under the logits' scale in the overall cosine)
                cosines = [parity.cosine] + [o["cosine"] for o in parity.outputs or []]
                f.parity["passed"] = min(cosines) >= self.config["min_cosine"]
                f.parity["rule"] = f"cosine >= {self.config['min_cosine']}" + (" for every output" if parity.outputs else "")
                if original is not None:
                    f.parity["vs_original"] = compare(original, actual, rtol=self.config["rtol"]).to_dict()
            if not f.parity["passed"]:
                failures.append(f"{f.format} ({f.variant}): {parity.describe()}")
        if failures:
            raise ConversionError("verification failed: " + "; ".join(failures))
        metric = task_metric(artifact, self.config["metric_samples"], self.config["threads"])
        if metric:
            artifact.extra["stage_info"] = {"task_metric": metric}
        return artifact


def task_metric(artifact, limit: int, threads: int) -> dict | None:
    """Top-1 accuracy on the validation split of the original model, the current torch model and each file.

    Only for classifiers fed by --data: one input, a [1, C] first output and labels below C.
    """
    import numpy as np

    from edgehad.export.verify import runtime_outputs, torch_outputs
    from edgehad.finetune import top1_accuracy

    if artifact.data is None or len(artifact.example_inputs) != 1:
        return None
    x, y = artifact.data.val
    x, y = np.asarray(x)[:limit], np.asarray(y)[:limit]
    inputs = [(x[i:i + 1].astype(artifact.example_inputs[0].numpy().dtype),) for i in range(len(x))]
    current = torch_outputs(artifact.model, inputs[:1])  # enough to tell whether it is a classifier
    first = current[0][0]
    if first.ndim != 2 or first.shape[0] != 1 or first.shape[1] <= int(y.max()):
        return None
    current += torch_outputs(artifact.model, inputs[1:])

    def accuracy(outputs) -> float:
        return round(top1_accuracy(np.stack([np.ravel(o[0]) for o in outputs]), y), 6)

    result = {"name": "top1_accuracy", "split": "val", "samples": len(inputs)}
    original = artifact.extra.get("original_model")
    if original is not None:
        result["original"] = accuracy(torch_outputs(original, inputs))
    result[f"torch_{artifact.variant}"] = accuracy(current)
    for f in artifact.files:
        acc = accuracy(runtime_outputs(str(f.path), inputs, threads=threads))
        result[f"{f.format}_{f.variant}"] = acc
        f.parity["task_accuracy"] = acc
    return result
