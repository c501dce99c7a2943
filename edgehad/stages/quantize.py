"""Stage ``quantize``: int8 static (PT2E), int8-dynamic, fp16.

Every scheme's decision is made here and written as one ``QuantizationPlan``
(edgehad.core.artifact); the export stages carry it out without knowing the scheme.

int8 static replaces the torch model by its PT2E-quantized graph (the variant
becomes "int8"): both exporters export that one graph (TFLite with the
quantizer's config, ONNX rewritten into the QDQ layout onnxruntime fuses), and
verification compares each file with it. int8-dynamic and fp16 have no PT2E
scheme: the model stays float, and the plan holds each format's own tool as a
file pass over the float export (edgehad.quantize.dynamic / fp16); their files
are checked against the float model.
"""

from __future__ import annotations

from edgehad.core.artifact import QuantizationPlan
from edgehad.core.capture import captured
from edgehad.core.errors import UserInputError
from edgehad.core.stage import Context, Option, Stage, register

SCHEMES = ("int8", "int8-dynamic", "fp16", "none")


@register
class Quantize(Stage):
    name = "quantize"
    order = 40
    summary = "quantize: int8 static (PT2E, calibrated), int8-dynamic or fp16"
    reads = ("model", "example_inputs", "data", "keep_float")
    writes = ("model", "variant", "quantization")
    options = {
        "scheme": Option({"enum": list(SCHEMES)}, "int8", f"one of {', '.join(SCHEMES)}"),
        "calib": Option({"enum": ["data", "random"]}, "data",
                        "'data' (the train split of data) or 'random' (explicit, reported)"),
        "calib_samples": Option({"type": "integer", "minimum": 1}, 256, "calibration samples"),
        "int8_io": Option({"type": "boolean"}, False, "TFLite: int8 inputs/outputs instead of float"),
        "keep_float": Option({"type": "string"}, "",
                             "'auto', or module names to keep in float, comma-separated ('stem': the first conv on "
                             "<= 4 channels; 'speed': the leading convs measured faster in fp32 than int8)"),
        "target_cosine": Option({"type": "number", "minimum": 0, "maximum": 1}, 0.995,
                                "keep-float auto: least output cosine against float"),
    }

    def run(self, artifact, ctx: Context):
        scheme = self.config["scheme"]
        if scheme == "none":
            return artifact
        info = {"scheme": scheme}
        if scheme == "int8":
            info.update(self._int8_static(artifact, ctx))
        else:
            artifact.quantization = _file_passes(scheme)
            artifact.variant = scheme
        ctx.record("quantization", info)
        return artifact

    def _int8_static(self, artifact, ctx) -> dict:
        from edgehad.quantize.calibration import calibration_inputs
        from edgehad.quantize.pt2e import degenerate_ranges, float_activations, float_layers, quantize_int8

        random = self.config["calib"] == "random"
        calib = calibration_inputs(artifact.example_inputs, None if random else artifact.data,
                                   n=self.config["calib_samples"], random=random)
        step = max(1, len(calib) // 4)
        progress = lambda i, n: ctx.progress(f"quantize: calibrated {i}/{n}") if i % step == 0 or i == n else None
        keep = [k.strip() for k in (self.config["keep_float"] or "").split(",") if k.strip()]
        required = list(artifact.keep_float)  # e.g. the COSTARR head (stages/osr.py)
        if required and keep == ["auto"]:
            raise UserInputError("`keep_float` auto cannot be combined with the COSTARR head (it would quantize "
                                 "the head): name the layers to keep float instead")
        keep = keep + [r for r in required if r not in keep]
        kept, ranking = [], None
        if keep and keep != ["auto"]:
            from edgehad.quantize.sensitivity import check_layers, stem_layer

            reasons = dict(artifact.keep_float)
            if "stem" in keep:  # the first conv on the image channels, by name
                stem = stem_layer(artifact.model)
                keep = [stem if k == "stem" else k for k in keep]
                reasons[stem] = "keep_float stem: a conv on <= 4 input channels is slower in int8 kernels"
            if "speed" in keep:  # the leading convs that onnxruntime runs faster in fp32, measured here
                from edgehad.quantize.speed import float_faster_prefix

                ctx.progress("quantize: timing the leading convs in fp32 and int8 (onnxruntime, 1 thread)")
                decisions = float_faster_prefix(artifact.model, artifact.example_inputs)
                prefix = [d["layer"] for d in decisions if d["kept"]]
                i = keep.index("speed")
                keep = [k for k in keep[:i] + prefix + keep[i + 1:] if k != "speed"]
                keep = list(dict.fromkeys(keep))
                for d in decisions:
                    if d["kept"]:
                        reasons[d["layer"]] = (f"keep_float speed: {d['fp32_us']} us in fp32 against "
                                               f"{d['int8_us']} us in int8 (onnxruntime, this machine)")
            check_layers(artifact.model, keep)
            kept = [{"layer": k, "reason": reasons.get(k, "asked for with keep_float")} for k in keep]
        with captured():
            if keep == ["auto"]:
                from edgehad.quantize.sensitivity import choose_keep_float, probe_subset

                ctx.progress("quantize: measuring per-layer int8 sensitivity")
                kept, ranking, quantized, quantizer = choose_keep_float(
                    artifact.model, artifact.example_inputs, calib, probe_subset(calib),
                    self.config["target_cosine"])
            else:
                quantized, quantizer = quantize_int8(artifact.model, artifact.example_inputs, calib,
                                                     progress=progress, keep_float=keep)
        from litert_torch.quantize.quant_config import QuantConfig

        from edgehad.quantize.float_weights import FileProbe, torch_layers

        artifact.model = quantized
        artifact.variant = "int8"
        int8_io = self.config["int8_io"]
        # what still computes in float is read from each file as it is written (by format), because only
        # the file says what the exporter made of the quantized graph
        float_weights = {}
        probe = FileProbe(float_weights, ctx.progress, torch_layers(quantized), int8_io=int8_io,
                          by_design=float_layers(quantized))
        artifact.quantization = QuantizationPlan(
            "int8", int8_io=int8_io, tflite_quant_config=QuantConfig(pt2e_quantizer=quantizer),
            onnx_postprocess=probe.onnx,
            # full-integer TFLite takes int8; float I/O wraps it in QUANTIZE / DEQUANTIZE for the app
            tflite_file_pass=probe.tflite)
        constant = degenerate_ranges(quantized)
        for where in constant:
            ctx.progress(f"warning: activation after {where} was constant during calibration (degenerate range)")
        return {
            "calibration": {"source": "random inputs (NOT representative: ranges may not match real data)"
                            if random else f"{artifact.data.spec} train split", "samples": len(calib)},
            "weights": "int8 per-channel symmetric", "activations": "int8 per-tensor affine",
            "degenerate_ranges": constant,
            "kept_float": kept,
            # transformer activations int8 per-tensor cannot hold (masks, residual sums, attention scores)
            "float_activations": float_activations(quantized),
            "float_weights": float_weights,  # filled by the export stages: {format: float layers of that file}
            **({"sensitivity": ranking} if ranking is not None else {}),
        }


def _file_passes(scheme: str) -> QuantizationPlan:
    """int8-dynamic / fp16: each format's own tool, run over the float export."""
    from edgehad.quantize import dynamic, fp16

    if scheme == "int8-dynamic":
        return QuantizationPlan(scheme, onnx_file_pass=dynamic.onnx_dynamic_int8,
                                tflite_file_pass=dynamic.tflite_dynamic_int8)
    return QuantizationPlan(scheme, onnx_file_pass=fp16.onnx_fp16, tflite_file_pass=fp16.tflite_fp16)
