"""One trial: a real conversion with the trial's recipe, then the metrics the objectives read.

No shortcut: a trial is ``edgehad.api.convert(MODEL, recipe=trials/K/recipe.toml, out=trials/K/files)``,
every stage and every verification included, then

- ``accuracy``: top-1 on the val split of the search's data, measured by the verify stage from the
  exported file itself (the file's ``task_accuracy`` in the conversion report), with the original
  model's top-1 on the same samples beside it (``accuracy_original``) and the drop in points
  (``accuracy_drop``). Accuracy is an objective here (bounded by ``budget`` accuracy=...), so the trial
  runs with verify's accuracy gate open (``max_accuracy_drop`` 100) unless the space fixes
  ``[verify] max_accuracy_drop`` itself; the gate is given to ``convert`` as a keyword, never written
  into the trial's recipe, so ``edgehad convert --recipe trials/K/recipe.toml --data ...`` of a front
  member judges accuracy with the usual default floor;
- ``size_kb``: that file's size (KiB);
- ``latency_ms``: the median latency of that file on the target, only when an objective or the budget
  reads it (timing costs device time): measured here (``local``), on ``host`` over SSH, or under qemu
  (``emulated-aarch64``, marked ``emulated``: outputs are real, timings are not); for a device target
  with no host to reach it, the roofline lower bound of the file on that target, marked ``estimate``
  (edgehad.profiling.roofline);
- ``ram_kb`` and ``flash_kb``, for an MCU target (edgehad.search.objectives): the trial's .tflite run
  under TFLite Micro by ``edgehad.api.micro(find_arena=True)``, as ``edgehad micro --find-arena`` runs
  it: ``ram_kb`` is the arena it recommends (the smallest that works plus 10%, whole KiB: what ``micro
  --target`` compares with the board's RAM), ``flash_kb`` the file's size (what it compares with the
  flash). A file TFLM cannot run (no kernel for an op) or should not (a float file: an MCU wants int8),
  or whose TFLM outputs differ from LiteRT's, makes the trial failed with micro's one-line reason.

The objective's file is the TFLite one when the trial exports it (the edge runtime), else the ONNX one.
Timing takes the device lock (``DIR/device.lock``): a device is a resource of capacity 1, so two local
workers never time at once. So does a measurement inside the conversion (the per-layer latency table of
``[stages.prune] target = "latency"``): the worker hands the lock's path down in ``$EDGEHAD_DEVICE_LOCK``
and the measurement holds edgehad.core.device_lock.measuring_lock.

A trial runs in a worker process (edgehad.search.worker); it never raises: a refusal, an export error,
a failed verification or a failed timing comes back as ``status`` "failed" with a one-line ``reason``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgehad.core.device_lock import device_lock

PROFILE_WARMUP = 3
PROFILE_RUNS = 20    # a modest count: the median of 20 single-thread runs orders variants of one model
RESULT_FILE = "trial.json"
RECIPE_FILE = "recipe.toml"
FILES_DIR = "files"
LOG_FILE = "worker.log"
OPEN_GATE = 100.0    # verify's max_accuracy_drop inside a trial: every accuracy is a point, none a failure


@dataclass
class TrialSpec:
    """Everything a worker needs to run trial ``number``; JSON both ways, so any executor can carry it."""

    number: int
    model: str
    folder: str                    # DIR/trials/K: recipe.toml is there, the files go to folder/files
    params: dict                   # Optuna's values by parameter name, as sampled
    time_latency: bool = False
    micro: bool = False            # measure ram_kb and flash_kb under TFLite Micro (an MCU target)
    weights: str | None = None     # a state dict for the model (as `edgehad convert --weights`)
    model_args: dict | None = None  # the model factory's keyword arguments
    target: str | None = None
    host: str | None = None
    lock: str | None = None        # the device lock file
    timeout_s: float = 3600.0
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrialSpec":
        return cls(**d)


def run_trial(spec: TrialSpec, progress=None) -> dict:
    """Convert, measure, and return the trial's record (never raises for a trial's own failure)."""
    progress = progress or (lambda message: None)
    folder = Path(spec.folder)
    started = time.monotonic()
    record = {"number": spec.number, "status": "failed", "reason": None, "params": spec.params,
              "metrics": {}, "files": [], "objective_file": None, "recipe": str(folder / RECIPE_FILE)}
    guarded(record, lambda: _convert_and_measure(spec, folder, progress))
    record["seconds"] = round(time.monotonic() - started, 3)
    return record


def guarded(record: dict, work) -> dict:
    """``record`` updated with what ``work()`` returns and marked complete, or left failed with a one-line
    ``reason``: a trial's own failure (and a bug in a library or in edgehad) fails the trial, never the search."""
    from edgehad.core.errors import EdgehadError

    try:
        record.update(work())
        record["status"] = "complete"
    except EdgehadError as exc:
        record["reason"] = _one_line(str(exc))
    except Exception as exc:  # a bug: the trial fails, the search goes on
        record["reason"] = _one_line(f"internal error: {type(exc).__name__}: {exc}")
    return record


