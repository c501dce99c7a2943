"""Stage ``export-onnx``: torch.onnx (dynamo) export of the current model, as the quantization plan says.

Float: the model as it is. int8 (PT2E graph): exported, with the plan's
post-processing into the QDQ layout onnxruntime fuses. int8-dynamic / fp16: the
float export, then the plan's onnxruntime pass (dynamic quantizer / float16
converter); the opset the file ends with is checked, since those tools write
their own.

``dynamic_batch``: dim 0 of every input is the symbol ``batch`` (edgehad.export.batch); the
file passes keep it.
"""

from edgehad.core.stage import Context, Option, Stage, register
from edgehad.export.onnx import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET, check_opset, export_onnx
from edgehad.stages._exporting import add_export


@register
class ExportOnnx(Stage):
    name = "export-onnx"
    order = 50
    summary = "export to ONNX with torch.onnx (dynamo exporter)"
    options = {"opset": Option({"type": "integer", "minimum": MIN_OPSET, "maximum": MAX_OPSET}, DEFAULT_OPSET,
                              f"ONNX opset version: {MIN_OPSET}..{MAX_OPSET}, what torch.onnx writes as asked"),
               "dynamic_batch": Option({"type": "boolean"}, False,
                                       "dim 0 of every input (and of the outputs that follow it) is dim_param "
                                       "\"batch\"; the file is verified at batch 1 and 4")}
    reads = ("model", "example_inputs", "variant", "quantization", "output_names", "sample_inputs")
    writes = ("files",)

    def run(self, artifact, ctx: Context):
        plan, opset, dynamic = artifact.quantization, self.config["opset"], self.config["dynamic_batch"]
        file_pass = plan.onnx_file_pass if plan else None

        def export(path):
            export_onnx(artifact.model, artifact.example_inputs, path, opset=opset,
                        postprocess=plan.onnx_postprocess if plan else None, output_names=artifact.output_names,
                        dynamic_batch=dynamic)

        def checked_pass(exported, path):
            file_pass(exported, path)
            check_opset(path, opset)

        if dynamic:
            ctx.record("dynamic_batch", True)
        return add_export(artifact, ctx, "onnx", self.name, export, checked_pass if file_pass else None,
                          dynamic_batch=dynamic)
