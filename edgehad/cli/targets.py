"""``edgehad targets``: the device descriptions in targets/; one of them in full; measuring local; setup of emulated."""

from __future__ import annotations

import click

from edgehad.cli.common import command_errors, debug_option, emit_json, json_option, progress_printer


@click.group(invoke_without_command=True)
@json_option
@debug_option
@click.pass_context
@command_errors
def targets(ctx, as_json, debug):
    """List the device descriptions (targets/*.toml) the profiler's --target takes.

    A new device is one new TOML file; `targets/schema.toml` lists every key.
    """
    if ctx.invoked_subcommand is not None:
        return
    from edgehad import api

    found = api.targets()
    if as_json:
        emit_json(found)
    else:
        _print(found)


def _num(value) -> str:
    """A peak or bandwidth without trailing zeros: 57.6, 688, 1.43."""
    return "-" if value is None else f"{value:,.4g}" if value < 1000 else f"{value:,.0f}"


def _peak(t: dict, key: str) -> str:
    """A CPU peak, marked where it is local's: "268.8 (estimate)", "150.2 (measured)", "unknown"."""
    peak = t.get("peak") or {}
    source = peak.get("source")
    if source == "unknown":
        return "unknown"
    return _num(peak.get(key)) + (f" ({source})" if source and peak.get(key) is not None else "")


def _clock(cpu: dict) -> str:
    return f"{cpu['cores']} x " + (f"{cpu['clock_ghz']:g}" if cpu.get("clock_ghz") else "?")


def _gpu(gpu: dict | None) -> str:
    """GPU name and its peaks (GFLOP/s, Gop/s), e.g. "Maxwell, 128 CUDA cores (sm_53): fp32 235.9, fp16 471.9"."""
    if not gpu:
        return "-"
    peaks = [f"{label} {_num(gpu[k])}" for k, label in (("fp32_gflops", "fp32"), ("fp16_gflops", "fp16"),
                                                         ("int8_gops", "int8")) if gpu.get(k)]
    return gpu["name"] + (f": {', '.join(peaks)}" if peaks else "")


