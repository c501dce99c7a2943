"""``DIR/search.html``: the search on one offline page, in the profile report's style.

One self-contained file (CSS and SVG inline, hover text in SVG ``<title>``s, no script, nothing loaded
from the network), drawn with the profile report's plot kit (edgehad.plots) and styled with its CSS
(edgehad.profiling.html.CSS), so the two pages read alike. It is rewritten with search.json on every
call (edgehad.search.results.write), to a temporary name and renamed.

- Scatters of accuracy against each cost the search measured: latency (when timed), size, and RAM
  (TFLite Micro's arena, for an MCU target). One point per measured trial: the Pareto front's members
  filled, labelled with their trial number and joined in order of the cost; other finished trials as
  open circles; trials over budget as crosses. A budget bound is a dashed line. Hovering a point gives
  the trial number, its metrics and its parameters. The front is Pareto-optimal over all objectives
  together (Deb et al., NSGA-II, IEEE TEVC 2002), so in one two-metric view a member may sit behind
  another: it wins on a metric that view does not show.
- The front's table: accuracy, the drop against the original model in points, latency and where it
  comes from (measured / emulated / estimate), size, RAM and flash when measured, parameters, and a
  link to ``front/K/recipe.toml``.
- Every trial's table: status and reason (over budget: the bound it broke; failed: the one-line reason;
  a copy of an earlier trial's recipe: which one).

A trial that is a copy of an earlier one (``same_as``) is not a point of its own: it is the same
conversion, and its original's point names it.
"""

from __future__ import annotations

from pathlib import Path

from edgehad.plots import Axis, axes, colour, escape as _e, number as _num, page, svg

PAGE_FILE = "search.html"
FRONT_COLOUR = colour(1)   # vermillion: the front, on every plot
OTHER_COLOUR = colour(0)
OVER_COLOUR = "#777"
# (metric, axis title, unit, figure id): the costs a search can measure, each plotted against accuracy
COSTS = (("latency_ms", "latency (ms, p50, 1 thread)", "ms", "accuracy-latency"),
         ("size_kb", "file size (KiB)", "KiB", "accuracy-size"),
         ("ram_kb", "RAM: TFLite Micro arena, recommended (KiB)", "KiB", "accuracy-ram"))
LOG_SPAN = 20.0  # a cost axis is log10 when its largest value is more than this many times its smallest


def write_page(doc: dict, out: Path) -> Path:
    """Write ``out/search.html`` for the search document ``doc`` (search.json), atomically."""
    from edgehad.core.files import atomic_path

    target = Path(out) / PAGE_FILE
    page = render(doc)
    with atomic_path(target) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return target


def render(doc: dict) -> str:
    """The whole page as a string."""
    from edgehad.profiling.html import CSS as REPORT_CSS

    body = [_header(doc)]
    body += [_scatter_figure(doc, *cost) for cost in COSTS]
    body += [_front_table(doc), _trials_table(doc)]
    return page(f"edgehad search: {doc.get('model')}", REPORT_CSS + CSS, body)


# -- formatting -------------------------------------------------------------------------------
def _pct(accuracy) -> str:
    return "–" if accuracy is None else f"{100 * accuracy:.1f} %"


def _params_text(params: dict) -> str:
    return ", ".join(f"{k} = {v}" for k, v in params.items()) or "no searched option"


def _latency_text(m: dict) -> str:
    if m.get("latency_ms") is None:
        return "–"
    return f"{_num(m['latency_ms'])} ms ({m.get('latency_source') or '?'})"


def measured(doc: dict) -> list[dict]:
    """The trials with metrics of their own: finished (complete or over budget), not a copy of another."""
    return [t for t in doc["trials"] if t["status"] in ("complete", "over_budget") and t.get("same_as") is None]


def _copies(doc: dict) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for t in doc["trials"]:
        if t.get("same_as") is not None:
            out.setdefault(t["same_as"], []).append(t["number"])
    return out


def _tip(t: dict, copies: list[int]) -> str:
    m = t["metrics"]
    parts = [f"accuracy {_pct(m.get('accuracy'))}"]
    if m.get("accuracy_drop") is not None:
        parts.append(f"drop {m['accuracy_drop']:.2f} pts")
    if m.get("latency_ms") is not None:
        parts.append(f"latency {_latency_text(m)}")
    parts.append(f"size {_num(m.get('size_kb'))} KiB")
    if m.get("ram_kb") is not None:
        parts.append(f"RAM {_num(m['ram_kb'])} KiB, flash {_num(m.get('flash_kb'))} KiB")
    head = f"trial {t['number']}" + (" (Pareto front)" if t["front"] else "")
    tail = f"; {t['reason']}" if t["status"] == "over_budget" and t.get("reason") else ""
    same = f"; also trial(s) {', '.join(map(str, copies))} (same recipe)" if copies else ""
    return f"{head}: {', '.join(parts)}{tail}{same}\n{_params_text(t['params'])}"


