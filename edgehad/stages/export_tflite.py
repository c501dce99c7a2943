"""Stage ``export-tflite``: litert-torch export of the current model."""

from edgehad.core.stage import Context, Stage, register
from edgehad.export.tflite import export_tflite
from edgehad.stages._exporting import add_export


@register
class ExportTflite(Stage):
    name = "export-tflite"
    order = 51
    summary = "export to TFLite with litert-torch"
    options = {}

    def run(self, artifact, ctx: Context):
        quant = artifact.extra.get("tflite_quant_config")
        return add_export(artifact, ctx, "tflite", self.name,
                          lambda path: export_tflite(artifact.model, artifact.example_inputs, path, quant_config=quant))
