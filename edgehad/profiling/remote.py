"""Profile a file on a device over SSH: copy, run the agent there, read its JSON back, clean up.

Hosts are ``ssh://user@host[:port]`` URLs or names from ``hosts.toml`` (format in
``edgehad.profiling.hosts``). For one file on one host::

    ssh -M (one connection, kept as a control master for the steps below)
    mktemp -d "${TMPDIR:-/tmp}/edgehad.XXXXXXXX"             -> D
    cat > D/agent.py ; cat > D/edgehad_runtime.py ; cat > D/<model name> [; cat > D/inputs.npz]
    cd D && echo $$ > pid && PYTHON agent.py D/<model> ... --progress; rc=$?; rm -f pid; exit $rc
    kill the agent's process group if pid is still there; rm -rf D     (always, also after errors)

Why these choices:
- The user's OpenSSH client, not an SSH library: their ~/.ssh/config, keys, agent, ProxyJump and
  known_hosts apply unchanged. ``BatchMode=yes`` makes a missing key fail at once instead of waiting
  for a password nobody types; host-key checking is left to ssh (and hosts.toml cannot turn it off).
- Every word sent to the remote shell goes through ``shlex.quote`` (POSIX quoting: the login shell on
  the device must be sh-like: sh, bash, dash, zsh, busybox ash). The model keeps its own file name
  there, so messages read naturally and the quoting is exercised by every run.
- sshd starts a command without a terminal in a new session (setsid), so the shell's PID is its
  process group: ``kill -KILL -PID`` ends the agent even when our connection is gone, which a closed
  channel alone would not do (no SIGHUP without a pty). (``kill -- -PID`` would be clearer, but
  dash's kill rejects ``--``.)
- A control master makes the five steps one TCP/SSH handshake and one authentication; when it has
  died (a dropped connection), the cleanup step opens a fresh connection by itself.

Runs on the same device (same user, address and port as ``ssh -G`` resolves them) take a process-wide
lock, so two hosts.toml names for one board never measure at the same time.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from edgehad.core.children import kill_group, popen_options, run_child
from edgehad.core.errors import UserInputError
from edgehad.profiling.hosts import Host, hosts_file, resolve_host  # noqa: F401  (resolve_host: run.py's import)
from edgehad.profiling.job import Job
from edgehad.profiling.local import AGENT_FILES, AGENT_TIMEOUT_S, parse_agent_output, run_agent

CONNECT_TIMEOUT_S = 15
# ServerAlive probes every 5 s, 4 missed: a connection that died silently is noticed within ~20 s.
_DEFAULT_OPTIONS = ("BatchMode=yes", f"ConnectTimeout={CONNECT_TIMEOUT_S}", "ServerAliveInterval=5",
                    "ServerAliveCountMax=4")
_CLEANUP_TIMEOUT_S = 30
_STEP_TIMEOUT_S = 60  # mktemp, rm: tiny commands
COPY_LIMIT_S = 3600  # copying a model (timeout=None): --timeout's deadline if given, else an hour

_locks: dict[tuple, threading.Lock] = {}
_locks_guard = threading.Lock()


class _Failed(Exception):
    """An ssh step's failure, already phrased for the user (turned into a UserInputError at the top)."""


# -- ssh command lines -----------------------------------------------------------------------------------------
def _ssh(host: Host, control: str | None, *extra: str, master: bool = False) -> list[str]:
    """``ssh`` with the host's settings; ``extra`` goes before the destination (e.g. -N).

    With ``control``, the command is the control master (``master``) or a client of it; the client
    falls back to a connection of its own when the master has gone.
    """
    args = ["ssh"]
    if host.ssh_config:
        args += ["-F", os.path.expanduser(host.ssh_config)]
    if control:  # first, so the user's own ControlMaster/ControlPath settings cannot override ours
        args += ["-o", f"ControlPath={control}", "-o", f"ControlMaster={'yes' if master else 'no'}",
                 "-o", "ControlPersist=no"]
    for option in host.ssh_options:  # before our defaults: for ssh the first value given wins
        args += ["-o", option]
    for option in _DEFAULT_OPTIONS:
        args += ["-o", option]
    if host.identity_file:
        args += ["-i", os.path.expanduser(host.identity_file)]
    if host.user:
        args += ["-l", host.user]
    if host.port:
        args += ["-p", str(host.port)]
    return [*args, *extra, "--", host.address]


