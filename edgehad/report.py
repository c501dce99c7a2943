"""The conversion report: ``report.json`` (stable keys, see README) and ``report.md``."""

from __future__ import annotations

import json
from pathlib import Path

from edgehad.core.files import write_text
from edgehad.core.jsondoc import dumps


def write_report(report: dict, folder: Path) -> None:
    write_text(folder / "report.json", dumps(report, indent=2) + "\n")
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
        if metric and not metric.get("measured"):
            lines += ["", f"## Task metric: not measured ({metric['reason']})"]
        elif metric:
            lines += ["", f"## Task metric: {metric['name']} on {metric['samples']} {metric['split']} samples "
                      f"of {metric['data']}", "", "| model | value |", "|---|---:|"]
            lines += [f"| {k} | {v:.4f} |" for k, v in metric.items()
                      if k not in ("measured", "name", "split", "samples", "data", "max_drop_points")]
            if "max_drop_points" in metric:
                lines.append(f"\nEvery file within {metric['max_drop_points']:g} top-1 points of the original.")
        if s.get("pruning"):
            lines += _pruning_lines(s["pruning"])
        if s.get("finetune"):
            f = s["finetune"]
            lines += ["", f"## Fine-tuning ({'distillation from the original' if f['distill'] else 'labels only'})", "",
                      f"- {f['epochs_run']} epochs run, best epoch {f['best_epoch']} kept; validation {f['metric']}: "
                      f"{f['start']:.4f} before, {f['best']:.4f} after (the best epoch is chosen on this split)"]
        quant = s.get("quantization")
        if quant:
            lines += ["", f"## Quantization: {quant['scheme']}", ""]
            lines += [f"- {k}: {v}" for k, v in quant.items() if k != "scheme"]
    lines += ["", "## Files", "",
              "| file | format | variant | size | max abs err | cosine | top-1 agreement | verified |",
              "|---|---|---|---:|---:|---:|---:|---|"]
    zipped = [a for a in report["artifacts"] if "size_zipped_bytes" in a]
    for a in report["artifacts"]:
        p = a.get("parity") or {}
        top1 = p.get("top1_agreement")
        lines.append(
            f"| {Path(a['path']).name} | {a['format']} | {a['variant']} | {_size(a['size_bytes'])} | "
            f"{_num(p.get('max_abs'))} | {_num(p.get('cosine'))} | {'n/a' if top1 is None else f'{top1:.2%}'} | "
            f"{'yes' if p.get('passed') else 'NO'} |"
        )
    if zipped:
        lines += ["", "Zipped (zlib level 6): " + ", ".join(
            f"{Path(a['path']).name} {_size(a['size_zipped_bytes'])}" for a in zipped)]
    laid = [a for a in report["artifacts"] if a.get("layout")]
    if laid:  # what an app must feed: nhwc = [N, H, W, C], channels-last
        lines += ["", "Image layout (per input; per output): " + ", ".join(
            f"{Path(a['path']).name} {_layouts(a['layout']['inputs'])}; {_layouts(a['layout']['outputs'])}"
            for a in laid)]
    return "\n".join(lines) + "\n"


def _layouts(entries: list) -> str:
    """["nhwc", None] -> "nhwc, -" (None: that tensor is no image)."""
    return ", ".join(e or "-" for e in entries) or "-"


def _pruning_lines(info: dict) -> list[str]:
    st = info["settings"]
    (p0, p1), (m0, m1) = info["params"], info["macs"]
    how = "per-group widths from a latency table" if st["target"] == "latency" else f"{st['scope']} scope"
    lines = ["", f"## Pruning: {st['ratio']:.0%} of {st['target']} by {st['criterion']} ({how}, "
             f"multiples of {st['round_to']})", "",
             f"- params {_num(p0)} -> {_num(p1)} ({info['params_ratio']:.3f}x); MACs {_num(m0)} -> {_num(m1)} "
             f"({info['macs_ratio']:.3f}x)",
             f"- compacted model vs masked model: max abs error {info['compaction_max_abs_error']:.2g}"]
    if "val_accuracy_after_prune" in info:
        lines.append(f"- val top-1 right after pruning (before recovery): {info['val_accuracy_after_prune']:.4f}")
    lines += [f"- note: {n}" for n in info.get("notes", [])]
    target = info.get("latency_target")
    if target:
        measured = "not measured" if target["measured"] is None else f"{target['measured']:.3f}x measured"
        table = target["table"]
        prefix = target.get("float_prefix")
        calibration = ", ".join(f"{c['table']:.3f}x -> {c['measured']:.3f}x" for c in target["calibration"])
        lines.append(f"- latency target ({target['scheme']} {target['format']}, {target['threads']} thread, "
                     f"{target['machine']['cpu']}): {target['asked']:.3f}x asked, {target['predicted']:.3f}x "
                     f"predicted by the per-layer table, {measured} (pruned / original); the table alone said "
                     f"{target['table_ratio']:.3f}x, calibrated on whole-model timings (table -> measured) "
                     f"{calibration or 'none'}; table of {table['layers']} layers, {table['measured_now']} "
                     f"widths measured now, cache `{table['cache']}`"
                     + (f"; leading convs kept float (keep_float speed): {prefix['original']} in the original, "
                        f"{prefix['pruned']} pruned" if prefix else "")
                     + (f"; {target['note']}" if target.get("note") else ""))
    lat = info.get("latency")
    if lat:
        lines += [f"- latency ({lat['method']}): " + "; ".join(
            f"{fmt} {v['original_ms']:.3f} -> {v['pruned_ms']:.3f} ms ({v['ratio']:.3f}x)"
            for fmt, v in lat.items() if fmt != "method")]
    if info.get("unstructured"):
        lines += ["", "| layer | nonzero weights |", "|---|---:|"]
        lines += [f"| {r['layer']} | {_num(r['params'][0])} -> {_num(r['params'][1])} |" for r in info["layers"]]
        return lines
    lines += ["", "| group | channels | kept | layers | not pruned because |", "|---|---:|---:|---|---|"]
    for g in info["groups"]:
        lines.append(f"| {g['group']} | {g['channels']} | {g.get('kept', g['channels'])} | "
                     f"{', '.join(g['layers'])} | {g.get('skipped', '')} |")
    lines += ["", "| layer | out channels | in channels | params |", "|---|---:|---:|---:|"]
    for row in info["layers"]:
        lines.append(f"| {row['layer']} | {row['out'][0]} -> {row['out'][1]} | {row['in'][0]} -> {row['in'][1]} | "
                     f"{_num(row['params'][0])} -> {_num(row['params'][1])} |")
    return lines
