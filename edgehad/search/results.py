"""What a search leaves: ``DIR/search.json``, ``DIR/search.html`` and the Pareto front in ``DIR/front/K/``.

The front is Optuna's ``study.best_trials``: the finished trials no other trial dominates on the
objectives, among the feasible ones when there is a budget (a trial over budget is never on it), less
the copies (``same_as``: a trial whose recipe an earlier trial had, told that trial's record), which
tie with their original and are the same files.

``DIR/front/K/`` holds front member K's files (model.onnx / model.tflite, report.json, report.md), its
``recipe.toml`` and ``trial.json``: hard links to the trial's own files where the file system allows,
copies elsewhere. The folder is rebuilt whole at the end of every call and replaces the old one in one
step (edgehad.core.files.replace_dir), as ``search.json`` and ``search.html`` (edgehad.search.html) are
written to a temporary name and renamed: an interrupted search never leaves a half-written front or page.

``runs`` says what ran the trials, call by call: local workers, or which Ray cluster (the address given,
the one Ray joined, its nodes at the start). It is kept in the study (a user attribute), so a resume on
another executor adds its own entry to the earlier ones.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from edgehad.search import objectives as obj
from edgehad.search.html import PAGE_FILE
from edgehad.search.trial import FILES_DIR, RECIPE_FILE, RESULT_FILE

SEARCH_FILE = "search.json"
FRONT_DIR = "front"
RUNS_ATTR = "edgehad_runs"   # the study's user attribute that keeps every call's run (``runs`` in search.json)


def begin(settings, executor, progress=None) -> dict:
    """This call's entry of ``runs``: what runs its trials, said in the progress when a resume runs them
    elsewhere than the call before it.

    ``{"executor": "local", "jobs": K}``, or the Ray executor's ``cluster`` (edgehad.search.ray_executor:
    ``address`` as given, ``connected`` the GCS address Ray joined, ``started_here``, ``nodes`` and ``cpus``
    alive at the start, ``device`` the resource timings hold), with ``started`` (UTC) and ``resume``;
    :func:`collect` adds ``ran`` and keeps it in the study. Another executor is no stale resume (the trials
    answer the same question wherever they run: same seed, same trials), so it is said, never refused.
    """
    from datetime import datetime, timezone

    progress = progress or (lambda message: None)
    run = dict(getattr(executor, "cluster", None) or {"executor": "local", "jobs": settings.jobs})
    run.update(started=datetime.now(timezone.utc).isoformat(timespec="seconds"), resume=bool(settings.resume))
    if settings.resume:
        before = _stored_runs(settings.out)
        if before and _where(before[-1]) != _where(run):
            progress(f"resume: the study's last finished call ran its trials {_where(before[-1])}; this call runs "
                     f"them {_where(run)} (search.json `runs` lists every call)")
    return run


def _where(run: dict) -> str:
    """Where a run's trials ran, in words; two runs with the same words ran on the same executor."""
    if run.get("executor") == "ray":
        if run.get("started_here"):
            return "on a Ray cluster started for that call on its machine"
        return f"on the Ray cluster at {run.get('connected') or run.get('address')}"
    return "in local worker processes"


def _stored_runs(out: Path) -> list[dict]:
    """The runs kept in the study at ``out`` (none before the first call that finished)."""
    import optuna

    from edgehad.search.study import STUDY_NAME, storage_url

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return list(optuna.load_study(study_name=STUDY_NAME, storage=storage_url(out)).user_attrs.get(RUNS_ATTR, []))
    except Exception:  # not a study of ours: open_study says so, naming the file
        return []


def collect(study, settings, population: int, run: dict | None = None) -> dict:
    """The search document: settings, every trial (number order), the front, and every call's run.

    ``run``: this call's (:func:`begin`), kept in the study with the trials it ran (``ran``), so that
    ``runs`` lists every call that finished, oldest first, across resumes.
    """
    from edgehad import __version__
    from edgehad.search.study import STUDY_FILE, storage_url

    runs = list(study.user_attrs.get(RUNS_ATTR, []))
    entry = None if run is None else {**run, "ran": sorted(settings.ran)}
    if entry is not None and (not runs or runs[-1] != entry):  # collected twice in one call: kept once
        runs.append(entry)
        study.set_user_attr(RUNS_ATTR, runs)

    copies = {t.number for t in study.get_trials(deepcopy=False)
              if (t.user_attrs.get("record") or {}).get("same_as") is not None}
    front = sorted(t.number for t in study.best_trials if t.number not in copies)
    trials = []
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        record = dict(t.user_attrs.get("record") or {})
        values = {name: p.value(t.params[p.name]) for p in settings.space.params if p.name in t.params
                  for name in [f"[{p.stage}] {p.key}"]}
        trials.append({
            "number": t.number,
            "status": record.get("status", "running" if not t.state.is_finished() else t.state.name.lower()),
            "reason": record.get("reason"),
            "params": values,
            "metrics": record.get("metrics", {}),
            "constraints": dict(t.constraints) if getattr(t, "constraints", None) else None,
            "objective_file": record.get("objective_file"),
            "files": record.get("files", []),
            "recipe": str(settings.out / "trials" / str(t.number) / RECIPE_FILE),
            "seconds": record.get("seconds"),
            "front": t.number in front,
            "same_as": record.get("same_as"),
        })
    return {
        "edgehad_version": __version__,
        "model": settings.model,
        "weights": settings.weights,
        "model_args": settings.model_args,
        "data": settings.data,
        "space": {"name": settings.space.name, "path": settings.space.path, **settings.space.canonical()},
        "objectives": {name: obj.OBJECTIVES[name][1] for name in settings.objectives},
        "budget": settings.budget,
        "target": settings.target or "local",
        "host": settings.host,
        "seed": settings.seed,
        "population": population,
        "jobs": settings.jobs,
        "storage": storage_url(settings.out),
        "study_file": str(settings.out / STUDY_FILE),
        "trials": trials,
        "front": front,
        "front_dir": str(settings.out / FRONT_DIR),
        "page": str(settings.out / PAGE_FILE),
        "ran": sorted(settings.ran),
        "runs": runs,
        "out": str(settings.out),
    }


def write(doc: dict, out: Path) -> None:
    """``front/``, ``search.html`` and ``search.json``, each replaced in one step."""
    from edgehad.core.files import write_text
    from edgehad.core.jsondoc import dumps
    from edgehad.search.html import write_page

    _write_front(doc, out)
    write_page(doc, out)
    write_text(out / SEARCH_FILE, dumps(doc, indent=2) + "\n")


def _write_front(doc: dict, out: Path) -> None:
    from edgehad.core.files import remove_stale, replace_dir

    remove_stale(out / FRONT_DIR)  # the staging folder of a search killed while writing its front
    stage = Path(tempfile.mkdtemp(prefix=f".{FRONT_DIR}.{os.getpid()}.", suffix=".partial", dir=out))
    try:
        for number in doc["front"]:
            trial = out / "trials" / str(number)
            member = stage / str(number)
            member.mkdir()
            sources = [trial / RECIPE_FILE, trial / RESULT_FILE, *sorted((trial / FILES_DIR).iterdir())]
            for source in sources:
                if source.is_file():
                    _link_or_copy(source, member / source.name)
        os.chmod(stage, 0o755)
        replace_dir(stage, out / FRONT_DIR)
    finally:
        shutil.rmtree(stage, ignore_errors=True)  # after an exchange: the old front


def _link_or_copy(source: Path, dest: Path) -> None:
    try:
        os.link(source, dest)
    except OSError:  # another file system, or one without hard links
        shutil.copy2(source, dest)

