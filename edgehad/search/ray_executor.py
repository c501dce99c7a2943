"""Where trials run on a Ray cluster (``ray="auto"`` or ``"host:port"``): the LocalExecutor's interface over Ray tasks.

Ray Core tasks, not Ray Tune: the study (its generations, seeded asks, in-order tells, the identical-recipe
map, resume) lives in edgehad.search.study and drives any executor that offers ``submit(spec)`` -> a
future-like and ``in_order(futures)``. A Ray executor with that interface keeps "the same seed gives the same
trials and the same front" without a line of its own; Tune's OptunaSearch would own the ask/tell loop and
ask as trials finish, so the trials would depend on which finished first.

One trial is two tasks::

    convert (num_cpus=1, any node, max_retries=2)  ->  time (edgehad-device:<place>=1, one node)

- ``convert`` runs the trial in a fresh ``python -m edgehad.search.worker`` child of the task, through a
  LocalExecutor(jobs=1) in that task, so every rule of a local trial holds on every node: a fresh process
  (no global state from an earlier trial), one thread, the time limit that kills its process group, and a
  crash in native code that fails one trial instead of taking the Ray worker down (which Ray would retry
  as a system failure, again and again for a deterministic crash). A Ray worker with ``max_calls=1``
  would give the fresh process but none of the others. The trial writes into a temporary folder of the
  node (no shared file system is assumed) and the task returns its record and its files (small: MBs);
  the search's process writes them into ``DIR/trials/K``.
- ``time`` times the objective file where the latency counts, holding the device's Ray custom resource of
  capacity 1, so the scheduler keeps two timings off one board while conversions and fine-tuning spread
  over every node: ``edgehad-device:local`` for ``local`` and ``emulated-aarch64``, pinned to the node this
  search runs on (every trial's latency comes from one machine; the timing takes a CPU there, so no
  conversion shares its core), ``edgehad-device:<host>`` for ``host`` (the node that declares it reaches
  the board over SSH). No timing task where no device is timed (latency not asked, or a roofline
  estimate): ``convert`` measures everything.

A node that dies mid-trial: Ray runs the lost task again on another node (``max_retries``; a finished
task whose result was on that node too, by lineage); when the retries are spent the trial is recorded
failed with Ray's reason. The study storage stays with this process (SQLite in DIR), so nothing a dead
node held is needed.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

from edgehad.core.errors import UserInputError
from edgehad.search.trial import LOG_FILE, RECIPE_FILE, RESULT_FILE, TrialSpec

DEVICE = "edgehad-device:"          # a device's Ray resource: DEVICE + "local" or DEVICE + host
LOCAL_DEVICE = DEVICE + "local"
CONVERT_RETRIES = 2                 # a node lost mid-trial: run the trial again elsewhere, twice at most
CONNECT_TIMEOUT_S = 5.0
WAIT_S = 0.5
INSTALL = "pip install 'edgehad[ray]'"


def device_resource(target: str | None, host: str | None, time_latency: bool) -> str | None:
    """The Ray resource a trial's timing holds, or None when no device is timed (no latency, or an estimate)."""
    from edgehad.targets import LOCAL

    if not time_latency:
        return None
    if host:
        return DEVICE + host
    if (target or LOCAL) in (LOCAL, "emulated-aarch64"):
        return LOCAL_DEVICE
    return None  # a device target with no host: its roofline estimate, computed where the trial converts


def _import_ray():
    try:
        import ray
    except ImportError:
        raise UserInputError(f"`ray` needs Ray, which is not installed here: {INSTALL}") from None
    return ray


def check_address(address) -> str:
    """``auto`` or a GCS address ``host:port``, and Ray installed: checked before the search starts (exit 2)."""
    if not isinstance(address, str) or not address.strip():
        raise UserInputError("`ray` must be auto or a Ray cluster's address host:port (the address `ray start` "
                             "prints on the head node)")
    address = address.strip()
    _import_ray()  # a missing extra is said before anything else runs
    if address == "auto":
        return address
    if address.startswith("ray://"):
        raise UserInputError(f"`ray` {address} is a Ray Client address: run the search on a node of the cluster "
                             "and give its GCS address host:port (or auto)")
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserInputError(f"`ray` {address}: give auto or the cluster's address host:port (the address `ray "
                             "start` prints on the head node, e.g. 10.0.0.5:6379)")
    return address


