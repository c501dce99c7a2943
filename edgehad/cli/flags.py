"""The one table from Python API keywords to command-line flags, and the translation of messages.

The library is called from Python as often as from the command line, so its messages never name a
``--flag``: they name the option by its API keyword in backquotes, "`input_shape`", or a recipe key as
"`[section] key`". The CLI prints every error through :func:`speak_flags`, which turns each
backquoted keyword of this table into its flag, so a command-line user reads "--input-shape" where a
Python caller reads "`input_shape`". Backquoted text that is no keyword here (a recipe key, a module
name, "`edgehad osr fit`") is printed as it is.

A keyword with a value, written as a Python caller would pass it, becomes the flag with that value:
"`finetune_epochs=0`" -> "--finetune-epochs 0", "`quantize='int8'`" -> "--quantize int8";
a switch given its value becomes the bare flag: "`force=True`" -> "--force", and
"`distill=False`" -> "--no-distill" (a flag named ``--no-...`` is the one that sets False).
A family of keywords reads as a family of flags: "`prune_*`" -> "--prune-*".

One keyword, one flag: where two commands have the same keyword (``out``, ``data``, ``target``,
``samples``, ``timeout``, ``force``) they have the same flag, and
tests/unit/test_messages_speak_options.py checks every command's options against this table, so a
command that gave a keyword another flag would fail there rather than be mistranslated. Such a command
would get a per-command table consulted before this one.
"""

from __future__ import annotations

import ast
import re
import shlex

FLAGS: dict[str, str] = {
    # a MODEL spec (convert, inspect, rewrite, osr fit / eval)
    "model_args": "--model-arg",
    "weights": "--weights",
    "input_shape": "--input-shape",
    # a file's inputs (inspect, profile, micro; edgehad.runtime.Session): arrays by input name in an .npz
    "inputs": "--inputs",
    # convert
    "recipe": "--recipe",
    "formats": "--format",
    "data": "--data",
    "normalize": "--normalize",
    "samples": "--samples",
    "quantize": "--quantize",
    "calib": "--calib",
    "calib_samples": "--calib-samples",
    "int8_io": "--int8-io",
    "keep_float": "--keep-float",
    "rewrite": "--rewrite",
    "strict": "--strict",
    "prune": "--prune",
    "prune_criterion": "--prune-criterion",
    "prune_scope": "--prune-scope",
    "prune_target": "--prune-target",
    "prune_round_to": "--prune-round-to",
    "prune_structure": "--prune-structure",
    "prune_steps": "--prune-steps",
    "prune_unsafe": "--prune-unsafe",
    "prune_blocks": "--prune-blocks",
    "finetune_epochs": "--finetune-epochs",
    "max_accuracy_drop": "--max-accuracy-drop",
    "tflite_layout": "--tflite-layout",
    "dynamic_batch": "--dynamic-batch",
    "distill": "--no-distill",
    "osr": "--osr",
    "out": "--out",
    "keep_intermediate": "--keep-intermediate",
    # rewrite --explain (edgehad.api.explain_rewrite)
    "rules": "--rule",
    # profile (edgehad.profiling.job.Job's settings, and edgehad.api.profile)
    "runtime": "--runtime",
    "threads": "--threads",
    "warmup": "--warmup",
    "runs": "--runs",
    "seconds": "--seconds",
    "op_profile": "--op-profile",
    "seed": "--seed",
    "target": "--target",
    "host": "--host",
    "provider": "--ep",
    "precision": "--precision",
    "power": "--power",
    "timeout": "--timeout",
    "report": "--report",
    # micro
    "arena_kb": "--arena-kb",
    "find_arena": "--find-arena",
    # bundle
    "name": "--name",
    "labels": "--labels",
    "force": "--force",
    # targets calibrate
    "size": "--size",
    # search
    "space": "--space",
    "budget": "--budget",
    "objectives": "--objectives",
    "trials": "--trials",
    "minutes": "--minutes",
    "jobs": "--jobs",
    "resume": "--resume",
    "ray": "--ray",
    # osr fit / eval
    "classifier": "--classifier",
    "stats": "--stats",
    "known": "--known",
    "unknown": "--unknown",
    "split": "--split",
    "plot": "--plot",
}

_QUOTED = re.compile(r"`([^`\n]+)`")


def flag_of(text: str) -> str | None:
    """The command-line form of one backquoted text, or None when it is no keyword of :data:`FLAGS`."""
    if text in FLAGS:
        return FLAGS[text]
    if text.endswith("_*"):  # every keyword that starts so, when their flags start alike
        family = [flag for keyword, flag in FLAGS.items() if keyword.startswith(text[:-1])]
        dashed = "--" + text[:-1].replace("_", "-")
        return dashed + "*" if family and all(flag.startswith(dashed) for flag in family) else None
    keyword, sep, raw = text.partition("=")
    if not sep or keyword not in FLAGS:
        return None
    flag = FLAGS[keyword]
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return None
    if isinstance(value, bool):  # a switch: its flag says the value, and only one value has a flag
        return flag if value != flag.startswith("--no-") else None
    if isinstance(value, (str, int, float)):
        return f"{flag} {shlex.quote(str(value))}"
    return None


def speak_flags(message: str) -> str:
    """``message`` with each backquoted keyword of :data:`FLAGS` replaced by its flag (no backquotes).

    "`input_shape` NAME=1x3x640x640" -> "--input-shape NAME=1x3x640x640"; other backquoted text stays.
    """
    def replace(match: re.Match) -> str:
        flag = flag_of(match.group(1))
        return match.group(0) if flag is None else flag

    return _QUOTED.sub(replace, message)