def _remote_word(word: str) -> str:
    """``word`` quoted for the remote shell; a leading ``~/`` still means the remote home."""
    if word.startswith("~/"):
        return '"$HOME"/' + shlex.quote(word[2:])
    return shlex.quote(word)


def _destination(host: Host) -> str:
    who = f"{host.user}@{host.address}" if host.user else host.address
    return f"{who} port {host.port}" if host.port else who


def _address_key(host: Host) -> tuple:
    """(user, hostname, port) as ssh resolves them with ~/.ssh/config: one lock per real device."""
    try:
        out = run_child(_ssh(host, None, "-G"), timeout=10).stdout
    except FileNotFoundError:
        raise UserInputError("no ssh client here: install OpenSSH (Debian/Ubuntu: apt install openssh-client)") \
            from None
    except subprocess.TimeoutExpired:
        out = ""
    config = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    return (config.get("user", host.user), config.get("hostname", host.address), config.get("port", host.port))


def _lock_for(host: Host) -> threading.Lock:
    key = _address_key(host)
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


# -- what ssh's stderr means -----------------------------------------------------------------------------------
def _ssh_error(host: Host, stderr: str, doing: str, connected: bool = False) -> str:
    """One line for an ssh failure (exit 255): what happened and what to do.

    ``connected``: the connection was up before (a mux client whose master died exits 255 silently).
    """
    text = " ".join(stderr.split())
    dest = _destination(host)
    where = f"{host.name}: {doing}"
    port = host.port or 22
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in text or "Host key for" in text and "has changed" in text:
        return (f"{where}: the host key of {dest} has CHANGED since it was stored in known_hosts; if the "
                f"device was reinstalled, check its new key, remove the old one (ssh-keygen -R "
                f"{host.address if port == 22 else f'[{host.address}]:{port}'}) and ssh to it once by hand; "
                f"edgehad never bypasses host-key checking")
    if "Host key verification failed" in text or "No ED25519 host key is known" in text \
            or re.search(r"No \S+ host key is known", text):
        return (f"{where}: the host key of {dest} is not in your known_hosts; ssh to it once by hand "
                f"(ssh -p {port} {dest.split(' ')[0]}) to check and accept the key, then rerun")
    if "Permission denied" in text or "Too many authentication failures" in text:
        user = host.user or "you"
        return (f"{where}: authentication failed for {user} at {host.address}; install your key there "
                f"(ssh-copy-id -p {port} {dest.split(' ')[0]}) or set identity_file for this host in "
                f"{hosts_file()}; edgehad does not type passwords")
    if "Could not resolve hostname" in text or "Name or service not known" in text:
        return (f"{where}: unknown host {host.address!r}: check the name or use its IP address "
                f"(or an alias from ~/.ssh/config)")
    if "Connection refused" in text:
        return (f"{where}: connection refused by {host.address} port {port}: is sshd running there, and "
                f"is the port right?")
    if "timed out" in text:
        return f"{where}: no answer from {host.address} port {port} (timed out): is the device on and reachable?"
    if "No route to host" in text or "Network is unreachable" in text:
        return f"{where}: {host.address} is unreachable (no route): check the network or the address"
    if connected or re.search(r"closed by remote host|Broken pipe|Connection reset|Timeout, server|mux_client|"
                              r"connection closed", text, re.IGNORECASE):
        said = f" ({_tail(text, 160)})" if text else ""
        return f"{where}: the SSH connection to {dest} was lost{said}; check the device and the network, then rerun"
    return f"{where}: ssh to {dest} failed: {_tail(text, 300) or 'no message'}"