def _convert_and_measure(spec: TrialSpec, folder: Path, progress) -> dict:
    from edgehad.api import convert

    out = folder / FILES_DIR
    recipe = folder / RECIPE_FILE
    report = convert(spec.model, weights=spec.weights, model_args=spec.model_args, recipe=str(recipe), out=out,
                     progress=progress,
                     max_accuracy_drop=None if _recipe_gates_accuracy(recipe) else OPEN_GATE)
    artifacts = report["artifacts"]
    chosen = next((a for a in artifacts if a["format"] == "tflite"), None) or \
        next((a for a in artifacts if a["format"] == "onnx"), None)
    files = [str(out / Path(a["path"]).name) for a in artifacts]
    if chosen is None:  # the space checks for an export stage; a recipe without one is no trial
        from edgehad.core.errors import ConversionError

        raise ConversionError("the conversion wrote no .onnx or .tflite file")
    path = out / Path(chosen["path"]).name
    accuracy = (chosen.get("parity") or {}).get("task_accuracy")
    original = _original_accuracy(report)
    metrics = {"accuracy": accuracy, "accuracy_original": original,
               "accuracy_drop": None if accuracy is None or original is None else round(100 * (original - accuracy), 4),
               "size_kb": round(chosen["size_bytes"] / 1024, 3), "latency_ms": None,
               "latency_source": None, "ram_kb": None, "flash_kb": None,
               "params": report["stages"][-1].get("params") if report.get("stages") else None,
               "macs": report["stages"][-1].get("macs") if report.get("stages") else None}
    if spec.micro:
        metrics.update(_micro(path, progress))
    if spec.time_latency:
        metrics.update(_latency(spec, path, progress))
    return {"metrics": metrics, "files": files, "objective_file": str(path)}


def _recipe_gates_accuracy(recipe: Path) -> bool:
    """Whether the trial's recipe (the space) fixes ``[verify] max_accuracy_drop`` itself."""
    import tomllib

    stages = tomllib.loads(recipe.read_text()).get("stages", {})
    return "max_accuracy_drop" in (stages.get("verify") or {})


def _original_accuracy(report: dict) -> float | None:
    """The original model's top-1 on the samples the files were judged on (the verify stage's task metric)."""
    for stage in report.get("stages", []):
        metric = stage.get("task_metric") or {}
        if metric.get("measured") and metric.get("original") is not None:
            return metric["original"]
    return None


def _latency(spec: TrialSpec, path: Path, progress) -> dict:
    """``latency_ms`` and where it comes from: "measured", "emulated" or "estimate"."""
    from edgehad.targets import LOCAL

    target = spec.target or LOCAL
    if target not in (LOCAL, "emulated-aarch64") and not spec.host:
        from edgehad.core.errors import ConversionError
        from edgehad.profiling.roofline import roofline
        from edgehad.targets import load_target

        roof = roofline(path, load_target(target), None, threads=1)
        if roof is None:
            raise ConversionError(f"no latency estimate: target {target} states no peak for this file's "
                                  "precision; give `host` to measure it on the device")
        return {"latency_ms": round(roof["bound_ms"], 6), "latency_source": "estimate"}
    from edgehad.api import profile

    with device_lock(spec.lock):
        progress(f"timing {path.name} on {spec.host or target}")
        (doc,) = profile(str(path), host=spec.host, target=spec.target, warmup=PROFILE_WARMUP,
                         runs=PROFILE_RUNS, threads=1)
    return {"latency_ms": doc["latency_ms"]["p50"], "latency_source": "emulated" if doc.get("emulated") else "measured"}


def _micro(path: Path, progress) -> dict:
    """``ram_kb`` (the recommended arena) and ``flash_kb`` (the file) as ``edgehad micro --find-arena`` says."""
    from edgehad.api import micro
    from edgehad.core.errors import ConversionError

    if path.suffix != ".tflite":
        raise ConversionError(f"an MCU runs a .tflite file, and this trial exported only {path.name}")
    progress(f"running {path.name} under TFLite Micro")
    doc = micro(str(path), find_arena=True, progress=progress)
    if doc["float_model"]:
        raise ConversionError(doc["warning"])
    if doc["problems"]:
        raise ConversionError(doc["problems"][0])
    arena = doc["arena"]
    return {"ram_kb": round(arena["recommended_bytes"] / 1024, 3), "flash_kb": round(doc["size_bytes"] / 1024, 3),
            "arena_min_bytes": arena["min_bytes"]}


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= 500 else line[:497] + "..."
