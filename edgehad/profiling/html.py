"""The ``--report DIR`` page: one self-contained, offline HTML file with a summary table and three plots.

Everything is inline (CSS, SVG drawn here, hover text in SVG ``<title>``s); the page loads nothing
from the network and runs no script, so it opens the same on an air-gapped laptop years later.
The plots are drawn by hand with edgehad.plots (axes, ticks, palette) rather than with matplotlib:
they are a few dozen rectangles, lines and labels each, and SVG stays crisp, small, themable and
resizable in the page.

Plots:

1. Latency histogram, one panel per file, with p50 (solid) and p99 (dashed) marked. Panels share
   one x axis when the files' ranges are comparable (the widest range is at most ``SHARED_AXIS_SPAN``
   times the narrowest start), so shapes and shifts compare directly; otherwise each panel has its own.
2. Per-op breakdown, one panel per file: onnxruntime's kernel time per op type (ms per inference),
   or for TFLite, whose Python runtime has no per-op timer, the number of ops of each type.
3. Roofline (Williams, Waterman, Patterson, "Roofline: an insightful visual performance model",
   CACM 2009): attainable performance P(I) = min(peak, bandwidth * I) on log-log axes, where I is the
   operational intensity in ops per byte moved and an op is a multiply or an add (one MAC = 2 ops,
   as in targets/schema.toml). A file's achieved point is (2 * MACs / bytes, 2 * MACs / measured p50);
   each op of the model is drawn at its own intensity on the roof, i.e. at its lower-bound speed.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from edgehad import plots
from edgehad.core.errors import UserInputError
from edgehad.core.files import atomic_path
from edgehad.plots import (FONT, Axis, axes as _axes, colour as _colour, escape as _e, number as _num, page,
                           svg as _svg, text_width as _text_width, tick_label as _tick_label)

SHARED_AXIS_SPAN = 3.0   # share the histogram x axis when max / min of all drawn latencies is at most this
TOP_OPS = 12             # bars per op panel; the rest are summed into one "other" bar


def write_report(results: list[dict], out_dir: Path) -> Path:
    """Write ``out_dir/index.html`` for the profile documents ``results``; return its path.

    The page is written with ``edgehad.core.files.atomic_path`` (a temporary file in ``out_dir``,
    renamed into place), so a failed run never leaves a half-written page (nor replaces a good one).
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserInputError(f"`report` {out_dir}: exists and is not a folder; give a folder path")
    if not results:
        raise UserInputError("nothing to report: no profile results")
    page = render(results)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "index.html"
    with atomic_path(target) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return target


def render(results: list[dict]) -> str:
    """The whole page as a string."""
    labels = _labels(results)
    body = [_header(results), _summary(results, labels), _latency_figure(results, labels),
            _ops_figure(results, labels), _roofline_figure(results, labels), _extras(results, labels)]
    return page(f"edgehad profile: {', '.join(labels)}", CSS, body)


# -- formatting -------------------------------------------------------------------------------
def _size(n_bytes) -> str:
    if n_bytes is None:
        return "–"
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n_bytes >= scale:
            return f"{_num(n_bytes / scale)} {unit}"
    return f"{n_bytes} B"


def _labels(results: list[dict]) -> list[str]:
    """A short name per document: the file's base name, made unique with the host or the full path."""
    names = [os.path.basename(str(r.get("path", "?"))) for r in results]
    hosts = {r.get("host") for r in results}
    if len(hosts) > 1:
        names = [f"{r.get('host')}: {n}" for r, n in zip(results, names)]
    if len(set(names)) < len(names):
        names = [f"{r.get('host')}: {r.get('path')}" if len(hosts) > 1 else str(r.get("path")) for r in results]
    if len(set(names)) < len(names):
        names = [f"{n} #{i + 1}" for i, n in enumerate(names)]
    return names


# -- header and tables --------------------------------------------------------------------
def _machine_line(m: dict) -> str:
    parts = [m.get("device_model"), m.get("cpu"), m.get("arch")]
    text = ", ".join(str(p) for p in parts if p)
    if m.get("cores"):
        text += f", {m['cores']} cores"
    if m.get("python"):
        text += f", Python {m['python']}"
    return text or "unknown machine"


