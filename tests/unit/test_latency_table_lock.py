"""A latency table measured inside a search worker waits for the search's device lock (``$EDGEHAD_DEVICE_LOCK``).

The lock is held by another process, as another trial's worker holds it while it times its file. Whether the
measurement waits is read from the kernel (/proc/locks lists a blocked flock with ``->``), never from a clock.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edgehad.prune.latency_table import LatencyTable, LayerSpec
from edgehad.core.device_lock import LOCK_ENV, device_lock

SPEC = LayerSpec("conv2d", (1, 8, 8, 8), 8, 8, (3, 3), (1, 1), (1, 1), (1, 1), 1, False)
HOLD = "import fcntl, sys; f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); " \
       "sys.stdin.read()"
pytestmark = pytest.mark.skipif(not Path("/proc/locks").exists(), reason="reads the kernel's lock table")


def _waiters(lock: Path) -> int:
    """How many flocks on ``lock`` the kernel has blocked (lines ``N: -> FLOCK ...`` naming its inode)."""
    inode = f":{lock.stat().st_ino} "
    return sum(1 for line in Path("/proc/locks").read_text().splitlines()
               if "->" in line and "FLOCK" in line and inode in line)


class Holder:
    """Another process that holds the lock (as a trial's timing does) until ``release()``."""

    def __init__(self, lock: Path):
        self.proc = subprocess.Popen([sys.executable, "-c", HOLD, str(lock)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "held"

    def release(self) -> None:
        self.proc.stdin.close()
        assert self.proc.wait(timeout=30) == 0


def _measure_in_thread(table: LatencyTable, cin: int, cout: int, events: list) -> threading.Thread:
    def work():
        table.us(SPEC, cin, cout)
        events.append("measured")

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def _until(condition, thread: threading.Thread) -> None:
    """Poll ``condition`` until it holds; a guard against a hang, not a timing: fails only after a minute."""
    deadline = time.monotonic() + 60
    while not condition():
        assert thread.is_alive() and time.monotonic() < deadline, "the measurement never reached the lock"
        time.sleep(0.01)


def test_a_measurement_in_a_search_worker_waits_for_the_device_lock(tmp_path, monkeypatch):
    lock = tmp_path / "device.lock"
    monkeypatch.setenv(LOCK_ENV, str(lock))
    table = LatencyTable("onnx", "fp32", folder=tmp_path / "cache")
    holder, events = Holder(lock), []
    thread = _measure_in_thread(table, 8, 8, events)
    _until(lambda: _waiters(lock) == 1, thread)      # blocked in flock, behind the other trial
    assert events == [] and table.measured == 0 and table.entries == {}
    events.append("released")
    holder.release()
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert events == ["released", "measured"]
    assert table.measured == 1 and table.us(SPEC, 8, 8) > 0

    # a width the table holds is read, not measured: no lock, even while another trial holds it
    holder = Holder(lock)
    try:
        thread = _measure_in_thread(table, 8, 8, events)
        thread.join(timeout=60)
        assert not thread.is_alive() and events[-1] == "measured" and table.measured == 1
        assert _waiters(lock) == 0
    finally:
        holder.release()


def test_outside_a_search_nothing_is_waited_for(tmp_path, monkeypatch):
    """No ``$EDGEHAD_DEVICE_LOCK`` (``edgehad convert`` alone): the table measures while the file is locked."""
    lock = tmp_path / "device.lock"
    monkeypatch.delenv(LOCK_ENV, raising=False)
    table = LatencyTable("onnx", "fp32", folder=tmp_path / "cache")
    holder, events = Holder(lock), []
    try:
        thread = _measure_in_thread(table, 8, 4, events)
        thread.join(timeout=60)
        assert not thread.is_alive() and events == ["measured"] and table.measured == 1
    finally:
        holder.release()


def test_the_lock_is_reentrant_in_a_thread_and_exclusive_across_threads(tmp_path, monkeypatch):
    """A table measured inside a held timing lock (same thread) does not wait on itself; another thread waits."""
    lock = tmp_path / "device.lock"
    monkeypatch.setenv(LOCK_ENV, str(lock))
    table = LatencyTable("onnx", "fp32", folder=tmp_path / "cache")
    with device_lock(str(lock)):
        table.us(SPEC, 4, 8)            # would block forever if the lock were taken a second time here
        assert table.measured == 1
        events = []
        thread = _measure_in_thread(table, 4, 4, events)
        _until(lambda: _waiters(lock) == 1, thread)
        assert events == [] and table.measured == 1
        events.append("released")
    thread.join(timeout=60)
    assert not thread.is_alive() and events == ["released", "measured"] and table.measured == 2


def test_a_search_worker_hands_its_lock_to_the_conversion(tmp_path):
    """A real ``python -m edgehad.search.worker``: the model factory, run inside the trial's conversion, reads
    ``$EDGEHAD_DEVICE_LOCK`` as the spec's lock (then fails the trial at once: nothing is converted)."""
    import json

    from edgehad.search.trial import RECIPE_FILE, RESULT_FILE, TrialSpec

    seen = tmp_path / "seen.txt"
    factory = tmp_path / "factory.py"
    factory.write_text("import os\n\ndef build():\n"
                       f"    open({str(seen)!r}, 'w').write(os.environ.get({LOCK_ENV!r}, 'unset'))\n"
                       "    raise ValueError('no model: this test only reads the environment')\n")
    folder = tmp_path / "trials" / "0"
    folder.mkdir(parents=True)
    (folder / RECIPE_FILE).write_text('name = "trial-0"\n[stages.export-onnx]\n')
    lock = tmp_path / "device.lock"
    spec = TrialSpec(number=0, model=f"{factory}:build", folder=str(folder), params={}, lock=str(lock))
    (folder / "spec.json").write_text(json.dumps(spec.as_dict()))
    env = {k: v for k, v in os.environ.items() if k != LOCK_ENV}
    done = subprocess.run([sys.executable, "-m", "edgehad.search.worker", str(folder / "spec.json")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert seen.read_text() == str(lock)
    record = json.loads((folder / RESULT_FILE).read_text())
    assert record["status"] == "failed" and "no model: this test only reads the environment" in record["reason"]
