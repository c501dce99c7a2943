"""``edgehad micro``."""

from __future__ import annotations

import click

from edgehad.cli.common import command_errors, debug_option, emit_json, fail, file_input_options, json_option, progress_printer


@click.command()
@click.argument("file", metavar="FILE")
@click.option("--arena-kb", type=float, metavar="N", help="Run with an arena of N KiB and say whether it works.")
@click.option("--find-arena", is_flag=True,
              help="Find the smallest arena that works (bisection, one child process per size) and add a margin.")
@click.option("--target", metavar="NAME",
              help="Check arena and file size against a target's RAM and flash (a name in targets/ or a .toml "
                   "path); implies --find-arena unless --arena-kb is given.")
@click.option("--samples", type=int, default=8, show_default=True, metavar="N",
              help="Seeded random inputs compared between TFLM and LiteRT.")
@click.option("--timeout", type=float, default=None, metavar="S",
              help="Seconds each TFLM or LiteRT run may take (default 120); a model that takes longer is "
                   "reported as one that does not finish (exit 2).")
@file_input_options
@json_option
@debug_option
@command_errors
def micro(file, arena_kb, find_arena, target, samples, timeout, input_shape, inputs, as_json, debug):
    """Run FILE (.tflite) under TFLite Micro: op support, resolver entries, parity with LiteRT, arena size.

    Each TFLM run happens in a child process, since a too-small arena can crash
    TFLM. Exit 1 when TFLM lacks a kernel, the outputs differ from LiteRT, the
    arena does not work or the model does not fit --target.

    \b
    Example:
      edgehad convert zoo:digits_cnn --data digits --quantize int8 --out out/d8
      edgehad micro out/d8/model.tflite --find-arena
    """
    from edgehad import api
    from edgehad.core.capture import captured

    progress = progress_printer()

    with captured():  # LiteRT's "Created TensorFlow Lite XNNPACK delegate" line stays off the terminal
        result = api.micro(file, arena_kb=arena_kb, find_arena=find_arena, target=target, samples=samples,
                       progress=progress, timeout=timeout, input_shape=list(input_shape) or None, inputs=inputs)
    if result["warning"]:  # warnings reach stderr, --json or not
        progress(f"warning: {result['warning']}")
    if as_json:
        emit_json(result)
    else:
        _print(result)
    if result["problems"]:
        fail("; ".join(result["problems"]), 1)


def _kib(n) -> str:
    return "-" if n is None else f"{n / 1024:,.2f} KiB ({n:,} bytes)"


def _print(r: dict) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from edgehad.cli.flags import speak_flags

    out = Console(highlight=False)
    kind = "float" if r["float_model"] else "quantized"
    out.print(f"[bold]{escape(r['path'])}[/]: {r['size_bytes'] / 1024:,.1f} KiB, {kind}, "
              f"TFLite Micro {r['tflm_version']}")
    out.print(f"ops ({len(r['ops'])}): {', '.join(r['ops'])}")
    out.print(f"MicroMutableOpResolver<{len(r['resolver'])}>: {', '.join(r['resolver'])}")

    parity = r["parity"]
    if parity:
        steps = "" if parity["max_steps"] is None else f", max {parity['max_steps']:g} quantization step(s)"
        verdict = "[green]match[/]" if parity["passed"] else "[red]differ[/]"
        out.print(f"parity with LiteRT (reference kernels), {r['samples']} samples: {verdict}: "
                  f"max |diff| {parity['max_abs']:.3g}{steps}")
        dk = parity["vs_default_kernels"]
        dsteps = "" if dk["max_steps"] is None else f", {dk['max_steps']:g} step(s)"
        out.print(f"  (LiteRT's default XNNPACK kernels: max |diff| {dk['max_abs']:.3g}{dsteps}; not judged)")

    a = r["arena"]
    table = Table(title="tensor arena", show_edge=False, title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value")
    if "min_bytes" in a:
        table.add_row("smallest that works", f"{_kib(a['min_bytes'])}, to within {a['resolution_bytes']} bytes")
        table.add_row(f"recommended (+{a['margin']:.0%}, whole KiB)", _kib(a["recommended_bytes"]))
        table.add_row("TFLM's own count", _kib(a["tflm_recorded_bytes"]))
        tried = ", ".join(f"{p['bytes']}{'✓' if p['works'] else '✗'}" for p in a["probes"])
        table.add_row(f"probes ({len(a['probes'])})", tried)
    else:
        works = "[green]works[/]" if a["works"] else f"[red]does not fit[/] ({escape(a['reason'] or '')})"
        label = "generous size tried" if a.get("auto") else "requested"
        table.add_row(label, f"{_kib(a['requested_bytes'])}: {works}")
        if a.get("tflm_recorded_bytes"):
            table.add_row("TFLM's own count", _kib(a["tflm_recorded_bytes"]))
        if a.get("note"):
            table.add_row("note", speak_flags(a["note"]))
    out.print(table)
    out.print(f"[dim]{a['host_note']}[/]")

    t = r["target"]
    if t:
        ram = "fits" if t["ram_fits"] else "[red]does not fit[/]"
        out.print(f"target {t['name']}: arena {t['arena_bytes'] / 1024:,.1f} KiB ({t['arena_is']}) vs "
                  f"{t['ram_kb']:,} KiB RAM: {ram}")
        if t["flash_kb"] is None:
            out.print(f"  {t['note']}")
        else:
            flash = "fits" if t["flash_fits"] else "[red]does not fit[/]"
            out.print(f"  file {t['model_bytes'] / 1024:,.1f} KiB vs {t['flash_kb']:,} KiB flash: {flash}")
