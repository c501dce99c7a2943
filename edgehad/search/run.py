"""One search from its inputs to its outputs: check everything, run the study, write the results.

Every input is checked before the first trial (a trial costs a conversion): the space against the stage
schemas, the objectives and budget, the counts, ``out``, the target and host, and the model and data
specs (loaded once here, so a typo is one line and exit 2, not N failed trials).
"""

from __future__ import annotations

import math

from edgehad.core.errors import UserInputError


def search(model, *, data, out, weights=None, model_args=None, target=None, host=None, space=None, budget=None,
           objectives=("accuracy", "latency", "size"), trials=None, minutes=None, jobs=1, seed=0,
           resume=False, ray=None, progress=None) -> dict:
    """See edgehad.api.search."""
    from edgehad.core.files import check_writable
    from edgehad.search import objectives as obj
    from edgehad.search import results, study
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
    mcu = _check_mcu(_check_where(target, host), names, bounds, the_space)
    if ray is not None:
        from edgehad.search.ray_executor import check_address

        ray = check_address(ray)
    weights, model_args = _check_model_options(weights, model_args)

    settings = study.Settings(model=model, data=data, out=out, space=the_space, objectives=names, budget=bounds,
                              target=target, host=host, trials=trials, minutes=minutes, jobs=jobs, seed=seed,
                              resume=resume, micro=mcu, weights=weights, model_args=model_args)
    study.check_out(settings)
    if not resume:  # a resumed study's model and data were checked when it started
        _check_model_and_data(model, data, progress, weights, model_args)
    with _executor(settings, ray, progress) as executor:
        this_run = results.begin(settings, executor, progress)  # which executor (and cluster) ran this call
        study.run(settings, executor, progress=progress)
    the_study, population = study.open_study(_reopen(settings))
    doc = results.collect(the_study, settings, population, this_run)
    results.write(doc, out)
    study.check_outcome(doc)
    return doc


def _executor(settings, ray, progress):
    """K local worker processes, or Ray tasks on the cluster at ``ray`` (whose timings hold the device's resource)."""
    if ray is None:
        from edgehad.search.executor import LocalExecutor

        return LocalExecutor(jobs=settings.jobs)
    from edgehad.search import objectives as obj
    from edgehad.search.ray_executor import RayExecutor, device_resource

    device = device_resource(settings.target, settings.host, obj.needs_latency(settings.objectives, settings.budget))
    return RayExecutor(ray, device=device, progress=progress)


def _reopen(settings):
    """The same settings, opening the stored study (which the run has created)."""
    from dataclasses import replace

    return replace(settings, resume=True, ran=settings.ran)


def _count(name: str, value, kind) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, kind) or value < 1:
        raise UserInputError(f"`{name}` must be an integer >= 1, got {value!r}")


def _check_where(target, host) -> dict | None:
    """The target by name (a device description; ``local`` by default) and at most one host to time on."""
    if host is not None:
        if not isinstance(host, str) or not host.strip() or "," in host:
            raise UserInputError("`host` must be one device (ssh://user@host[:port] or a hosts.toml name): a "
                                 "search times every trial on the same board")
        from edgehad.profiling.hosts import resolve_host

        resolve_host(host)  # a bad spec or unknown name before any trial
    if target is not None:
        from edgehad.targets import load_target

        described = load_target(target)
        if target == "emulated-aarch64":
            if host is not None:
                raise UserInputError("`target` emulated-aarch64 runs here under qemu; leave out `host`")
            from edgehad.profiling.emulated import ready_dir

            ready_dir()
        return described
    return None


def _check_mcu(target: dict | None, objectives, budget: dict, space) -> bool:
    """Whether trials measure ``ram_kb`` / ``flash_kb`` under TFLite Micro: always for an MCU target, never
    elsewhere (TFLM's arena says nothing of a board that runs LiteRT or onnxruntime under an OS)."""
    from edgehad.core.recipe import FORMAT_STAGES
    from edgehad.search import objectives as obj

    mcu = target is not None and obj.is_mcu(target)
    asked = obj.needs_micro(objectives, budget)
    if asked and not mcu:
        said = "objective" if asked[0] in objectives else "`budget` key"
        raise UserInputError(f"{said} {asked[0]} is TFLite Micro's figure for a microcontroller: give `target` an "
                             f"MCU description (a target .toml with ram_kb and flash_kb)")
    if mcu:
        if FORMAT_STAGES["tflite"] not in space.fixed:
            raise UserInputError(f"target {target['name']} is a microcontroller, which runs a .tflite file: add "
                                 f"[stages.{FORMAT_STAGES['tflite']}] to the search space")
        from edgehad.core.imports import require

        require("tflite_micro")
    return mcu


def _check_model_options(weights, model_args) -> tuple[str | None, dict | None]:
    """``weights`` as an absolute path (a worker may start elsewhere) and ``model_args`` as a JSON-able dict."""
    import json
    from pathlib import Path

    if weights is not None:
        if not isinstance(weights, (str, Path)) or not Path(weights).is_file():
            raise UserInputError(f"`weights` {weights}: no such file; give a .pt/.pth state dict or .safetensors")
        weights = str(Path(weights).absolute())
    if model_args is not None:
        if not isinstance(model_args, dict):
            raise UserInputError("`model_args` must be a dict of the model factory's keyword arguments")
        try:
            json.dumps(model_args, allow_nan=False)
        except (TypeError, ValueError):
            raise UserInputError("`model_args` must hold plain values (numbers, strings, booleans, lists): each "
                                 "trial's worker process receives them as JSON") from None
        model_args = model_args or None
    return weights, model_args


def _check_model_and_data(model: str, data: str, progress, weights=None, model_args=None) -> None:
    from edgehad.data import load_data
    from edgehad.loading import load_model

    progress(f"checking {model} and {data}")
    load_model(model, weights=weights, model_args=model_args)
    load_data(data)
