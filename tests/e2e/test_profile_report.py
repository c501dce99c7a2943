"""``edgehad profile --report DIR``: the offline HTML page, profiled for real and opened in headless Chromium.

The page must load with no console error and no network request, draw three non-empty plots whose
marks match the measured numbers, stay within a narrow window, and look like something (a screenshot
that is not blank). Chromium is driven over its DevTools pipe (tests/browser.py).
"""

from __future__ import annotations

import copy
import io
import json
import shutil

import pytest

from tests.browser import Browser, find_chromium
from tests.conftest import run_cli
from tests.e2e.test_cli_convert import assert_clean_error

FIGURES = ("latency-histogram", "op-breakdown", "roofline")
# Per figure: the marks drawn in the browser (shapes and text with a non-empty box), and their number.
DRAWN = """id => [...document.querySelectorAll(`figure#${id} svg *`)].filter(el => {
    if (!(el instanceof SVGGraphicsElement) || el.tagName === 'g' || el.closest('clipPath')) return false;
    const box = el.getBoundingClientRect();
    return box.width > 0 || box.height > 0;
}).length"""
HOSTILE_NAME = """<img src=x onerror="console.error('xss')"> & 'q'.onnx"""


@pytest.fixture(scope="module")
def models(digits_float_out):
    return digits_float_out / "model.onnx", digits_float_out / "model.tflite"


@pytest.fixture(scope="module")
def profiled(models, tmp_path_factory):
    """Both files through the Python API with ``report=DIR``, as ``edgehad profile --report`` does."""
    from edgehad.api import profile

    folder = tmp_path_factory.mktemp("report") / "api-report"
    results = profile(list(models), runs=50, warmup=3, op_profile=True, report=folder)
    return results, folder / "index.html"


@pytest.fixture(scope="module")
def browser():
    if not find_chromium():
        pytest.skip("headless Chromium is not installed (Debian: apt-get install chromium)")
    with Browser() as b:
        yield b


def drawn(page, figure: str) -> int:
    return page.evaluate(f"({DRAWN})({json.dumps(figure)})")


def pixels(png: bytes):
    """The screenshot as an H x W x 3 array (Pillow comes with litert-torch)."""
    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64)


def test_api_report_opens_clean_with_three_drawn_plots(profiled, browser, tmp_path):
    results, index = profiled
    assert index.is_file() and [p.name for p in index.parent.iterdir()] == ["index.html"]  # no temp file left
    page = browser.open(index, width=1280, height=900)
    assert page.problems() == []
    assert [u for u in page.requests() if u != index.resolve().as_uri()] == []  # offline: nothing else loaded
    counts = {f: drawn(page, f) for f in FIGURES}
    assert counts["latency-histogram"] > 40 and counts["op-breakdown"] > 30, counts
    assert counts["roofline"] > 20, counts
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")

    png = page.screenshot()
    (tmp_path / "report.png").write_bytes(png)
    img = pixels(png)
    assert img.shape[1] == 1280 and img.shape[0] > 1500  # the whole page, taller than the window
    assert img.std(axis=(0, 1)).min() > 20  # every colour channel varies: not a blank or one-colour page
    colours = {tuple(c) for c in img[::4, ::4].reshape(-1, 3).astype(int)[::7]}
    assert len(colours) > 50


def test_histogram_counts_every_run(profiled, browser):
    results, index = profiled
    page = browser.open(index)
    panels = page.evaluate("""[...document.querySelectorAll('figure#latency-histogram svg.chart')].map(svg => ({
        runs: +svg.dataset.runs, outside: +svg.dataset.outside,
        counted: [...svg.querySelectorAll('rect.bar')].reduce((n, r) => n + +r.dataset.count, 0),
        marks: [...svg.querySelectorAll('text.marklabel')].map(t => t.textContent)}))""")
    assert len(panels) == len(results) == 2
    for panel, doc in zip(panels, results):
        assert panel["runs"] == doc["runs"] == 50
        assert panel["counted"] + panel["outside"] == 50
        assert [m.split()[0] for m in panel["marks"]] == ["p50", "p99"]


def test_op_bars_match_the_profile(profiled, browser):
    results, index = profiled
    page = browser.open(index)
    panels = page.evaluate("""[...document.querySelectorAll('figure#op-breakdown svg.chart')].map(svg => ({
        unit: svg.dataset.unit,
        bars: [...svg.querySelectorAll('rect.bar')].map(r => [r.dataset.op, +r.dataset.value,
                                                               r.getBoundingClientRect().width])}))""")
    onnx, tflite, estimate = panels  # TFLite has no per-op timer: counts, then the roofline's estimate
    assert [p["unit"] for p in panels] == ["ms", "count", "estimate"]
    want = {o["op"]: o["ms"] for o in results[0]["ops"]}
    assert {op: v for op, v, _ in onnx["bars"]} == pytest.approx(want)
    assert {op: v for op, v, _ in tflite["bars"]} == {o["op"]: o["calls"] for o in results[1]["ops"]}
    (_, top, top_width), *rest = onnx["bars"]  # sorted slowest first; bar length proportional to time
    assert top == max(want.values()) and top_width > 100
    for _, value, width in rest:
        assert width == pytest.approx(max(top_width * value / top, 0.8), abs=1.0)
    bound = {}
    for op in results[1]["roofline"]["ops"]:
        bound[op["op"]] = bound.get(op["op"], 0.0) + op["bound_ms"]
    assert {op: v for op, v, _ in estimate["bars"]} == pytest.approx(bound)
    assert "counts" in page.evaluate("document.querySelector('figure#op-breakdown').textContent")


