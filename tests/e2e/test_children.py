"""No child of edgehad outlives it or its time limit (edgehad.core.children), read off /proc.

The long-running child is real: ``edgehad micro`` on a model whose WHILE loop never ends runs a TFLM
probe that spins at 100% CPU until something kills it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgehad.core.children import run_child
from tests.e2e.test_micro_bad_input import write_forever

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text.rsplit(")", 1)[1].split()  # the name may hold spaces and parentheses
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    """Running or sleeping; a zombie (dead, not yet reaped by whoever inherited it) counts as gone."""
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid``, found through the parent pids in /proc."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat and stat[0] not in ("Z", "X"):
                parents[int(entry)] = stat[1]
    found, frontier = [], {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found += sorted(frontier)
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _wait_gone(pids, seconds: float = 10.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        left = [p for p in pids if alive(p)]
        if not left:
            return []
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


def _kill_leftovers(pids) -> None:
    for pid in pids:  # only if the test failed: never leave a spinning probe on a shared machine
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGKILL, -9)])
def test_killing_edgehad_kills_its_probe(signum, code, tmp_path):
    """SIGTERM, Ctrl-C and SIGKILL to `edgehad micro` while its TFLM probe spins: the probe is gone at once."""
    model = write_forever(tmp_path)
    parent = subprocess.Popen([sys.executable, "-m", "edgehad", "micro", str(model)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    family = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and parent.poll() is None:
            family = descendants(parent.pid)
            if any("edgehad.micro.probe" in _cmdline(p) for p in family):
                break
            time.sleep(0.1)
        assert any("edgehad.micro.probe" in _cmdline(p) for p in family), parent.communicate(timeout=60)
        time.sleep(0.5)  # the probe is in TFLM's endless invoke by now
        family = descendants(parent.pid)
        parent.send_signal(signum)
        _, stderr = parent.communicate(timeout=30)
        assert parent.returncode == code, stderr[-2000:]
        left = _wait_gone(family)
        assert left == [], [(p, _cmdline(p)) for p in left]
        if signum == signal.SIGINT:
            assert "error: interrupted" in stderr and "Traceback" not in stderr
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        _kill_leftovers(family)


def test_time_limit_kills_the_child_and_its_grandchildren():
    """A child that started a grandchild and then hangs: at the limit both are dead, and what it printed comes back."""
    script = ("import subprocess, time; g = subprocess.Popen(['sleep', '300']); print(g.pid, flush=True); "
              "time.sleep(300)")
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired) as caught:
        run_child([sys.executable, "-c", script], timeout=2)
    assert time.monotonic() - started < 30
    grandchild = int(caught.value.output.split()[0])
    assert caught.value.timeout == 2
    assert _wait_gone([grandchild], 5) == [], _cmdline(grandchild)


def test_what_a_finished_child_left_running_is_killed():
    """A child that exits at once but leaves a background process (not holding its pipes): that one dies too."""
    result = run_child(["sh", "-c", "sleep 300 >/dev/null 2>&1 </dev/null & echo $!"], timeout=30)
    assert result.returncode == 0
    assert _wait_gone([int(result.stdout.split()[0])], 5) == []


def test_run_child_output_and_refusals():
    result = run_child([sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"],
                       timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (3, "out\n", "err\n")
    with pytest.raises(TypeError, match="never a shell string"):
        run_child("echo hi", timeout=5)
    for bad in (0, -1, float("inf"), float("nan"), None, True):
        with pytest.raises(ValueError, match="needs a time limit"):
            run_child(["true"], timeout=bad)
