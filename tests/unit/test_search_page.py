"""The search page (edgehad.search.html) for a search document with every kind of trial, opened in headless Chromium.

The e2e test (tests/e2e/test_search.py) opens the page of a real search, where every trial completes;
this one renders a document that has what that small search cannot: trials over budget and failed, a
copy, timed latencies of each source, an MCU's arena, a budget, and hostile text in parameters and reasons.
"""

from __future__ import annotations

import json

import pytest

from edgehad.search.html import PAGE_FILE, measured, render, write_page

HOSTILE = """<img src=x onerror="console.error('xss')"> & 'q'"""


def _trial(number, status="complete", front=False, same_as=None, reason=None, **metrics):
    m = {"accuracy": None, "accuracy_original": 0.98, "accuracy_drop": None, "size_kb": None, "latency_ms": None,
         "latency_source": None, "ram_kb": None, "flash_kb": None, **metrics}
    if m["accuracy"] is not None:
        m["accuracy_drop"] = round(100 * (0.98 - m["accuracy"]), 4)
    return {"number": number, "status": status, "reason": reason, "front": front, "same_as": same_as,
            "params": {"[prune] ratio": 0.1 * number, "[quantize] scheme": HOSTILE if number == 2 else "int8"},
            "metrics": m if status != "failed" else {}, "constraints": None, "objective_file": None, "files": [],
            "recipe": f"/s/trials/{number}/recipe.toml", "seconds": 1.0}


def _doc() -> dict:
    timed = {"latency_source": "estimate"}
    trials = [
        _trial(0, front=True, accuracy=0.97, size_kb=40.0, latency_ms=1.5, ram_kb=9.0, flash_kb=40.0, **timed),
        _trial(1, front=True, accuracy=0.95, size_kb=20.0, latency_ms=0.9, ram_kb=8.0, flash_kb=20.0, **timed),
        _trial(2, accuracy=0.93, size_kb=30.0, latency_ms=1.2, ram_kb=8.5, flash_kb=30.0, **timed),
        _trial(3, status="over_budget", reason="over budget: ram_kb 300 > 256", accuracy=0.98, size_kb=400.0,
               latency_ms=9.0, ram_kb=300.0, flash_kb=400.0, **timed),
        _trial(4, status="failed", reason=f"TFLM has no kernel for GELU {HOSTILE}"),
        _trial(5, same_as=1, accuracy=0.95, size_kb=20.0, latency_ms=0.9, ram_kb=8.0, flash_kb=20.0, **timed),
    ]
    return {"model": f"zoo:{HOSTILE}", "data": "digits", "space": {"name": "s", "path": "/s.toml"},
            "objectives": {"accuracy": "maximize", "ram": "minimize"}, "budget": {"ram_kb": 256.0, "accuracy": 0.9},
            "target": "mcu", "host": None, "seed": 0, "population": 8, "storage": "sqlite:////s/study.db",
            "trials": trials, "front": [0, 1], "out": "/s"}


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    from tests.browser import Browser, find_chromium

    if not find_chromium():
        pytest.skip("headless Chromium is not installed (Debian: apt-get install chromium)")
    folder = tmp_path_factory.mktemp("page")
    path = write_page(_doc(), folder)
    assert path == folder / PAGE_FILE and [p.name for p in folder.iterdir()] == [PAGE_FILE]
    with Browser() as browser:
        yield path, browser.open(path, width=1280, height=900)


def test_the_page_is_offline_escaped_and_draws_each_measured_trial_once(page):
    path, p = page
    assert p.problems() == []  # no console error: the hostile text never ran
    assert [u for u in p.requests() if u != path.resolve().as_uri()] == []
    assert p.evaluate("document.querySelectorAll('img, script').length") == 0
    assert "<img" not in path.read_text()
    assert [t["number"] for t in measured(_doc())] == [0, 1, 2, 3]  # 4 failed, 5 is trial 1's copy
    for fig, metric in (("accuracy-latency", "latency_ms"), ("accuracy-size", "size_kb"), ("accuracy-ram", "ram_kb")):
        points = p.evaluate(f"""[...document.querySelectorAll('figure#{fig} .trial')].map(e =>
            [+e.dataset.trial, e.tagName, e.dataset.front, +e.dataset.x])""")
        assert sorted(n for n, *_ in points) == [0, 1, 2, 3], fig
        kinds = {n: (tag, front) for n, tag, front, _ in points}
        assert kinds == {0: ("circle", "1"), 1: ("circle", "1"), 2: ("circle", "0"), 3: ("path", "0")}, fig
        assert {n: x for n, _, _, x in points} == {t["number"]: t["metrics"][metric] for t in measured(_doc())}
    # the budget: ram_kb on the RAM plot, accuracy on all three
    bounds = p.evaluate("""['accuracy-latency', 'accuracy-size', 'accuracy-ram'].map(f =>
        [...document.querySelectorAll(`figure#${f} line.bound title`)].map(t => t.textContent))""")
    assert bounds == [["budget: accuracy ≥ 0.9"], ["budget: accuracy ≥ 0.9"],
                      ["budget: ram_kb ≤ 256", "budget: accuracy ≥ 0.9"]]
    tip = p.evaluate("document.querySelector('figure#accuracy-ram .trial[data-trial=\"1\"] title').textContent")
    assert tip.startswith("trial 1 (Pareto front): accuracy 95.0 %, drop 3.00 pts, latency 0.900 ms (estimate)")
    assert "also trial(s) 5 (same recipe)" in tip and "[prune] ratio = 0.1" in tip
    caption = p.evaluate("document.querySelector('figure#accuracy-latency figcaption').textContent")
    assert "Latency: estimate." in caption and "roofline lower bound" in caption


def test_the_tables_give_the_front_and_every_reason(page):
    path, p = page
    front = p.evaluate("""[...document.querySelectorAll('#front tbody tr')].map(r =>
        [...r.cells].map(c => c.textContent))""")
    assert [row[0] for row in front] == ["0", "1"]
    assert front[1][:7] == ["1", "95.0 %", "3.00", "0.900 ms (estimate)", "20.0", "8.00", "20.0"]
    assert front[1][-1] == "front/1/recipe.toml"
    rows = p.evaluate("""[...document.querySelectorAll('#trials tbody tr')].map(r =>
        [r.cells[1].textContent, r.cells[r.cells.length - 1].textContent])""")
    assert rows == [["front", ""], ["front", ""], ["complete", ""], ["over budget", "over budget: ram_kb 300 > 256"],
                    ["failed", f"TFLM has no kernel for GELU {HOSTILE}"],
                    ["complete", "the recipe of trial 1: not converted again, its record reused"]]
    assert HOSTILE in p.evaluate("document.querySelector('h1').textContent")
    facts = p.evaluate("document.querySelector('#facts').textContent")
    assert "6: 4 complete, 1 over budget, 1 failed; 1 repeated an earlier recipe" in facts
    assert "ram_kb ≤ 256, accuracy ≥ 0.9" in facts


def test_a_search_without_timing_or_front_says_so():
    doc = _doc()
    for t in doc["trials"]:
        if t["metrics"]:
            t["metrics"].update(latency_ms=None, latency_source=None, ram_kb=None, flash_kb=None)
        t["front"] = False
    doc["front"] = []
    text = render(json.loads(json.dumps(doc)))
    assert "No plot: latency was not timed: no objective or budget reads it" in text
    assert 'id="accuracy-ram"' not in text  # no arena measured: no RAM figure at all
    assert "The front is empty: no trial met the budget." in text
