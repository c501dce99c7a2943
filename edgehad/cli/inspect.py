"""``edgehad inspect``."""

from __future__ import annotations

import click

from edgehad.cli.common import command_errors, debug_option, emit_json, json_option, model_options, model_spec


@click.command()
@click.argument("target", metavar="FILE|MODEL")
@model_options
@json_option
@debug_option
@command_errors
def inspect(target, model_arg, weights, input_shape, as_json, debug):
    """Inputs, outputs, op histogram, params, MACs, size and quantization of FILE (.onnx, .tflite) or MODEL."""
    from edgehad.api import inspect as api_inspect
    from edgehad.core.capture import captured

    with captured():
        info = api_inspect(target, **model_spec(model_arg, weights, input_shape))
    if as_json:
        emit_json(info)
    else:
        _print(info)


def _print(info: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Console(highlight=False)
    size = info.get("size_bytes")
    out.print(f"[bold]{info.get('path') or info.get('spec')}[/] ({info['format']}): {info['params']:,} params, "
              f"{(info.get('macs') or 0):,} MACs, {size / 1024:.1f} KiB, "
              f"{'quantized' if info['quantized'] else 'float'}")
    for kind in ("inputs", "outputs"):
        table = Table(title=kind, show_edge=False, title_justify="left")
        for col in ("name", "shape", "dtype", "quantization"):
            table.add_column(col)
        for t in info[kind]:
            q = t.get("quantization")
            shape = "?" if t["shape"] is None else "x".join(map(str, t["shape"]))
            table.add_row(str(t["name"]), shape, str(t["dtype"]),
                          f"scale={q['scale']}, zero_point={q['zero_point']}" if q else "")
        out.print(table)
    ops = ", ".join(f"{op} x{n}" for op, n in info["ops"].items())
    out.print(f"ops: {ops}")
