"""OSCR curves of several scores, drawn to an SVG file with edgehad.plots (the profile report's kit).

Open-set classification rate (Dhamija, Günther, Boult, NeurIPS 2018): FPR of unknowns on x, CCR of
knowns on y, both linear 0..1; one colour per score (edgehad.plots.COLOURS), a legend with each
score's AUOSCR. Each curve is one ``<polyline class="curve" data-score=NAME>`` with a point per
threshold, so the file reads back exactly (xml.etree), and it opens in any browser.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgehad.core.errors import UserInputError

WIDTH, HEIGHT = 800, 600
LEFT, RIGHT, TOP, BOTTOM = 80, 30, 44, 64


def check_path(path) -> Path:
    """Refuse, before any scoring, a ``plot`` path that is not a writable ``.svg`` file."""
    from edgehad.core.files import check_writable

    path = Path(path)
    if path.suffix.lower() != ".svg":
        raise UserInputError(f"`plot` {path}: the OSCR plot is written as SVG: give a file name ending in .svg "
                             "(e.g. oscr.svg)")
    check_writable(path, "`plot`", folder=False)
    return path


def plot_oscr(curves: dict, path, title: str = "OSCR: known vs unknown") -> Path:
    """Write ``curves`` = ``{name: (fpr, ccr, auoscr)}`` as an SVG file at ``path`` (atomically)."""
    from edgehad import plots
    from edgehad.core.files import atomic_path

    path = check_path(path)
    x = plots.Axis(0, 1, LEFT, WIDTH - RIGHT)
    y = plots.Axis(0, 1, HEIGHT - BOTTOM, TOP)
    body = [f'<text class="title" x="{WIDTH / 2:.0f}" y="24" text-anchor="middle">{plots.escape(title)}</text>',
            plots.axes(x, y, "false positive rate (unknowns accepted)", "correct classification rate (knowns)")]
    legend = []
    for i, (name, (fpr, ccr, area)) in enumerate(curves.items()):
        colour = plots.colour(i)
        points = " ".join(f"{x(float(a)):.2f},{y(float(b)):.2f}" for a, b in zip(np.asarray(fpr), np.asarray(ccr)))
        body.append(f'<polyline class="curve" data-score="{plots.escape(name)}" data-auoscr="{area:.6g}" '
                    f'points="{points}" fill="none" stroke="{colour}" stroke-width="2" stroke-linejoin="round">'
                    f'<title>{plots.escape(f"{name}: AUOSCR {area:.3f}")}</title></polyline>')
        ly = y.px_lo - 14 - 18 * (len(curves) - 1 - i)  # legend, bottom right, inside the axes
        legend.append(f'<line x1="{x.px_hi - 210:.1f}" y1="{ly - 4:.1f}" x2="{x.px_hi - 184:.1f}" y2="{ly - 4:.1f}" '
                      f'stroke="{colour}" stroke-width="3"/>'
                      f'<text x="{x.px_hi - 178:.1f}" y="{ly:.1f}">{plots.escape(f"{name}  AUOSCR {area:.3f}")}</text>')
    body.append(f'<g class="legend">{"".join(legend)}</g>')
    document = plots.standalone(WIDTH, HEIGHT, "".join(body), title)
    with atomic_path(path) as tmp:
        tmp.write_text(document, encoding="utf-8")
    return path


__all__ = ["check_path", "plot_oscr"]