def test_roofline_points_are_the_measured_files(profiled, browser):
    results, index = profiled
    roofs = [r["roofline"] for r in results]
    assert all(roofs), "profile on this machine names target 'local', so each file has a roofline"
    page = browser.open(index)
    achieved = page.evaluate("""[...document.querySelectorAll('figure#roofline circle.achieved')].map(c =>
        [+c.dataset.file, +c.dataset.gops])""")
    assert [i for i, _ in achieved] == [0, 1]
    for (_, gops), roof in zip(achieved, roofs):
        assert gops == pytest.approx(2 * roof["macs"] / (roof["measured_ms"] * 1e-3) / 1e9, rel=1e-5)
    assert page.evaluate("document.querySelectorAll('figure#roofline path.roof').length") >= 1
    assert page.evaluate("document.querySelectorAll('figure#roofline circle.opdot').length") >= 3


def test_narrow_window_keeps_the_page_inside(profiled, browser):
    results, index = profiled
    page = browser.open(index, width=380, height=800)
    assert page.problems() == []
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert all(drawn(page, f) > 10 for f in ("latency-histogram", "op-breakdown"))
    widths = page.evaluate("[...document.querySelectorAll('svg.chart')].map(s => s.getBoundingClientRect().width)")
    assert widths and max(widths) <= 380


def test_cli_report_escapes_file_names(models, browser, tmp_path):
    odd = tmp_path / HOSTILE_NAME
    shutil.copy(models[0], odd)
    folder = tmp_path / "cli report"
    result = run_cli("profile", odd, "--runs", "20", "--report", folder)
    assert result.returncode == 0, result.stderr[-3000:]
    index = folder / "index.html"
    assert index.is_file()
    text = index.read_text()
    assert "<img" not in text and "&lt;img src=x onerror=" in text
    page = browser.open(index)
    assert page.problems() == []  # the name's onerror never ran, and no image was requested
    assert page.evaluate("document.querySelectorAll('img').length") == 0
    assert HOSTILE_NAME in page.evaluate("document.querySelector('#summary').textContent")
    assert drawn(page, "latency-histogram") > 10
    # without --op-profile the op figure says how to get it instead of drawing nothing silently
    assert "--op-profile" in page.evaluate("document.querySelector('figure#op-breakdown').textContent")


def test_report_into_a_regular_file_exits_2(models, tmp_path):
    taken = tmp_path / "report.html"
    taken.write_text("keep me")
    assert_clean_error(run_cli("profile", models[0], "--runs", "2", "--report", taken),
                       "exists and is not a folder")
    assert taken.read_text() == "keep me"


def test_write_report_without_roofline_ops_or_samples(profiled, browser, tmp_path):
    """Documents from places that give less (a remote agent without --op-profile, an emulated run, a Jetson)."""
    from edgehad.core.errors import UserInputError
    from edgehad.profiling.html import write_report
    from edgehad.profiling.tegrastats import summarize

    results, _ = profiled
    docs = copy.deepcopy(results)
    for doc in docs:
        doc["roofline"] = None
        doc["ops"] = None
        doc.pop("ops_note", None)
    docs[1]["emulated"] = True
    del docs[1]["samples_ms"]
    docs[0]["tegrastats"] = summarize([
        "RAM 2448/3964MB (lfb 3x4MB) SWAP 0/1982MB (cached 0MB) CPU [9%@1479,5%@1479,off,off] EMC_FREQ 3%@1600 "
        "GR3D_FREQ 61%@921 PLL@31C CPU@34.5C GPU@32.5C POM_5V_IN 3250/3250 POM_5V_GPU 1028/1028",
        "RAM 2500/3964MB (lfb 3x4MB) SWAP 0/1982MB (cached 0MB) CPU [12%@1479,4%@1479,off,off] EMC_FREQ 4%@1600 "
        "GR3D_FREQ 70%@921 PLL@31C CPU@35C GPU@33C POM_5V_IN 3410/3330 POM_5V_GPU 1190/1109",
    ])
    out = tmp_path / "new" / "folder"
    index = write_report(docs, out)
    assert index == out / "index.html" and sorted(p.name for p in out.iterdir()) == ["index.html"]

    page = browser.open(index)
    assert page.problems() == []
    text = page.evaluate("document.body.innerText")
    assert "Emulated." in text and "emulated" in page.evaluate("document.querySelector('#summary').textContent")
    assert "profile with --op-profile" in text and "No per-run samples for model.tflite" in text
    assert "No roofline for these results: the target description has no peak" in text
    assert "RAM used (MB, shared CPU/GPU) of 3,964" in text and "POM_5V_IN" in text
    assert "2,474" in text  # mean RAM used over the two tegrastats samples
    assert page.evaluate("document.querySelectorAll('figure#latency-histogram svg.chart').length") == 1
    assert all(page.evaluate(f"!!document.querySelector('figure#{f}')") for f in FIGURES)

    good = index.read_text()
    with pytest.raises(UserInputError, match="no profile results"):
        write_report([], out)
    assert index.read_text() == good  # a failed report leaves the last good page alone
    with pytest.raises(UserInputError, match="not a folder"):
        write_report(docs, index)
