"""``edgehad inspect``."""

from __future__ import annotations

import click

from edgehad.cli.common import (command_errors, debug_option, emit_json, json_option, model_or_file_options,
                                model_spec)


@click.command()
@click.argument("target", metavar="FILE|MODEL")
@model_or_file_options
@json_option
@debug_option
@command_errors
def inspect(target, model_arg, weights, input_shape, inputs, as_json, debug):
    """Inputs, outputs, op histogram, params, MACs, size and quantization of FILE (.onnx, .tflite) or MODEL.

    MACs are computed at the file's input shapes; symbolic dims (a dynamic batch, height, width) are
    never guessed: give them with --input-shape NAME=1x3x640x640 or --inputs FILE.npz (exit 2 without).
    """
    from edgehad.api import inspect as api_inspect
    from edgehad.core.capture import captured

    with captured():
        info = api_inspect(target, inputs=inputs, **model_spec(model_arg, weights, input_shape))
    if as_json:
        emit_json(info)
    else:
        _print(info)


def _print(info: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Console(highlight=False)
    size = info.get("size_bytes")
    shapes = info.get("input_shapes") or {}
    at = f" at {', '.join(f'{k}={_shape(v)}' for k, v in shapes.items())}" if shapes else ""
    out.print(f"[bold]{info.get('path') or info.get('spec')}[/] ({info['format']}): {info['params']:,} params, "
              f"{(info.get('macs') or 0):,} MACs{at}, {size / 1024:.1f} KiB, "
              f"{'quantized' if info['quantized'] else 'float'}")
    # a file edgehad wrote states each tensor's layout (nchw / nhwc); shown where known
    layouts = any("layout" in t for kind in ("inputs", "outputs") for t in info[kind])
    for kind in ("inputs", "outputs"):
        table = Table(title=kind, show_edge=False, title_justify="left")
        for col in ("name", "shape", "dtype", *(("layout",) if layouts else ()), "quantization"):
            table.add_column(col)
        for t in info[kind]:
            q = t.get("quantization")
            shape = _shape(t["shape"])
            layout = (t.get("layout") or "-",) if layouts else ()
            table.add_row(str(t["name"]), shape, str(t["dtype"]), *layout,
                          f"scale={q['scale']}, zero_point={q['zero_point']}" if q else "")
        out.print(table)
    ops = ", ".join(f"{op} x{n}" for op, n in info["ops"].items())
    out.print(f"ops: {ops}")


def _shape(shape) -> str:
    """[1, 3, "height", None] -> "1x3xheightx?"; [] -> "scalar"; an unknown rank -> "?"."""
    if shape is None:
        return "?"
    return "x".join("?" if d is None else str(d) for d in shape) or "scalar"
