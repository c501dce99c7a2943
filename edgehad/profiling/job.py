"""What to measure, independent of where: the agent's settings, checked once on the host.

A ``Job`` turns into the agent's command line (``Job.agent_args``) for any
place the agent runs: a local subprocess, a device over SSH, the emulated
aarch64 userland. The model (and the optional inputs file) are named by the
path they have *there*, which only the runner knows.

Every numeric setting has a declared type and range, ``SETTINGS_SCHEMA`` (JSON
Schema, checked with ``edgehad.core.validation.check``, which also refuses NaN
and infinity), checked when the Job is made: the CLI and the Python API both
build Jobs, so a bad value stops there, before any file is read or host reached.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgehad.core.errors import UserInputError
from edgehad.core.validation import as_declared, check_setting

SUFFIXES = {".onnx": "ort", ".tflite": "tflite"}
RUNTIMES = ("auto", "ort", "tflite")
PROVIDERS = ("cpu", "cuda", "tensorrt")
PRECISIONS = ("fp32", "fp16")  # fp16: TensorRT builds its engine with fp16 kernels allowed (the agent's --trt-fp16)

# Upper bounds are finite so that a typo (--runs 1e20, --seconds 1e9) is an error, not a run that never ends:
# a day of timed runs, a week for the whole run, ten million runs, numpy's 32-bit seed range.
SETTINGS_SCHEMA = {
    "type": "object",
    "properties": {
        "threads": {"type": "integer", "minimum": 1, "maximum": 1024},
        "warmup": {"type": "integer", "minimum": 0, "maximum": 1_000_000},
        "runs": {"type": "integer", "minimum": 1, "maximum": 10_000_000},
        "seconds": {"type": "number", "exclusiveMinimum": 0, "maximum": 86_400},
        "seed": {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
        "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 604_800},
    },
}


@dataclass(frozen=True)
class Job:
    """One profiling run's settings; see ``edgehad/profiling/agent.py`` for what each does."""

    runtime: str = "auto"
    threads: int = 1
    warmup: int = 10
    runs: int = 100
    seconds: float | None = None
    op_profile: bool = False
    seed: int = 0
    provider: str = "cpu"
    precision: str = "fp32"      # "fp16": TensorRT's fp16 mode; only with provider "tensorrt"
    inputs: Path | None = None   # .npz of real input samples (edgehad.profiling.run.write_inputs); None: seeded random
    # ((input name, (dims...)), ...): the shapes random inputs are drawn at (edgehad.inspection.inputs resolved
    # them: the file's static dims, the stated symbolic ones); () for a file whose inputs are all static
    input_shapes: tuple = ()
    power: bool = False          # Jetson: also report tegrastats' power rails (memory is always read there)
    timeout: float | None = None  # seconds for the whole agent run, start to JSON

    def __post_init__(self):
        if self.runtime not in RUNTIMES:
            raise UserInputError(f"unknown runtime {self.runtime!r}: use one of {', '.join(RUNTIMES)}")
        if self.provider not in PROVIDERS:
            raise UserInputError(f"unknown execution provider {self.provider!r}: use one of {', '.join(PROVIDERS)}")
        if self.precision not in PRECISIONS:
            raise UserInputError(f"unknown `precision` {self.precision!r}: use one of {', '.join(PRECISIONS)}")
        if self.precision == "fp16" and self.provider != "tensorrt":
            # onnxruntime's CPU and CUDA providers run a float model in the precision it was saved in
            raise UserInputError(f"`precision` fp16 is TensorRT's fp16 mode and needs `provider` tensorrt (got "
                                 f"{self.provider}); for fp16 elsewhere convert the model with `quantize` fp16")
        if self.provider != "cpu" and self.runtime == "tflite":
            raise UserInputError(f"`provider` {self.provider} is an onnxruntime execution provider; "
                                 "profile a .onnx file or use `provider` cpu")
        for key, spec in SETTINGS_SCHEMA["properties"].items():
            value = getattr(self, key)
            if value is None and key in ("seconds", "timeout"):
                continue
            if key == "runs" and self.seconds is not None:
                continue  # a time budget replaces the count; the count is not used
            check_setting(f"`{key}`", value, spec)
            # 5.0 from the CLI's number parsing is a whole number of runs; 1 second is 1.0
            object.__setattr__(self, key, as_declared(spec, value))

    def agent_args(self, model: str, inputs: str | None = None) -> list[str]:
        """The agent's arguments after ``python agent.py``; ``model``/``inputs`` as paths where it runs."""
        args = [model, "--runtime", self.runtime, "--threads", str(int(self.threads)),
                "--warmup", str(int(self.warmup)), "--seed", str(int(self.seed)), "--provider", self.provider]
        if self.seconds is not None:
            args += ["--seconds", repr(float(self.seconds))]
        else:
            args += ["--runs", str(int(self.runs))]
        if self.op_profile:
            args.append("--op-profile")
        if inputs is not None:
            args += ["--inputs", inputs]
        for name, dims in self.input_shapes:
            args += ["--input-shape", f"{name}={'x'.join(str(int(d)) for d in dims)}"]
        if self.power:
            args.append("--power")
        if self.precision == "fp16":
            args.append("--trt-fp16")
        return args


def check_file(path) -> Path:
    """``path`` as a Path if it is a profilable file, else a UserInputError saying what to give instead."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: no such file")
    if path.suffix not in SUFFIXES:
        raise UserInputError(f"{path}: cannot profile a {path.suffix or 'suffix-less'} file; "
                             f"profile supports .onnx (onnxruntime) and .tflite (LiteRT) files")
    return path
