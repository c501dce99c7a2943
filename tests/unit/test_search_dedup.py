"""Identical recipes are one conversion (issue #16): which trial copies which, decided from the recipe text.

``[prune] ratio = 0`` drops the prune stage, so its criterion no longer matters; NSGA-II may also ask the same
values twice. The study loop is driven as in tests/unit/test_search_space.py: Optuna and SQLite are real,
the trials compute their metrics from their parameters at once (no conversion), and the executors differ
in the order their trials finish, which must not change anything.
"""

from __future__ import annotations

import json
from concurrent.futures import Future
from pathlib import Path
from types import SimpleNamespace

import pytest

from edgehad.search.space import parse_space

SPACE = {"stages": {"prune": {"ratio": {"low": 0.0, "high": 0.6, "step": 0.1},
                              "criterion": {"choices": ["magnitude", "bn-scale"]}},
                    "quantize": {"scheme": {"choices": ["none", "int8", "fp16"]}}, "export-onnx": {}}}
SIZE = {"none": 100.0, "fp16": 50.0, "int8": 25.0}


def _trial(number, ratio, criterion, scheme="none"):
    return SimpleNamespace(number=number, params={"prune.ratio": ratio, "prune.criterion": criterion,
                                                  "quantize.scheme": scheme})


def test_ratio_zero_with_another_criterion_is_the_same_recipe_and_the_first_trial_is_the_original():
    from edgehad.search.study import originals, recipe_key

    space = parse_space(SPACE, "s.toml")
    trials = [_trial(0, 0.0, "magnitude"), _trial(1, 0.0, "bn-scale"), _trial(2, 0.1, "magnitude"),
              _trial(3, 0.1, "bn-scale"), _trial(4, 0.1, "magnitude"), _trial(5, 0.0, "bn-scale", "int8"),
              _trial(6, 0.0, "magnitude", "int8")]
    assert recipe_key(space, trials[0].params, "digits") == recipe_key(space, trials[1].params, "digits")
    assert "[stages.prune]" not in recipe_key(space, trials[1].params, "digits")
    assert "criterion = \"bn-scale\"" in recipe_key(space, trials[3].params, "digits")
    want = {0: 0, 1: 0, 2: 2, 3: 3, 4: 2, 5: 5, 6: 5}
    assert originals(space, "digits", trials) == want
    assert originals(space, "digits", trials[::-1]) == want  # by number, whatever order they come in
    # the data is part of the recipe: the same values on other data are another conversion
    assert recipe_key(space, trials[0].params, "digits") != recipe_key(space, trials[0].params, "digits?size=16")
    partial = SimpleNamespace(number=7, params={"prune.ratio": 0.0})  # not all asked: never a copy
    assert originals(space, "digits", [*trials, partial])[7] == 7


class Instant:
    """Trials whose metrics follow from their parameters. ``reverse``: each generation's trials finish last
    submitted first (as K workers may finish them), handed back in trial order as the interface says."""

    def __init__(self, reverse: bool = False):
        self.reverse, self.submitted, self.finished = reverse, [], []

    def submit(self, spec):
        self.submitted.append(spec.number)
        future = Future()
        future.spec = spec
        return future

    def in_order(self, futures):
        for future in (futures[::-1] if self.reverse else futures):
            p = future.spec.params
            size = SIZE[p["quantize.scheme"]] * (1 - p["prune.ratio"])
            accuracy = 0.99 - 0.3 * p["prune.ratio"] ** 2 - (0.01 if p["quantize.scheme"] == "int8" else 0)
            future.set_result({"number": future.spec.number, "status": "complete", "reason": None,
                               "params": future.spec.params, "files": [f"{future.spec.folder}/files/model.onnx"],
                               "metrics": {"accuracy": round(accuracy, 6), "size_kb": round(size, 3)},
                               "objective_file": f"{future.spec.folder}/files/model.onnx", "recipe": "",
                               "seconds": 1.0})
            self.finished.append(future.spec.number)
        for future in futures:
            yield future.result()


def _search(out: Path, executor, trials=16, budget=None) -> dict:
    from edgehad.search import results, study

    settings = study.Settings(model="zoo:digits_cnn", data="digits", out=out, space=parse_space(SPACE, "s.toml"),
                              objectives=("accuracy", "size"), budget=budget or {}, target=None, host=None,
                              trials=trials, minutes=None, jobs=1, seed=0, resume=False)
    study.run(settings, executor)
    from dataclasses import replace

    opened, population = study.open_study(replace(settings, resume=True))
    return results.collect(opened, settings, population)


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """16 trials (two generations of 8) with a size bound, finished in order and in reverse."""
    runs = []
    for reverse in (False, True):
        executor = Instant(reverse=reverse)
        out = tmp_path_factory.mktemp("dedup")
        runs.append((out, executor, _search(out, executor, budget={"size_kb": 45.0})))
    return runs


def test_a_copy_is_never_converted_and_is_told_its_originals_record(searched):
    out, executor, doc = searched[0]
    copies = {t["number"]: t["same_as"] for t in doc["trials"] if t["same_as"] is not None}
    # seed 0's trials: 3 ask an earlier recipe again, 2 of them one from the first generation (0..7)
    assert copies == {4: 1, 11: 2, 13: 1}
    assert executor.submitted == [n for n in range(16) if n not in copies]
    assert sorted(doc["ran"]) == executor.submitted
    for number, origin in copies.items():
        copy, original = doc["trials"][number], doc["trials"][origin]
        # the same values asked again, or ratio 0 with another criterion
        assert copy["params"] == original["params"] or copy["params"]["[prune] ratio"] == 0
        for key in ("status", "reason", "metrics", "constraints", "objective_file", "files"):
            assert copy[key] == original[key], (number, key)
        assert copy["seconds"] == 0.0 and not copy["front"]
        stored = json.loads((out / "trials" / str(number) / "trial.json").read_text())
        assert stored["same_as"] == origin and stored["number"] == number
        texts = [(out / "trials" / str(n) / "recipe.toml").read_text() for n in (origin, number)]
        assert texts[0].replace(f"trial-{origin}", f"trial-{number}") == texts[1]
    # a copy of an over-budget trial is over budget too (its stored record is judged again, not copied blind)
    assert any(doc["trials"][n]["status"] == "over_budget" for n in copies)
    assert doc["front"] and not set(doc["front"]) & set(copies)


def test_which_trial_is_a_copy_does_not_depend_on_the_order_trials_finish(searched):
    (_, serial, a), (_, reverse, b) = searched
    assert reverse.finished != serial.finished  # the executors did finish them in another order
    assert serial.submitted == reverse.submitted
    keep = ("number", "params", "status", "reason", "metrics", "constraints", "front", "same_as")
    assert [{k: t[k] for k in keep} for t in a["trials"]] == [{k: t[k] for k in keep} for t in b["trials"]]
    assert a["front"] == b["front"]
