"""What to measure, independent of where: the agent's settings, checked once on the host.

A ``Job`` turns into the agent's command line (``Job.agent_args``) for any
place the agent runs: a local subprocess, a device over SSH, the emulated
aarch64 userland. The model (and the optional inputs file) are named by the
path they have *there*, which only the runner knows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgehad.core.errors import UserInputError

SUFFIXES = {".onnx": "ort", ".tflite": "tflite"}
RUNTIMES = ("auto", "ort", "tflite")
PROVIDERS = ("cpu", "cuda", "tensorrt")


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
    inputs: Path | None = None   # .npz of real input samples (see edgehad.profiling.inputs); None: seeded random
    power: bool = False          # Jetson: also report tegrastats' power rails (memory is always read there)
    timeout: float | None = None  # seconds for the whole agent run, start to JSON

    def __post_init__(self):
        if self.runtime not in RUNTIMES:
            raise UserInputError(f"unknown runtime {self.runtime!r}: use one of {', '.join(RUNTIMES)}")
        if self.provider not in PROVIDERS:
            raise UserInputError(f"unknown execution provider {self.provider!r}: use one of {', '.join(PROVIDERS)}")
        if self.provider != "cpu" and self.runtime == "tflite":
            raise UserInputError(f"--ep {self.provider} is an onnxruntime execution provider; "
                                 f"profile a .onnx file or use --ep cpu")
        if int(self.threads) < 1:
            raise UserInputError(f"--threads must be at least 1, got {self.threads}")
        if int(self.warmup) < 0:
            raise UserInputError(f"--warmup must be 0 or more, got {self.warmup}")
        if self.seconds is not None and float(self.seconds) <= 0:
            raise UserInputError(f"--seconds must be more than 0, got {self.seconds}")
        if self.seconds is None and int(self.runs) < 1:
            raise UserInputError(f"--runs must be at least 1, got {self.runs}")
        if self.timeout is not None and float(self.timeout) <= 0:
            raise UserInputError(f"--timeout must be more than 0, got {self.timeout}")

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
        if self.power:
            args.append("--power")
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
