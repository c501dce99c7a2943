"""``edgehad targets``: the device descriptions in targets/, and one-time setup of the emulated one."""

from __future__ import annotations

import click

from edgehad.cli.common import command_errors, debug_option, emit_json, json_option


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

    out = Console(highlight=False)
    if not found:
        out.print("no targets found: add a TOML file to the targets folder (see targets/schema.toml)")
        return
    columns = ["name", "device", "CPU", "cores x GHz", "fp32", "int8", "GB/s", "RAM GiB", "GPU", "runtime"]
    rows = []
    for t in found:
        cpu, peak = t["cpu"], t["peak"]
        provider = (t.get("execution_provider") or "").removesuffix("ExecutionProvider")
        device = t["description"].split(":")[0]  # descriptions read "Board: details"; the details are in --json
        rows.append([t["name"], device, f"{cpu.get('model') or '-'} ({cpu.get('arch') or '?'})",
                     f"{cpu['cores']} x {cpu['clock_ghz']:g}", _num(peak["fp32_gops"]), _num(peak["int8_gops"]),
                     _num(t["memory_bandwidth_gbs"]), f"{t['ram_kb'] / 1024 ** 2:.1f}", _gpu(t.get("gpu")),
                     t["runtime"] + (f" ({provider})" if provider else "")])
    table = Table(show_edge=False, padding=(0, 1), pad_edge=False)
    numbers = ("cores x GHz", "fp32", "int8", "GB/s", "RAM GiB")
    for i, col in enumerate(columns):
        # text wraps at spaces, never inside a word (no ellipses): a column is as wide as its longest word
        longest = max(len(word) for row in rows for word in [col, *row[i].split()])
        table.add_column(col, justify="right" if col in numbers[1:] else "left",
                         no_wrap=col in numbers or col == "name", min_width=longest)
    for row in rows:
        table.add_row(*row)
    fits = Console(width=1000).measure(table).minimum
    Console(highlight=False, width=max(out.width, fits)).print(table)
    out.print("fp32 / int8: CPU peak of all cores, Gop/s (a multiply-add is 2 ops); GB/s: main-memory bandwidth. "
              "Sources and estimates are commented in each targets/NAME.toml.")


@targets.command("setup")
@click.argument("name", type=click.Choice(["emulated-aarch64"]))
@click.option("--force", is_flag=True, help="Download again even if it is already set up.")
@debug_option
@command_errors
def setup(name, force, debug):
    """One-time download for a target: emulated-aarch64 fetches an arm64 Debian userland and the runtimes' wheels."""
    from edgehad import api

    where = api.setup_target(name, force=force, progress=lambda m: click.echo(m, err=True))
    click.echo(f"{name} is ready in {where}")
