"""The search loop: an Optuna multi-objective study sampled in generations, stored in a real database.

Sampler: NSGA-II (Deb et al., "A fast and elitist multiobjective genetic algorithm: NSGA-II", IEEE TEVC
6(2), 2002) as Optuna implements it, with the budget as constraints (constrained domination; each bound is
one named constraint, ``Trial.set_constraint``, Optuna 5's replacement of ``constraints_func``).

Storage: Optuna's RDB storage, ``sqlite:///DIR/study.db``. Every ask and tell is committed there, so a
search killed at any point (even kill -9) is finished by ``resume``: trials already told are kept as
they are, a trial asked but not told is run again with the same parameters (or, when its worker had
written its record before the kill, that record is told without running it again).

Determinism: the trials of one seed do not depend on how many run at once, nor on a resume. Trials are
asked in generations of ``population`` (trial numbers ``[g*P, (g+1)*P)``): a whole generation is asked
before any of it runs, and told in trial-number order before the next one is asked, so every ask sees
the same finished trials whatever the worker count. Each ask uses a sampler seeded from ``(seed, trial
number)``, so a resumed process, whose sampler starts afresh, asks what the first process would have.
The population is stored with the study and is 8 (or ``jobs`` when more run at once), not ``jobs``:
jobs 1 and jobs 2 search the same trials.

Identical recipes: two trials whose recipes are the same (``[prune] ratio = 0`` with another criterion
drops the prune stage, so the criterion no longer matters; or NSGA-II asking the same values twice) are
one conversion. Which trial is a copy is decided when a generation is submitted, from the recipe text
alone: a trial whose recipe equals an earlier-numbered trial's (of this generation or an earlier one)
is not run; once that trial's record is in, the copy is told the same record, marked ``same_as``. The
decision depends on the trial numbers and their parameters only, so it is the same whatever runs the
trials, however many at once, and after a resume. A copy is never on the front: its original is.

A stale resume, a study of another model, data, space, objectives, budget, target, host or seed, is
refused naming the difference: its trials answer another question.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgehad.core.errors import ConversionError, UserInputError
from edgehad.search import objectives as obj
from edgehad.search.space import Space, recipe_toml
from edgehad.search.trial import RECIPE_FILE, RESULT_FILE, TrialSpec

STUDY_NAME = "edgehad-search"
STUDY_FILE = "study.db"
CONFIG_ATTR = "edgehad_search"
POPULATION = 8
DEFAULT_TRIALS = 20
TRIAL_TIMEOUT_S = 3600.0
# what a resume must share with the stored study (population is the stored one's, whatever is asked now)
SAME_ON_RESUME = ("model", "weights", "model_args", "data", "space", "objectives", "budget", "target", "host", "seed")


@dataclass
class Settings:
    model: str
    data: str
    out: Path
    space: Space
    objectives: tuple
    budget: dict
    target: str | None
    host: str | None
    trials: int | None
    minutes: float | None
    jobs: int
    seed: int
    resume: bool
    ran: list = field(default_factory=list)   # trial numbers run by this call
    micro: bool = False                       # an MCU target: trials measure ram_kb and flash_kb under TFLM
    weights: str | None = None
    model_args: dict | None = None

    def config(self, population: int) -> dict:
        return {"model": self.model, "weights": self.weights, "model_args": self.model_args, "data": self.data,
                "space": self.space.canonical(),
                "objectives": list(self.objectives), "budget": self.budget, "target": self.target or "local",
                "host": self.host, "seed": self.seed, "population": population,
                "space_name": self.space.name, "space_path": self.space.path}


def storage_url(out: Path) -> str:
    return f"sqlite:///{(out / STUDY_FILE).absolute()}"


def open_study(settings: Settings):
    """Create the study in ``out`` or, with ``resume``, open the stored one and check it asks the same."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    check_out(settings)
    out, db = settings.out, settings.out / STUDY_FILE
    if settings.resume:
        try:
            study = optuna.load_study(study_name=STUDY_NAME, storage=storage_url(out))
        except Exception as exc:  # not an Optuna database, or not ours
            raise UserInputError(f"`resume`: {db} is not an edgehad search study ({_one_line(exc)})") from None
        stored = study.user_attrs.get(CONFIG_ATTR)
        if not isinstance(stored, dict):
            raise UserInputError(f"`resume`: {db} holds no edgehad search settings: pick another `out`")
        _check_same(stored, settings.config(stored.get("population", POPULATION)), db)
        return study, int(stored["population"])
    out.mkdir(parents=True, exist_ok=True)
    population = max(POPULATION, settings.jobs)
    directions = [obj.OBJECTIVES[name][1] for name in settings.objectives]
    study = optuna.create_study(study_name=STUDY_NAME, storage=storage_url(out), directions=directions)
    study.set_user_attr(CONFIG_ATTR, settings.config(population))
    return study, population


