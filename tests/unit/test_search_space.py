"""The search space, objectives and budget, and the study's generational loop (issue #16), without conversions.

The loop tests drive edgehad.search.study with a stand-in executor whose trials compute their metrics from
their parameters at once: what is under test there is the sampling, the storage and the resume, which are
real (Optuna, SQLite); the real conversions are tests/e2e/test_search.py's.
"""

from __future__ import annotations

import json
import tomllib
from concurrent.futures import Future
from pathlib import Path

import pytest

from edgehad.core.errors import ConversionError, UserInputError
from edgehad.core.recipe import parse_recipe
from edgehad.search import objectives as obj
from edgehad.search.space import load_space, parse_space, recipe_toml

ROOT = Path(__file__).resolve().parents[2]


def _space(stages: dict, **top):
    return parse_space({"stages": stages, **top}, source="s.toml")


def test_the_default_space_loads_and_each_of_its_trials_is_a_valid_recipe():
    space = load_space()
    assert space.name == "default" and Path(space.path) == ROOT / "converters" / "spaces" / "default.toml"
    assert [p.name for p in space.params] == ["prune.ratio", "prune.criterion", "finetune.epochs", "quantize.scheme",
                                              "export-tflite.layout"]
    assert space.params[0].distribution().step == pytest.approx(0.1)
    values = {"prune.ratio": 0.30000000000000004, "prune.criterion": "taylor", "finetune.epochs": 5,
              "quantize.scheme": "int8", "export-tflite.layout": "nchw"}
    recipe = space.recipe(values, "digits?size=16", name="trial-3")
    text = recipe_toml(recipe)
    parsed = parse_recipe(tomllib.loads(text))
    assert parsed.name == "trial-3" and parsed.data == {"spec": "digits?size=16"}
    assert parsed.stages["prune"] == {"round_to": 8, "latency": False, "ratio": 0.3, "criterion": "taylor"}
    assert parsed.stages["finetune"] == {"distill": True, "epochs": 5}
    assert parsed.stages["quantize"] == {"scheme": "int8"}
    assert parsed.stages["export-tflite"] == {"layout": "nchw"}
    assert "verify" not in parsed.stages  # the search's open accuracy gate is not the recipe's (trial.OPEN_GATE)


def test_ratio_zero_drops_prune_and_the_finetuning_that_would_recover_it():
    space = load_space()
    values = {"prune.ratio": 0.0, "prune.criterion": "magnitude", "finetune.epochs": 2, "quantize.scheme": "fp16",
              "export-tflite.layout": "nhwc"}
    stages = space.recipe(values, "digits")["stages"]
    assert sorted(stages) == ["export-onnx", "export-tflite", "quantize"]


def test_a_step_range_rounds_to_its_grid_and_an_integer_range_stays_integer():
    space = _space({"prune": {"ratio": {"low": 0.05, "high": 0.35, "step": 0.15}},
                    "finetune": {"epochs": {"low": 1, "high": 16, "log": True}}, "export-onnx": {}})
    ratio, epochs = space.params
    assert [ratio.value(0.05 + k * 0.15) for k in range(3)] == [0.05, 0.2, 0.35]
    dist = epochs.distribution()
    assert type(dist).__name__ == "IntDistribution" and (dist.low, dist.high, dist.log) == (1, 16, True)


def test_the_recipe_toml_escapes_what_toml_must_and_keeps_the_rest():
    text = recipe_toml({"name": 'a "q" \\ \x7f é', "description": "", "data": {"spec": "m:f"},
                       "stages": {"rewrite": {"rules": "x,y", "strict": True}, "verify": {"rtol": 1e-05}}})
    parsed = tomllib.loads(text)
    assert parsed["name"] == 'a "q" \\ \x7f é' and parsed["stages"]["verify"]["rtol"] == 1e-05
    assert parsed["stages"]["rewrite"] == {"rules": "x,y", "strict": True}


