"""Stage ``export-tflite``: litert-torch export of the current model.

int8 (PT2E graph): converted with the quantizer's config (full integer), float
I/O unless int8 I/O was asked for. int8-dynamic / fp16: litert-torch / AI Edge
quantizer recipes (edgehad.quantize.dynamic / fp16).
"""

from edgehad.core.stage import Context, Stage, register
from edgehad.export.tflite import export_tflite
from edgehad.stages._exporting import add_export, quant_scheme


@register
class ExportTflite(Stage):
    name = "export-tflite"
    order = 51
    summary = "export to TFLite with litert-torch"
    options = {}

    def run(self, artifact, ctx: Context):
        scheme = quant_scheme(artifact)
        quant = artifact.extra.get("quant") or {}

        def write(path):
            if scheme == "int8":
                return export_tflite(artifact.model, artifact.example_inputs, path,
                                     quant_config=artifact.extra["tflite_quant_config"],
                                     float_io=not quant.get("int8_io", False))
            if scheme == "int8-dynamic":
                from edgehad.quantize.dynamic import tflite_dynamic_int8

                return tflite_dynamic_int8(artifact.model, artifact.example_inputs, path)
            if scheme == "fp16":
                from edgehad.quantize.fp16 import tflite_fp16

                return tflite_fp16(artifact.model, artifact.example_inputs, path)
            return export_tflite(artifact.model, artifact.example_inputs, path)

        return add_export(artifact, ctx, "tflite", self.name, write)
