"""Stage ``export-onnx``: torch.onnx (dynamo) export of the current model.

int8 (PT2E graph): exported, then rewritten into the QDQ layout onnxruntime
fuses (edgehad.quantize.onnx_qdq). int8-dynamic / fp16: the float export is
passed through onnxruntime's dynamic quantizer / float16 converter.
"""

from edgehad.core.stage import Context, Option, Stage, register
from edgehad.export.onnx import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET, check_opset, export_onnx
from edgehad.stages._exporting import add_export, quant_scheme


def _int8_layout(proto) -> None:
    from edgehad.quantize.onnx_qdq import activations_to_uint8, fold_weight_qdq

    fold_weight_qdq(proto)
    activations_to_uint8(proto)
    for node in proto.graph.node:  # the exporter's per-node stack traces: a third of a small int8 file
        del node.metadata_props[:]


@register
class ExportOnnx(Stage):
    name = "export-onnx"
    order = 50
    summary = "export to ONNX with torch.onnx (dynamo exporter)"
    options = {"opset": Option({"type": "integer", "minimum": MIN_OPSET, "maximum": MAX_OPSET}, DEFAULT_OPSET,
                              f"ONNX opset version: {MIN_OPSET}..{MAX_OPSET}, what torch.onnx writes as asked")}

    def run(self, artifact, ctx: Context):
        scheme, opset = quant_scheme(artifact), self.config["opset"]
        names = artifact.extra.get("output_names")  # set by a stage that knows them (osr: logits, known_score)

        def write(path):
            if scheme == "int8":
                return export_onnx(artifact.model, artifact.example_inputs, path, opset=opset, postprocess=_int8_layout,
                                   output_names=names)
            if scheme in ("int8-dynamic", "fp16"):
                from edgehad.quantize import dynamic, fp16

                float_path = path.with_name(f".{path.stem}.float.onnx")
                try:
                    export_onnx(artifact.model, artifact.example_inputs, float_path, opset=opset, output_names=names)
                    convert = dynamic.onnx_dynamic_int8 if scheme == "int8-dynamic" else fp16.onnx_fp16
                    written = convert(float_path, path)
                    check_opset(path, opset)  # the converters write their own opset_import
                    return written
                finally:
                    float_path.unlink(missing_ok=True)
            return export_onnx(artifact.model, artifact.example_inputs, path, opset=opset, output_names=names)

        return add_export(artifact, ctx, "onnx", self.name, write)