# -- header ---------------------------------------------------------------------------------------
def _header(doc: dict) -> str:
    trials = doc["trials"]
    counts = {s: sum(t["status"] == s for t in trials) for s in ("complete", "over_budget", "failed")}
    copies = sum(t.get("same_as") is not None for t in trials)
    budget = ", ".join(f"{k} {'≥' if k == 'accuracy' else '≤'} {v:g}" for k, v in (doc.get("budget") or {}).items())
    objectives = ", ".join(f"{k} ({v})" for k, v in doc["objectives"].items())
    space = doc.get("space") or {}
    where = str(doc.get("target") or "local") + (f" on {doc['host']}" if doc.get("host") else "")
    rows = [("data", doc.get("data")), ("target", where),
            ("space", f"{space.get('name')}" + (f" ({space['path']})" if space.get("path") else "")),
            ("objectives", objectives), ("budget", budget or "none"),
            ("trials", f"{len(trials)}: {counts['complete']} complete, {counts['over_budget']} over budget, "
                       f"{counts['failed']} failed" + (f"; {copies} repeated an earlier recipe" if copies else "")),
            ("Pareto front", f"{len(doc['front'])} trial(s): " + (", ".join(map(str, doc["front"])) or "none")),
            ("sampler", f"Optuna NSGA-II, seed {doc.get('seed')}, generations of {doc.get('population')}; "
                        f"study {doc.get('storage')}")]
    facts = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    return (f'<header>\n<h1>edgehad search · {_e(doc.get("model"))}</h1>\n'
            f'<table class="facts" id="facts">{facts}</table>\n</header>\n')


# -- scatters -------------------------------------------------------------------------------------
def _scatter_figure(doc: dict, metric: str, title: str, unit: str, fig_id: str) -> str:
    heading = f"Accuracy vs {title.split(' (')[0]}"
    points = [t for t in measured(doc) if t["metrics"].get(metric) is not None
              and t["metrics"].get("accuracy") is not None]
    if not points:
        if metric == "ram_kb":
            return ""  # only an MCU target has an arena; elsewhere there is nothing to say
        why = ("latency was not timed: no objective or budget reads it (add latency to the objectives)"
               if metric == "latency_ms" else "no trial was measured")
        return (f'<section><h2>{_e(heading)}</h2><figure class="plot" id="{fig_id}">'
                f'<figcaption>{_e(f"No plot: {why}.")}</figcaption></figure></section>\n')
    chart = _scatter(doc, points, metric, title)
    over = sum(t["status"] == "over_budget" for t in points)
    caption = (f"One point per measured trial ({len(points)}): filled and labelled, the Pareto front's members, "
               f"joined in order of {unit}; open circles, the other finished trials"
               + (f"; crosses, the {over} over budget" if over else "") + ". Hover a point for its trial, "
               "metrics and parameters. The front is over every objective at once, so in this view a member "
               "may sit behind another: it wins on a metric not drawn here.")
    if metric == "latency_ms":
        sources = sorted({t["metrics"].get("latency_source") or "?" for t in points})
        caption += f" Latency: {', '.join(sources)}."
        if "emulated" in sources:
            caption += " Emulated timings (qemu) say nothing about a real device."
        if "estimate" in sources:
            caption += " An estimate is the file's roofline lower bound on the target, not a timing."
    if doc.get("budget"):
        caption += " Dashed lines: the budget's bounds."
    return (f'<section><h2>{_e(heading)}</h2><figure class="plot" id="{fig_id}"><div class="panels wide">{chart}'
            f'</div><figcaption>{_e(caption)}</figcaption></figure></section>\n')