def _tail(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else "..." + text[-n:]


# -- the steps ---------------------------------------------------------------------------------------------------
class _Session:
    """One control-master connection to ``host`` and the remote commands run over it."""

    def __init__(self, host: Host, deadline: float | None):
        self.host = host
        self.deadline = deadline
        self.folder = tempfile.mkdtemp(prefix="edgehad-ssh-", dir="/tmp" if os.path.isdir("/tmp") else None)
        self.control = os.path.join(self.folder, "cm")  # short: a unix socket path holds ~100 bytes
        self.master: subprocess.Popen | None = None

    def remaining(self, cap: float | None = None) -> float | None:
        left = None if self.deadline is None else max(0.1, self.deadline - time.monotonic())
        return cap if left is None else left if cap is None else min(cap, left)

    def connect(self) -> None:
        """Start the control master and wait until its socket exists (or it exits with ssh's message)."""
        log = open(os.path.join(self.folder, "master.log"), "w+")  # a file, not a pipe: nothing waits on it
        try:
            self.master = subprocess.Popen(_ssh(self.host, self.control, "-N", master=True),
                                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                                           **popen_options())
        except FileNotFoundError:
            log.close()
            raise _Failed("no ssh client here: install OpenSSH (Debian/Ubuntu: apt install openssh-client)") \
                from None
        with log:
            limit = time.monotonic() + self.remaining(CONNECT_TIMEOUT_S * 3)
            while not os.path.exists(self.control):
                if self.master.poll() is not None:
                    log.seek(0)
                    raise _Failed(_ssh_error(self.host, log.read(), "connecting"))
                if time.monotonic() > limit:
                    raise _Failed(f"{self.host.name}: connecting to {_destination(self.host)} took too long; "
                                  f"is the device reachable?")
                time.sleep(0.05)

    def run(self, command: str, doing: str, stdin=None, timeout: float | None = _STEP_TIMEOUT_S) -> str:
        """``command`` on the device; its stdout, or _Failed with ssh's or the command's message."""
        try:
            proc = run_child([*_ssh(self.host, self.control), command], stdin=stdin,
                             timeout=self.remaining(timeout) or COPY_LIMIT_S)
        except subprocess.TimeoutExpired:
            raise _Failed(f"{self.host.name}: {doing} took longer than {self.remaining(timeout):.0f} s; "
                          f"the connection may be stuck") from None
        if proc.returncode == 255:
            raise _Failed(_ssh_error(self.host, proc.stderr, doing))
        if proc.returncode != 0:
            raise _Failed(f"{self.host.name}: {doing} failed (exit {proc.returncode}): "
                          f"{_tail(proc.stderr, 300) or 'no message'}")
        return proc.stdout

    def make_folder(self) -> str:
        out = self.run('mktemp -d "${TMPDIR:-/tmp}/edgehad.XXXXXXXX"', "making a temporary folder")
        folder = out.strip()
        if not folder.startswith("/") or "\n" in folder:
            raise _Failed(f"{self.host.name}: mktemp -d printed {folder!r}, not a folder path; the device "
                          f"needs a POSIX shell with mktemp")
        return folder

    def upload(self, local: Path, remote: str, doing: str) -> None:
        with open(local, "rb") as f:
            self.run(f"cat > {shlex.quote(remote)}", doing, stdin=f, timeout=None)

    def remove(self, folder: str) -> None:
        """Kill the agent's process group if it still runs, then delete the folder (a fresh connection if needed)."""
        q = shlex.quote(folder)
        pid = shlex.quote(f"{folder}/pid")
        self.deadline = None  # cleanup always gets its own time, also after --timeout
        self.run(f'if [ -f {pid} ]; then p=$(cat {pid}); kill -KILL "-$p" 2>/dev/null || kill -KILL "$p" '
                 f'2>/dev/null; fi; rm -rf {q}', "removing the temporary folder", timeout=_CLEANUP_TIMEOUT_S)

    def close(self) -> None:
        if self.master is not None and self.master.poll() is None:
            try:
                if os.path.exists(self.control):  # up: ask it to exit (it tells a ProxyJump child too)
                    run_child(_ssh(self.host, self.control, "-O", "exit"), timeout=10)
                else:  # still connecting (we gave up waiting)
                    self.master.terminate()
                self.master.wait(timeout=10)
            except subprocess.TimeoutExpired:
                kill_group(self.master)
                self.master.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def _agent_command(host: Host, folder: str, job: Job, model: str, inputs: str | None) -> str:
    q = shlex.quote
    args = " ".join(q(a) for a in [f"{folder}/agent.py", *job.agent_args(model, inputs), "--progress"])
    # OMP_WAIT_POLICY as for local runs (edgehad.profiling.local.agent_env): idle OpenMP threads sleep.
    return (f"cd {q(folder)} && echo $$ > pid && OMP_WAIT_POLICY=\"${{OMP_WAIT_POLICY:-PASSIVE}}\" "
            f"{_remote_word(host.python)} {args}; rc=$?; rm -f pid; exit $rc")


def _run_agent(session: _Session, command: str, progress) -> tuple[str, str, int | None]:
    """Run the agent, passing its progress lines on as they come; (stdout, stderr, rc; None on timeout).

    On a timeout or Ctrl-C the local ssh client's group is killed; the remote agent is killed by the
    cleanup step in profile_remote (its process group there)."""
    host = session.host
    try:
        proc = run_agent([*_ssh(host, session.control), command], timeout=session.remaining() or AGENT_TIMEOUT_S,
                         progress=progress, where=host.name)
    except subprocess.TimeoutExpired as exc:
        return exc.output or "", exc.stderr or "", None
    return proc.stdout, proc.stderr, proc.returncode


def _explain(host: Host, path: Path, job: Job, stdout: str, stderr: str, rc: int, rename: dict) -> dict:
    """The agent's document, or _Failed saying what went wrong there and what to do."""
    python = host.python
    if rc == 255 and not stdout.strip():
        raise _Failed(_ssh_error(host, stderr, f"profiling {path}", connected=True))
    if rc in (137, -signal.SIGKILL) and not stdout.strip():
        raise _Failed(f"{host.name}: the agent profiling {path} was killed (SIGKILL, exit 137): out of memory? "
                      f"check `dmesg` there; free memory on the device or profile a smaller model")
    if rc == 127 and not stdout.strip():
        raise _Failed(f"{host.name}: no python {python!r} there ({_tail(stderr, 120)}); install python3 on the "
                      f"device or set python = \"/path/to/python\" for this host in {hosts_file()}")
    if "No module named 'numpy'" in stderr and not stdout.strip():
        raise _Failed(f"{host.name}: numpy is not installed for {python} there: run `{python} -m pip install "
                      f"numpy onnxruntime` (or ai-edge-litert for .tflite) on {host.name}, or set python in "
                      f"{hosts_file()} to an environment that has them")
    try:
        return parse_agent_output(stdout, stderr, rc, path, rename)
    except UserInputError as exc:
        message = str(exc)
        if "pip install" in message:
            message += (f"; run that with {python} -m pip on {host.name}, or set python for it in "
                        f"{hosts_file()} to an environment that has the runtime")
        raise _Failed(f"{host.name}: {message}") from None


def profile_remote(host: Host, path: Path, job: Job, progress: Callable[[str], None] | None = None) -> dict:
    """Measure ``path`` on ``host`` with the agent; its JSON document plus ``path``, ``host``, ``emulated``.

    The remote temporary folder is removed whatever happens; errors are one-line UserInputErrors.
    """
    path = Path(path)
    note = progress or (lambda message: None)
    with _lock_for(host):
        deadline = time.monotonic() + job.timeout if job.timeout else None
        session = _Session(host, deadline)
        folder = None
        failure: str | None = None
        try:
            note(f"{host.name}: connecting to {_destination(host)}")
            session.connect()
            folder = session.make_folder()
            model = f"{folder}/{path.name}"
            inputs = f"{folder}/inputs.npz" if job.inputs else None
            note(f"{host.name}: copying {path.name} ({path.stat().st_size / 1024:.0f} KiB) and the agent to {folder}")
            for name, source in AGENT_FILES.items():
                session.upload(source, f"{folder}/{name}", "copying the agent")
            session.upload(path, model, f"copying {path}")
            if inputs:
                session.upload(Path(job.inputs), inputs, "copying the input samples")
            stdout, stderr, rc = _run_agent(session, _agent_command(host, folder, job, model, inputs), progress)
            if rc is None:
                raise _Failed(f"{host.name}: profiling {path} took longer than {job.timeout} s (`timeout`); the "
                              f"agent there was stopped; use fewer `runs` or a larger `timeout`")
            rename = {model: str(path), folder: f"{host.name}:{folder}"}
            if inputs:
                rename[inputs] = str(job.inputs)
            document = _explain(host, path, job, stdout, stderr, rc, rename)
        except _Failed as exc:
            failure = str(exc)
        finally:
            if folder is not None:
                try:
                    session.remove(folder)
                except _Failed as exc:
                    left = (f"could not remove {folder} on {host.name} ({exc}); remove it by hand "
                            f"(and any agent.py process there)")
                    if failure is None and progress is not None:
                        progress(f"{host.name}: warning: {left}")
                    elif failure is not None:
                        failure += f"; also {left}"
            session.close()
        if failure is not None:
            raise UserInputError(failure)
    document["path"] = str(path)
    document["host"] = host.name
    document["emulated"] = False
    document["target"] = host.target  # hosts.toml's target, if any; run.py's finish_document decides
    return document
