"""What every command shares: --json/--debug, error handling, output streams."""

from __future__ import annotations

import functools
import os
import signal
import sys
import traceback

import click

from edgehad.core import stop
from edgehad.core.errors import EdgehadError


def json_option(f):
    return click.option("--json", "as_json", is_flag=True,
                        help="Print exactly one JSON document on stdout (progress goes to stderr).")(f)


def debug_option(f):
    return click.option("--debug", is_flag=True,
                        help="Show tracebacks and third-party output (on stderr).")(f)


def model_options(f):
    """--model-arg, --weights, --input-shape: how to build a MODEL spec (commands that also take files)."""
    f = click.option("--input-shape", multiple=True, metavar="1x3x224x224", help="Example input shape, for a MODEL spec.")(f)
    return _model_source_options(f)


def _model_source_options(f):
    f = click.option("--weights", type=click.Path(dir_okay=False), help="State dict, for a MODEL spec.")(f)
    return click.option("--model-arg", multiple=True, metavar="KEY=VALUE", help="Factory argument, for a MODEL spec.")(f)


_FILE_SHAPE_HELP = ("A file's input shape, NAME=1x3x640x640 (repeat it per input; a bare shape for a one-input "
                    "file): fills its symbolic dims, which are never guessed.")


def _file_input_options(shape_help: str):
    def decorate(f):
        f = click.option("--inputs", "inputs", type=click.Path(dir_okay=False), metavar="FILE.npz",
                         help="Arrays by input name (numpy.savez) to feed the file, as the file takes them "
                              "(an NHWC .tflite takes NHWC images: nothing is transposed); their shapes fill "
                              "its symbolic dims.")(f)
        return click.option("--input-shape", multiple=True, metavar="[NAME=]1x3x640x640", help=shape_help)(f)

    return decorate


# --input-shape NAME=SHAPE and --inputs FILE.npz: the shapes or arrays a .onnx/.tflite file is taken at
file_input_options = _file_input_options(_FILE_SHAPE_HELP)


def model_or_file_options(f):
    """``inspect``'s: --model-arg and --weights for a MODEL spec; --input-shape for either; --inputs for a file."""
    f = _file_input_options(f"{_FILE_SHAPE_HELP} For a MODEL spec: its example input shape, 1x3x224x224.")(f)
    return _model_source_options(f)


def model_spec(model_arg, weights, input_shape) -> dict:
    """The API's keyword arguments from the ``model_options`` flags: model_args, weights, input_shape."""
    from edgehad.loading import parse_model_args

    return {"model_args": parse_model_args(model_arg), "weights": weights, "input_shape": list(input_shape) or None}


def progress_printer():
    """A ``progress(message)`` for the API: every message on stderr, in every mode, and ``bar(label, total)``
    (edgehad.core.progress) drawn in place on a terminal, the label alone elsewhere.

    --json included: stdout holds only the JSON document, so progress costs it
    nothing, and a long run that prints nothing looks hung. Messages beginning
    "warning:" are shown in yellow; option names become flags (cli/flags.py).
    """
    from edgehad.core.capture import console

    return _Printer(console())


class _Printer:
    def __init__(self, con):
        self.con = con

    def __call__(self, message: str) -> None:
        from rich.markup import escape

        from edgehad.cli.flags import speak_flags

        message = escape(speak_flags(message))
        self.con.print(f"[yellow]{message}[/]" if message.startswith("warning:") else f"[dim]… {message}[/]")

    def bar(self, label: str, total: float):
        if not self.con.is_terminal:  # a log file gets the label, not a redrawn line per update
            from edgehad.core.progress import LabelOnly

            return LabelOnly(self, label)
        return _RichBar(self.con, label, total)


class _RichBar:
    """One rich progress bar on stderr, removed when done (the step's result line follows it)."""

    def __init__(self, con, label: str, total: float):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.total = total
        self.view = Progress(TextColumn("[dim]… {task.description}"), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), console=con, transient=True)
        self.task = self.view.add_task(label, total=total)

    def __enter__(self):
        self.view.start()
        return self

    def update(self, done: float) -> None:
        self.view.update(self.task, completed=min(done, self.total))

    def __exit__(self, *exc) -> None:
        self.view.stop()


def fail(message: str, code: int) -> None:
    """Print ``error: MESSAGE`` on stderr and exit; the library's `keyword` reads as its flag (cli/flags.py)."""
    from edgehad.cli.flags import speak_flags
    from edgehad.core.capture import console

    from rich.markup import escape

    # escaped: a message may hold brackets ("ssh-keygen -R [pi.local]:2222") that rich would eat as markup
    console().print(f"[bold red]error:[/] {escape(speak_flags(message))}", markup=True, highlight=False,
                    soft_wrap=True)
    sys.exit(code)


STOPPED = "nothing was written to the output folder"  # what a stopped command leaves, by default


def command_errors(f=None, *, stopped: str = STOPPED):
    """Turn errors into one ``error: ...`` line and an exit code; tracebacks only with --debug.

    ``stopped``: what Ctrl-C or SIGTERM leaves behind, said after "interrupted:" / "terminated:" (a search
    keeps its finished trials). Use as ``@command_errors`` or ``@command_errors(stopped=...)``."""
    if f is None:
        return functools.partial(command_errors, stopped=stopped)

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        debug = kwargs.get("debug", False)
        from edgehad.core.capture import set_passthrough

        set_passthrough(debug)
        stop.clear()
        previous = signal.signal(signal.SIGTERM, _terminate)
        previous_int = signal.signal(signal.SIGINT, _interrupt)
        try:
            result = f(*args, **kwargs)
            stop.check()  # a stop a library swallowed still ends the command as stopped
            return result
        except stop.Terminated:
            fail(f"terminated: {stopped}", 128 + signal.SIGTERM)
        except EdgehadError as exc:
            if debug:
                traceback.print_exc()
            fail(_one_line(str(exc)), exc.exit_code)
        except KeyboardInterrupt:
            fail(f"interrupted: {stopped}", 130)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:  # a bug in edgehad or a library: say so, keep the traceback for --debug
            if debug:
                traceback.print_exc()
            fail(f"internal error: {type(exc).__name__}: {_one_line(str(exc))} (rerun with --debug for the traceback)", 1)
        finally:
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGINT, previous_int)

    return wrapper


def _terminate(signum, frame):
    if _hold(signum):
        return
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the cleanup short
    stop.request(signum)
    raise stop.Terminated()


def _interrupt(signum, frame):
    if _hold(signum):
        return
    stop.request(signum)  # recorded too: a KeyboardInterrupt raised inside a finalizer is swallowed
    raise KeyboardInterrupt()


def _hold(signum) -> bool:
    """A first stop inside an exporter's native code: record it, say so, and let stop.held raise it."""
    what = stop.holding()
    if what is None or stop.pending():
        return False
    stop.request(signum)
    from edgehad.core.capture import console

    # os.write, not console().print: this runs between two bytecodes of whatever the main thread was doing
    os.write(console().file.fileno(), f"… stopping when {what} returns (again to stop now)\n".encode())
    return True


def _one_line(text: str) -> str:
    return " ".join(text.split())


def emit_json(document) -> None:
    from edgehad.core.jsondoc import dumps

    sys.stdout.write(dumps(document, indent=2) + "\n")
    sys.stdout.flush()