def check_out(settings: Settings) -> None:
    """``out`` fits the call: a new or empty folder, or with ``resume`` one that holds a study."""
    out, db = settings.out, settings.out / STUDY_FILE
    if settings.resume:
        if not db.is_file():
            raise UserInputError(f"`resume`: {out} holds no search ({STUDY_FILE} is missing): run without "
                                 "`resume` to start one there")
        return
    if db.exists():
        raise UserInputError(f"`out` {out} holds a search already ({STUDY_FILE}): pass `resume=True` to finish "
                             "it, or pick another folder")
    if out.is_dir() and any(out.iterdir()):
        raise UserInputError(f"`out` {out} holds files no search wrote: pick an empty or new folder")


def _check_same(stored: dict, asked: dict, db: Path) -> None:
    for key in SAME_ON_RESUME:
        was, now = stored.get(key), asked.get(key)
        if json.dumps(was, sort_keys=True) == json.dumps(now, sort_keys=True):
            continue
        if key == "space":
            said = _space_difference(was or {}, now or {})
        else:
            said = f"{key} {json.dumps(was)} there, {json.dumps(now)} here"
        raise UserInputError(f"`resume`: {db} is a search with another {key} ({said}): its trials answer another "
                             f"question; resume with the same settings, or pick another `out`")


def _space_difference(was: dict, now: dict) -> str:
    a, b = was.get("stages", {}), now.get("stages", {})
    for stage in list(a) + [s for s in b if s not in a]:
        if stage not in b:
            return f"`[{stage}]` is in the stored space only"
        if stage not in a:
            return f"`[{stage}]` is in the new space only"
        for key in list(a[stage]) + [k for k in b[stage] if k not in a[stage]]:
            x, y = a[stage].get(key), b[stage].get(key)
            if json.dumps(x, sort_keys=True) != json.dumps(y, sort_keys=True):
                return f"`[{stage}] {key}` is {json.dumps(x)} there, {json.dumps(y)} here"
    return "the same stages, in another order"


def trial_seed(seed: int, number: int) -> int:
    """The sampler's seed for one ask: fixed by the search's seed and the trial number alone."""
    return int.from_bytes(hashlib.sha256(f"edgehad-search:{seed}:{number}".encode()).digest()[:4], "little")


def run(settings: Settings, executor, progress=None) -> None:
    """Ask, run and tell generations until ``trials`` are done or ``minutes`` are up."""
    import optuna

    from edgehad.core.progress import bar

    progress = progress or (lambda message: None)
    study, population = open_study(settings)
    total = settings.trials if settings.trials is not None else (None if settings.minutes else DEFAULT_TRIALS)
    deadline = None if settings.minutes is None else time.monotonic() + settings.minutes * 60
    distributions = settings.space.distributions()
    done = sum(t.state.is_finished() for t in study.get_trials(deepcopy=False))
    label = f"search: {total} trials" if total else f"search: {settings.minutes:g} minutes"
    with bar(progress, label, total or settings.minutes * 60) as shown:
        started = time.monotonic()
        while True:
            trials = study.get_trials(deepcopy=False)
            pending = sorted((t for t in trials if not t.state.is_finished()), key=lambda t: t.number)
            n = len(trials)
            generation = pending[0].number // population if pending else n // population
            if not pending:
                # the first generation always runs: a search of no trial answers nothing
                if (total is not None and n >= total) or (deadline is not None and n
                                                          and time.monotonic() >= deadline):
                    break
            end = (generation + 1) * population if total is None else min((generation + 1) * population, total)
            for number in range(n, end):  # the rest of this generation, asked before any of it runs
                study.sampler = optuna.samplers.NSGAIISampler(population_size=population,
                                                              seed=trial_seed(settings.seed, number))
                study.ask(fixed_distributions=distributions)
            asked = sorted((t for t in study.get_trials(deepcopy=False)
                            if not t.state.is_finished() and t.number < end), key=lambda t: t.number)
            if not asked:
                break
            first = originals(settings.space, settings.data, study.get_trials(deepcopy=False))
            own = {t.number for t in asked if first[t.number] == t.number}
            futures = [_submit(settings, executor, t, population) if t.number in own else _write_recipe(settings, t)
                       for t in asked]
            records = iter(executor.in_order([f for t, f in zip(asked, futures) if t.number in own]))
            told: dict[int, dict] = {}  # this generation's records as the workers gave them
            for trial in asked:
                origin = first[trial.number]
                if origin == trial.number:
                    record = next(records)
                    if record.pop("_ran", True):
                        settings.ran.append(trial.number)
                else:
                    record = _same_as(settings, trial, origin, told.get(origin) or _stored_record(study, origin))
                told[trial.number] = copy.deepcopy(record)  # before _tell marks it over budget
                _tell(study, trial, record, settings)
                done += 1
                progress(_line(record, total, settings))
                shown.update(done if total else time.monotonic() - started)


