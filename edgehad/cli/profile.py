"""``edgehad profile``."""

from __future__ import annotations

import click

from edgehad.cli.common import command_errors, debug_option, emit_json, file_input_options, json_option, progress_printer


class _Number(click.ParamType):
    """Any number as written ("4", "1e20", "nan"): its range is edgehad.profiling.job's to check, in one place
    for the CLI and the Python API, so that every out-of-range value gets the same one-line error."""

    name = "number"

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)):
            return value
        text = str(value).strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            return float(text)
        except ValueError:
            self.fail(f"{value!r} is not a number", param, ctx)


NUMBER = _Number()


def _within(setting: str) -> str:
    """The setting's range as Job declares it, for --help: "an integer in [1, 1024]"."""
    from edgehad.core.validation import allowed
    from edgehad.profiling.job import SETTINGS_SCHEMA

    return allowed(SETTINGS_SCHEMA["properties"][setting])


@click.command()
@click.argument("files", nargs=-1, required=True, metavar="FILE [FILE ...]")
@click.option("--runtime", type=click.Choice(["auto", "ort", "tflite"]), default="auto", show_default=True,
              help="auto picks onnxruntime for .onnx and LiteRT for .tflite.")
@click.option("--threads", type=NUMBER, default=1, show_default=True, help=f"Runtime threads, {_within('threads')}.")
@click.option("--warmup", type=NUMBER, default=10, show_default=True,
              help=f"Untimed runs before the timed ones, {_within('warmup')}.")
@click.option("--runs", type=NUMBER, default=None, help=f"Timed runs, {_within('runs')} [default: 100].")
@click.option("--seconds", type=NUMBER, default=None,
              help=f"Time budget for the timed runs, instead of --runs: {_within('seconds')}.")
@click.option("--op-profile", is_flag=True, help="Per-op time breakdown (onnxruntime; op counts for TFLite).")
@click.option("--seed", type=NUMBER, default=0, show_default=True,
              help=f"Seed of the random inputs, {_within('seed')}.")
@click.option("--data", "data", default=None, metavar="SPEC",
              help="Feed validation samples of this data spec (e.g. digits) instead of random inputs.")
@click.option("--target", default=None, metavar="NAME",
              help="Device description from targets/ for the roofline (see `edgehad targets`); "
                   "emulated-aarch64 runs ARM builds of the runtimes here under qemu.")
@click.option("--host", default=None, metavar="ssh://user@host[:port]|NAME[,...]",
              help="Measure on these devices over SSH (names from ~/.config/edgehad/hosts.toml, or the file "
                   "$EDGEHAD_HOSTS_FILE names); "
                   "several hosts run at once.")
@click.option("--ep", "provider", type=click.Choice(["cpu", "cuda", "tensorrt"]), default="cpu", show_default=True,
              help="onnxruntime execution provider.")
@click.option("--precision", type=click.Choice(["fp32", "fp16"]), default="fp32", show_default=True,
              help="fp16: TensorRT's fp16 mode (with --ep tensorrt only).")
@click.option("--power", is_flag=True, help="Jetson: report tegrastats' power rails too.")
@click.option("--timeout", type=NUMBER, default=None,
              help=f"Seconds allowed per file, start to result: {_within('timeout')}.")
@click.option("--report", "report", default=None, metavar="DIR",
              help="Also write an offline HTML report with plots to DIR/index.html.")
@file_input_options
@json_option
@debug_option
@command_errors
def profile(files, runtime, threads, warmup, runs, seconds, op_profile, seed, data, target, host, provider,
            precision, power, timeout, report, input_shape, inputs, as_json, debug):
    """Latency (init, first, p50/p90/p99), throughput and peak memory of each FILE (.onnx, .tflite).

    Each file runs in its own fresh process, so peak RSS is that file's alone.
    With two or more files, p50 is also given as a ratio to the first file's.
    A file's symbolic dims are never guessed: --input-shape NAME=1x3x640x640 sizes the random
    inputs, --inputs FILE.npz feeds arrays by input name (exit 2 without either).
    """
    from edgehad.api import profile as api_profile
    from edgehad.core.errors import UserInputError

    if runs is not None and seconds is not None:
        raise UserInputError("give --runs or --seconds, not both")

    progress = progress_printer()

    counted = {} if runs is None else {"runs": runs}  # no --runs: the API's default count
    results = api_profile(list(files), runtime=runtime, threads=threads, warmup=warmup, **counted, seconds=seconds,
                          op_profile=op_profile, seed=seed, provider=provider, precision=precision, power=power,
                          timeout=timeout, host=host, target=target, report=report, data=data, progress=progress,
                          input_shape=list(input_shape) or None, inputs=inputs)
    if as_json:
        emit_json(results)
    else:
        _print(results)


