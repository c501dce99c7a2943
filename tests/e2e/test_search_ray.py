"""``edgehad search --ray`` on a real local Ray cluster (issue #16): a head node and one worker node on 127.0.0.1.

The head declares the device resource ``edgehad-device:local`` (the search runs there, so every latency is
timed on this machine) and 1 CPU, the worker node 1 CPU: conversions run on both, timings on the head.
The search is test_search.py's tiny one (TINY_SPACE, ARGS, seed 0) with a latency bound every file meets,
so every trial is timed through the device resource while the front stays the one of accuracy and size.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.test_search import ARGS, TINY_SPACE

pytestmark = [pytest.mark.ray, pytest.mark.slow]

BUDGET = ("--budget", "latency_ms=1000")   # met by every digits_cnn file: timed, and binding nothing
RAY = Path(sys.executable).with_name("ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_node(args: list[str], log: Path, tmp: Path) -> subprocess.Popen:
    """``ray start --block`` in a session of its own: one process group holds the node's raylet and helpers.
    ``tmp``: the node's TMPDIR, where its tasks put trial folders (a killed node leaves its folder there)."""
    tmp.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["TMPDIR"] = str(tmp)
    with open(log, "w") as out:
        return subprocess.Popen([str(RAY), "start", "--block", "--disable-usage-stats", "--node-ip-address",
                                 "127.0.0.1", *args], stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                env=env)


def _kill_node(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _raylet_of(node: subprocess.Popen) -> int | None:
    """The raylet of the node that ``ray start --block`` (``node``) started."""
    for pid in _children(node.pid):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "raylet":
                return pid
        except OSError:
            pass
    return None


def _wait_for_nodes(address: str, nodes: list[subprocess.Popen], logs: list[Path]) -> None:
    """Until every node in ``nodes`` is alive (``ray status`` asks the GCS)."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and all(node.poll() is None for node in nodes):
        status = subprocess.run([str(RAY), "status", "--address", address], capture_output=True, text=True)
        if status.returncode == 0 and status.stdout.count("node_") >= len(nodes):
            break
        time.sleep(1)
    else:
        pytest.fail("the local Ray cluster did not start: "
                    + " ".join(log.read_text()[-1500:] for log in logs if log.exists()))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """(address, head, worker): a head node with the device resource and a worker node, killed after.

    The nodes' folders are under a short /tmp name, not pytest's: Ray puts its AF_UNIX sockets in them,
    and a socket path may not pass 107 bytes (pytest-xdist's /tmp/pytest-of-USER/pytest-N/popen-gwK/...
    with Ray's session_DATE_TIME_PID/sockets/plasma_store does)."""
    import shutil
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="ehray-", dir="/tmp"))
    port = _free_port()
    address = f"127.0.0.1:{port}"
    logs = [root / "head.log", root / "worker.log"]
    head = _start_node(["--head", "--port", str(port), "--num-cpus", "1", "--resources",
                        '{"edgehad-device:local": 1}', "--include-dashboard", "false", "--dashboard-port",
                        str(_free_port()), "--temp-dir", str(root / "head")], logs[0], root / "head-tmp")
    worker = None
    try:
        _wait_for_nodes(address, [head], logs)
        worker = _start_node(["--address", address, "--num-cpus", "1", "--temp-dir", str(root / "worker")], logs[1],
                             root / "worker-tmp")
        _wait_for_nodes(address, [head, worker], logs)
        yield address, head, worker
    finally:
        for node in (worker, head):
            if node is not None:
                _kill_node(node)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def space(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("space") / "tiny.toml"
    path.write_text(TINY_SPACE)
    return path


def _trial_on(raylet: int) -> int | None:
    """The number of a trial whose worker process runs under ``raylet`` (raylet -> Ray worker -> trial)."""
    for ray_worker in _children(raylet):
        for pid in _children(ray_worker):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"edgehad.search.worker" in cmd:
                return int(Path(cmd[-2].decode()).parent.name)  # .../edgehad-trial-XXXX/K/spec.json
    return None


def test_a_board_no_node_declares_is_refused_before_any_trial(cluster, space, tmp_path):
    """Timings on an SSH host hold the resource edgehad-device:HOST, which only the node that reaches the board
    declares; a cluster without it is one line, exit 2, and no study is created."""
    from tests.conftest import run_cli

    address = cluster[0]
    host = "ssh://pi@127.0.0.1:2"
    result = run_cli("search", *ARGS, "--space", space, "--objectives", "accuracy,latency", "--target", "rpi4",
                     "--host", host, "--ray", address, "--out", tmp_path / "o")
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: --ray: no node of the cluster has the resource edgehad-device:{host}: start the node that reaches "
        f'that board with the resources {{"edgehad-device:{host}": 1}} (the resources option of `ray start`)')
    assert not (tmp_path / "o" / "study.db").exists()


