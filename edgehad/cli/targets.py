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
    from edgehad.targets import list_targets

    found = list_targets()
    if as_json:
        emit_json(found)
    else:
        _print(found)


def _print(found: list[dict]) -> None:
    # filled in by the targets work: one row per target (name, CPU, cores, clock, peaks, bandwidth, RAM, GPU)
    for t in found:
        click.echo(f"{t['name']}: {t['description']}")


@targets.command("setup")
@click.argument("name", type=click.Choice(["emulated-aarch64"]))
@click.option("--force", is_flag=True, help="Download again even if it is already set up.")
@debug_option
@command_errors
def setup(name, force, debug):
    """One-time download for a target: emulated-aarch64 fetches an arm64 Debian userland and the runtimes' wheels."""
    from edgehad.profile.emulated import setup_emulated

    where = setup_emulated(force=force, progress=lambda m: click.echo(m, err=True))
    click.echo(f"{name} is ready in {where}")