def _ms(value) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if value < 1 else f"{value:.2f}" if value < 100 else f"{value:.0f}"


def _where(r: dict) -> str:
    """host, and the target compared with: 'local', 'pi4 ~ rpi4', 'emulated-aarch64 (emulated)'."""
    host, target = r.get("host") or "local", r.get("target")
    label = host if not target or target == host else f"{host} ~ {target}"
    return f"{label} (emulated)" if r.get("emulated") else label


def _roof(r: dict) -> str:
    roof = r.get("roofline")
    if not roof or roof.get("percent_of_roofline") is None:
        return "-"
    # no memory bandwidth (local before calibration): the compute roof alone; local's peak may be an estimate
    why = roof.get("bound") or "compute roof only"
    source = f", {roof['peak_source']} peak" if roof.get("peak_source") else ""
    return f"{roof['percent_of_roofline']:.0f}% ({why}{source})"


def _print(results: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Console(highlight=False)
    first = results[0]
    runs = ", ".join(sorted({str(r["runs"]) for r in results}))
    machines = {(r["machine"]["arch"], r["machine"]["cpu"] or "unknown CPU") for r in results}
    out.print(f"{'; '.join(f'{a}, {c}' for a, c in sorted(machines))}: {first['threads']} thread(s), "
              f"{first['warmup']} warm-up, {runs} timed runs. Times in ms; peak RSS of the process and "
              f"its rise (Δ) over the loaded runtime, in MB; roofline: % of the target's lower bound reached.")
    if any(r.get("emulated") for r in results):
        out.print("[bold yellow]emulated[/]: ARM runtimes under qemu: outputs are real, timings mean nothing.")
    several_hosts = len({r.get("host") for r in results}) > 1
    table = Table(show_edge=False, padding=(0, 1), pad_edge=False)
    columns = ["file", "where", "init", "first", "p50", "p90", "p99", "mean±std", "inf/s", "RSS", "Δ", "KiB",
               "roofline"]
    if len(results) > 1:
        columns.append("p50 ×")
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i < 2 else "right", no_wrap=True)
    for r in results:
        lat = r["latency_ms"]
        row = [f"{r['path']} [dim]({r['runtime']}/{r['provider']})[/]", _where(r), _ms(r["init_ms"]),
               _ms(r["first_ms"]), _ms(lat["p50"]), _ms(lat["p90"]), _ms(lat["p99"]),
               f"{_ms(lat['mean'])}±{_ms(lat['std'])}",
               f"{r['throughput_ips']:,.0f}" if r["throughput_ips"] else "-", f"{r['peak_rss_mb']:.1f}",
               f"{r['rss_delta_mb']:.1f}", f"{r['size_bytes'] / 1024:.1f}", _roof(r)]
        if len(results) > 1:  # against the first file on the same host: across hosts the devices differ
            base = next(b for b in results if b.get("host") == r.get("host"))["latency_ms"]["p50"]
            row.append(f"{lat['p50'] / base:.2f}" if base else "-")
        table.add_row(*row)
    # never squeeze numbers into ellipses: a narrow terminal wraps the long lines instead
    needed = Console(width=1000).measure(table).maximum
    wide = Console(highlight=False, width=max(out.width, needed))
    wide.print(table)
    if several_hosts:
        out.print("p50 × is against the first file measured on the same host.")
    for r in results:
        _print_extras(out, r)


def _print_extras(out, r: dict) -> None:
    from rich.table import Table

    where = f" on {r['host']}" if r.get("host") not in (None, "local") else ""
    if r.get("ops"):
        out.print(f"[bold]{r['path']}[/]{where}: top ops ({r.get('ops_note', '')})")
        ops = Table(show_edge=False)
        for col in ("op", "calls", "ms", "share"):
            ops.add_column(col, justify="left" if col == "op" else "right")
        for op in r["ops"][:10]:
            ops.add_row(op["op"], str(op["calls"]), _ms(op["ms"]),
                        "-" if op["share"] is None else f"{op['share']:.1%}")
        out.print(ops)
    tegra = r.get("tegrastats")
    if tegra and tegra.get("samples"):
        ram = tegra.get("ram_used_mb") or {}
        gpu = tegra.get("gpu_util_pct") or {}
        line = (f"[bold]{r['path']}[/]{where}: tegrastats, {tegra['samples']} samples: RAM used (CPU+GPU) "
                f"max {ram.get('max', 0):.0f} of {tegra.get('ram_total_mb') or 0:.0f} MB, GPU load mean "
                f"{gpu.get('mean', 0):.0f}%")
        power = tegra.get("power_total_mw")
        if power:
            line += f", power mean {power['mean']:.0f} mW (max {power['max']:.0f}, {tegra.get('power_total_source')})"
        out.print(line)
