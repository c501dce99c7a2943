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


def convert(*args, **kwargs):
    """Convert a model; see :func:`edgehad.api.convert`."""
    from edgehad.api import convert as _convert

    return _convert(*args, **kwargs)


def inspect(*args, **kwargs):
    """Describe a .onnx/.tflite file or a MODEL spec; see :func:`edgehad.api.inspect`."""
    from edgehad.api import inspect as _inspect

    return _inspect(*args, **kwargs)


def profile(*args, **kwargs):
    """Measure latency and memory of .onnx/.tflite files; see :func:`edgehad.api.profile`."""
    from edgehad.api import profile as _profile

    return _profile(*args, **kwargs)


def load_model(*args, **kwargs):
    """Build a model from a MODEL spec; see :func:`edgehad.loading.load_model`."""
    from edgehad.loading import load_model as _load

    return _load(*args, **kwargs)