def _print(found: list[dict]) -> None:
    """One row per target: what it is, its roofs (Gop/s, GB/s), and how it runs models."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    out = Console(highlight=False)
    if not found:
        out.print("no targets found: add a TOML file to the targets folder (see targets/schema.toml)")
        return
    columns = ["name", "device", "CPU", "cores x GHz", "fp32", "int8", "GB/s", "RAM", "GPU", "runtime"]
    rows = []
    for t in found:
        cpu = t["cpu"]
        provider = (t.get("execution_provider") or "").removesuffix("ExecutionProvider")
        device = t["description"].split(":")[0]  # descriptions read "Board: details"; the details are in --json
        ram = _ram(t)
        rows.append([t["name"], device, f"{cpu.get('model') or '-'} ({cpu.get('arch') or '?'})", _clock(cpu),
                     _peak(t, "fp32_gops"), _peak(t, "int8_gops"), _num(t.get("memory_bandwidth_gbs")), ram,
                     _gpu(t.get("gpu")), t["runtime"] + (f" ({provider})" if provider else "")])
    table = Table(show_edge=False, padding=(0, 1), pad_edge=False)
    numbers = ("cores x GHz", "fp32", "int8", "GB/s", "RAM")
    for i, col in enumerate(columns):
        # text wraps at spaces, never inside a word (no ellipses): a column is as wide as its longest word
        longest = max(len(word) for row in rows for word in [col, *row[i].split()])
        table.add_column(col, justify="right" if col in numbers[1:] else "left",
                         no_wrap=col in numbers or col == "name", min_width=longest)
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))  # the user's text, never rich markup
    fits = Console(width=1000).measure(table).minimum
    Console(highlight=False, width=max(out.width, fits)).print(table)
    out.print("fp32 / int8: CPU peak of all cores, Gop/s (a multiply-add is 2 ops); GB/s: main-memory bandwidth. "
              "Sources and estimates are commented in each targets/NAME.toml; local is this machine, its peaks an "
              "estimate from the ISA and clock (`edgehad targets show local`) until `edgehad targets calibrate "
              "local` measures them.")


@targets.command("show")
@click.argument("name")
@json_option
@debug_option
@command_errors
def show(name, as_json, debug):
    """Everything one target says (NAME, or the path of a .toml file), with where its numbers come from."""
    from edgehad import api

    t = api.target(name)
    if as_json:
        emit_json(t)
        return
    from rich.console import Console

    out = Console(highlight=False, soft_wrap=True)
    cpu, peak = t["cpu"], t.get("peak") or {}
    lines = [("", f"[bold]{t['name']}[/]: {t['description']}")]
    clock = f"{cpu['clock_ghz']:g} GHz" if cpu.get("clock_ghz") else "clock unknown"
    if cpu.get("clock_source"):
        clock += f" ({cpu['clock_source']})"
    lines.append(("CPU", f"{cpu.get('model') or '-'} ({cpu.get('arch') or '?'}), {cpu['cores']} cores, {clock}"))
    lines.append(("ISA", " ".join(cpu["isa"]) or "-"))
    figures = [f"{label} {_num(peak[k])}" for k, label in (("fp32_gops", "fp32"), ("int8_gops", "int8"),
                                                           ("fp16_gops", "fp16")) if peak.get(k) is not None]
    if peak.get("source") == "measured":
        how = f"measured on {peak['date']} with {peak['threads']} thread(s): {peak.get('method', '')}"
    elif peak.get("source") == "estimate":
        how = f"estimate: {peak.get('formula', '')}"
    else:
        how = ""
    text = (", ".join(figures) + " Gop/s" if figures else "unknown") + (f"; {how}" if how else "")
    lines.append(("peak", text + (f" ({peak['note']})" if peak.get("note") else "")))
    bandwidth = t.get("memory_bandwidth_gbs")
    lines.append(("memory", f"{_num(bandwidth)} GB/s" if bandwidth is not None else
                  f"bandwidth unknown: `edgehad targets calibrate {t['name']}` measures it"))
    if t.get("ram_kb"):
        lines.append(("RAM", _ram(t) + (f", flash {t['flash_kb']} KiB" if t.get("flash_kb") else "")))
    if t.get("gpu"):
        lines.append(("GPU", _gpu(t["gpu"])))
    provider = t.get("execution_provider")
    lines.append(("runtime", t["runtime"] + (f" ({provider})" if provider else "")))
    if t.get("source"):
        lines.append(("source", t["source"]))
    for label, value in lines:
        # markup off: a target's text is the user's ("[ps]" citations are not rich tags to strip)
        out.print(f"{label:<8} {value}" if label else value, markup=False)


@targets.command("calibrate")
@click.argument("name", type=click.Choice(["local"]))
@click.option("--size", type=int, default=None, metavar="N",
              help="Side of the square matrices (default 1024); smaller is quicker and less exact, and its "
                   "memory buffer (256 x N^2 bytes) may fit in the caches.")
@json_option
@debug_option
@command_errors
def calibrate(name, size, as_json, debug):
    """Measure this machine's fp32 and int8 peaks and memory bandwidth (a few seconds) for the local target.

    fp32: torch matmul; int8: onnxruntime MatMulInteger; memory: a large copy; each the median of
    several runs on every usable CPU, so run it on an otherwise idle machine. Stored in
    ~/.config/edgehad/local-calibration.json (honouring XDG_CONFIG_HOME); `edgehad targets show local`
    and profile's roofline use it from then on, on this machine only.
    """
    from edgehad import api

    progress = progress_printer()
    result = api.calibrate_target(name, size=size, progress=progress)
    if as_json:
        emit_json(result)
        return
    click.echo(f"{name}: fp32 {_num(result['fp32_gops'])} Gop/s, int8 {_num(result['int8_gops'])} Gop/s, memory "
               f"{_num(result['memory_bandwidth_gbs'])} GB/s, measured {result['date']} with {result['threads']} "
               f"thread(s); saved to {result['file']}")


@targets.command("setup")
@click.argument("name", type=click.Choice(["emulated-aarch64"]))
@click.option("--force", is_flag=True, help="Download again even if it is already set up.")
@debug_option
@command_errors
def setup(name, force, debug):
    """One-time download for a target: emulated-aarch64 fetches an arm64 Debian userland and the runtimes' wheels."""
    from edgehad import api
    from edgehad.cli.flags import speak_flags

    where = api.setup_target(name, force=force, progress=lambda m: click.echo(speak_flags(m), err=True))
    click.echo(f"{name} is ready in {where}")


def _ram(t: dict) -> str:
    """RAM in GiB for a board, in KiB for a microcontroller (256 KiB is not "0.0 GiB")."""
    kb = t.get("ram_kb")
    if not kb:
        return "-"
    return f"{kb / 1024 ** 2:.1f} GiB" if kb >= 1024 ** 2 else f"{kb} KiB"
