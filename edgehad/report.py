"""The conversion report: ``report.json`` (stable keys, see README) and ``report.md``."""

from __future__ import annotations

import json
from pathlib import Path

from edgehad.core.files import write_text


def write_report(report: dict, folder: Path) -> None:
    write_text(folder / "report.json", json.dumps(report, indent=2) + "\n")
    write_text(folder / "report.md", render_markdown(report))


def _num(n) -> str:
    if n is None:
        return "n/a"
    if isinstance(n, float):
        return f"{n:.4g}"
    return f"{n:,}"


def _size(n) -> str:
    if n is None:
        return "n/a"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def render_markdown(report: dict) -> str:
    src = report["source"]
    lines = [
        f"# edgehad conversion: {src.get('name', src.get('spec'))}",
        "",
        f"- model: `{src.get('spec')}` ({_num(src.get('params'))} params, {_num(src.get('macs'))} MACs)",
        f"- inputs: {', '.join(i['shape_text'] + ' ' + i['dtype'] for i in src.get('inputs', []))}",
        f"- verified on {report['samples']} samples from {report['data'] or 'seeded random inputs'}",
    ]
    if report.get("preprocessing"):
        lines.append(f"- preprocessing: `{json.dumps(report['preprocessing'])}`")
    lines += ["", "## Stages", "", "| stage | seconds | params | MACs |", "|---|---:|---:|---:|"]
    for s in report["stages"]:
        lines.append(f"| {s['name']} | {s['seconds']:.2f} | {_num(s['params'])} | {_num(s['macs'])} |")
    for s in report["stages"]:
        metric = s.get("task_metric")
        if metric:
            lines += ["", f"## Task metric: {metric['name']} on {metric['samples']} {metric['split']} samples", "",
                      "| model | value |", "|---|---:|"]
            lines += [f"| {k} | {v:.4f} |" for k, v in metric.items() if k not in ("name", "split", "samples")]
        quant = s.get("quantization")
        if quant:
            lines += ["", f"## Quantization: {quant['scheme']}", ""]
            lines += [f"- {k}: {v}" for k, v in quant.items() if k != "scheme"]
    lines += ["", "## Files", "",
              "| file | format | variant | size | max abs err | cosine | top-1 agreement | verified |",
              "|---|---|---|---:|---:|---:|---:|---|"]
    for a in report["artifacts"]:
        p = a.get("parity") or {}
        top1 = p.get("top1_agreement")
        lines.append(
            f"| {Path(a['path']).name} | {a['format']} | {a['variant']} | {_size(a['size_bytes'])} | "
            f"{_num(p.get('max_abs'))} | {_num(p.get('cosine'))} | {'n/a' if top1 is None else f'{top1:.2%}'} | "
            f"{'yes' if p.get('passed') else 'NO'} |"
        )
    return "\n".join(lines) + "\n"
