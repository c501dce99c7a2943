"""Per-layer sensitivity to int8 and the choice of layers to keep in float.

Sensitivity of layer l: quantize l alone (every other op float), run the
calibration inputs, and measure the signal-to-quantization-noise ratio of the
model output against the float model,

    SQNR_l = 10 log10( sum y^2 / sum (y - y_l)^2 )  [dB]

A low SQNR means the layer alone costs much accuracy. ``choose_keep_float``
keeps the k least robust layers in float, k = 0, 1, 2, ..., until the whole
int8 model's output cosine against float reaches the target.
"""

from __future__ import annotations

from edgehad.core.errors import UserInputError
from edgehad.export.verify import compare, torch_outputs


def weighted_layers(model) -> list[str]:
    """Names of the Conv / Linear modules, the layers int8 quantizes."""
    import torch

    kinds = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Linear)
    return [name for name, m in model.named_modules() if name and isinstance(m, kinds)]


def stem_layer(model) -> str:
    """The first conv reading at most 4 channels (an image's RGB or gray input): the stem.

    Why it may stay float: int8 kernels work in blocks of 4 or 16 input
    channels, so a 3-channel conv wastes most of each block. Measured on
    MobileNetV2 (x86, AVX-512 VNNI + AMX, 1 thread): the stem took 0.29 ms in
    onnxruntime's int8 kernel against 0.13 ms in fp32, and keeping it float made
    the pruned int8 model 6% faster in onnxruntime and 15% in LiteRT.
    """
    from torch import nn

    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d)) and module.in_channels <= 4:
            return name
    raise UserInputError("`keep_float` stem: the model has no conv reading 4 channels or fewer")


def check_layers(model, names: list[str]) -> None:
    known = set(dict(model.named_modules()))
    unknown = [n for n in names if n not in known]
    if unknown:
        sample = ", ".join(weighted_layers(model)[:6])
        raise UserInputError(f"`keep_float`: no module named {unknown[0]!r} in the model; layers are e.g. {sample}")


def layer_sensitivity(model, example_inputs, calibration, probe_inputs, progress=None) -> list[dict]:
    """[{layer, sqnr_db}] for each weighted layer, least robust first."""
    from edgehad.quantize.pt2e import quantize_int8

    reference = torch_outputs(model, probe_inputs)
    layers = weighted_layers(model)
    result = []
    for i, name in enumerate(layers):
        quantized, _ = quantize_int8(model, example_inputs, calibration, only=name)
        sqnr = compare(reference, torch_outputs(quantized, probe_inputs)).sqnr_db
        result.append({"layer": name, "sqnr_db": round(float(sqnr), 2)})
        if progress:
            progress(i + 1, len(layers))
    return sorted(result, key=lambda r: r["sqnr_db"])


def choose_keep_float(model, example_inputs, calibration, probe_inputs, target_cosine: float,
                      progress=None) -> tuple[list[dict], list[dict], object, object]:
    """Keep the least robust layers float until output cosine >= ``target_cosine``.

    Returns (kept [{layer, sqnr_db, reason}], sensitivity, quantized model, quantizer).
    """
    from edgehad.quantize.pt2e import quantize_int8

    ranking = layer_sensitivity(model, example_inputs, calibration, probe_inputs, progress)
    reference = torch_outputs(model, probe_inputs)
    kept: list[dict] = []
    for k in range(len(ranking) + 1):
        names = [r["layer"] for r in ranking[:k]]
        quantized, quantizer = quantize_int8(model, example_inputs, calibration, keep_float=names)
        cosine = compare(reference, torch_outputs(quantized, probe_inputs)).cosine
        if cosine >= target_cosine or k == len(ranking):
            kept = [dict(r, reason=f"rank {i + 1} of {len(ranking)} by int8 sensitivity; with the {k} least "
                                   f"robust layers float, output cosine {cosine:.5f} (target {target_cosine})")
                    for i, r in enumerate(ranking[:k])]
            return kept, ranking, quantized, quantizer
    raise AssertionError("unreachable")  # pragma: no cover


def probe_subset(calibration: list[tuple], n: int = 32) -> list[tuple]:
    step = max(1, len(calibration) // n)
    return calibration[::step][:n] if calibration else calibration


__all__ = ["weighted_layers", "layer_sensitivity", "choose_keep_float", "probe_subset", "check_layers"]
