"""``edgehad profile``."""

from __future__ import annotations

import click

from edgehad.cli.common import command_errors, debug_option, emit_json, json_option


@click.command()
@click.argument("files", nargs=-1, required=True, metavar="FILE [FILE ...]")
@click.option("--runtime", type=click.Choice(["auto", "ort", "tflite"]), default="auto", show_default=True,
              help="auto picks onnxruntime for .onnx and LiteRT for .tflite.")
@click.option("--threads", type=int, default=1, show_default=True, help="Runtime threads.")
@click.option("--warmup", type=int, default=10, show_default=True, help="Untimed runs before the timed ones.")
@click.option("--runs", type=int, default=None, help="Timed runs [default: 100].")
@click.option("--seconds", type=float, default=None, help="Time budget for the timed runs, instead of --runs.")
@click.option("--op-profile", is_flag=True, help="Per-op time breakdown (onnxruntime; op counts for TFLite).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random inputs.")
@click.option("--data", "data", default=None, metavar="SPEC",
              help="Feed validation samples of this data spec (e.g. digits) instead of random inputs.")
@click.option("--target", default=None, metavar="NAME",
              help="Device description from targets/ for the roofline (see `edgehad targets`); "
                   "emulated-aarch64 runs ARM builds of the runtimes here under qemu.")
@click.option("--host", default=None, metavar="ssh://user@host[:port]|NAME[,...]",
              help="Measure on these devices over SSH (names from ~/.config/edgehad/hosts.toml); "
                   "several hosts run at once.")
@click.option("--ep", "provider", type=click.Choice(["cpu", "cuda", "tensorrt"]), default="cpu", show_default=True,
              help="onnxruntime execution provider.")
@click.option("--power", is_flag=True, help="Jetson: report tegrastats' power rails too.")
@click.option("--timeout", type=float, default=None, help="Seconds allowed per file, start to result.")
@click.option("--report", "report", default=None, metavar="DIR",
              help="Also write an offline HTML report with plots to DIR/index.html.")
@json_option
@debug_option
@command_errors
def profile(files, runtime, threads, warmup, runs, seconds, op_profile, seed, data, target, host, provider,
            power, timeout, report, as_json, debug):
    """Latency (init, first, p50/p90/p99), throughput and peak memory of each FILE (.onnx, .tflite).

    Each file runs in its own fresh process, so peak RSS is that file's alone.
    With two or more files, p50 is also given as a ratio to the first file's.
    """
    import sys

    from edgehad.api import profile as api_profile
    from edgehad.core.errors import UserInputError

    if runs is not None and seconds is not None:
        raise UserInputError("give --runs or --seconds, not both")

    def progress(message: str) -> None:
        if not as_json:
            print(message, file=sys.stderr, flush=True)

    results = api_profile(list(files), runtime=runtime, threads=threads, warmup=warmup,
                          runs=100 if runs is None else runs, seconds=seconds, op_profile=op_profile, seed=seed,
                          provider=provider, power=power, timeout=timeout, host=host, target=target,
                          report=report, data=data, progress=progress)
    if as_json:
        emit_json(results)
    else:
        _print(results)


def _ms(value) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if value < 1 else f"{value:.2f}" if value < 100 else f"{value:.0f}"


def _print(results: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Console(highlight=False)
    first = results[0]
    m = first["machine"]
    runs = ", ".join(sorted({str(r["runs"]) for r in results}))
    out.print(f"{m['arch']}, {m['cpu'] or 'unknown CPU'}: {first['threads']} thread(s), "
              f"{first['warmup']} warm-up, {runs} timed runs. Times in ms; peak RSS of the process and "
              f"its rise (Δ) over the loaded runtime, in MB.")
    table = Table(show_edge=False, padding=(0, 1), pad_edge=False)
    columns = ["file", "init", "first", "p50", "p90", "p99", "mean±std", "inf/s", "RSS", "Δ", "KiB"]
    if len(results) > 1:
        columns.append("p50 ×")
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 else "right", no_wrap=True)
    for r in results:
        lat = r["latency_ms"]
        row = [f"{r['path']} [dim]({r['runtime']}/{r['provider']})[/]", _ms(r["init_ms"]), _ms(r["first_ms"]),
               _ms(lat["p50"]), _ms(lat["p90"]), _ms(lat["p99"]), f"{_ms(lat['mean'])}±{_ms(lat['std'])}",
               f"{r['throughput_ips']:,.0f}" if r["throughput_ips"] else "-", f"{r['peak_rss_mb']:.1f}",
               f"{r['rss_delta_mb']:.1f}", f"{r['size_bytes'] / 1024:.1f}"]
        if len(results) > 1:
            base = first["latency_ms"]["p50"]
            row.append(f"{lat['p50'] / base:.2f}" if base else "-")
        table.add_row(*row)
    # never squeeze numbers into ellipses: a narrow terminal wraps the long lines instead
    needed = Console(width=1000).measure(table).maximum
    wide = Console(highlight=False, width=max(out.width, needed))
    wide.print(table)
    for r in results:
        if not r.get("ops"):
            continue
        out.print(f"[bold]{r['path']}[/]: top ops ({r.get('ops_note', '')})")
        ops = Table(show_edge=False)
        for col in ("op", "calls", "ms", "share"):
            ops.add_column(col, justify="left" if col == "op" else "right")
        for op in r["ops"][:10]:
            ops.add_row(op["op"], str(op["calls"]), _ms(op["ms"]),
                        "-" if op["share"] is None else f"{op['share']:.1%}")
        out.print(ops)
