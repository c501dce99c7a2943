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
        "rtol": Option(float, FLOAT_RTOL, "float tolerance: max_abs <= rtol * max(1, max|y|)"),
        "threads": Option(int, 1, "runtime threads while verifying"),
        "min_cosine": Option(float, 0.99, "quantized files: least output cosine against the quantized torch model"),
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
                f.parity["passed"] = parity.cosine >= self.config["min_cosine"]
                f.parity["rule"] = f"cosine >= {self.config['min_cosine']}"
                if original is not None:
                    f.parity["vs_original"] = compare(original, actual, rtol=self.config["rtol"]).to_dict()
            if not f.parity["passed"]:
                failures.append(f"{f.format} ({f.variant}): {parity.describe()}")
        if failures:
            raise ConversionError("verification failed: " + "; ".join(failures))
        return artifact