def _header(results: list[dict]) -> str:
    first = results[0]
    places = {}
    for r in results:  # one line per host, in the order first seen
        places.setdefault(r.get("host") or "local", r)
    rows = []
    for host, r in places.items():
        target = r.get("target") or "none (no roofline)"
        source = (r.get("roofline") or {}).get("peak_source") if isinstance(r.get("roofline"), dict) else None
        rows.append(f"<tr><th>{_e(host)}</th><td>{_e(_machine_line(r.get('machine') or {}))}"
                    f" · target <b>{_e(target)}</b>" + (f" (peak: {_e(source)})" if source else "") + "</td></tr>")
    runs = sorted({r.get("runs") for r in results if r.get("runs") is not None})
    threads = sorted({r.get("threads") for r in results if r.get("threads") is not None})
    warmups = sorted({r.get("warmup") for r in results if r.get("warmup") is not None})
    runtimes = sorted({f"{r.get('runtime')} {r.get('runtime_version') or ''}".strip() + f" ({r.get('provider')})"
                       for r in results})
    inputs = sorted({str(r.get("input_source") or "random") + (f", seed {r['seed']}" if r.get("input_source")
                                                              in (None, "random") and "seed" in r else "")
                     for r in results})
    method = (f"{_join(threads)} thread(s); {_join(warmups)} untimed warm-up run(s), then {_join(runs)} timed "
              f"run(s) per file, each file in its own fresh process; only the runtime's run call is timed. "
              f"Runtimes: {', '.join(runtimes)}. Inputs: {', '.join(inputs)}. Peak RSS is the process's peak "
              f"resident memory as the OS reports it; Δ is its rise over the loaded runtime.")
    banner = ""
    if any(r.get("emulated") for r in results):
        banner = ('<p class="banner" role="alert"><b>Emulated.</b> Some results ran under qemu user-mode emulation '
                  '(marked below): they show that the model loads and runs on ARM builds of the runtimes; '
                  'their timings mean nothing about a real device.</p>\n')
    title = "edgehad profile" + (f" · {len(results)} files" if len(results) > 1 else f" · {_e(first.get('path'))}")
    return (f'<header>\n<h1>{title}</h1>\n{banner}<table class="facts">{"".join(rows)}'
            f'<tr><th>method</th><td>{_e(method)}</td></tr></table>\n</header>\n')


def _join(values) -> str:
    return "/".join(str(v) for v in values) or "?"


def _ratio(value, base) -> str:
    if value is None or not base:
        return "–"
    return f"{value / base:.2f}×"