# (stages table, the one-line message after "search space s.toml: ")
BAD_SPACES = [
    ({"prune": {"ratioo": 0.5}, "export-onnx": {}},
     "unknown key `[prune] ratioo`: valid keys are blocks, criterion, latency, latency_cache, ratio, round_to, samples, scope, seed, "
     "step_epochs, steps, structure, target, unsafe"),
    ({"prunes": {}, "export-onnx": {}}, "unknown stage `[prunes]`"),
    ({"prune": {"ratio": {"low": 0.5, "high": 0.5}}, "export-onnx": {}},
     "`[prune] ratio` range is empty: low 0.5 must be below high 0.5 (a single value is written ratio = 0.5)"),
    ({"prune": {"ratio": {"low": 0.6, "high": 0.1}}, "export-onnx": {}},
     "`[prune] ratio` range is inverted: low 0.6 must be below high 0.1"),
    ({"prune": {"ratio": {"low": 0.0, "high": 1.0}}, "export-onnx": {}},
     "`[prune] ratio` range high must be a number in [0, 1), got 1.0"),
    ({"prune": {"ratio": {"low": 0.0, "high": 0.5, "step": 0.2}}, "export-onnx": {}},
     "`[prune] ratio` range 0.0..0.5 is not a whole number of steps 0.2: make high = low + k * step"),
    ({"prune": {"criterion": {"choices": ["magnitude", "nope"]}}, "export-onnx": {}},
     "`[prune] criterion` choice \"nope\" is refused by the prune stage: unknown pruning criterion 'nope'"),
    ({"quantize": {"scheme": {"choices": ["int8", "int4"]}}, "export-onnx": {}},
     "`[quantize] scheme` choice must be one of \"int8\", \"int8-dynamic\", \"fp16\", \"none\", got \"int4\""),
    ({"quantize": {"scheme": {"choices": []}}, "export-onnx": {}},
     "`[quantize] scheme` choices must be a non-empty list, got []"),
    ({"quantize": {"scheme": {"low": 1, "high": 2}}, "export-onnx": {}},
     "`[quantize] scheme` is one of \"int8\", \"int8-dynamic\", \"fp16\", \"none\", not a number: give {choices = [...]}"),
    ({"finetune": {"epochs": {"low": 1, "high": 2.5}}, "export-onnx": {}},
     "`[finetune] epochs` is an integer option: high must be an integer, got 2.5"),
    ({"finetune": {"epochs": {"choices": [0, 2]}}, "export-onnx": {}},
     "`[finetune] epochs` choice must be an integer >= 1, got 0"),
    ({"finetune": {"epochs": {"choice": [1, 2]}}, "export-onnx": {}},
     "`[finetune] epochs` must be a value, {choices = [...]} or {low = .., high = .., step = ..} / "
     "{low = .., high = .., log = true}, got {choice = [1, 2]}"),
    ({"verify": {"rtol": -1}, "export-onnx": {}}, "`[verify] rtol` must be a number >= 0, got -1"),
    # "" is a rule choice only when the rules are searched; fixed, it names no rule, as in a recipe
    ({"rewrite": {"rules": ""}, "export-onnx": {}}, "`[rewrite] rules` \"\" is refused by the rewrite stage: "
     "no rewrite rule named"),
    ({"rewrite": {}, "export-onnx": {}}, "`[rewrite]`: no rewrite rule named"),
    ({"quantize": {"scheme": "int8"}}, "no export stage: add [stages.export-onnx] and/or [stages.export-tflite]"),
]


@pytest.mark.parametrize("stages, said", BAD_SPACES, ids=[s[1][:40] for s in BAD_SPACES])
def test_a_bad_space_is_one_line_naming_the_key(stages, said):
    with pytest.raises(UserInputError) as raised:
        _space(stages)
    message = str(raised.value)
    assert message.startswith(f"search space s.toml: {said}"), message
    assert "\n" not in message


def test_a_space_states_no_data_and_a_missing_one_lists_the_shipped_ones(tmp_path):
    with pytest.raises(UserInputError, match=r"unknown key 'data' \(the data is the search's `data`\)"):
        parse_space({"data": {"spec": "digits"}, "stages": {"export-onnx": {}}})
    with pytest.raises(UserInputError, match="search space nope does not exist: give a .toml path or one of: blocks, default"):
        load_space("nope")
    bad = tmp_path / "bad.toml"
    bad.write_text("[stages.prune\n")
    with pytest.raises(UserInputError, match="is not valid TOML"):
        load_space(str(bad))