def test_an_unreachable_address_is_one_line_exit_2(space, tmp_path):
    from tests.conftest import run_cli

    address = f"127.0.0.1:{_free_port()}"   # nothing listens there
    result = run_cli("search", *ARGS, "--space", space, "--ray", address, "--out", tmp_path / "o")
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == (f"error: --ray {address}: no Ray cluster answers there (Connection refused): start one "
                         "(`ray start` on its head node) and give the address it prints, or auto")
    assert not any("Traceback" in ln for ln in lines)
    assert not (tmp_path / "o").exists()


def test_without_ray_installed_the_option_says_how_to_install_it(space, tmp_path):
    """Ray made unimportable in the CLI's process: one line naming the extra, before any model loads."""
    code = "import sys; sys.modules['ray'] = None; from edgehad.cli import main; sys.argv[0] = 'edgehad'; main()"
    result = subprocess.run([sys.executable, "-c", code, "search", *ARGS, "--space", str(space), "--ray", "auto",
                             "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [
        "error: --ray needs Ray, which is not installed here: pip install 'edgehad[ray]'"]


def test_a_worker_node_killed_mid_search_and_still_the_trials_and_front_of_local_workers(cluster, space, tmp_path):
    """The same seed on the cluster and in 2 local workers: the same trials, files and front, although the worker
    node is killed (SIGKILL to its raylet's process group) while it converts a trial: Ray runs that trial again
    on the head, and the search finishes with every trial."""
    from tests.conftest import run_cli

    address, head, worker = cluster
    local = run_cli("search", *ARGS, *BUDGET, "--space", space, "--jobs", "2", "--out", tmp_path / "local", "--json")
    assert local.returncode == 0, local.stderr[-3000:]
    local = json.loads(local.stdout)

    out = tmp_path / "ray"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.Popen([sys.executable, "-m", "edgehad", "search", *ARGS, *BUDGET, "--space", str(space),
                             "--ray", address, "--out", str(out), "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(env, PYTHONUNBUFFERED="1"))
    raylet = _raylet_of(worker)
    assert raylet is not None
    killed = None
    try:
        deadline = time.monotonic() + 300
        while killed is None:
            assert proc.poll() is None, "the search ended before a trial ran on the worker node"
            assert time.monotonic() < deadline, "no trial ran on the worker node"
            killed = _trial_on(raylet)
            time.sleep(0.2)
        _kill_node(worker)
        stdout, stderr = proc.communicate(timeout=420)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert not Path(f"/proc/{raylet}").exists()
    assert proc.returncode == 0, stderr[-3000:]
    doc = json.loads(stdout)
    assert doc == json.loads((out / "search.json").read_text())
    assert "ray: 127.0.0.1:" in stderr and "2 node(s), 2 CPUs; timings hold edgehad-device:local" in stderr
    # which cluster ran the trials: the address given, the GCS address Ray joined (the head's, on its port: Ray
    # names it by the machine's IP), the nodes alive at the start; the local search says local workers
    (run,) = doc["runs"]
    assert {k: run[k] for k in ("executor", "address", "started_here", "nodes", "cpus", "device", "resume")} == {
        "executor": "ray", "address": address, "started_here": False, "nodes": 2, "cpus": 2.0,
        "device": "edgehad-device:local", "resume": False}
    assert run["connected"].rpartition(":")[2] == address.rpartition(":")[2] and run["ran"] == doc["ran"]
    assert [(r["executor"], r["jobs"]) for r in local["runs"]] == [("local", 2)]

    assert [t["params"] for t in doc["trials"]] == [t["params"] for t in local["trials"]]
    assert doc["front"] == local["front"] and doc["front"]
    assert [t["status"] for t in doc["trials"]] == ["complete"] * 4, [t["reason"] for t in doc["trials"]]
    assert killed in [t["number"] for t in doc["trials"] if t.get("same_as") is None]
    for ours, theirs in zip(doc["trials"], local["trials"]):
        assert ours["metrics"]["accuracy"] == theirs["metrics"]["accuracy"]
        assert ours["metrics"]["size_kb"] == theirs["metrics"]["size_kb"]
        # timed on the head (this machine), holding the device resource
        assert ours["metrics"]["latency_source"] == "measured" and 0 < ours["metrics"]["latency_ms"] < 1000
        # the files came back from the node that converted them, into this search's folder
        path = Path(ours["objective_file"])
        origin = ours["number"] if ours.get("same_as") is None else ours["same_as"]
        assert path.parent == out / "trials" / str(origin) / "files"
        assert round(path.stat().st_size / 1024, 3) == ours["metrics"]["size_kb"]
        stored = json.loads((path.parent.parent / "trial.json").read_text())
        assert stored["metrics"]["size_kb"] == ours["metrics"]["size_kb"]
    log = (out / "trials" / str(killed) / "worker.log").read_text()
    assert f"trial {killed}: stage verify" in log and f"trial {killed}: timing model.onnx on local" in log
