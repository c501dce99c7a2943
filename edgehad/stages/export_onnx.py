"""Stage ``export-onnx``: torch.onnx (dynamo) export of the current model."""

from edgehad.core.stage import Context, Option, Stage, register
from edgehad.export.onnx import DEFAULT_OPSET, export_onnx
from edgehad.stages._exporting import add_export


@register
class ExportOnnx(Stage):
    name = "export-onnx"
    order = 50
    summary = "export to ONNX with torch.onnx (dynamo exporter)"
    options = {"opset": Option(int, DEFAULT_OPSET, "ONNX opset version")}

    def run(self, artifact, ctx: Context):
        return add_export(artifact, ctx, "onnx", self.name,
                          lambda path: export_onnx(artifact.model, artifact.example_inputs, path,
                                                   opset=self.config["opset"]))
