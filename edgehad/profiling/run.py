"""Profile several files on one or several places: here, devices over SSH, or the emulated aarch64 userland.

Files on one host run one after another (two measurements at once would
share the cores); different hosts run at the same time, one thread each.
After measuring, each document gains what needs the host-side edgehad:
the target it was compared with, the roofline, parsed tegrastats samples.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from edgehad.core.errors import UserInputError
from edgehad.profiling.job import Job, check_file

LOCAL = "local"
EMULATED = "emulated-aarch64"
INPUT_SAMPLES = 16  # --data: this many validation samples, fed in turn


def write_inputs(spec: str, folder: Path, count: int = INPUT_SAMPLES, layouts=("nchw",)) -> dict:
    """The agent's ``--inputs`` archives from a data spec: ``count`` validation samples, batch 1 each; one
    archive per layout in ``layouts`` ({layout: path}): "nchw" holds the samples as the data give them
    (torch's order), "nhwc" holds image samples ([C, H, W] each) channels-last, for a .tflite that states
    an NHWC input (:func:`data_layout`). The agent feeds arrays as the file takes them: it has no
    layout of its own to apply."""
    import numpy as np

    from edgehad.data import load_data, sample_inputs
    from edgehad.runtime import TO_NHWC

    x = sample_inputs(load_data(spec), count)
    paths = {}
    for layout in layouts:
        fed = np.ascontiguousarray(x.transpose(TO_NHWC)) if layout == "nhwc" and x.ndim == 4 else x
        (folder / layout).mkdir(exist_ok=True)
        paths[layout] = folder / layout / "inputs.npz"  # the agent names the archive's file in input_source
        np.savez(paths[layout], fed[:, None])  # [N, 1, *sample]: every sample is one whole batch-1 input tensor
    return paths


def data_layout(path: Path) -> str:
    """The order in which ``path`` takes a data spec's samples: "nhwc" for a .tflite whose first input is
    stated channels-last (edgehad.runtime.read_layout), else "nchw" (ONNX, an NCHW .tflite)."""
    from edgehad.runtime import read_layout

    if Path(path).suffix != ".tflite":
        return "nchw"
    stated = (read_layout(path) or {}).get("inputs") or [None]
    return "nhwc" if stated[0] == "nhwc" else "nchw"


def _split_hosts(host) -> list[str]:
    if host is None:
        return []
    names = host.split(",") if isinstance(host, str) else list(host)
    names = [h.strip() for h in names if h and h.strip()]
    if not names:
        raise UserInputError("`host` is empty: give ssh://user@host[:port] or a name from hosts.toml")
    if len(set(names)) != len(names):
        raise UserInputError(f"`host` names a host twice ({', '.join(names)}): give each once")
    return names


def profile_all(files, job: Job, host=None, target: str | None = None, report: str | Path | None = None,
                data: str | None = None, progress: Callable[[str], None] | None = None,
                input_shape=None, inputs=None) -> list[dict]:
    """Measure every file on every host; one document per (host, file), hosts in the order given.

    Inputs: seeded random ones at each file's static input shapes and the symbolic dims ``input_shape``
    states, or the arrays of ``inputs`` (an .npz by input name; edgehad.inspection.inputs checks both
    against every file first), or ``data``'s samples.
    """
    from edgehad.inspection.inputs import file_inputs, write_samples
    from edgehad.targets import load_target

    paths = [check_file(f) for f in files]  # every bad path is reported before any measuring starts
    if data is not None and (input_shape is not None or inputs is not None):
        raise UserInputError("`data` feeds samples whose shapes are the inputs': give `data` or "
                             "`input_shape` / `inputs`, not both")
    hosts = _split_hosts(host)
    target_desc = load_target(target) if target else None
    if target == EMULATED and hosts:
        raise UserInputError(f"`target` {EMULATED} runs here under qemu; leave out `host`")
    if target == EMULATED:  # where it runs, checked before the files: setting it up is the first thing to do
        from edgehad.profiling.emulated import ready_dir

        ready_dir()
    # every file's inputs, before any measuring: a symbolic dim nothing fills is never guessed
    stated = {} if data is not None else {p: file_inputs(p, input_shape, inputs) for p in paths}
    if report is not None:
        report = Path(report)
        if report.exists() and not report.is_dir():
            raise UserInputError(f"`report` {report}: exists and is not a folder; give a folder path")
        from edgehad.core.files import check_writable

        check_writable(report, "`report`", folder=True)

    with tempfile.TemporaryDirectory(prefix="edgehad-profile-") as tmp:
        jobs = {}  # one Job per file: its input shapes, or its arrays as the agent's samples archive
        if data is not None:  # the samples in each file's own layout
            layouts = {p: data_layout(p) for p in paths}
            archives = write_inputs(data, Path(tmp), layouts=sorted(set(layouts.values())))
            jobs = {p: replace(job, inputs=archives[layouts[p]]) for p in paths}
        for k, (p, fed) in enumerate(stated.items()):
            if fed.arrays is not None:
                (Path(tmp) / str(k)).mkdir()
                jobs[p] = replace(job, inputs=write_samples(fed, Path(tmp) / str(k)))
            else:
                jobs[p] = replace(job, input_shapes=tuple((n, tuple(s)) for n, s in fed.by_name().items()))
        if target == EMULATED:
            from edgehad.profiling.emulated import profile_emulated

            plan = {EMULATED: lambda p: profile_emulated(p, jobs.get(p, job))}
        elif hosts:
            from edgehad.profiling.remote import profile_remote, resolve_host

            resolved = [resolve_host(h) for h in hosts]  # every bad host spec before any connection
            plan = {h.name: (lambda p, h=h: profile_remote(h, p, jobs.get(p, job), progress)) for h in resolved}
        else:
            from edgehad.profiling.local import profile_file

            plan = {LOCAL: lambda p: profile_file(p, jobs.get(p, job), progress)}
        results = _run_plan(plan, paths)

    for k, doc in enumerate(results):  # per host, the files in order (_run_plan)
        fed = stated.get(paths[k % len(paths)])
        if fed is not None and fed.arrays is not None:  # the agent saw a copy; name the user's file
            doc["input_source"] = f"the arrays of {fed.source}" if fed.source else "the arrays given"

    for doc in results:
        finish_document(doc, target_desc)
    if report is not None:
        from edgehad.profiling.html import write_report

        write_report(results, report)
    return results


def _run_plan(plan: dict, paths: list[Path]) -> list[dict]:
    def one_host(measure):
        return [measure(p) for p in paths]

    if len(plan) == 1:
        (measure,) = plan.values()
        return one_host(measure)
    with ThreadPoolExecutor(max_workers=len(plan)) as pool:
        futures = [pool.submit(one_host, m) for m in plan.values()]
        per_host = [f.result() for f in futures]  # the first failing host's error is raised
    return [doc for docs in per_host for doc in docs]


def finish_document(doc: dict, target_desc: dict | None) -> None:
    """Attach the target, roofline and parsed tegrastats samples to one agent document (in place)."""
    from edgehad.targets import closest_target, load_target

    if target_desc is None:
        # a hosts.toml entry may name its target; otherwise the closest to what the device reported
        name = LOCAL if doc.get("host") == LOCAL else (doc.get("target") or closest_target(doc.get("machine") or {}))
        target_desc = load_target(name) if name else None
    doc["target"] = target_desc["name"] if target_desc else None
    doc["roofline"] = None
    if target_desc is not None and not doc.get("emulated"):  # emulated timings mean nothing against a roofline
        from edgehad.profiling.roofline import roofline

        try:
            # at the shapes fed: a file's symbolic dims are costed at the sizes measured
            shapes = {name: v["shape"] for name, v in (doc.get("inputs") or {}).items()}
            doc["roofline"] = roofline(Path(doc["path"]), target_desc, doc["latency_ms"]["p50"], doc["threads"],
                                       doc.get("provider"), fp16=bool(doc.get("trt_fp16")), input_shapes=shapes)
        except UserInputError as exc:  # a model the cost model cannot read must not throw the measurement away
            doc["roofline_note"] = f"no roofline: {exc}"
    lines = doc.pop("tegrastats_lines", None)
    if lines is not None:  # a Jetson run; a run too short for one sample says so in tegrastats_note
        from edgehad.profiling.tegrastats import summarize

        doc["tegrastats"] = summarize(lines, power=doc.get("power_requested", True))
