"""Profile files on this machine: the agent in a fresh subprocess per file.

Peak RSS covers a process's whole life, so two files measured in one process
would share a peak; each file therefore gets its own ``python agent.py``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from edgehad.core.children import run_child
from edgehad.core.errors import EdgehadError, UserInputError
from edgehad.core.progress import bar
from edgehad.profiling.job import Job, check_file

AGENT = Path(__file__).with_name("agent.py")
# The agent measures through edgehad's runtime.py; a device gets both, the runtime under this name beside
# the agent (which finds it there, or at ../runtime.py inside the package when run in place, as here).
AGENT_FILES = {"agent.py": AGENT, "edgehad_runtime.py": Path(__file__).parents[1] / "runtime.py"}
# The agent's limit when --timeout is not given: every child gets one (edgehad.core.children). An hour
# is far beyond any sensible profile here (100 runs of a model that takes seconds each), so it only
# stops a run that hangs.
AGENT_TIMEOUT_S = 3600.0


def agent_env() -> dict:
    """The agent's environment: idle OpenMP threads sleep instead of spinning on the cores being measured."""
    return {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}


def parse_agent_output(stdout: str, stderr: str, returncode: int, label, rename: dict | None = None) -> dict:
    """The agent's JSON document, or a UserInputError naming ``label`` (the file as the user gave it); a
    plain EdgehadError (exit 1) when the runtime raised while running the model on the inputs fed.

    ``rename`` maps paths as the agent saw them (a temporary copy, a remote folder) to what the user
    typed, so messages name the user's file.
    """
    try:
        document = json.loads(stdout.strip().splitlines()[-1]) if stdout.strip() else None
    except json.JSONDecodeError:
        document = None
    if not isinstance(document, dict):
        tail = " ".join(stderr.split())[-500:]
        raise UserInputError(f"{label}: the profiling process exited with code {returncode} "
                             f"without a result: {tail or 'no output'}")
    if "error" in document:
        message = document["error"]
        for seen, shown in (rename or {}).items():
            message = message.replace(seen, shown)
        message = message if str(label) in message else f"{label}: {message}"
        if document.get("error_kind") == "run":  # the model failed on the inputs fed: not a usage error
            raise EdgehadError(message)
        raise UserInputError(message)
    return document


PROGRESS_PREFIX = "edgehad-agent: "  # the agent's --progress lines on stderr
_TIMED = re.compile(r"timed ([0-9.]+)/([0-9.]+) (runs|s)")


class AgentProgress:
    """The agent's ``--progress`` lines turned into ``progress`` messages (``where`` first) and one bar over the
    timed runs, from its "timing ..." line to the end; ``line(text)`` takes each stderr line, ``close()`` ends
    the bar. Lines without the agent's prefix are not progress and are left to the caller."""

    def __init__(self, progress, where: str):
        self.progress, self.where, self.view = progress, where, None

    def line(self, text: str) -> bool:
        """Whether ``text`` was a progress line (and was shown)."""
        if not text.startswith(PROGRESS_PREFIX):
            return False
        text = text[len(PROGRESS_PREFIX):].strip()
        timed = _TIMED.fullmatch(text)
        if timed and self.view is not None:
            self.view.update(float(timed.group(1)))
        elif text.startswith("timing "):
            self.close()
            budget = text.split()[1]
            self.view = bar(self.progress, f"{self.where}: {text}", float(budget))
            self.view.__enter__()
        elif not timed:
            self.close()
            self.progress(f"{self.where}: {text}")
        return True

    def close(self) -> None:
        if self.view is not None:
            self.view.__exit__(None, None, None)
            self.view = None


def run_agent(cmd, *, timeout: float, progress, where: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run an agent command line (here, or ssh running it on a device): its ``--progress`` lines shown through
    ``progress`` as they come (AgentProgress, ``where`` first) and left out of the result's stderr.
    ``subprocess.TimeoutExpired`` as run_child raises it."""
    shown = AgentProgress(progress, where) if progress is not None else None
    try:
        proc = run_child(cmd, timeout=timeout, env=env, on_stderr_line=shown.line if shown else None)
    finally:
        if shown is not None:
            shown.close()
    proc.stderr = "".join(ln for ln in proc.stderr.splitlines(keepends=True) if not ln.startswith(PROGRESS_PREFIX))
    return proc


def profile_file(path, job: Job, progress=None) -> dict:
    """Measure one ``.onnx``/``.tflite`` file in a fresh ``sys.executable`` process; the agent's JSON plus ``path``.
    ``progress``: the agent's phases as messages and a bar over its timed runs."""
    path = check_file(path)
    resolved = str(path.resolve())
    inputs = str(Path(job.inputs).resolve()) if job.inputs else None
    limit = job.timeout or AGENT_TIMEOUT_S
    try:
        proc = run_agent([sys.executable, str(AGENT), *job.agent_args(resolved, inputs),
                          *(["--progress"] if progress is not None else [])], timeout=limit, env=agent_env(),
                         progress=progress, where=path.name)
    except subprocess.TimeoutExpired:
        raise UserInputError(f"{path}: profiling took longer than {limit:g} s; use fewer `runs`"
                             + ("" if job.timeout else " (or a larger `timeout`)")) from None
    document = parse_agent_output(proc.stdout, proc.stderr, proc.returncode, path, {resolved: str(path)})
    document["path"] = str(path)
    document.setdefault("emulated", False)
    document.setdefault("host", "local")
    return document
