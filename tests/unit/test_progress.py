"""Progress while a child works: stderr lines streamed as they come, the agent's run counts as one bar."""

from __future__ import annotations

import sys

import pytest

from edgehad.core.children import run_child
from edgehad.core.progress import bar
from edgehad.profiling.local import AgentProgress


def test_stderr_lines_arrive_while_the_child_runs(tmp_path):
    """The child waits for a file that only the callback for its first line creates: with lines delivered at
    exit it would wait until killed."""
    flag = tmp_path / "seen"
    child = ("import os, sys, time\n"
             "print('first', file=sys.stderr, flush=True)\n"
             f"while not os.path.exists({str(flag)!r}): time.sleep(0.01)\n"
             "print('second', file=sys.stderr); print('out')\n")
    seen = []

    def on_line(line):
        seen.append(line)
        flag.touch()

    proc = run_child([sys.executable, "-c", child], timeout=60, on_stderr_line=on_line)
    assert proc.returncode == 0 and seen == ["first", "second"]
    assert proc.stdout == "out\n" and proc.stderr == "first\nsecond\n"


def test_streaming_takes_no_input():
    with pytest.raises(ValueError, match="without input only"):
        run_child([sys.executable, "-c", "pass"], timeout=5, input="x", on_stderr_line=print)


class Recorder:
    """A progress callback with a bar, as the CLI's printer has."""

    def __init__(self):
        self.events = []

    def __call__(self, message):
        self.events.append(("message", message))

    def bar(self, label, total):
        recorder = self

        class View:
            def __enter__(self):
                recorder.events.append(("bar", label, total))
                return self

            def update(self, done):
                recorder.events.append(("done", done))

            def __exit__(self, *exc):
                recorder.events.append(("closed",))

        return View()


def test_the_agents_lines_become_messages_and_one_bar():
    got = Recorder()
    shown = AgentProgress(got, "m.onnx")
    lines = ["edgehad-agent: loaded in 4 ms; warm-up 10 runs", "edgehad-agent: timing 100 runs",
             "edgehad-agent: timed 40/100 runs", "edgehad-agent: timed 90/100 runs", "edgehad-agent: op profile",
             "some runtime chatter"]
    assert [shown.line(ln) for ln in lines] == [True] * 5 + [False]
    shown.close()
    assert got.events == [("message", "m.onnx: loaded in 4 ms; warm-up 10 runs"),
                          ("bar", "m.onnx: timing 100 runs", 100.0), ("done", 40.0), ("done", 90.0), ("closed",),
                          ("message", "m.onnx: op profile")]


def test_a_plain_callback_hears_the_label_once():
    said = []
    with bar(said.append, "m.onnx: timing 2 s", 2.0) as view:
        view.update(1.0)
        view.update(2.0)
    assert said == ["m.onnx: timing 2 s"]


@pytest.mark.parametrize("decorator, said", [
    ("@command_errors", "error: interrupted: nothing was written to the output folder"),
    ("@command_errors(stopped='the finished trials are kept; `resume` finishes them')",
     "error: interrupted: the finished trials are kept; --resume finishes them"),
])
def test_a_stopped_command_says_what_it_left(decorator, said):
    """Ctrl-C ends a command with one line saying what is left behind: a search keeps its trials."""
    import subprocess

    program = ("import click\nfrom edgehad.cli.common import command_errors\n"
               f"@click.command()\n@click.option('--debug', is_flag=True)\n{decorator}\n"
               "def main(debug):\n    raise KeyboardInterrupt\nmain()\n")
    proc = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 130 and proc.stderr.strip().splitlines() == [said]
