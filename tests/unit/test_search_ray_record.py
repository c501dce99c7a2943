"""search.json's ``runs``: what ran the trials, call by call, across resumes on other executors.

The study loop is driven as in tests/unit/test_search_dedup.py (Optuna and SQLite real, trials whose metrics
follow from their parameters). The executors stand in for the local workers and for a RayExecutor after its
``connect()``: the ``cluster`` dict it then holds (its real values are checked on a real cluster in
tests/e2e/test_search_ray.py).
"""

from __future__ import annotations

import re
from dataclasses import replace

from edgehad.search.space import parse_space
from tests.unit.test_search_dedup import SPACE, Instant

CLUSTER = {"executor": "ray", "address": "auto", "connected": "10.0.0.5:6379", "started_here": False, "nodes": 3,
           "cpus": 12.0, "device": "edgehad-device:local"}


class OnRay(Instant):
    """Trials as Instant runs them, described as a RayExecutor connected to CLUSTER describes itself."""

    cluster = CLUSTER


def _call(out, executor, trials: int, resume: bool, jobs: int = 1) -> tuple[dict, list[str]]:
    """One ``edgehad search`` call as edgehad.search.run makes it: begin, run, collect."""
    from edgehad.search import results, study

    settings = study.Settings(model="zoo:digits_cnn", data="digits", out=out, space=parse_space(SPACE, "s.toml"),
                              objectives=("accuracy", "size"), budget={}, target=None, host=None, trials=trials,
                              minutes=None, jobs=jobs, seed=0, resume=resume)
    said = []
    run = results.begin(settings, executor, said.append)
    study.run(settings, executor)
    opened, population = study.open_study(replace(settings, resume=True))
    return results.collect(opened, settings, population, run), said


def test_each_call_records_what_ran_its_trials_and_a_resume_elsewhere_says_so(tmp_path):
    out = tmp_path / "s"
    doc, said = _call(out, Instant(), trials=8, resume=False, jobs=2)
    assert said == []
    (first,) = doc["runs"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", first.pop("started"))
    # trial 4 asks trial 1's recipe again (test_search_dedup): a copy, not run
    assert first == {"executor": "local", "jobs": 2, "resume": False, "ran": [0, 1, 2, 3, 5, 6, 7]}

    # resumed on a Ray cluster: not refused (the same seed asks the same trials wherever they run), said
    doc, said = _call(out, OnRay(), trials=16, resume=True)
    assert said == ["resume: the study's last finished call ran its trials in local worker processes; this call "
                    "runs them on the Ray cluster at 10.0.0.5:6379 (search.json `runs` lists every call)"]
    assert [r["executor"] for r in doc["runs"]] == ["local", "ray"]
    second = {k: v for k, v in doc["runs"][1].items() if k != "started"}
    assert second == {**CLUSTER, "resume": True, "ran": [8, 9, 10, 12, 14, 15]}
    assert doc["ran"] == second["ran"] and len(doc["trials"]) == 16

    # the same cluster again: nothing to say; a call that ran nothing is recorded with no trials
    doc, said = _call(out, OnRay(), trials=16, resume=True)
    assert said == [] and [r["ran"] for r in doc["runs"]] == [[0, 1, 2, 3, 5, 6, 7], [8, 9, 10, 12, 14, 15], []]

    # back to local workers: said the other way round
    _, said = _call(out, Instant(), trials=16, resume=True)
    assert said == ["resume: the study's last finished call ran its trials on the Ray cluster at 10.0.0.5:6379; "
                    "this call runs them in local worker processes (search.json `runs` lists every call)"]


def test_collect_without_a_run_lists_the_stored_ones_and_twice_keeps_one(tmp_path):
    from edgehad.search import results, study

    out = tmp_path / "s"
    doc, _ = _call(out, Instant(), trials=8, resume=False)
    settings = study.Settings(model="zoo:digits_cnn", data="digits", out=out, space=parse_space(SPACE, "s.toml"),
                              objectives=("accuracy", "size"), budget={}, target=None, host=None, trials=8,
                              minutes=None, jobs=1, seed=0, resume=True)
    opened, population = study.open_study(settings)
    assert results.collect(opened, settings, population)["runs"] == doc["runs"]
    run = results.begin(settings, OnRay(), lambda message: None)
    once = results.collect(opened, settings, population, run)["runs"]
    assert len(once) == 2 and results.collect(opened, settings, population, run)["runs"] == once
