"""Stage ``export-tflite``: litert-torch export of the current model, as the quantization plan says.

Float: the model as it is. int8 (PT2E graph): converted with the quantizer's
config (full integer), then the plan's file pass (float I/O unless int8 I/O was
asked for). int8-dynamic / fp16: the float export, then the plan's
ai-edge-quantizer pass (edgehad.quantize.dynamic / fp16).

``layout`` "nhwc" (default) makes 4-D image inputs and outputs channels-last, with no
TRANSPOSE at the file's I/O, and folds a TRANSPOSE left before a reduction into
it (edgehad.export.layout); "nchw" keeps PyTorch's order (the opt-out). A model
without a 4-D float input or a 4-D output is exported the same either way. The
NHWC file carries its layout in its ``edgehad`` metadata (an NCHW file stays as
litert-torch wrote it: no entry means PyTorch's order), the file's report entry
has it (``layout``) and, when the file has an image tensor, so has the report's
``preprocessing`` (``tflite_layout``), which a bundle hands to the app.

``dynamic_batch``: dim 0 of every input has ``shape_signature`` -1, and so has
each output that follows it (edgehad.export.batch); the runtime resizes the
inputs to the arrays it is fed.
"""

from edgehad.core.stage import Context, Option, Stage, register
from edgehad.export.batch import mark_tflite_batch
from edgehad.export.layout import LAYOUTS, finish, model_layout
from edgehad.export.tflite import export_tflite
from edgehad.stages._exporting import add_export


@register
class ExportTflite(Stage):
    name = "export-tflite"
    order = 51
    summary = "export to TFLite with litert-torch"
    options = {
        "layout": Option({"enum": list(LAYOUTS)}, "nhwc",
                         "4-D image inputs and outputs: nhwc (channels-last, no TRANSPOSE at the file's I/O), "
                         "or nchw as in PyTorch; other tensors stay as they are"),
        "dynamic_batch": Option({"type": "boolean"}, False,
                                "dim 0 of every input (and of the outputs that follow it) is dynamic, "
                                "shape_signature -1; the file is verified at batch 1 and 4"),
    }
    reads = ("model", "example_inputs", "variant", "quantization", "sample_inputs", "preprocessing")
    writes = ("files", "preprocessing")

    def run(self, artifact, ctx: Context):
        plan = artifact.quantization
        config = plan.tflite_quant_config if plan else None
        layout, dynamic = self.config["layout"], self.config["dynamic_batch"]
        record = model_layout(artifact.model, artifact.example_inputs, layout)
        artifact = add_export(artifact, ctx, "tflite", self.name,
                              lambda path: export_tflite(artifact.model, artifact.example_inputs, path,
                                                         quant_config=config, layout=record, dynamic_batch=dynamic),
                              plan.tflite_file_pass if plan else None, dynamic_batch=dynamic)
        file = artifact.files[-1]
        folded = finish(file.path, record)  # after the file pass, which need not keep metadata
        if folded:
            ctx.progress(f"export-tflite: {folded} TRANSPOSE folded into the reduction after it")
        if dynamic:  # again after the file pass, which writes outputs of its own (the float I/O of int8)
            mark_tflite_batch(file.path)
            ctx.record("dynamic_batch", True)
        file.layout = record
        # an app feeding an image must know its order: the layout goes with the normalisation (a copy: the
        # dict is the data splits' own); a file without image I/O has no layout to state
        if any(record["inputs"]) or any(record["outputs"]):
            artifact.preprocessing = {**(artifact.preprocessing or {}), "tflite_layout": layout}
        return artifact