def recipe_key(space: Space, params: dict, data: str) -> str | None:
    """What makes two trials one conversion: their recipe's text, its name aside (None: not all params known)."""
    if any(p.name not in params for p in space.params):
        return None
    return recipe_toml(space.recipe(params, data, name="trial"))


def originals(space: Space, data: str, trials) -> dict[int, int]:
    """Trial number -> the lowest-numbered trial with the same recipe (the trial itself when it is the first).

    ``trials``: anything with ``number`` and ``params`` (Optuna's FrozenTrial). Only numbers and
    parameters decide, never states or timing, so every executor and every resume gets the same map.
    """
    first: dict[str, int] = {}
    out = {}
    for t in sorted(trials, key=lambda t: t.number):
        key = recipe_key(space, t.params, data)
        out[t.number] = t.number if key is None else first.setdefault(key, t.number)
    return out


def _write_recipe(settings: Settings, trial) -> Path:
    """``trials/K/recipe.toml``, the recipe ``edgehad convert --recipe`` turns into trial K's files."""
    from edgehad.core.files import write_text

    folder = settings.out / "trials" / str(trial.number)
    folder.mkdir(parents=True, exist_ok=True)
    recipe = settings.space.recipe(trial.params, settings.data, name=f"trial-{trial.number}")
    write_text(folder / RECIPE_FILE, recipe_toml(recipe))
    return folder


def _stored_record(study, number: int) -> dict:
    """Trial ``number``'s record as its worker gave it (before _tell judged it against the budget)."""
    (trial,) = [t for t in study.get_trials(deepcopy=False) if t.number == number]
    record = copy.deepcopy(trial.user_attrs.get("record") or {})
    if record.get("status") == "over_budget":  # _tell judges the copy against the same budget again
        record["status"], record["reason"] = "complete", None
    return record


def _same_as(settings: Settings, trial, origin: int, base: dict) -> dict:
    """Trial ``trial``'s record: a copy of trial ``origin``'s (the same recipe), its files included."""
    from edgehad.core.files import write_text
    from edgehad.core.jsondoc import dumps

    folder = settings.out / "trials" / str(trial.number)
    if "status" not in base:  # an original told without a record: nothing to copy, and nothing to run again
        base = {"status": "failed", "reason": f"trial {origin}, whose recipe this is, left no record", "metrics": {},
                "files": [], "objective_file": None}
    record = {**copy.deepcopy(base), "number": trial.number, "params": dict(trial.params),
              "recipe": str(folder / RECIPE_FILE), "same_as": origin, "seconds": 0.0}
    record.pop("_ran", None)
    write_text(folder / RESULT_FILE, dumps(record, indent=2) + "\n")
    return record


def _submit(settings: Settings, executor, trial, population: int):
    """Write the trial's recipe and hand it to the executor; a record its worker left before a kill is used."""
    from concurrent.futures import Future

    folder = _write_recipe(settings, trial)
    left = _left_record(folder, trial)
    if left is not None:
        future: Future = Future()
        future.set_result({**left, "_ran": False})
        return future
    spec = TrialSpec(number=trial.number, model=settings.model, folder=str(folder), params=dict(trial.params),
                     time_latency=obj.needs_latency(settings.objectives, settings.budget), micro=settings.micro,
                     weights=settings.weights, model_args=settings.model_args,
                     target=settings.target, host=settings.host, lock=str(settings.out / "device.lock"),
                     timeout_s=TRIAL_TIMEOUT_S)
    return executor.submit(spec)