def _summary(results: list[dict], labels: list[str]) -> str:
    first = results[0]
    several = len(results) > 1
    head = ["", "file", "init ms", "first ms", "p50 ms", "p90 ms", "p99 ms", "mean ± std ms",
            "inf/s", "peak RSS MB", "Δ RSS MB", "size"]
    if several:
        head += ["p50 ×", "RSS ×", "size ×"]
    head += ["% of roofline"]
    rows = []
    for i, (r, label) in enumerate(zip(results, labels)):
        lat = r.get("latency_ms") or {}
        roof = r.get("roofline") or {}
        pct = roof.get("percent_of_roofline")
        bound = f'{roof["bound"]}-bound' if roof.get("bound") else "compute roof only"  # no bandwidth known
        source = f', {roof["peak_source"]} peak' if roof.get("peak_source") else ""  # local: estimate / measured
        roof_cell = (f'{_num(pct)} %<br><span class="dim">{_e(bound + source)}</span>'
                     if pct is not None else '<span class="dim">–</span>')
        emulated = ' <span class="tag">emulated</span>' if r.get("emulated") else ""
        cells = [f'<td><span class="swatch" style="background:{_colour(i)}"></span></td>',
                 f'<td class="file" title="{_e(r.get("path"))}">{_e(label)}{emulated}<br>'
                 f'<span class="dim">{_e(r.get("runtime"))} {_e(r.get("runtime_version") or "")} · '
                 f'{_e(r.get("provider"))} · {_e(r.get("host") or "local")}</span></td>']
        cells += [f"<td>{_num(v)}</td>" for v in (r.get("init_ms"), r.get("first_ms"), lat.get("p50"),
                                                  lat.get("p90"), lat.get("p99"))]
        cells.append(f"<td>{_num(lat.get('mean'))} ± {_num(lat.get('std'), 2)}</td>")
        cells += [f"<td>{_num(r.get('throughput_ips'))}</td>", f"<td>{_num(r.get('peak_rss_mb'))}</td>",
                  f"<td>{_num(r.get('rss_delta_mb'))}</td>", f"<td>{_size(r.get('size_bytes'))}</td>"]
        if several:
            cells += [f"<td>{_ratio(lat.get('p50'), (first.get('latency_ms') or {}).get('p50'))}</td>",
                      f"<td>{_ratio(r.get('peak_rss_mb'), first.get('peak_rss_mb'))}</td>",
                      f"<td>{_ratio(r.get('size_bytes'), first.get('size_bytes'))}</td>"]
        cells.append(f"<td>{roof_cell}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    note = ("Ratios are to the first file (above 1: larger/slower). " if several else "")
    note += ("% of roofline: the target's lower-bound time over the measured p50 (100 % would run at the "
             "device's peak compute or memory bandwidth).")
    return (f'<section id="summary"><h2>Summary</h2><div class="scroll"><table class="summary">'
            f'<thead><tr>{"".join(f"<th>{_e(h)}</th>" for h in head)}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div><p class="note">{_e(note)}</p></section>\n')


def _extras(results: list[dict], labels: list[str]) -> str:
    """Jetson tegrastats summaries (shared CPU/GPU memory, loads, power), when present."""
    blocks = []
    for r, label in zip(results, labels):
        tegra = r.get("tegrastats")
        if isinstance(tegra, dict) and tegra:
            blocks.append(f'<h3>{_e(label)}</h3><div class="scroll">{_tegrastats_table(tegra)}</div>')
    if not blocks:
        return ""
    return (f'<section id="device"><h2>Device memory and power (tegrastats, during the timed runs)</h2>'
            f'{"".join(blocks)}<p class="note">On a Jetson, CPU and GPU share the RAM: "RAM used" is the '
            f'whole board\'s, GPU buffers included. Power is the instantaneous reading of each rail.</p></section>\n')


# (key in edgehad.profiling.tegrastats.summarize, what a person reads)
_TEGRA_ROWS = (("ram_used_mb", "RAM used (MB, shared CPU/GPU)"), ("swap_used_mb", "swap used (MB)"),
               ("gpu_util_pct", "GPU load (%)"), ("gpu_freq_mhz", "GPU clock (MHz)"),
               ("cpu_util_pct", "CPU load (%, per core reading)"), ("emc_util_pct", "memory controller load (%)"),
               ("power_total_mw", "power, total (mW)"))


def _tegrastats_table(t: dict) -> str:
    def cells(spread):
        if isinstance(spread, dict):
            return "".join(f"<td>{_num(spread.get(k))}</td>" for k in ("min", "mean", "max"))
        return f'<td colspan="3">{_e(_num(spread) if isinstance(spread, float) else spread)}</td>'

    rows, known = [], {"samples", "skipped", "ram_total_mb", "temps_c", "power_mw", "power_input_rail",
                       "power_total_source"}
    for key, name in _TEGRA_ROWS:
        known.add(key)
        if t.get(key) is None:
            continue
        if key == "ram_used_mb" and t.get("ram_total_mb"):
            name += f" of {_num(t['ram_total_mb'])}"
        if key == "power_total_mw" and t.get("power_total_source"):
            name += f" ({t['power_total_source']})"
        rows.append(f"<tr><th>{_e(name)}</th>{cells(t[key])}</tr>")
    for rail, spread in sorted((t.get("power_mw") or {}).items()):
        rows.append(f"<tr><th>{_e(f'power, rail {rail} (mW)')}</th>{cells(spread)}</tr>")
    for sensor, celsius in sorted((t.get("temps_c") or {}).items()):
        rows.append(f"<tr><th>{_e(f'temperature {sensor} (°C, highest)')}</th>{cells(celsius)}</tr>")
    for key, value in _flatten({k: v for k, v in t.items() if k not in known and v is not None}):
        rows.append(f"<tr><th>{_e(key)}</th>{cells(value)}</tr>")  # fields of a newer summary, shown as they come
    samples = f"{t.get('samples', '?')} samples" + (f", {t['skipped']} unreadable lines" if t.get("skipped") else "")
    return (f'<table class="summary tegra"><thead><tr><th>{_e(samples)}</th><th>min</th><th>mean</th>'
            f'<th>max</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')


def _flatten(value, prefix: str = ""):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _flatten(v, f"{prefix}{k}" if not prefix else f"{prefix}.{k}")
    elif isinstance(value, (list, tuple)):
        yield prefix, ", ".join(_num(v) if isinstance(v, float) else str(v) for v in value)
    else:
        yield prefix, value


# -- page parts ---------------------------------------------------------------------------------
def _legend(labels: list[str], indices: list[int] | None = None) -> str:
    indices = list(range(len(labels))) if indices is None else indices
    items = "".join(f'<li><span class="swatch" style="background:{_colour(i)}"></span>{_e(labels[i])}</li>'
                    for i in indices)
    return f'<ul class="legend">{items}</ul>'


def _figure(fig_id: str, title: str, panels: list[str], caption: str, legend: str = "", wide: bool = False) -> str:
    grid = "panels wide" if wide else "panels"
    inner = f'<div class="{grid}">{"".join(panels)}</div>' if panels else ""
    return (f'<section><h2>{_e(title)}</h2><figure class="plot" id="{fig_id}">{legend}{inner}'
            f'<figcaption>{caption}</figcaption></figure></section>\n')


# -- plot 1: latency histograms --------------------------------------------------------------------
def _histogram_range(samples: list[float], lat: dict) -> tuple[float, float]:
    """Drawn x range: the fastest run to the slowest, unless a few slow runs would squash the rest.

    A context switch or a page fault makes a few runs several times slower than the others; drawn
    to scale, they would leave the whole body of the histogram in one bar. The axis then ends at
    p50 + 6 spreads (spread: the larger of p90 - p50, p50 - min and 2 % of p50) and the runs beyond
    it are counted in the panel's note.
    """
    lo, hi = min(samples), max(samples)
    p50 = lat.get("p50", sorted(samples)[len(samples) // 2])
    spread = max(lat.get("p90", p50) - p50, p50 - lo, 0.02 * p50)
    return lo, min(hi, p50 + 6 * spread)


def _latency_figure(results: list[dict], labels: list[str]) -> str:
    data = []
    for i, r in enumerate(results):
        samples = [s for s in (r.get("samples_ms") or []) if s is not None and math.isfinite(s)]
        if samples:
            data.append((i, samples, r.get("latency_ms") or {}))
    if not data:
        return _figure("latency-histogram", "Latency distribution", [],
                       "No per-run samples in these results (samples_ms is missing).")
    ranges = [_histogram_range(s, lat) for _, s, lat in data]
    lo, hi = min(a for a, _ in ranges), max(b for _, b in ranges)
    shared = lo > 0 and hi / lo <= SHARED_AXIS_SPAN
    panels = [_histogram_panel(i, labels[i], samples, lat, (lo, hi) if shared else rng)
              for (i, samples, lat), rng in zip(data, ranges)]
    axis_note = ("" if len(data) == 1 else "All panels share one x axis." if shared else
                 "Each panel has its own x axis (the files' latencies differ too much for one); "
                 "compare their p50 in the summary table.")
    caption = (f"Latency of every timed run (ms), one panel per file: solid line p50, dashed p99. {axis_note} "
               f"Hover a bar for its range and count.")
    no_samples = [labels[i] for i in range(len(results)) if i not in {d[0] for d in data}]
    if no_samples:
        caption += f" No per-run samples for {', '.join(no_samples)}."
    return _figure("latency-histogram", "Latency distribution", panels, _e(caption))


def _histogram_panel(i: int, label: str, samples: list[float], lat: dict, rng: tuple[float, float]) -> str:
    width, height = 460, 250
    left, right, top, bottom = 62, width - 14, 30, height - 44
    lo, hi = rng
    if hi <= lo:
        lo, hi = lo * 0.95, hi * 1.05 if hi > 0 else 1.0
    n_bins = max(12, min(60, int(round(3 * math.sqrt(len(samples))))))
    step = (hi - lo) / n_bins
    counts = [0] * n_bins
    outside = 0
    for s in samples:
        k = int((s - lo) / step) if step > 0 else 0
        if k == n_bins and s <= hi * (1 + 1e-12):
            k = n_bins - 1
        if 0 <= k < n_bins:
            counts[k] += 1
        else:
            outside += 1
    x = Axis(lo, hi, left, right)
    y = Axis(0, max(counts) * 1.12 or 1, bottom, top)
    body = [f'<text class="title" x="{left}" y="18">{_e(label)}</text>',
            _axes(x, y, "latency per run (ms)", "runs", grid=True)]
    colour = _colour(i)
    bars = []
    for k, c in enumerate(counts):
        if not c:
            continue
        a, b = lo + k * step, lo + (k + 1) * step
        x0, x1 = x(a), x(b)
        bars.append(f'<rect class="bar" data-count="{c}" x="{x0:.2f}" y="{y(c):.2f}" '
                    f'width="{max(x1 - x0 - 0.6, 0.8):.2f}" '
                    f'height="{y(0) - y(c):.2f}" fill="{colour}"><title>{_e(f"{_num(a)}–{_num(b)} ms: {c} runs")}'
                    f'</title></rect>')
    body.append(f'<g class="bars">{"".join(bars)}</g>')
    marks = []
    for row, (key, dash) in enumerate((("p50", ""), ("p99", ' stroke-dasharray="5 3"'))):
        v = lat.get(key)
        if v is None:
            continue
        text = f"{key} {_num(v)} ms"
        ty = top + 13 + 14 * row  # one row per mark so their labels never overlap
        if v > hi:  # beyond the axis: say so at the right edge instead of drawing it somewhere wrong
            marks.append(f'<text class="marklabel" x="{right - 4:.1f}" y="{ty:.1f}" text-anchor="end">'
                         f'{_e(text)} →</text>')
            continue
        px = x(max(v, lo))
        room_right = right - px > _text_width(text) + 8  # the label sits on the side of its line with room
        tx, anchor = (px + 4, "start") if room_right else (px - 4, "end")
        marks.append(f'<line class="mark" x1="{px:.2f}" y1="{top:.1f}" x2="{px:.2f}" y2="{bottom:.1f}"{dash}>'
                     f'<title>{_e(text)}</title></line>'
                     f'<text class="marklabel" x="{tx:.1f}" y="{ty:.1f}" text-anchor="{anchor}">{_e(text)}</text>')
    body.append("".join(marks))
    notes = f"n = {len(samples)}"
    if outside:
        notes += f"; {outside} slower beyond the axis (max {_num(max(samples))} ms)"
    body.append(f'<text class="dim" x="{right}" y="18" text-anchor="end">{_e(notes)}</text>')
    return _svg(width, height, "".join(body), f"latency histogram of {label}",
                f'data-runs="{len(samples)}" data-outside="{outside}"')


# -- plot 2: per-op breakdown ----------------------------------------------------------------------
def _ops_figure(results: list[dict], labels: list[str]) -> str:
    panels, notes, missing = [], [], []
    estimated = False
    for i, (r, label) in enumerate(zip(results, labels)):
        ops = [o for o in (r.get("ops") or []) if isinstance(o, dict) and o.get("op") is not None]
        if not ops:
            missing.append(label)
            continue
        timed = all(o.get("ms") is not None for o in ops)
        panels.append(_ops_panel(i, label, ops, "ms" if timed else "count"))
        if r.get("ops_note"):
            notes.append(f"{label}: {r['ops_note']}.")
        roof_ops = (r.get("roofline") or {}).get("ops") if isinstance(r.get("roofline"), dict) else None
        if not timed and roof_ops:  # no measured per-op time: the roofline's per-op estimate is the next best
            panels.append(_ops_panel(i, label, _by_op_type(roof_ops), "estimate"))
            estimated = True
    caption = ("Where the time goes, one panel per file: for onnxruntime, kernel time per op type "
               "(ms per inference, share of all kernel time); for TFLite, op counts by type.")
    if estimated:
        caption += (" Hatched panels are not measured: the roofline's lower bound per op type, "
                    "max(2 × MACs / peak, bytes / bandwidth) summed over that type's ops.")
    if missing:
        caption += f" No per-op data for {', '.join(missing)}: profile with --op-profile."
    if notes:
        caption += " " + " ".join(notes)
    return _figure("op-breakdown", "Per-op breakdown", panels, _e(caption))


def _by_op_type(roof_ops: list[dict]) -> list[dict]:
    """The roofline's per-op lower bounds summed by op type, as ``ops`` entries with ``ms`` and ``share``."""
    by_type: dict = {}
    for op in roof_ops:
        entry = by_type.setdefault(op.get("op") or "?", {"op": op.get("op") or "?", "ms": 0.0, "calls": 0})
        entry["ms"] += op.get("bound_ms") or 0.0
        entry["calls"] += 1
    total = sum(e["ms"] for e in by_type.values()) or 1.0
    return [{**e, "share": e["ms"] / total} for e in by_type.values()]


_OPS_KINDS = {  # kind: (subtitle, x axis label)
    "ms": ("kernel time by op type (measured)", "ms per inference"),
    "count": ("op counts by type (no per-op timing here)", "ops in the model (count)"),
    "estimate": ("roofline lower bound by op type (estimate, not measured)", "ms per inference, lower bound"),
}


def _ops_panel(i: int, label: str, ops: list[dict], kind: str) -> str:
    timed = kind != "count"
    key = (lambda o: o["ms"]) if timed else (lambda o: o.get("calls") or 0)
    ops = sorted(ops, key=key, reverse=True)
    shown, rest = ops[:TOP_OPS], ops[TOP_OPS:]
    rows = [(o["op"], key(o), o.get("share"), o.get("calls"), o.get("nodes")) for o in shown]
    if rest:
        share = sum(o.get("share") or 0 for o in rest) if timed else None
        rows.append((f"{len(rest)} other op types", sum(key(o) for o in rest), share,
                     sum(o.get("calls") or 0 for o in rest), None))
    name_width = min(180, 14 + max(_text_width(str(r[0]), FONT) for r in rows))
    width, bar_h, gap = 460, 16, 5
    left, right, top = name_width, width - (110 if timed else 30), 40
    height = top + len(rows) * (bar_h + gap) + 44
    bottom = top + len(rows) * (bar_h + gap)
    vmax = max(v for _, v, *_ in rows) or 1
    x = Axis(0, vmax * 1.02, left, right)
    subtitle, unit = _OPS_KINDS[kind]
    body = [f'<defs><pattern id="hatch-{i}" width="6" height="6" patternUnits="userSpaceOnUse" '
            f'patternTransform="rotate(45)"><rect width="6" height="6" fill="{_colour(i)}" fill-opacity="0.25"/>'
            f'<line x1="0" y1="0" x2="0" y2="6" stroke="{_colour(i)}" stroke-width="3"/></pattern></defs>'
            if kind == "estimate" else "",
            f'<text class="title" x="8" y="18">{_e(label)}</text>',
            f'<text class="dim" x="8" y="32">{_e(subtitle)}</text>']
    for t in x.ticks(4):
        if not timed and t != int(t):
            continue  # counts have no fractions
        px = x(t)
        body.append(f'<line class="grid" x1="{px:.1f}" y1="{top - 4}" x2="{px:.1f}" y2="{bottom}"/>'
                    f'<text x="{px:.1f}" y="{bottom + 14}" text-anchor="middle">{_e(_tick_label(t))}</text>')
    body.append(f'<text class="label" x="{(left + right) / 2:.1f}" y="{bottom + 32}" '
                f'text-anchor="middle">{_e(unit)}</text>')
    fill = {"ms": f'fill="{_colour(i)}"', "count": f'fill="{_colour(i)}" fill-opacity="0.55"',
            "estimate": f'fill="url(#hatch-{i})" stroke="{_colour(i)}"'}[kind]
    for k, (name, v, share, calls, nodes) in enumerate(rows):
        y0 = top + k * (bar_h + gap)
        w = max(x(v) - left, 0.8)
        if timed:
            value = f"{_num(v)} ms" + (f" · {share:.0%}" if share is not None else "")
            what = "per inference" if kind == "ms" else "lower bound per inference (estimate)"
            tip = f"{name}: {_num(v)} ms {what}" + (f", {share:.1%} of the total" if share is not None else "")
            tip += (f", {calls} calls" if calls else "") + (f", {nodes} nodes" if nodes else "")
        else:
            value = f"{v}"
            tip = f"{name}: {v} op(s) in the model"
        body.append(f'<text x="{left - 6}" y="{y0 + bar_h - 4}" text-anchor="end">{_e(name)}</text>'
                    f'<rect class="bar" data-op="{_e(name)}" data-value="{v}" x="{left}" y="{y0}" '
                    f'width="{w:.2f}" height="{bar_h}" {fill}><title>{_e(tip)}</title></rect>'
                    f'<text class="value" x="{left + w + 4:.1f}" y="{y0 + bar_h - 4}">{_e(value)}</text>')
    body.append(f'<line class="tick" x1="{left}" y1="{top - 4}" x2="{left}" y2="{bottom}"/>')
    return _svg(width, height, "".join(body), f"per-op breakdown of {label}", f'data-unit="{kind}"')


# -- plot 3: roofline -------------------------------------------------------------------------------
def _roofline_figure(results: list[dict], labels: list[str]) -> str:
    with_roof = [(i, r["roofline"]) for i, r in enumerate(results) if isinstance(r.get("roofline"), dict)
                 and r["roofline"].get("peak_gops")]
    without = [labels[i] for i, r in enumerate(results) if not isinstance(r.get("roofline"), dict)]
    if not with_roof:
        if all(r.get("emulated") for r in results):
            why = "emulated timings say nothing about a device"
        elif any(r.get("target") for r in results):
            why = ("the target description has no peak for this model's precision and processor "
                   "(see `edgehad targets`)")
        else:
            why = "no target description matched this machine (give --target NAME; see `edgehad targets`)"
        return _figure("roofline", "Roofline", [], _e(f"No roofline for these results: {why}."))
    svg, skipped = _roofline_svg(with_roof, labels)
    caption = ("Attainable performance min(peak, bandwidth × intensity) for the target (log-log; the flat line "
               "is the compute roof, the slope the memory bandwidth). Filled circles: each file's achieved "
               "2 × MACs / measured p50 at its whole-model intensity 2 × MACs / bytes moved. Small open "
               "markers: each op of the model at its own intensity, on the roof (its lower bound); "
               "ops left of the ridge are memory-bound.")
    if skipped:
        caption += (f" {skipped} op(s) without multiply-accumulates (pooling, copies, reshapes) have intensity 0 "
                    f"and are not drawn.")
    if without:
        caption += f" No roofline for {', '.join(without)}."
    if any(not r.get("bandwidth_gbs") for _, r in with_roof):
        caption += (" A flat line alone: the target's memory bandwidth is unknown, so only its compute roof is "
                    "drawn (edgehad targets calibrate local measures this machine's).")
    if any(r.get("peak_source") == "estimate" for _, r in with_roof):
        caption += " A peak marked estimate is derived from the CPU's ISA and clock, not measured."
    caption = _e(caption) + " The percentages are each file's % of roofline from the summary table."
    notes = sorted({r.get("note") for _, r in with_roof if r.get("note")})
    if notes:
        caption += "".join(f'<span class="method">Method: {_e(n)}.</span>' for n in notes)
    return _figure("roofline", "Roofline", [svg], caption,
                   legend=_legend(labels, [i for i, _ in with_roof]), wide=True)


def _intensity(macs, n_bytes) -> float | None:
    if not macs or not n_bytes or macs <= 0 or n_bytes <= 0:
        return None
    return 2.0 * macs / n_bytes


def _roofline_svg(with_roof: list[tuple[int, dict]], labels: list[str]) -> tuple[str, int]:
    width, height = 760, 440
    left, right, top, bottom = 78, width - 24, 24, height - 52
    roofs = {}
    for i, roof in with_roof:  # one roof per distinct (target, precision, peaks)
        name = " ".join(str(v) for v in (roof.get("target") or "target", roof.get("processor"), roof.get("precision"))
                        if v)
        bw = float(roof["bandwidth_gbs"]) if roof.get("bandwidth_gbs") else None  # None: compute roof only
        key = (name, roof.get("peak_source"), float(roof["peak_gops"]), bw)
        roofs.setdefault(key, []).append(i)
    points, op_points, skipped = [], [], 0
    for i, roof in with_roof:
        peak = float(roof["peak_gops"])
        bw = float(roof["bandwidth_gbs"]) if roof.get("bandwidth_gbs") else None
        intensity = _intensity(roof.get("macs"), roof.get("bytes"))
        measured = roof.get("measured_ms")
        if intensity and measured:
            achieved = 2.0 * roof["macs"] / (measured * 1e-3) / 1e9
            points.append((i, intensity, achieved, roof))
        for op in roof.get("ops") or []:
            oi = _intensity(op.get("macs"), op.get("bytes"))
            if oi is None:
                skipped += 1
                continue
            op_points.append((i, oi, peak if bw is None else min(peak, bw * oi), op))
    ridges = [k[2] / k[3] for k in roofs if k[3]]
    xs = [p[1] for p in points] + [p[1] for p in op_points] + ridges or [1.0]
    ys = [p[2] for p in points] + [p[2] for p in op_points] + [k[2] for k in roofs]
    x_lo = min(min(xs) / 2, min(ridges, default=math.inf) / 8)  # always show some of the slope and the flat roof
    x_hi = max(max(xs) * 2, max(ridges, default=0) * 8)
    y_hi = max(ys) * 2
    y_lo = max(min(min(ys) / 2, min((k[3] * x_lo for k in roofs if k[3]), default=math.inf)), y_hi * 1e-6)
    x = Axis(x_lo, x_hi, left, right, log=True)
    y = Axis(y_lo, y_hi, bottom, top, log=True)
    body = [_axes(x, y, "operational intensity (ops per byte moved; 1 MAC = 2 ops)", "performance (GOP/s)")]
    body.append(f'<clipPath id="roof-clip"><rect x="{left}" y="{top}" width="{right - left}" '
                f'height="{bottom - top}"/></clipPath><g clip-path="url(#roof-clip)">')
    for (target, source, peak, bw), members in roofs.items():
        colour = _colour(members[0]) if len(roofs) > 1 else "#333"
        name = target
        peak_text = f"{_num(peak)} GOP/s peak" + (f" ({source})" if source else "")  # local: estimate / measured
        if bw is None:  # no memory roof known: the compute roof alone, across the whole plot
            path = f"M{x(x_lo):.1f},{y(peak):.1f} L{x(x_hi):.1f},{y(peak):.1f}"
            body.append(f'<path class="roof" d="{path}" stroke="{colour}"><title>{_e(name)}: {_e(peak_text)}, '
                        f'memory bandwidth unknown</title></path>')
            body.append(f'<text class="roofl" x="{x(x_hi) - 6:.1f}" y="{y(peak) - 6:.1f}" text-anchor="end">'
                        f'{_e(name)}: {_e(peak_text)}</text>')
            continue
        ridge = peak / bw
        a = x_lo
        path = f"M{x(a):.1f},{y(bw * a):.1f} L{x(ridge):.1f},{y(peak):.1f} L{x(x_hi):.1f},{y(peak):.1f}"
        body.append(f'<path class="roof" d="{path}" stroke="{colour}"><title>{_e(name)}: {_e(peak_text)}, '
                    f'{_num(bw)} GB/s, ridge at {_num(ridge)} ops/byte</title></path>')
        label_x = min(x(x_hi) - 6, max(x(ridge) + 6, left + 6))
        body.append(f'<text class="roofl" x="{label_x:.1f}" y="{y(peak) - 6:.1f}" text-anchor="end">'
                    f'{_e(name)}: {_e(peak_text)}</text>')
        mid = math.sqrt(max(x_lo, y_lo / bw) * ridge)  # geometric middle of the visible slope
        ang = math.degrees(math.atan2(y(bw * ridge) - y(bw * x_lo), x(ridge) - x(x_lo)))  # the slope as drawn
        body.append(f'<text class="roofl" transform="translate({x(mid):.1f},{y(bw * mid) - 6:.1f}) rotate({ang:.1f})" '
                    f'text-anchor="middle">{_e(_num(bw))} GB/s</text>')
    for i, oi, perf, op in op_points:
        name = f"{op.get('name') or '?'} ({op.get('op') or '?'})"
        tip = (f"{name}: {_num(op.get('macs'))} MACs, {_size(op.get('bytes'))} moved, {_num(oi)} ops/byte, "
               f"bound {_num(op.get('bound_ms'))} ms, {op.get('limited_by') or '?'}-bound")
        body.append(f'<circle class="opdot" data-file="{i}" cx="{x(oi):.1f}" cy="{y(perf):.1f}" r="3.2" '
                    f'stroke="{_colour(i)}">'
                    f'<title>{_e(tip)}</title></circle>')
    body.append("</g>")
    placed: list[tuple[float, float]] = []
    for i, oi, perf, roof in points:
        pct = roof.get("percent_of_roofline")
        tip = (f"{labels[i]}: {_num(perf)} GOP/s achieved at {_num(oi)} ops/byte "
               f"(measured {_num(roof.get('measured_ms'))} ms, bound {_num(roof.get('bound_ms'))} ms"
               + (f", {_num(pct)} % of roofline" if pct is not None else "") + ")")
        cx, cy = x(oi), y(perf)
        body.append(f'<circle class="achieved" data-file="{i}" data-gops="{perf:.6g}" cx="{cx:.1f}" cy="{cy:.1f}" '
                    f'r="7" fill="{_colour(i)}"><title>{_e(tip)}</title></circle>')
        if pct is not None:
            ly = cy + 4
            while any(abs(px - cx) < 60 and abs(py - ly) < 13 for px, py in placed):  # keep labels apart
                ly += 13
            placed.append((cx, ly))
            body.append(f'<text class="pointl" x="{cx + 10:.1f}" y="{ly:.1f}" style="fill:{_colour(i)}">'
                        f'{_e(_num(pct))} %</text>')
    return _svg(width, height, "".join(body), "roofline"), skipped


CSS = """
:root { --fg: #1d1d1f; --dim: #5f6368; --line: #d6d6d6; --bg: #fbfbfa; --card: #ffffff; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
       font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
main { max-width: 1240px; margin: 0 auto; padding: 18px 16px 40px; }
h1 { font-size: 1.5rem; margin: 0 0 10px; overflow-wrap: anywhere; }
h2 { font-size: 1.15rem; margin: 28px 0 8px; }
h3 { font-size: 1rem; margin: 14px 0 6px; overflow-wrap: anywhere; }
section, header { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px;
                  margin-top: 16px; }
section > h2 { margin-top: 0; }
.banner { background: #fff4d6; border: 1px solid #e0b23a; border-radius: 6px; padding: 8px 12px; margin: 8px 0; }
.tag { background: #fff4d6; border: 1px solid #e0b23a; border-radius: 4px; padding: 0 4px; font-size: .8em; }
table { border-collapse: collapse; }
.facts th { text-align: left; vertical-align: top; padding: 2px 12px 2px 0; color: var(--dim); font-weight: 600;
            white-space: nowrap; }
.facts td { padding: 2px 0; overflow-wrap: anywhere; }
.scroll { overflow-x: auto; }
.summary { font-variant-numeric: tabular-nums; font-size: .92rem; width: 100%; }
.summary th, .summary td { padding: 4px 5px; border-bottom: 1px solid var(--line); text-align: right;
                           white-space: nowrap; }
.summary th { background: #f1f2f4; font-weight: 600; white-space: normal; vertical-align: bottom; }
.summary td.file, .summary th:nth-child(2) { text-align: left; }
.summary td.file { max-width: 24em; overflow: hidden; text-overflow: ellipsis; }
.summary td .dim { font-size: .85em; }
.summary.tegra { width: auto; }
.summary.tegra tbody th { text-align: left; background: none; font-weight: normal; }
.summary.tegra thead th:first-child { text-align: left; }
.summary tbody tr:hover { background: #f6f8fb; }
.swatch { display: inline-block; width: 11px; height: 11px; border-radius: 2px; vertical-align: baseline;
          margin-right: 5px; }
figcaption .method { display: block; margin-top: 4px; font-size: .82rem; }
.note, figcaption { color: var(--dim); font-size: .88rem; margin: 8px 0 0; }
.dim { color: var(--dim); fill: var(--dim); }
figure { margin: 0; }
/* auto-fill keeps empty tracks, so a lone panel stays one column wide instead of filling the page */
.panels { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(100%, 400px), 1fr)); gap: 12px; }
.panels.wide { grid-template-columns: minmax(0, 1fr); max-width: 900px; }
svg.chart { width: 100%; height: auto; display: block; font-family: inherit; }
svg text.value, svg text.marklabel, svg text.pointl { font-size: 11px; }
svg text.marklabel, svg text.pointl, svg text.roofl { paint-order: stroke; stroke: #fff; stroke-width: 3px;
                                                      stroke-linejoin: round; }
svg text.roofl { fill: #333; font-size: 11px; }
svg .mark { stroke: var(--fg); stroke-width: 1.5; }
svg .roof { fill: none; stroke-width: 2.5; }
svg .opdot { fill: #fff; fill-opacity: .6; stroke-width: 1.4; }
svg .achieved { stroke: #fff; stroke-width: 1.5; }
svg .bar:hover, svg circle:hover { opacity: .75; }
.legend { list-style: none; padding: 0; margin: 0 0 8px; display: flex; flex-wrap: wrap; gap: 4px 16px;
          font-size: .9rem; }
.legend li { overflow-wrap: anywhere; }
@media (max-width: 600px) { main { padding: 8px 6px 24px; } section, header { padding: 10px 10px; }
                            body { font-size: 14px; } }
""" + plots.CSS  # the plot kit's classes (text, titles, grid, ticks, frame), shared with edgehad.osr.plot