def _scatter(doc: dict, points: list[dict], metric: str, title: str) -> str:
    width, height = 760, 420
    left, right, top, bottom = 78, width - 24, 20, height - 52
    xs = [t["metrics"][metric] for t in points]
    ys = [100 * t["metrics"]["accuracy"] for t in points]
    budget = doc.get("budget") or {}
    x_bound = budget.get(metric)
    y_bound = None if budget.get("accuracy") is None else 100 * budget["accuracy"]
    x_lo, x_hi = min(xs + ([x_bound] if x_bound else [])), max(xs + ([x_bound] if x_bound else []))
    log = x_lo > 0 and x_hi / x_lo > LOG_SPAN
    if log:
        x_lo, x_hi = x_lo / 1.25, x_hi * 1.25
    else:
        pad = (x_hi - x_lo) * 0.08 or abs(x_hi) * 0.1 or 1.0
        x_lo, x_hi = max(0.0, x_lo - pad) if x_lo >= 0 else x_lo - pad, x_hi + pad
    y_vals = ys + ([y_bound] if y_bound is not None else [])
    y_pad = (max(y_vals) - min(y_vals)) * 0.1 or 0.5
    y_lo, y_hi = min(y_vals) - y_pad, min(100.0 + y_pad / 4, max(y_vals) + y_pad)
    x = Axis(x_lo, x_hi, left, right, log=log)
    y = Axis(y_lo, y_hi, bottom, top)
    body = [axes(x, y, title, "top-1 accuracy (%, val split)")]
    clip = f"clip-{metric}"
    body.append(f'<clipPath id="{clip}"><rect x="{left}" y="{top}" width="{right - left}" '
                f'height="{bottom - top}"/></clipPath><g clip-path="url(#{clip})">')
    if x_bound is not None:
        body.append(f'<line class="bound" x1="{x(x_bound):.1f}" y1="{top}" x2="{x(x_bound):.1f}" y2="{bottom}">'
                    f'<title>budget: {_e(metric)} ≤ {x_bound:g}</title></line>')
    if y_bound is not None:
        body.append(f'<line class="bound" x1="{left}" y1="{y(y_bound):.1f}" x2="{right}" y2="{y(y_bound):.1f}">'
                    f'<title>budget: accuracy ≥ {budget["accuracy"]:g}</title></line>')
    front = sorted((t for t in points if t["front"]), key=lambda t: (t["metrics"][metric], -t["metrics"]["accuracy"]))
    if len(front) > 1:
        path = " ".join(f"{'M' if i == 0 else 'L'}{x(t['metrics'][metric]):.1f},{y(100 * t['metrics']['accuracy']):.1f}"
                        for i, t in enumerate(front))
        body.append(f'<path class="frontline" d="{path}" stroke="{FRONT_COLOUR}"/>')
    body.append("</g>")
    copies = _copies(doc)
    # the front last, so its points are drawn over the others
    for t in sorted(points, key=lambda t: (t["front"], t["number"])):
        cx, cy = x(t["metrics"][metric]), y(100 * t["metrics"]["accuracy"])
        data = (f'data-trial="{t["number"]}" data-status="{_e(t["status"])}" data-front="{int(t["front"])}" '
                f'data-x="{t["metrics"][metric]:.6g}" data-accuracy="{t["metrics"]["accuracy"]:.6g}"')
        tip = f"<title>{_e(_tip(t, copies.get(t['number'], [])))}</title>"
        if t["status"] == "over_budget":
            d = (f"M{cx - 5:.1f},{cy - 5:.1f} L{cx + 5:.1f},{cy + 5:.1f} "
                 f"M{cx - 5:.1f},{cy + 5:.1f} L{cx + 5:.1f},{cy - 5:.1f}")
            body.append(f'<path class="trial over" {data} d="{d}" stroke="{OVER_COLOUR}">{tip}</path>')
        elif t["front"]:
            body.append(f'<circle class="trial front" {data} cx="{cx:.1f}" cy="{cy:.1f}" r="7" '
                        f'fill="{FRONT_COLOUR}">{tip}</circle>'
                        f'<text class="pointl" x="{cx + 9:.1f}" y="{cy - 7:.1f}">{t["number"]}</text>')
        else:
            body.append(f'<circle class="trial other" {data} cx="{cx:.1f}" cy="{cy:.1f}" r="5" '
                        f'stroke="{OTHER_COLOUR}">{tip}</circle>')
    return svg(width, height, "".join(body), f"accuracy vs {metric}, {len(points)} trials",
               f'data-metric="{metric}" data-points="{len(points)}"')


