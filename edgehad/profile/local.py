"""Profile files on this machine: the agent in a fresh subprocess per file.

Peak RSS covers a process's whole life, so two files measured in one process
would share a peak; each file therefore gets its own ``python agent.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from edgehad.core.errors import UserInputError

AGENT = Path(__file__).with_name("agent.py")
SUFFIXES = {".onnx": "ort", ".tflite": "tflite"}
RUNTIMES = ("auto", "ort", "tflite")


def agent_args(path, runtime="auto", threads=1, warmup=10, runs=100, seconds=None, op_profile=False,
               seed=0, provider="cpu") -> list[str]:
    """The agent's command-line arguments (after ``python agent.py``), checked."""
    if runtime not in RUNTIMES:
        raise UserInputError(f"unknown runtime {runtime!r}: use one of {', '.join(RUNTIMES)}")
    if int(threads) < 1:
        raise UserInputError(f"--threads must be at least 1, got {threads}")
    if int(warmup) < 0:
        raise UserInputError(f"--warmup must be 0 or more, got {warmup}")
    args = [str(path), "--runtime", runtime, "--threads", str(int(threads)), "--warmup", str(int(warmup)),
            "--seed", str(int(seed)), "--provider", provider]
    if seconds is not None:
        if float(seconds) <= 0:
            raise UserInputError(f"--seconds must be more than 0, got {seconds}")
        args += ["--seconds", repr(float(seconds))]
    else:
        if int(runs) < 1:
            raise UserInputError(f"--runs must be at least 1, got {runs}")
        args += ["--runs", str(int(runs))]
    if op_profile:
        args.append("--op-profile")
    return args


def check_file(path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: no such file")
    if path.suffix not in SUFFIXES:
        raise UserInputError(f"{path}: cannot profile a {path.suffix or 'suffix-less'} file; "
                             f"profile supports .onnx (onnxruntime) and .tflite (LiteRT) files")
    return path


def profile_file(path, runtime="auto", threads=1, warmup=10, runs=100, seconds=None, op_profile=False,
                 seed=0, provider="cpu", timeout=None) -> dict:
    """Measure one ``.onnx``/``.tflite`` file in a fresh ``sys.executable`` process; the agent's JSON plus ``path``."""
    path = check_file(path)
    resolved = str(path.resolve())
    args = agent_args(resolved, runtime, threads, warmup, runs, seconds, op_profile, seed, provider)
    try:
        proc = subprocess.run([sys.executable, str(AGENT), *args], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise UserInputError(f"{path}: profiling took longer than {timeout} s; use fewer --runs") from None
    try:
        document = json.loads(proc.stdout)
    except json.JSONDecodeError:
        tail = " ".join(proc.stderr.split())[-500:]
        raise UserInputError(f"{path}: the profiling process exited with code {proc.returncode} "
                             f"without a result: {tail or 'no output'}") from None
    if "error" in document:
        message = document["error"].replace(resolved, str(path))
        raise UserInputError(message if str(path) in message else f"{path}: {message}")
    document["path"] = str(path)
    document["emulated"] = False
    return document
