"""One search from its inputs to its outputs: check everything, run the study, write the results.

Every input is checked before the first trial (a trial costs a conversion): the space against the stage
schemas, the objectives and budget, the counts, ``out``, the target and host, and the model and data
specs (loaded once here, so a typo is one line and exit 2, not N failed trials).
"""

from __future__ import annotations

import math

from edgehad.core.errors import UserInputError


def search(model, *, data, out, target=None, host=None, space=None, budget=None,
           objectives=("accuracy", "latency", "size"), trials=None, minutes=None, jobs=1, seed=0,
           resume=False, progress=None) -> dict:
    """See edgehad.api.search."""
    from edgehad.core.files import check_writable
    from edgehad.search import objectives as obj
    from edgehad.search import results, study
    from edgehad.search.executor import LocalExecutor
    from edgehad.search.space import Space, load_space

    progress = progress or (lambda message: None)
    if not isinstance(model, str):
        raise UserInputError("`model` must be a MODEL spec (zoo:NAME, path/file.py:factory, package.module:factory, "
                             "file.pt2): each trial converts it in a worker process of its own")
    if not isinstance(data, str) or not data:
        raise UserInputError("`data` must be a data spec (digits, file.npz, module:function): accuracy is "
                             "measured on its val split")
    _count("trials", trials, int)
    _count("jobs", jobs, int)
    if minutes is not None and (isinstance(minutes, bool) or not isinstance(minutes, (int, float))
                                or not math.isfinite(minutes) or minutes <= 0):
        raise UserInputError(f"`minutes` must be a number > 0, got {minutes!r}")
    if trials is not None and minutes is not None:
        raise UserInputError("give `trials` or `minutes`, not both")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UserInputError(f"`seed` must be an integer >= 0, got {seed!r}")
    names = obj.parse_objectives(objectives)
    bounds = obj.parse_budget(budget)
    the_space = space if isinstance(space, Space) else load_space(space)
    out = check_writable(out, "`out`", folder=True)
    _check_where(target, host)

    settings = study.Settings(model=model, data=data, out=out, space=the_space, objectives=names, budget=bounds,
                              target=target, host=host, trials=trials, minutes=minutes, jobs=jobs, seed=seed,
                              resume=resume)
    study.check_out(settings)
    if not resume:  # a resumed study's model and data were checked when it started
        _check_model_and_data(model, data, progress)
    with LocalExecutor(jobs=jobs) as executor:
        study.run(settings, executor, progress=progress)
    the_study, population = study.open_study(_reopen(settings))
    doc = results.collect(the_study, settings, population)
    results.write(doc, out)
    study.check_outcome(doc)
    return doc


def _reopen(settings):
    """The same settings, opening the stored study (which the run has created)."""
    from dataclasses import replace

    return replace(settings, resume=True, ran=settings.ran)


def _count(name: str, value, kind) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, kind) or value < 1:
        raise UserInputError(f"`{name}` must be an integer >= 1, got {value!r}")


def _check_where(target, host) -> None:
    """The target by name (a device description; ``local`` by default) and at most one host to time on."""
    if host is not None:
        if not isinstance(host, str) or not host.strip() or "," in host:
            raise UserInputError("`host` must be one device (ssh://user@host[:port] or a hosts.toml name): a "
                                 "search times every trial on the same board")
        from edgehad.profiling.hosts import resolve_host

        resolve_host(host)  # a bad spec or unknown name before any trial
    if target is not None:
        from edgehad.targets import load_target

        load_target(target)
        if target == "emulated-aarch64":
            if host is not None:
                raise UserInputError("`target` emulated-aarch64 runs here under qemu; leave out `host`")
            from edgehad.profiling.emulated import ready_dir

            ready_dir()


def _check_model_and_data(model: str, data: str, progress) -> None:
    from edgehad.data import load_data
    from edgehad.loading import load_model

    progress(f"checking {model} and {data}")
    load_model(model)
    load_data(data)