def test_objectives_and_budget_parse_and_refuse_in_one_line():
    assert obj.parse_objectives("accuracy, size") == ("accuracy", "size")
    assert obj.parse_budget("latency_ms=5, size_kb=300,accuracy=0.9") == {"latency_ms": 5.0, "size_kb": 300.0,
                                                                          "accuracy": 0.9}
    for bad, said in [("speed", "unknown objective 'speed' in `objectives`: use accuracy, latency, size"),
                      ("size,size", "`objectives` names an objective twice (size,size): give each once"),
                      ("", "`objectives` is empty")]:
        with pytest.raises(UserInputError, match=__import__("re").escape(said)):
            obj.parse_objectives(bad)
    for bad, said in [("latency=5", "unknown `budget` key 'latency': use latency_ms, size_kb, ram_kb, flash_kb, accuracy"),
                      ("size_kb", "`budget` part 'size_kb' is not KEY=VALUE"),
                      ("size_kb=big", "`budget` size_kb=big: the limit must be a number"),
                      ("accuracy=95", "`budget` accuracy must be in [0, 1] (a fraction: 0.95 is 95%), got 95"),
                      ("size_kb=nan", "`budget` size_kb must be a finite number")]:
        with pytest.raises(UserInputError, match=__import__("re").escape(said)):
            obj.parse_budget(bad)
    metrics = {"latency_ms": 7.0, "size_kb": 100.0, "accuracy": 0.8}
    budget = {"latency_ms": 5.0, "size_kb": 300.0, "accuracy": 0.9}
    assert obj.constraints(metrics, budget) == {"latency_ms": 2.0, "size_kb": -200.0, "accuracy": pytest.approx(0.1)}
    assert obj.broken_bounds(metrics, budget) == ["latency_ms 7 > 5", "accuracy 0.8 < 0.9"]


def test_the_outcome_names_the_bound_that_held_every_trial_back():
    from edgehad.search.study import check_outcome

    def trial(n, status, **metrics):
        return {"number": n, "status": status, "reason": "boom" if status == "failed" else None, "metrics": metrics}

    doc = {"out": "/o", "budget": {"size_kb": 1.0, "accuracy": 0.5},
           "trials": [trial(0, "over_budget", size_kb=20.0, accuracy=0.9),
                      trial(1, "over_budget", size_kb=12.5, accuracy=0.99), trial(2, "failed")]}
    with pytest.raises(UserInputError) as raised:
        check_outcome(doc)
    assert str(raised.value) == ("no trial met the budget: size_kb <= 1 bound all 2 measured trials (the best "
                                 "reached 12.5); loosen `budget` (search.json in /o has every trial)")
    doc["trials"] = [trial(0, "failed"), trial(1, "failed")]
    with pytest.raises(ConversionError, match="every trial failed \\(2\\); trial 0: boom"):
        check_outcome(doc)
    doc["trials"] = [trial(0, "complete", size_kb=0.5, accuracy=0.9)]
    check_outcome(doc)


# -- the study loop, with trials that compute their metrics from their parameters at once --------------------

TINY = {"stages": {"prune": {"ratio": {"low": 0.0, "high": 0.6, "step": 0.1},
                             "criterion": {"choices": ["magnitude", "bn-scale"]}},
                   "quantize": {"scheme": {"choices": ["none", "int8", "fp16"]}}, "export-onnx": {}}}
SIZE = {"none": 100.0, "fp16": 50.0, "int8": 25.0}


