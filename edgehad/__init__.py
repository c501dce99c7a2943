"""edgehad: take a trained PyTorch model to an edge device.

The public API mirrors the CLI; heavy dependencies are imported on first use
so that ``import edgehad`` (and ``edgehad --help``) stay fast.

    import edgehad
    report = edgehad.convert("zoo:digits_cnn", formats=["onnx", "tflite"], out="out")
    info = edgehad.inspect("out/model.tflite")
    rows = edgehad.profile(["out/model.onnx", "out/model.tflite"], threads=1)
"""

__version__ = "0.1.0"

__all__ = ["convert", "inspect", "profile", "load_model", "EdgehadError", "UserInputError", "__version__"]

from edgehad.core.errors import EdgehadError, UserInputError  # noqa: E402  (tiny, no heavy imports)

# edgehad.api imports its heavy dependencies inside each function, so importing it here is cheap and
# help(edgehad.convert) shows the real signature. micro, bundle and osr stay under edgehad.api: their
# names are subpackages of edgehad.
from edgehad.api import convert, inspect, profile  # noqa: E402


def load_model(*args, **kwargs):
    """Build a model from a MODEL spec; see :func:`edgehad.loading.load_model`."""
    from edgehad.loading import load_model as _load

    return _load(*args, **kwargs)
