"""``edgehad convert``."""

from __future__ import annotations

import click

from edgehad.cli.common import command_errors, debug_option, emit_json, json_option, model_spec, progress_printer

# Flags whose value lands in a stage option (edgehad.core.stage): checked here against that option's schema,
# so an error names the flag the user typed (its name comes from the one table, edgehad.cli.flags.FLAGS).
# --finetune-epochs is not here: 0 means "skip the stage", which the option (>= 1) does not say, and
# edgehad.api.convert refuses a negative count itself.
STAGE_OPTIONS = {  # API keyword: (stage, option)
    "calib_samples": ("quantize", "calib_samples"),
    "prune": ("prune", "ratio"),
    "prune_round_to": ("prune", "round_to"),
    "prune_steps": ("prune", "steps"),
    "prune_blocks": ("prune", "blocks"),
    "max_accuracy_drop": ("verify", "max_accuracy_drop"),
}


@click.command()
@click.argument("model")
@click.option("--weights", type=click.Path(dir_okay=False), help="State dict: .pt/.pth (loaded with weights_only=True) or .safetensors.")
@click.option("--input-shape", multiple=True, metavar="1x3x224x224[:int64]",
              help="Example input shape (repeat for several inputs; optional dtype suffix). Default: the model's example_inputs.")
@click.option("--model-arg", multiple=True, metavar="KEY=VALUE", help="Keyword argument for the factory (value is a TOML literal).")
@click.option("--recipe", metavar="NAME|PATH", help="Conversion recipe: a converters/NAME.toml name or a .toml path.")
@click.option("--format", "formats", metavar="onnx,tflite", help="Formats to export (replaces the recipe's export stages).")
@click.option("--data", metavar="SPEC", help="Data: 'digits[?size=32&channels=3&classes=0-5]', a .npz file (x, y; or one array per model input "
                   "named as the input, e.g. input_ids, attention_mask, with an optional y) or module:function.")
@click.option("--normalize", metavar="MEAN,STD", help="Normalisation applied to --data, recorded as preprocessing.")
@click.option("--samples", type=click.IntRange(1, 10000), default=None, help="Samples to verify on (default 16).")
@click.option("--quantize", type=click.Choice(["int8", "int8-dynamic", "fp16", "none"]),
              help="Quantize: int8 static (PT2E, calibrated on --data), int8-dynamic or fp16 weights.")
@click.option("--calib", type=click.Choice(["data", "random"]), help="Calibration source; 'random' must be asked for explicitly.")
@click.option("--calib-samples", type=int, help="Calibration samples from the train split (default 256).")
@click.option("--int8-io", is_flag=True, default=None, help="TFLite int8: int8 inputs/outputs instead of float.")
@click.option("--keep-float", metavar="auto|speed|stem|LAYER,...", help="int8: keep these modules float ('stem': the first conv on <= 4 channels; 'speed': the leading convs onnxruntime runs faster in fp32, measured), or 'auto' by per-layer sensitivity.")
@click.option("--rewrite", metavar="RULE[,RULE...]", help="Rewrite rules to apply (edgehad rewrite --list).")
@click.option("--strict", is_flag=True, default=None, help="Fail when a --rewrite rule matched nothing.")
@click.option("--prune", type=float, metavar="RATIO", help="Structured pruning: remove this fraction (0.5 = half) of each channel group (or of the MACs, params or latency: --prune-target).")
@click.option("--prune-criterion", metavar="NAME", help="magnitude (default), bn-scale, taylor or learned (the last two need --data).")
@click.option("--prune-scope", type=click.Choice(["layer", "global"]), help="Same ratio per group (layer) or ranked across groups (global).")
@click.option("--prune-target", type=click.Choice(["channels", "macs", "params", "latency"]), help="What --prune's ratio counts, as the fraction removed (default channels). latency: remove that fraction of the latency on this machine (1 thread, onnxruntime, the recipe's scheme: int8 layers for int8), from a per-layer latency table measured once and cached in ~/.cache/edgehad/latency.")
@click.option("--prune-round-to", type=int, metavar="N", help="Kept channels per group: a multiple of N (default 8).")
@click.option("--prune-structure", type=click.Choice(["channels", "elements"]), help="channels (default): smaller, faster layers; elements: zeroed weights (size only, once compressed).")
@click.option("--prune-steps", type=int, metavar="N", help="Gradual pruning: N rounds with fine-tuning between them (default 1: one-shot).")
@click.option("--prune-blocks", type=float, metavar="FRACTION", help="Remove this fraction of the residual blocks (x + f(x)) first, the least influential on --data's train samples (per microsecond saved with --prune-target latency, whose ratio still counts from the whole model); alone, no channel is pruned.")
@click.option("--prune-unsafe", type=click.Choice(["skip", "stop"]), help="A group whose removal breaks the model: skip it (default) or stop.")
@click.option("--finetune-epochs", type=int, metavar="N", help="Recover accuracy after rewrite/prune: N epochs of distillation on --data, best epoch kept; 0 skips it.")
@click.option("--no-distill", "distill", flag_value=False, default=None, help="Fine-tune on labels only (no distillation from the original).")
@click.option("--max-accuracy-drop", type=float, metavar="POINTS", help="With --data: most top-1 points a file may lose against the original model (default 1.0); more fails the run.")
@click.option("--tflite-layout", type=click.Choice(["nhwc", "nchw"]),
              help="TFLite image inputs/outputs (4-D): nhwc (default), channels-last with no TRANSPOSE at the I/O (feed HxWxC arrays, as camera buffers are), or nchw as in PyTorch. Other tensors are never changed.")
