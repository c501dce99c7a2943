"""The ``edgehad`` command line: a click group whose commands load on demand.

Each command is a small module in this folder and a thin wrapper over a
function of the Python API. Commands are imported only when run, so
``edgehad --help`` does not pay for torch.
"""

from __future__ import annotations

import importlib
import sys

import click

from edgehad import __version__

# command name -> (module, attribute, one-line help shown by `edgehad --help`)
COMMANDS = {
    "bundle": ("edgehad.cli.bundle", "bundle", "Write a deployable folder: model, manifest, C array, TFLM and Python examples."),
    "convert": ("edgehad.cli.convert", "convert", "Convert a PyTorch model to verified ONNX and TFLite files."),
    "inspect": ("edgehad.cli.inspect", "inspect", "Describe a .onnx / .tflite file or a MODEL spec."),
    "micro": ("edgehad.cli.micro", "micro", "Run a .tflite under TFLite Micro: op support, parity, smallest arena."),
    "osr": ("edgehad.cli.osr", "osr", "Open-set recognition: fit COSTARR statistics, evaluate known/unknown scores."),
    "profile": ("edgehad.cli.profile", "profile", "Measure latency and memory of .onnx/.tflite files, each in its own process."),
    "rewrite": ("edgehad.cli.rewrite", "rewrite", "List rewrite rules, or explain what they would do to a MODEL."),
    "search": ("edgehad.cli.search", "search", "Search the recipe space for the Pareto front of accuracy, latency, size."),
    "targets": ("edgehad.cli.targets", "targets", "List the device descriptions; set up the emulated aarch64 one."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """click's own usage errors as one ``error:`` line (exit 2), like every other error."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        from edgehad.cli.common import fail

        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:  # a bare group: its help is the answer
            exc.show()
            sys.exit(exc.exit_code)
        except click.ClickException as exc:  # UsageError, BadParameter, NoSuchOption, FileError
            where = getattr(getattr(exc, "ctx", None), "command_path", None)
            hint = f" (see '{where} --help')" if isinstance(exc, click.UsageError) and where else ""
            fail(" ".join(exc.format_message().split()) + hint, exc.exit_code)
        except click.Abort:
            fail("aborted", 1)
        sys.exit(rv if isinstance(rv, int) and not isinstance(rv, bool) else 0)

    def format_commands(self, ctx, formatter):
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgehad")
def main():
    """edgehad: take a trained PyTorch model to an edge device.

    Convert it to ONNX and TFLite files proven to compute what the model
    computes, and inspect what came out.

    \b
    Quick start:
      edgehad convert zoo:digits_cnn --data digits --out out/digits
      edgehad inspect out/digits/model.tflite
    """