# -- tables -----------------------------------------------------------------------------------------
def _front_table(doc: dict) -> str:
    by_number = {t["number"]: t for t in doc["trials"]}
    members = [by_number[n] for n in doc["front"]]
    if not members:
        why = ("no trial met the budget" if doc.get("budget") and measured(doc) else "no trial was measured")
        return (f'<section id="front"><h2>Pareto front</h2><p class="note">{_e(f"The front is empty: {why}.")}</p>'
                f'</section>\n')
    micro = any(t["metrics"].get("ram_kb") is not None for t in members)
    timed = any(t["metrics"].get("latency_ms") is not None for t in members)
    names = list(members[0]["params"])
    head = ["trial", "accuracy", "drop (pts)", *(("latency",) if timed else ()), "size KiB",
            *(("RAM KiB", "flash KiB") if micro else ()), *names, "recipe"]
    rows = []
    for t in members:
        m = t["metrics"]
        drop = "–" if m.get("accuracy_drop") is None else f"{m['accuracy_drop']:.2f}"
        cells = [f'<td class="num">{t["number"]}</td>', f"<td>{_pct(m.get('accuracy'))}</td>",
                 f'<td title="original model: {_e(_pct(m.get("accuracy_original")))}">{drop}</td>',
                 *((f"<td>{_e(_latency_text(m))}</td>",) if timed else ()), f"<td>{_num(m.get('size_kb'))}</td>"]
        if micro:
            cells += [f"<td>{_num(m.get('ram_kb'))}</td>", f"<td>{_num(m.get('flash_kb'))}</td>"]
        cells += [f'<td class="param" title="{_e(t["params"].get(n))}">{_e(t["params"].get(n))}</td>' for n in names]
        href = f"front/{t['number']}/recipe.toml"
        cells.append(f'<td class="param"><a href="{_e(href)}">{_e(href)}</a></td>')
        rows.append(f'<tr data-trial="{t["number"]}">{"".join(cells)}</tr>')
    note = ("Drop: top-1 points lost against the original model on the same val samples (what `edgehad convert "
            "--recipe front/K/recipe.toml --data ...` is judged by). front/K/ holds member K's files and "
            "recipe.toml; `edgehad convert MODEL --recipe front/K/recipe.toml` makes the same files again.")
    return (f'<section id="front"><h2>Pareto front ({len(members)})</h2><div class="scroll">'
            f'<table class="summary searchtable"><thead><tr>{"".join(f"<th>{_e(h)}</th>" for h in head)}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div><p class="note">{_e(note)}</p></section>\n')


def _trials_table(doc: dict) -> str:
    trials = doc["trials"]
    names = list(trials[0]["params"]) if trials else []
    micro = any(t["metrics"].get("ram_kb") is not None for t in trials)
    timed = any(t["metrics"].get("latency_ms") is not None for t in trials)
    head = ["trial", "status", "accuracy", *(("latency",) if timed else ()), "size KiB",
            *(("RAM KiB",) if micro else ()), *names, "reason"]
    rows = []
    for t in trials:
        m = t["metrics"] or {}
        status = "front" if t["front"] else t["status"].replace("_", " ")
        if t.get("same_as") is not None:
            reason = f"the recipe of trial {t['same_as']}: not converted again, its record reused"
        else:
            reason = t.get("reason") or ""
        cells = [f'<td class="num">{t["number"]}</td>', f'<td><span class="status {_e(t["status"])}">'
                 f'{_e(status)}</span></td>', f"<td>{_pct(m.get('accuracy'))}</td>",
                 *((f"<td>{_e(_latency_text(m))}</td>",) if timed else ()), f"<td>{_num(m.get('size_kb'))}</td>"]
        if micro:
            cells.append(f"<td>{_num(m.get('ram_kb'))}</td>")
        cells += [f'<td class="param" title="{_e(t["params"].get(n))}">{_e(t["params"].get(n))}</td>' for n in names]
        cells.append(f'<td class="reason">{_e(reason)}</td>')
        rows.append(f'<tr class="{_e(t["status"])}" data-trial="{t["number"]}">{"".join(cells)}</tr>')
    return (f'<section id="trials"><h2>Every trial ({len(trials)})</h2><div class="scroll">'
            f'<table class="summary searchtable"><thead><tr>{"".join(f"<th>{_e(h)}</th>" for h in head)}</tr>'
            f'</thead><tbody>{"".join(rows)}</tbody></table></div><p class="note">Each trial\'s folder is '
            f'trials/K/ (recipe.toml, files/, trial.json, worker.log); search.json has every number.</p></section>\n')


CSS = """
svg .trial { cursor: default; }
svg circle.front { stroke: #fff; stroke-width: 1.5; }
svg circle.other { fill: #fff; stroke-width: 1.8; }
svg path.over { fill: none; stroke-width: 2; }
svg .frontline { fill: none; stroke-width: 2; stroke-opacity: .7; }
svg .bound { stroke: #b00020; stroke-width: 1.2; stroke-dasharray: 5 4; }
svg text.pointl { font-weight: 600; }
.searchtable td.param { text-align: left; max-width: 16em; overflow: hidden; text-overflow: ellipsis; }
.searchtable td.reason { text-align: left; white-space: normal; min-width: 16em; }
.status { border-radius: 4px; padding: 0 4px; font-size: .85em; }
.status.over_budget { background: #eee; }
.status.failed { background: #fde2e2; }
tr[data-trial] a { color: inherit; }
"""