@click.option("--dynamic-batch", is_flag=True, default=None,
              help="A symbolic batch: the first dim of every input is 'batch' in ONNX and -1 in TFLite (resized to what is fed); each file is verified at batch 1 and 4.")
@click.option("--osr", metavar="STATS.npz|fit", help="Add the COSTARR open-set head: the files gain a second output, known_score. Stats from `edgehad osr fit`, or 'fit' on --data's train split (needed after --prune/--rewrite/--finetune-epochs).")
@click.option("--out", default="out", show_default=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--keep-intermediate", is_flag=True, help="Also keep each variant's files as model.<variant>.onnx/.tflite.")
@json_option
@debug_option
@command_errors
def convert(model, weights, input_shape, model_arg, formats, as_json, debug, **options):
    """Convert MODEL to ONNX and TFLite, verified in onnxruntime and LiteRT.

    MODEL is path/to/file.py:factory, package.module:factory, zoo:NAME or a
    torch.export .pt2 file. Files land in --out only if every check passed.
    """
    # Every other flag's parameter is named for edgehad.api.convert's keyword (the one table,
    # edgehad.cli.flags, maps them), so ``options`` passes through whole.
    from edgehad.api import convert as api_convert
    from edgehad.core.capture import captured

    check_stage_flags(**{key: options[key] for key in STAGE_OPTIONS})
    progress = progress_printer()
    with captured():
        report = api_convert(model, **model_spec(model_arg, weights, input_shape),
                             formats=formats.split(",") if formats else None, progress=progress, **options)
    if as_json:
        emit_json(report)
    else:
        _print_summary(report)


def check_stage_flags(**given) -> None:
    """Refuse a flag value its stage option's schema refuses (``--prune-steps must be >= 1, got 0``)."""
    from edgehad.cli.flags import FLAGS
    from edgehad.core.stage import get_stage

    for param, value in given.items():
        if value is not None:
            stage, option = STAGE_OPTIONS[param]
            get_stage(stage).check_option(option, value, FLAGS[param])


def _print_summary(report: dict) -> None:
    from pathlib import Path

    from rich.console import Console
    from rich.table import Table

    out = Console(highlight=False)
    src = report["source"]
    out.print(f"[bold]{src['name']}[/]: {_num(src['params'])} params, {_num(src['macs'])} MACs; "
              f"verified on {report['samples']} samples from {report['data'] or 'seeded random inputs'}")
    for s in report["stages"]:
        if s.get("pruning"):
            p = s["pruning"]
            acc = p.get("val_accuracy_after_prune")
            out.print(f"pruned: params {_num(p['params'][0])} -> {_num(p['params'][1])} ({p['params_ratio']:.3f}x), "
                      f"MACs {p['macs_ratio']:.3f}x" + ("" if acc is None else f"; val top-1 after pruning {acc:.4f}"))
            for fmt, v in (p.get("latency") or {}).items():
                if fmt != "method":
                    out.print(f"  {fmt} latency {v['original_ms']:.3f} -> {v['pruned_ms']:.3f} ms ({v['ratio']:.3f}x, 1 thread)")
            lt = p.get("latency_target")
            if lt:
                measured = "not measured" if lt["measured"] is None else f"{lt['measured']:.3f}x measured"
                out.print(f"  latency target ({lt['scheme']} {lt['format']}): {lt['asked']:.3f}x asked, "
                          f"{lt['predicted']:.3f}x predicted by the layer table, {measured}")
        if s.get("finetune"):
            f = s["finetune"]
            out.print(f"fine-tuned: {f['epochs_run']} epochs, val {f['metric']} {f['start']:.4f} -> {f['best']:.4f}")
    metric = next((s["task_metric"] for s in report["stages"] if s.get("task_metric")), None) or {}
    measured = bool(metric.get("measured"))
    table = Table(show_edge=False)
    columns = ("file", "size", "max abs err", "cosine", "top-1 agree", *(("accuracy",) if measured else ()), "verified")
    for col in columns:
        table.add_column(col, justify="left" if col == "file" else "right")
    for a in report["artifacts"]:
        p = a["parity"] or {}
        top1 = p.get("top1_agreement")
        row = [Path(a["path"]).name, f"{a['size_bytes'] / 1024:.1f} KiB", f"{p.get('max_abs', float('nan')):.2e}",
               f"{p.get('cosine', float('nan')):.6f}", "n/a" if top1 is None else f"{top1:.0%}"]
        if measured:
            row.append(_percent(p.get("task_accuracy")))
        table.add_row(*row, "[green]yes[/]" if p.get("passed") else "[red]NO[/]")
    out.print(table)
    if measured:
        bound = f"; every file within {metric['max_drop_points']:.1f} points" if "max_drop_points" in metric else ""
        out.print(f"accuracy: top-1 on {metric['samples']} {metric['data']} val samples; original model "
                  f"{_percent(metric.get('original'))}{bound}")
    else:
        out.print(f"accuracy: not measured ({metric.get('reason', 'no verify stage')})"
                  + ("; give --data to judge it" if metric.get("reason") == "no data given" else ""))
    times = ", ".join(f"{s['name']} {s['seconds']:.1f}s" for s in report["stages"])
    out.print(f"stages: {times}")
    out.print(f"files in {report['out']}, report: {Path(report['out']) / 'report.md'}")


def _percent(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _num(n) -> str:
    return "n/a" if n is None else f"{n:,}"