def _left_record(folder: Path, trial) -> dict | None:
    try:
        record = json.loads((folder / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return None
    if record.get("number") != trial.number or record.get("params") != dict(trial.params):
        return None
    return record


def _tell(study, trial, record: dict, settings: Settings) -> None:
    """Tell Optuna one trial's outcome; its record rides along in the trial's user attributes."""
    import optuna
    from optuna.trial import TrialState

    live = optuna.Trial(study, trial._trial_id)
    vals = None
    if record["status"] == "complete":
        vals = obj.values(record["metrics"], settings.objectives)
        if vals is None:
            missing = [n for n in settings.objectives if record["metrics"].get(obj.OBJECTIVES[n][0]) is None]
            record["status"], record["reason"] = "failed", f"no {', '.join(missing)} measured for this trial"
    if vals is not None and settings.budget:
        if any(record["metrics"].get(k) is None for k in settings.budget):
            record["status"], record["reason"], vals = "failed", "a budget metric was not measured", None
        else:
            bounds = obj.constraints(record["metrics"], settings.budget)
            for key, c in bounds.items():
                live.set_constraint(key, c)
            broken = obj.broken_bounds(record["metrics"], settings.budget)
            if broken:
                record["status"], record["reason"] = "over_budget", "over budget: " + ", ".join(broken)
    live.set_user_attr("record", record)
    if vals is None:
        study.tell(trial.number, state=TrialState.FAIL)
    else:
        study.tell(trial.number, vals)


def _line(record: dict, total, settings: Settings) -> str:
    head = f"trial {record['number']}" + (f"/{total}" if total else "")
    if record.get("same_as") is not None:
        head += f" (the recipe of trial {record['same_as']}, not converted again)"
    if record["status"] == "failed":
        return f"{head} failed: {record['reason']}"
    m = record["metrics"]
    parts = []
    if m.get("accuracy") is not None:
        parts.append(f"accuracy {100 * m['accuracy']:.1f}%")
    if m.get("latency_ms") is not None:
        parts.append(f"latency {m['latency_ms']:.3g} ms ({m.get('latency_source')})")
    parts.append(f"size {m['size_kb']:.1f} KiB")
    tail = f"; {record['reason']}" if record["status"] == "over_budget" else ""
    return f"{head}: {', '.join(parts)}{tail}"


def check_outcome(doc: dict) -> None:
    """After the search: every trial failed (exit 1), or none met the budget (exit 2, naming the bound)."""
    trials = doc["trials"]
    measured = [t for t in trials if t["status"] in ("complete", "over_budget")]
    if trials and not measured:
        first = next(t for t in trials if t["status"] == "failed")
        raise ConversionError(f"every trial failed ({len(trials)}); trial {first['number']}: {first['reason']} "
                              f"(search.json in {doc['out']} has each reason)")
    budget = doc["budget"]
    if budget and measured and not any(t["status"] == "complete" for t in measured):
        binding = [k for k in budget if all(obj.constraints(t["metrics"], {k: budget[k]})[k] > 0 for t in measured)]
        if binding:
            said = ", ".join(_bound_words(k, budget[k], measured) for k in binding)
            raise UserInputError(f"no trial met the budget: {said}; loosen `budget` (search.json in {doc['out']} "
                                 "has every trial)")
        raise UserInputError(f"no trial met the whole budget at once ({', '.join(f'{k}={v:g}' for k, v in budget.items())}), "
                             "though each bound alone was met by some trial; loosen `budget`")


def _bound_words(key: str, limit: float, measured: list[dict]) -> str:
    values = [t["metrics"][key] for t in measured]
    most = obj.BUDGET_KEYS[key] == "most"
    best = min(values) if most else max(values)
    return (f"{key} {'<=' if most else '>='} {limit:g} bound all {len(measured)} measured trials "
            f"(the best reached {best:.4g})")


def _one_line(exc) -> str:
    return " ".join(str(exc).split())[:300]