def _reachable(address: str) -> None:
    """A TCP connection to the GCS first: ``ray.init`` retries an unreachable address for minutes."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UserInputError(f"`ray` {address}: no Ray cluster answers there ({reason}): start one (`ray start` on "
                             "its head node) and give the address it prints, or auto") from None


class RayExecutor:
    """Run trials as Ray tasks; ``with RayExecutor("auto", device=...) as ex:`` as a LocalExecutor."""

    def __init__(self, address: str, device: str | None = None, progress=None):
        self.address = check_address(address)
        self.device = device
        self.progress = progress or (lambda message: None)
        self._ray = None
        self._started_here = False
        self._live: list = []
        # which cluster ran this call's trials, as search.json's `runs` records it (edgehad.search.results):
        # the address given, the GCS address Ray connected to (auto resolved), and the nodes alive at the start
        self.cluster: dict | None = None

    def __enter__(self):
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def connect(self) -> None:
        """Join the cluster (``auto``: this machine's, else a private one started for this search) and check
        that the device resource the trials time on is there."""
        ray = _import_ray()
        address = self.address
        if address == "auto" and os.environ.get("RAY_ADDRESS"):
            address = check_address(os.environ["RAY_ADDRESS"])
        if address != "auto":
            _reachable(address)
        options = {"log_to_driver": False, "logging_level": "WARNING", "include_dashboard": False}
        try:
            try:
                ray.init(address=address, **options)
            except ConnectionError:
                if address != "auto":
                    raise
                # no cluster on this machine: one for this search alone, with this machine's board
                ray.init(num_cpus=os.cpu_count() or 1, resources={LOCAL_DEVICE: 1}, **options)
                self._started_here = True
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UserInputError(f"`ray` {self.address}: Ray could not join the cluster ({_one_line(exc)})") from None
        self._ray = ray
        try:
            self._node = ray.get_runtime_context().get_node_id()
            self._convert, self._time = ray.remote(_convert_task), ray.remote(_time_task)
            nodes = [n for n in ray.nodes() if n.get("Alive")]
            cpus = sum(n["Resources"].get("CPU", 0) for n in nodes)
            where = "a local cluster started for this search" if self._started_here else address
            self.cluster = {"executor": "ray", "address": self.address, "connected": _gcs_address(ray) or address,
                            "started_here": self._started_here, "nodes": len(nodes), "cpus": cpus,
                            "device": self.device}
            self.progress(f"ray: {where}, {len(nodes)} node(s), {cpus:g} CPUs"
                          + (f"; timings hold {self.device}" if self.device else ""))
            if self.device:
                self._check_device(nodes)
        except BaseException:  # __exit__ does not run when __enter__ raises
            self.close()
            raise

    def _check_device(self, nodes: list[dict]) -> None:
        if self.device == LOCAL_DEVICE:
            here = [n for n in nodes if n["NodeID"] == self._node]
            if here and self.device in here[0]["Resources"]:
                return
            raise UserInputError(f"`ray`: the Ray node this search runs on has no {LOCAL_DEVICE} resource, which keeps "
                                 f"timings on this machine one at a time: start that node with the resources "
                                 f"{{\"{LOCAL_DEVICE}\": 1}} (the resources option of `ray start`)")
        if not any(self.device in n["Resources"] for n in nodes):
            raise UserInputError(f"`ray`: no node of the cluster has the resource {self.device}: start the node that "
                                 f"reaches that board with the resources {{\"{self.device}\": 1}} (the resources "
                                 "option of `ray start`)")

    def submit(self, spec: TrialSpec) -> "RayTrial":
        """Queue one trial on the cluster: its conversion now, its timing once the conversion is done."""
        ray = self._ray
        timed = self.device is not None and spec.time_latency
        convert = self._convert.options(num_cpus=1, num_returns=2, max_retries=CONVERT_RETRIES,
                                        retry_exceptions=False, name=f"edgehad-trial-{spec.number}")
        record_ref, files_ref = convert.remote(spec.as_dict(), (Path(spec.folder) / RECIPE_FILE).read_text(), timed)
        time_ref = None
        if timed:
            options = {"num_cpus": 0, "resources": {self.device: 1}, "max_retries": 1,
                       "name": f"edgehad-timing-{spec.number}"}
            if self.device == LOCAL_DEVICE:
                from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

                options.update(num_cpus=1, scheduling_strategy=NodeAffinitySchedulingStrategy(self._node, soft=False))
            time_ref = self._time.options(**options).remote(spec.as_dict(), record_ref, files_ref)
        trial = RayTrial(ray, spec, record_ref, files_ref, time_ref)
        self._live = [t for t in self._live if t._result is None] + [trial]
        return trial

    def in_order(self, futures):
        """Each future's record in the order given, as soon as it and all before it are done."""
        for future in futures:
            while not future.done():
                time.sleep(WAIT_S)
            yield future.result()

    def close(self) -> None:
        """Cancel what still runs (its workers and their trial processes die) and leave the cluster."""
        if self._ray is None:
            return
        for trial in self._live:
            trial.cancel()
        self._live.clear()
        self._ray.shutdown()  # also stops a cluster started here
        self._ray = None


class RayTrial:
    """A trial's tasks, as a future: ``done()``, and ``result()`` -> the record, its files written in DIR."""

    def __init__(self, ray, spec: TrialSpec, record_ref, files_ref, time_ref):
        self._ray, self.spec = ray, spec
        self._refs = [r for r in (record_ref, files_ref, time_ref) if r is not None]
        self._record_ref, self._files_ref, self._time_ref = record_ref, files_ref, time_ref
        self._result = None

    def done(self) -> bool:
        if self._result is not None:
            return True
        ready, _ = self._ray.wait(self._refs, num_returns=len(self._refs), timeout=0, fetch_local=False)
        return len(ready) == len(self._refs)

    def cancel(self) -> None:
        if self._result is None:
            for ref in self._refs:
                try:
                    self._ray.cancel(ref, force=True)
                except Exception:  # already finished, or its node is gone: nothing left to stop
                    pass

    def result(self) -> dict:
        if self._result is None:
            self._result = self._collect()
            # the files are in DIR now: let go of Ray's copies, which would otherwise stay in the object store
            self._refs, self._record_ref, self._files_ref, self._time_ref = [], None, None, None
        return self._result

    def _collect(self) -> dict:
        from edgehad.core.files import atomic_path, write_text
        from edgehad.core.jsondoc import dumps
        from edgehad.search.executor import _failed

        folder = Path(self.spec.folder)
        try:
            record, files = self._ray.get([self._record_ref, self._files_ref])
        except Exception as exc:  # the task's retries are spent (its node died each time), or it raised
            record = _failed(self.spec, f"the Ray task failed: {_ray_reason(exc)}")
            write_text(folder / RESULT_FILE, dumps(record, indent=2) + "\n")
            return record
        for name, data in files.items():  # everything the trial wrote, before the record that lists it
            with atomic_path(folder / name) as tmp:
                tmp.write_bytes(data)
        if self._time_ref is not None and record["status"] == "complete":
            try:
                timing, log = self._ray.get(self._time_ref)
            except Exception as exc:
                timing, log = {"status": "failed", "reason": f"the Ray timing task failed: {_ray_reason(exc)}"}, ""
            if log:
                with open(folder / LOG_FILE, "a") as handle:
                    handle.write(log)
            if timing["status"] == "complete":
                record["metrics"].update(timing["metrics"])
            else:  # as a failed timing fails a local trial
                record.update(status="failed", reason=timing["reason"])
        write_text(folder / RESULT_FILE, dumps(record, indent=2) + "\n")
        return record


def _convert_task(spec: dict, recipe: str, timed_elsewhere: bool):
    """On any node: the trial in a fresh worker process, in a folder of this node; (record, {path: bytes})."""
    from dataclasses import replace

    from edgehad.search.executor import LocalExecutor

    spec = TrialSpec.from_dict(spec)
    root = Path(tempfile.mkdtemp(prefix="edgehad-trial-"))
    try:
        here = root / str(spec.number)
        here.mkdir()
        (here / RECIPE_FILE).write_text(recipe)
        # the device lock is DIR's, on the search's node: here the timing task's resource does its work
        mine = replace(spec, folder=str(here), lock=None, time_latency=spec.time_latency and not timed_elsewhere)
        with LocalExecutor(jobs=1) as executor:
            (record,) = executor.in_order([executor.submit(mine)])
        files = {str(p.relative_to(here)): p.read_bytes() for p in sorted(here.rglob("*"))
                 if p.is_file() and p.name not in (RECIPE_FILE, RESULT_FILE, "spec.json")}
        return _moved(record, str(here), spec.folder), files
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _time_task(spec: dict, record: dict, files: dict):
    """On the device's node: time the trial's objective file in a fresh worker process; (timing record, log)."""
    from dataclasses import replace

    from edgehad.search.executor import LocalExecutor

    spec = TrialSpec.from_dict(spec)
    if record["status"] != "complete":
        return {"status": "failed", "reason": record["reason"]}, ""
    root = Path(tempfile.mkdtemp(prefix="edgehad-timing-"))
    try:
        name = str(Path(record["objective_file"]).relative_to(spec.folder))
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(files[name])
        mine = replace(spec, folder=str(root), lock=None, extra={**spec.extra, "time_file": str(path)})
        with LocalExecutor(jobs=1) as executor:
            (timing,) = executor.in_order([executor.submit(mine)])
        log = (root / LOG_FILE).read_text(errors="replace") if (root / LOG_FILE).is_file() else ""
        return timing, log
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _moved(record: dict, here: str, there: str) -> dict:
    """The record with its paths in the node's folder ``here`` named in the search's folder ``there``."""
    def move(value):
        if isinstance(value, str) and (value == here or value.startswith(here + os.sep)):
            return there + value[len(here):]
        if isinstance(value, list):
            return [move(v) for v in value]
        return value

    return {key: move(value) for key, value in record.items()}


def _gcs_address(ray) -> str | None:
    """The GCS address this process is connected to (what ``auto`` or ``RAY_ADDRESS`` resolved to)."""
    try:
        return ray.get_runtime_context().gcs_address
    except Exception:  # an older Ray without it: the address given stands
        return None


def _ray_reason(exc) -> str:
    """Ray's exception in one line: its type and the first line that says something."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return _one_line(f"{type(exc).__name__}: {lines[0] if lines else ''}")


def _one_line(exc) -> str:
    line = " ".join(str(exc).split())
    return line if len(line) <= 300 else line[:297] + "..."