class InstantExecutor:
    """Runs no conversion: a trial's metrics follow from its parameters. ``die_after``: raise
    KeyboardInterrupt (as a kill would stop the parent) after handing back that many records."""

    def __init__(self, die_after: int | None = None):
        self.die_after, self.handed, self.ran = die_after, 0, []

    def submit(self, spec):
        future = Future()
        p = spec.params
        accuracy = 0.99 - 0.3 * p["prune.ratio"] ** 2 - (0.01 if p["quantize.scheme"] == "int8" else 0)
        size = SIZE[p["quantize.scheme"]] * (1 - p["prune.ratio"])
        future.set_result({"number": spec.number, "status": "complete", "reason": None, "params": spec.params,
                           "metrics": {"accuracy": round(accuracy, 6), "size_kb": round(size, 3), "latency_ms": None},
                           "files": [], "objective_file": None, "recipe": "", "seconds": 0.0})
        self.ran.append(spec.number)
        return future

    def in_order(self, futures):
        for f in futures:
            if self.die_after is not None and self.handed >= self.die_after:
                raise KeyboardInterrupt
            self.handed += 1
            yield f.result()


def _settings(out, trials=10, resume=False, seed=0, budget=None, space=TINY):
    from edgehad.search.study import Settings

    return Settings(model="zoo:digits_cnn", data="digits", out=Path(out), space=parse_space(space, "tiny.toml"),
                    objectives=("accuracy", "size"), budget=budget or {}, target=None, host=None, trials=trials,
                    minutes=None, jobs=1, seed=seed, resume=resume)


def _search(out, executor, **kw):
    from edgehad.search import results, study

    settings = _settings(out, **kw)
    study.run(settings, executor)
    opened, population = study.open_study(_settings(out, resume=True, **{k: v for k, v in kw.items() if k != "resume"}))
    return results.collect(opened, settings, population)


def _params(doc):
    return [t["params"] for t in doc["trials"]]


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """An uninterrupted search of 10 trials: one whole generation (8) and part of the next."""
    out = tmp_path_factory.mktemp("whole")
    return out, _search(out, InstantExecutor(), trials=10)


def test_the_same_seed_asks_the_same_trials_across_generations_and_another_seed_does_not(tmp_path, whole):
    out, a = whole
    b = _search(tmp_path / "b", InstantExecutor(), trials=10)
    c = _search(tmp_path / "c", InstantExecutor(), trials=2, seed=1)
    assert len(a["trials"]) == 10 and a["population"] == 8
    assert _params(a) == _params(b) and a["front"] == b["front"] and a["front"]
    assert _params(a)[:2] != _params(c)
    assert all(t["status"] == "complete" for t in a["trials"])
    recipe = tomllib.loads((out / "trials" / "3" / "recipe.toml").read_text())
    assert recipe["stages"]["quantize"]["scheme"] == a["trials"][3]["params"]["[quantize] scheme"]


def test_a_killed_search_resumed_asks_what_an_uninterrupted_one_asked(tmp_path, whole):
    from optuna.trial import TrialState

    whole = whole[1]
    with pytest.raises(KeyboardInterrupt):  # stopped after 3 trials were told, the rest of generation 0 asked
        _search(tmp_path / "cut", InstantExecutor(die_after=3), trials=10)
    import optuna

    stored = optuna.load_study(study_name="edgehad-search", storage=f"sqlite:///{tmp_path / 'cut' / 'study.db'}")
    states = [t.state for t in stored.get_trials()]
    assert states == [TrialState.COMPLETE] * 3 + [TrialState.RUNNING] * 5
    again = InstantExecutor()
    resumed = _search(tmp_path / "cut", again, resume=True, trials=10)
    # the 3 told trials are not run again (nor a copy of an earlier trial's recipe)
    assert again.ran == [t["number"] for t in whole["trials"][3:] if t["same_as"] is None]
    assert _params(resumed) == _params(whole) and resumed["front"] == whole["front"]


