"""Plots drawn as SVG by hand: axes (linear or log10) with ticks, grid and titles, the frame, the palette.

edgehad's plots (the profile report's histograms, op bars and roofline, edgehad.profiling.html;
the OSCR curves, edgehad.osr.plot) are a few dozen lines, rectangles and labels each. Written as SVG
text they need no dependency (matplotlib would add ~40 MB), stay crisp at any size, embed in an HTML
page as they are and open alone in any browser. Styling is by class (``CSS`` below), so a page can
theme them through ``--fg`` / ``--dim``; a standalone file carries the same rules in a ``<style>``.
"""

from __future__ import annotations

import html
import math

# Okabe & Ito's colour-blind-safe palette (yellow left out: too faint on white).
COLOURS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"]
FONT = 12  # SVG text size in user units; a page scales each plot to its width

# The classes this kit draws with; the page (or a standalone file) defines --fg and --dim.
CSS = """
svg text { fill: var(--fg); }
svg text.title { font-weight: 600; font-size: 13px; }
svg text.label { fill: var(--dim); font-size: 12px; }
svg text.dim { fill: var(--dim); font-size: 11px; }
svg .grid { stroke: #ececec; stroke-width: 1; }
svg .tick { stroke: #777; stroke-width: 1; }
svg .frame { fill: none; stroke: #999; stroke-width: 1; }
"""
STANDALONE_CSS = (':root { --fg: #1d1d1f; --dim: #5f6368; } svg { font-family: system-ui, "DejaVu Sans", '
                  'sans-serif; background: #fff; }' + CSS)


def page(title: str, css: str, body: list[str]) -> str:
    """A whole offline HTML page: ``title`` (escaped here), inline ``css``, the ``body`` parts in a <main>."""
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f'<title>{escape(title)}</title>\n<style>{css}</style>\n</head>\n'
            f'<body>\n<main>\n{"".join(body)}</main>\n</body>\n</html>\n')


def number(value, digits: int = 3) -> str:
    """``digits`` significant digits, no exponent for everyday magnitudes, thousands separated; "–" for
    None or a value that is not finite."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if value == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    return f"{value:,.{decimals}f}"


def escape(text) -> str:
    """``text`` safe inside SVG/HTML text and attribute values."""
    return html.escape(str(text), quote=True)


def colour(i: int) -> str:
    return COLOURS[i % len(COLOURS)]


class Axis:
    """A linear or log10 map from data values to a pixel range, with tick positions and labels."""

    def __init__(self, lo: float, hi: float, px_lo: float, px_hi: float, log: bool = False):
        if log:
            lo, hi = max(lo, 1e-12), max(hi, 1e-12)
        if hi <= lo:  # one value: give it some room
            lo, hi = (lo / 2, lo * 2) if log else (lo - 0.5 if lo == 0 else lo * 0.9, lo + 0.5 if lo == 0 else lo * 1.1)
            if lo > hi:
                lo, hi = hi, lo
        self.lo, self.hi, self.px_lo, self.px_hi, self.log = lo, hi, px_lo, px_hi, log

    def __call__(self, v: float) -> float:
        if self.log:
            t = (math.log10(max(v, 1e-12)) - math.log10(self.lo)) / (math.log10(self.hi) - math.log10(self.lo))
        else:
            t = (v - self.lo) / (self.hi - self.lo)
        return self.px_lo + t * (self.px_hi - self.px_lo)

    def ticks(self, count: int = 6) -> list[float]:
        if self.log:
            first, last = math.floor(math.log10(self.lo)), math.ceil(math.log10(self.hi))
            span = math.log10(self.hi / self.lo)
            steps = (1, 2, 5) if span <= 3 else (1, 3) if span <= 5 else (1,)  # about 4 to 12 labels
            ticks = [m * 10.0 ** k for k in range(first, last + 1) for m in steps]
            return [t for t in ticks if self.lo * (1 - 1e-9) <= t <= self.hi * (1 + 1e-9)]
        raw = (self.hi - self.lo) / max(1, count)
        mag = 10 ** math.floor(math.log10(raw))
        step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
        start = math.ceil(self.lo / step - 1e-9) * step
        n = int(math.floor((self.hi - start) / step + 1e-9)) + 1
        return [start + i * step for i in range(n)]


def tick_label(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1e5 or abs(v) < 1e-3:
        exp = math.floor(math.log10(abs(v)))
        mant = v / 10 ** exp
        return (f"{mant:g}·" if abs(mant - 1) > 1e-9 else "") + f"10{_superscript(exp)}"
    return f"{v:,.6g}"


def text_width(text: str, size: float = 11) -> float:
    """Rough rendered width of ``text`` in a sans-serif font (capitals and digits wider than lower case)."""
    wide = sum(1 for ch in text if ch.isupper() or ch.isdigit() or ch in "_%mw")
    return size * (0.66 * wide + 0.52 * (len(text) - wide))


def _superscript(n: int) -> str:
    return str(n).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹"))


def axes(x: Axis, y: Axis, x_label: str, y_label: str, grid: bool = True) -> str:
    """Frame, ticks, tick labels, grid lines and axis titles for a plot area given by the two axes."""
    left, right = x.px_lo, x.px_hi
    bottom, top = y.px_lo, y.px_hi
    out = ['<g class="axes">']
    for t in x.ticks():
        px = x(t)
        if grid:
            out.append(f'<line class="grid" x1="{px:.1f}" y1="{top:.1f}" x2="{px:.1f}" y2="{bottom:.1f}"/>')
        out.append(f'<line class="tick" x1="{px:.1f}" y1="{bottom:.1f}" x2="{px:.1f}" y2="{bottom + 4:.1f}"/>'
                   f'<text x="{px:.1f}" y="{bottom + 16:.1f}" text-anchor="middle">{escape(tick_label(t))}</text>')
    for t in y.ticks(5):
        py = y(t)
        if grid:
            out.append(f'<line class="grid" x1="{left:.1f}" y1="{py:.1f}" x2="{right:.1f}" y2="{py:.1f}"/>')
        out.append(f'<line class="tick" x1="{left - 4:.1f}" y1="{py:.1f}" x2="{left:.1f}" y2="{py:.1f}"/>'
                   f'<text x="{left - 7:.1f}" y="{py + 4:.1f}" text-anchor="end">{escape(tick_label(t))}</text>')
    out.append(f'<rect class="frame" x="{left:.1f}" y="{top:.1f}" width="{right - left:.1f}" '
               f'height="{bottom - top:.1f}"/>')
    out.append(f'<text class="label" x="{(left + right) / 2:.1f}" y="{bottom + 34:.1f}" '
               f'text-anchor="middle">{escape(x_label)}</text>')
    out.append(f'<text class="label" transform="translate({left - 44:.1f},{(top + bottom) / 2:.1f}) rotate(-90)" '
               f'text-anchor="middle">{escape(y_label)}</text>')
    out.append("</g>")
    return "".join(out)


def svg(width: float, height: float, body: str, label: str, attrs: str = "") -> str:
    """One ``<svg class="chart">`` of the given view box; ``label`` is what a screen reader says."""
    return (f'<svg class="chart" viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="{escape(label)}" '
            f'{attrs} xmlns="http://www.w3.org/2000/svg" font-size="{FONT}">{body}</svg>')


def standalone(width: float, height: float, body: str, label: str, attrs: str = "") -> str:
    """A whole ``.svg`` file: the plot at its natural size, with the kit's styles inside it."""
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            + svg(width, height, f"<style>{STANDALONE_CSS}</style>{body}", label,
                  f'width="{width:.0f}" height="{height:.0f}" {attrs}'.rstrip()) + "\n")
