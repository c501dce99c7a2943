"""OSCR curves of several scores, drawn to a PNG with Pillow.

Drawn by hand with ``PIL.ImageDraw`` on purpose: matplotlib is not a
dependency (it would add ~40 MB for one figure). Linear axes, FPR of unknowns
on x, CCR of knowns on y, both 0..1, one colour per score, a legend with each
score's AUOSCR.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# colour-blind-safe (Okabe-Ito) colours, one per score
COLOURS = [(0, 114, 178), (213, 94, 0), (0, 158, 115), (204, 121, 167), (230, 159, 0), (86, 180, 233), (0, 0, 0)]
WIDTH, HEIGHT = 800, 600
LEFT, RIGHT, TOP, BOTTOM = 70, 30, 40, 60


def plot_oscr(curves: dict, path, title: str = "OSCR: known vs unknown") -> Path:
    """Write ``curves`` = ``{name: (fpr, ccr, auoscr)}`` as a PNG at ``path`` (atomically)."""
    from PIL import Image, ImageDraw, ImageFont

    from edgehad.core.files import atomic_path

    img = Image.new("RGB", (WIDTH, HEIGHT), "white")
    d = ImageDraw.Draw(img)
    try:
        font = ImageFont.load_default(size=13)  # a scalable font (Pillow >= 10.1)
    except TypeError:
        font = ImageFont.load_default()
    x0, x1, y0, y1 = LEFT, WIDTH - RIGHT, HEIGHT - BOTTOM, TOP

    def px(fx: float, fy: float) -> tuple[float, float]:
        return x0 + fx * (x1 - x0), y0 - fy * (y0 - y1)

    for i in range(6):  # grid and ticks every 0.2
        v = i / 5
        gx, _ = px(v, 0)
        _, gy = px(0, v)
        d.line([(gx, y0), (gx, y1)], fill=(225, 225, 225))
        d.line([(x0, gy), (x1, gy)], fill=(225, 225, 225))
        d.text((gx - 8, y0 + 6), f"{v:.1f}", fill="black", font=font)
        d.text((x0 - 30, gy - 6), f"{v:.1f}", fill="black", font=font)
    d.rectangle([x0, y1, x1, y0], outline="black")
    d.text(((x0 + x1) / 2 - 120, y0 + 28), "false positive rate (unknowns accepted)", fill="black", font=font)
    d.text((8, y1 - 28), "correct classification rate (knowns)", fill="black", font=font)
    d.text(((x0 + x1) / 2 - 80, 10), title, fill="black", font=font)
    for i, (name, (fpr, ccr, area)) in enumerate(curves.items()):
        colour = COLOURS[i % len(COLOURS)]
        points = [px(float(a), float(b)) for a, b in zip(np.asarray(fpr), np.asarray(ccr))]
        if len(points) > 1:
            d.line(points, fill=colour, width=2)
        ly = y0 - 20 - 16 * (len(curves) - 1 - i)  # legend, bottom right, inside the axes
        d.line([(x1 - 200, ly + 6), (x1 - 176, ly + 6)], fill=colour, width=3)
        d.text((x1 - 170, ly), f"{name}  AUOSCR {area:.3f}", fill="black", font=font)
    path = Path(path)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return path


__all__ = ["plot_oscr"]
