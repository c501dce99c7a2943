"""``edgehad profile --host``: end to end through a real OpenSSH server on a loopback port.

The "device" is this machine reached over ssh (tests/e2e/sshd.py), its python the venv's, so the
whole path runs for real: the user's ssh client, host-key checking, copying, the agent, streaming,
cleanup. Each test also checks that the device's temporary folder is gone and no agent is left.
"""

from __future__ import annotations

import json
import os
import queue
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.e2e.sshd import SSHServer, free_port, unavailable
from tests.e2e.test_cli_convert import assert_clean_error
from tests.e2e.test_profile import check_document

pytestmark = pytest.mark.skipif(not Path("/usr/sbin/sshd").exists(),
                                reason="/usr/sbin/sshd is missing: install Debian's openssh-server")

WEIRD_NAMES = ['my "model"; rm -rf x\'s.onnx',
               'x$(touch ${TMPDIR}.canary)`touch ${TMPDIR}.canary2`; echo "q\'\\.onnx']


def toml(entries: dict) -> str:
    """hosts.toml text; JSON strings and lists are valid TOML values."""
    lines = []
    for name, entry in entries.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in entry.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    srv = SSHServer(tmp_path_factory.mktemp("sshd")).start()
    yield srv
    srv.stop()


def _venv(folder: Path, numpy_only: bool) -> str:
    """A python without packages, or with numpy alone (linked from ours): a device missing a runtime."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, capture_output=True)
    python = folder / "bin" / "python"
    if numpy_only:
        import numpy

        site = Path(numpy.__file__).parent.parent
        extra = folder / "only-numpy"
        extra.mkdir()
        for name in ("numpy", "numpy.libs"):
            if (site / name).exists():
                (extra / name).symlink_to(site / name)
        (purelib,) = (folder / "lib").glob("python3*/site-packages")
        (purelib / "only_numpy.pth").write_text(f"{extra}\n")
    return str(python)


@pytest.fixture(scope="module")
def hosts(server, tmp_path_factory):
    folder = tmp_path_factory.mktemp("hosts")
    good = server.host_entry(python=sys.executable)
    entries = {
        "dev": good,
        "dev2": dict(good),
        "changed": server.host_entry(known_hosts=server.wrong_known_hosts, python=sys.executable),
        "unknownkey": server.host_entry(known_hosts=server.empty_known_hosts, python=sys.executable),
        "refused": server.host_entry(port=free_port(), python=sys.executable),
        "noauth": server.host_entry(identity_file=str(server.other_key), python=sys.executable),
        "nohost": server.host_entry(host="no-such-host.invalid", python=sys.executable),
        "nopython": server.host_entry(python="/nonexistent/bin/python3"),
        "nonumpy": server.host_entry(python=_venv(folder / "bare", numpy_only=False)),
        "noruntime": server.host_entry(python=_venv(folder / "numpy", numpy_only=True)),
    }
    path = folder / "hosts.toml"
    path.write_text(toml(entries))
    return path


@pytest.fixture(autouse=True)
def hosts_env(request, monkeypatch):
    if "hosts" in request.fixturenames:
        monkeypatch.setenv("EDGEHAD_HOSTS_FILE", str(request.getfixturevalue("hosts")))
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(scope="module")
def models(digits_float_out):
    return digits_float_out / "model.onnx", digits_float_out / "model.tflite"


def cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "edgehad", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, PYTHONUNBUFFERED="1"))


def assert_device_clean(server):
    assert [n for n in server.leftovers() if n.startswith("edgehad.")] == []
    deadline = time.monotonic() + 5  # a SIGKILLed process leaves /proc once its parent reaps it
    while server.agent_pids() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.agent_pids() == []


# -- it works ----------------------------------------------------------------------------------------------------
def test_two_files_on_a_named_host(server, hosts, models):
    logins = server.logins()
    result = cli("profile", *models, "--host", "dev", "--runs", "5", "--warmup", "2", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    assert server.logins() - logins == 2  # one multiplexed connection per file, not one per step
    docs = json.loads(result.stdout)
    assert [d["runtime"] for d in docs] == ["ort", "tflite"]
    for doc, path in zip(docs, models):
        check_document(doc, path, runs=5)
        assert doc["host"] == "dev"
        assert doc["machine"]["arch"] == os.uname().machine and doc["machine"]["cores"] == os.cpu_count()
    assert_device_clean(server)


def test_hostile_file_names_profile_and_run_nothing_else(server, hosts, models, tmp_path):
    files = []
    for name in WEIRD_NAMES:
        files.append(tmp_path / name)
        shutil.copy(models[0], files[-1])
    result = cli("profile", *files, "--host", "dev", "--runs", "3", "--warmup", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    # progress streamed from the agent, prefixed with the host
    assert "dev: timing 3 runs" in result.stderr and "dev: loaded in" in result.stderr
    assert result.stdout.count("(ort/cpu)") == 2
    json_run = cli("profile", *files, "--host", "dev", "--runs", "3", "--warmup", "1", "--json")
    docs = json.loads(json_run.stdout)
    assert [d["path"] for d in docs] == [str(f) for f in files]
    assert all(d["size_bytes"] == models[0].stat().st_size and d["runs"] == 3 for d in docs)
    injected = [p for p in server.remote_tmp.parent.iterdir() if "canary" in p.name]
    assert injected == []
    assert_device_clean(server)


def test_data_samples_are_copied_too(server, hosts, models):
    result = cli("profile", models[1], "--host", "dev", "--data", "digits", "--runs", "4", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    (doc,) = json.loads(result.stdout)
    assert doc["input_source"] == "16 sample(s) from inputs.npz" and doc["runs"] == 4
    assert doc["inputs"] and all(v["shape"][0] == 1 for v in doc["inputs"].values())
    assert_device_clean(server)


def test_two_names_for_one_device_run_one_after_the_other(server, hosts, models):
    from edgehad.api import profile

    lines = []
    docs = profile([models[0]], host="dev,dev2", runs=5, warmup=1, progress=lines.append)
    assert [d["host"] for d in docs] == ["dev", "dev2"]
    for doc in docs:
        check_document(doc, models[0], runs=5)
    # serialised: each host's progress is one unbroken block (parallel runs would interleave)
    order = [line.split(":", 1)[0] for line in lines]
    blocks = [h for i, h in enumerate(order) if i == 0 or order[i - 1] != h]
    assert sorted(blocks) == ["dev", "dev2"], lines
    assert_device_clean(server)


# -- it fails clearly -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, message", [
    ("changed", "host key of"),
    ("unknownkey", "is not in your known_hosts; ssh to it once by hand"),
    ("refused", "connection refused by 127.0.0.1 port"),
    ("noauth", "authentication failed for"),
    ("nohost", "unknown host 'no-such-host.invalid'"),
    ("nopython", "no python '/nonexistent/bin/python3' there"),
    ("nonumpy", "numpy is not installed for"),
    ("noruntime", "onnxruntime is not installed for"),
])
def test_device_problems_are_one_clear_line(server, hosts, models, name, message):
    result = cli("profile", models[0], "--host", name, "--runs", "3")
    assert_clean_error(result, message)
    assert f"error: {name}: " in result.stderr  # names the host
    if name == "changed":
        assert "CHANGED" in result.stderr and f"ssh-keygen -R [127.0.0.1]:{server.port}" in result.stderr
    if name == "noauth":
        assert "ssh-copy-id" in result.stderr
    if name in ("nonumpy", "noruntime"):
        assert "pip install" in result.stderr and "python" in result.stderr
    assert_device_clean(server)


def test_ssh_url_with_unknown_key_is_refused_not_bypassed(server, hosts, models):
    """A URL spec uses the user's own known_hosts, which never saw this throwaway key: ssh refuses, no prompt."""
    result = cli("profile", models[0], "--host", f"ssh://{server.user}@127.0.0.1:{server.port}", "--runs", "3",
                 timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "host key" in result.stderr or "authentication failed" in result.stderr, result.stderr
    assert_device_clean(server)


class Streaming:
    """``edgehad profile`` as a live process whose stderr lines can be waited for."""

    def __init__(self, *args):
        self.proc = subprocess.Popen([sys.executable, "-m", "edgehad", *map(str, args)], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        self.lines: queue.Queue = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stderr:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, text: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                continue
            if line is None:
                break
            self.seen.append(line)
            if text in line:
                return
        self.proc.kill()
        raise AssertionError(f"never saw {text!r}: {''.join(self.seen)[-2000:]}")

    def finish(self, timeout: float = 120) -> subprocess.CompletedProcess:
        stdout = self.proc.stdout.read()
        self.proc.wait(timeout=timeout)
        rest = []
        while (line := self.lines.get(timeout=timeout)) is not None:
            rest.append(line)
        return subprocess.CompletedProcess(self.proc.args, self.proc.returncode, stdout, "".join(self.seen + rest))


def test_dropped_connection_mid_run(server, hosts, models):
    run = Streaming("profile", models[0], "--host", "dev", "--seconds", "120", "--warmup", "1")
    run.wait_for("dev: timing 120.0 s")
    assert server.agent_pids(), "the agent should be running on the device"
    assert server.kill_connections() >= 1
    result = run.finish()
    assert_clean_error(result, "the SSH connection to")
    assert "was lost" in result.stderr
    assert_device_clean(server)  # the orphaned agent was killed over a fresh connection, its folder removed


def test_agent_killed_like_the_oom_killer_does(server, hosts, models):
    run = Streaming("profile", models[0], "--host", "dev", "--seconds", "120", "--warmup", "1")
    run.wait_for("dev: timing 120.0 s")
    pids = server.agent_pids()
    assert pids
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    result = run.finish()
    assert_clean_error(result, "was killed (SIGKILL, exit 137): out of memory?")
    assert_device_clean(server)


def test_timeout_stops_the_remote_agent(server, hosts, models):
    run = Streaming("profile", models[0], "--host", "dev", "--seconds", "300", "--warmup", "1", "--timeout", "20")
    run.wait_for("dev: timing 300.0 s")
    assert server.agent_pids()
    result = run.finish(timeout=60)
    assert_clean_error(result, "took longer than 20.0 s (--timeout); the agent there was stopped")
    assert_device_clean(server)


# -- bad --host specs and hosts files (no connection made) ------------------------------------------------------
@pytest.mark.parametrize("spec, message", [
    ("ssh://", "no host name"),
    ("http://pi", "only ssh:// URLs are supported"),
    ("ssh://pi:notaport", "give ssh://user@host[:port]"),
    ("ssh://pi/some/path", "no path, query or fragment"),
    ("ssh://user:secret@pi", "passwords in the URL are not supported"),
    ("ssh://-oProxyCommand=touch%20x", "must not start with '-'"),
    ("nosuchname", "no host named nosuchname in"),
    ("pi;reboot", "give ssh://user@host[:port] or a host name from"),
])
def test_bad_host_spec(spec, message, models, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEHAD_HOSTS_FILE", str(tmp_path / "hosts.toml"))
    (tmp_path / "hosts.toml").write_text(toml({"pi": {"host": "192.0.2.1"}}))
    assert_clean_error(cli("profile", models[0], "--host", spec), message)


def test_missing_hosts_file(models, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEHAD_HOSTS_FILE", str(tmp_path / "none.toml"))
    assert_clean_error(cli("profile", models[0], "--host", "pi4"), f"there is no hosts file {tmp_path / 'none.toml'}")


@pytest.mark.parametrize("text, message", [
    ("[pi\nhost = 1", "not valid TOML"),
    ('[pi]\nhost = "a"\nprot = 22\n', "unknown key 'pi.prot': valid keys are host, identity_file, port,"),
    ('[pi]\nuser = "me"\n', "pi: 'host' is a required property"),
    ('pi = "192.0.2.1"\n', 'pi must be a table, got "192.0.2.1"'),
    ('[pi]\nhost = "a"\nport = "22"\n', 'pi.port must be an integer in [1, 65535], got "22"'),
    ('[pi]\nhost = "a"\nport = 70000\n', "pi.port must be in [1, 65535], got 70000"),
    ('[pi]\nhost = "a"\nssh_options = ["StrictHostKeyChecking=no"]\n', "edgehad keeps host-key checking on"),
    # spellings the old pattern let through to ssh (defect 5)
    ('[pi]\nhost = "a"\nssh_options = ["StrictHostKeyChecking=false"]\n', "edgehad keeps host-key checking on"),
    ('[pi]\nhost = "a"\nssh_options = ["StrictHostKeyChecking\\tno"]\n', "edgehad keeps host-key checking on"),
    ('[pi]\nhost = "a"\nssh_options = ["UserKnownHostsFile=/dev/null"]\n', "edgehad keeps host-key checking on"),
    ('[pi]\nhost = "a"\nssh_options = ["-oProxyCommand=x"]\n', "ssh_options entries are ssh -o options"),
    ('[pi]\nhost = "-oProxyCommand=x"\n', "must not start with '-'"),
])
def test_bad_hosts_file(text, message, models, tmp_path, monkeypatch):
    path = tmp_path / "hosts.toml"
    path.write_text(text)
    monkeypatch.setenv("EDGEHAD_HOSTS_FILE", str(path))
    result = cli("profile", models[0], "--host", "pi")
    assert_clean_error(result, message)
    assert str(path) in result.stderr


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_agent_command_under_posix_shells(shell, models, tmp_path):
    """The exact command line sent to the device, run by dash (Debian's sh) and bash: quoting and ``~/`` python."""
    from edgehad.profiling.hosts import Host
    from edgehad.profiling.job import Job
    from edgehad.profiling.local import AGENT_FILES
    from edgehad.profiling.remote import _agent_command

    if not shutil.which(shell):
        pytest.skip(f"no {shell} here")
    home = tmp_path / "home"
    (home / "my env").mkdir(parents=True)
    wrapper = home / "my env" / "py"  # a script, not a symlink: a venv is found next to the path run
    wrapper.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} \"$@\"\n")
    wrapper.chmod(0o755)
    folder = tmp_path / "edgehad.x'y z"
    folder.mkdir()
    for name, source in AGENT_FILES.items():
        shutil.copy(source, folder / name)
    model = folder / WEIRD_NAMES[1]
    shutil.copy(models[0], model)
    command = _agent_command(Host(name="t", address="x", python="~/my env/py"), str(folder), Job(runs=2, warmup=0),
                             str(model), None)
    proc = subprocess.run([shell, "-c", command], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, HOME=str(home), TMPDIR=str(tmp_path)))
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout)
    assert doc["runs"] == 2 and doc["runtime"] == "ort" and doc["size_bytes"] == models[0].stat().st_size
    assert "edgehad-agent: timing 2 runs" in proc.stderr
    assert not (folder / "pid").exists()  # the wrapper removes it, so a later cleanup kills nothing
    assert not [p for p in tmp_path.iterdir() if "canary" in p.name]