def test_a_resume_with_another_space_or_seed_is_refused_naming_the_difference(tmp_path):
    from edgehad.search import study

    _search(tmp_path / "s", InstantExecutor(), trials=2)
    other = json.loads(json.dumps(TINY))
    other["stages"]["quantize"]["scheme"] = {"choices": ["none", "int8"]}
    with pytest.raises(UserInputError) as raised:
        study.open_study(_settings(tmp_path / "s", resume=True, space=other))
    assert str(raised.value) == (
        f"`resume`: {tmp_path / 's' / 'study.db'} is a search with another space (`[quantize] scheme` is "
        '{"choices": ["none", "int8", "fp16"]} there, {"choices": ["none", "int8"]} here): its trials answer '
        "another question; resume with the same settings, or pick another `out`")
    with pytest.raises(UserInputError, match=r"another seed \(seed 0 there, 3 here\)"):
        study.open_study(_settings(tmp_path / "s", resume=True, seed=3))
    with pytest.raises(UserInputError, match="holds a search already"):
        study.open_study(_settings(tmp_path / "s"))
    with pytest.raises(UserInputError, match="holds no search"):
        study.open_study(_settings(tmp_path / "new", resume=True))


def test_a_budget_keeps_infeasible_trials_off_the_front(tmp_path):
    doc = _search(tmp_path / "b", InstantExecutor(), trials=6, budget={"size_kb": 40.0})
    over = [t for t in doc["trials"] if t["metrics"]["size_kb"] > 40]
    assert over and all(t["status"] == "over_budget" and t["reason"].startswith("over budget: size_kb ")
                        for t in over)
    assert doc["front"] and all(not doc["trials"][n]["metrics"]["size_kb"] > 40 for n in doc["front"])
    assert all(t["constraints"] == {"size_kb": pytest.approx(t["metrics"]["size_kb"] - 40)} for t in doc["trials"])


def test_minutes_start_no_generation_after_the_deadline(tmp_path):
    from dataclasses import replace

    from edgehad.search import study

    settings = replace(_settings(tmp_path / "m", trials=None), minutes=1e-6)
    executor = InstantExecutor()
    study.run(settings, executor)
    stored = study.open_study(replace(settings, resume=True))[0].get_trials(deepcopy=False)
    assert len(stored) == 8 and all(t.state.is_finished() for t in stored)  # one whole generation, then no more
    first = study.originals(settings.space, settings.data, stored)
    assert executor.ran == [n for n in range(8) if first[n] == n]


def test_search_names_every_parameter():
    import inspect

    from edgehad import api

    params = inspect.signature(api.search).parameters
    assert list(params) == ["model", "data", "out", "weights", "model_args", "target", "host", "space", "budget",
                            "objectives", "trials", "minutes", "jobs", "seed", "resume", "ray", "progress"]
    assert all(p.kind is not inspect.Parameter.VAR_KEYWORD for p in params.values())


def test_bad_counts_are_refused_before_anything_runs(tmp_path):
    from edgehad import api

    for kw, said in [({"trials": 0}, "`trials` must be an integer >= 1, got 0"),
                     ({"jobs": 1.5}, "`jobs` must be an integer >= 1, got 1.5"),
                     ({"trials": 3, "minutes": 1}, "give `trials` or `minutes`, not both"),
                     ({"minutes": -1}, "`minutes` must be a number > 0, got -1"),
                     ({"host": "a,b"}, "`host` must be one device")]:
        with pytest.raises(UserInputError, match=__import__("re").escape(said)):
            api.search("zoo:digits_cnn", data="digits", out=tmp_path / "o", **kw)
    assert not (tmp_path / "o").exists()


def test_a_trial_opens_the_accuracy_gate_only_when_the_space_leaves_it_alone(tmp_path):
    from edgehad.search.trial import _recipe_gates_accuracy

    space = load_space()
    values = {"prune.ratio": 0.3, "prune.criterion": "taylor", "finetune.epochs": 5, "quantize.scheme": "int8",
              "export-tflite.layout": "nhwc"}
    plain = tmp_path / "plain.toml"
    plain.write_text(recipe_toml(space.recipe(values, "digits")))
    assert not _recipe_gates_accuracy(plain)
    gated = _space({"export-onnx": {}, "verify": {"max_accuracy_drop": 2}})
    kept = tmp_path / "gated.toml"
    kept.write_text(recipe_toml(gated.recipe({}, "digits")))
    assert _recipe_gates_accuracy(kept)
