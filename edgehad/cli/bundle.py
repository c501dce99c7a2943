"""``edgehad bundle``."""

from __future__ import annotations

import click

from edgehad.cli.common import command_errors, debug_option, emit_json, json_option


@click.command()
@click.argument("file", metavar="FILE")
@click.option("--out", required=True, metavar="DIR", help="Folder to write; it must not exist or be empty (see --force).")
@click.option("--target", metavar="NAME", help="Check model size against its flash_kb and the arena against its ram_kb.")
@click.option("--name", "symbol", metavar="SYMBOL",
              help="C name of the model array (default: from the file name, prefixed with g_ if it would clash). "
                   "Refused if it is a C/C++ keyword or clashes with a name the headers or main.cc use.")
@click.option("--labels", type=click.Path(dir_okay=False), metavar="FILE", help="Class names, one per line, in output order.")
@click.option("--force", is_flag=True, help="Replace DIR if it exists and is not empty.")
@json_option
@debug_option
@command_errors
def bundle(file, out, target, symbol, labels, force, as_json, debug):
    """Write DIR: FILE (.tflite or .onnx), manifest.json, the model as a C array, a TFLite Micro
    program with exactly the ops it needs and the arena `micro` found, a Python script on a
    one-file runtime, and a README saying how to build and run each.

    \b
    Example:
      edgehad convert zoo:digits_cnn --data digits --quantize int8 --int8-io --out out/digits
      edgehad bundle out/digits/model.tflite --out out/bundle --name g_digits
    """
    from edgehad import api
    from edgehad.cli.flags import speak_flags
    from edgehad.core.capture import captured, console

    def warn(message):
        console().print(f"[yellow]warning:[/] {speak_flags(message)}", markup=True, highlight=False, soft_wrap=True)

    with captured():
        summary = api.bundle(file, out, target=target, name=symbol, labels=labels, force=force, warn=warn)
    if as_json:
        emit_json({"out": summary["out"], "files": summary["files"], "manifest": summary["manifest"]})
    else:
        _print(summary)


def _print(summary: dict) -> None:
    m = summary["manifest"]
    lines = [f"{_shown(summary['out'])}: {len(summary['files'])} files "
             f"({', '.join(_shown(f) for f in summary['files'])})",
             f"model: {_shown(m['model']['file'])}, {m['model']['size_bytes']} bytes, "
             f"sha256 {m['model']['sha256'][:16]}..."]
    if m["tflm"]:
        arena = m["tflm"]["arena"]
        lines.append(f"TFLM: {m['tflm']['resolver_size']} ops ({', '.join(m['tflm']['resolver'])}); arena "
                     f"{arena['recommended_bytes']} bytes recommended, {arena['min_bytes']} minimum")
        lines.append(f"  ({arena['note']})")
    if m["target"]:
        t = m["target"]
        lines.append(f"target {t['name']}: fits flash: {_yn(t['model_fits_flash'])}, arena fits RAM: "
                     f"{_yn(t['arena_fits_ram'])}")
    for note in m["notes"]:
        lines.append(f"note: {note}")
    click.echo("\n".join(lines))


def _shown(name: str) -> str:
    """A file name on one line: as it is, or as a Python literal when it holds a newline or the like."""
    return name if name.isprintable() else repr(name)


def _yn(value) -> str:
    return "not checked" if value is None else ("yes" if value else "no")
