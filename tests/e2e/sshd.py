"""A real OpenSSH server for tests: Debian's /usr/sbin/sshd on a loopback port, throwaway keys, current user.

``SSHServer(folder).start()`` writes a host key, a user key pair, an authorized_keys file and an
sshd_config under ``folder`` and runs ``sshd -D -e``. Clients connect as the current user with
``client_options()`` (known_hosts holding exactly this server's key, host-key checking on).
Commands run there see ``TMPDIR=<folder>/remote-tmp`` (sshd's SetEnv), so a test can check what a
remote run leaves behind in its own folder only.
"""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import time
from pathlib import Path

SSHD = Path("/usr/sbin/sshd")
PRIVSEP_DIR = Path("/run/sshd")  # Debian's sshd refuses to start without its privilege-separation folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgehad-test", "-f", str(path)],
                   check=True, capture_output=True)
    return path


def unavailable() -> str | None:
    """Why no test sshd can run here, or None."""
    if not SSHD.exists():
        return f"{SSHD} is missing: install Debian's openssh-server to run the SSH tests"
    # Only a root sshd chroots its unprivileged child there; one run by another user (the current one
    # only can log in then) does not need it.
    if os.geteuid() == 0 and not PRIVSEP_DIR.is_dir():
        try:
            PRIVSEP_DIR.mkdir(mode=0o755, parents=True)
        except OSError:
            return f"{PRIVSEP_DIR} is missing and cannot be created (needs root once: mkdir -p {PRIVSEP_DIR})"
    return None


class SSHServer:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.user = pwd.getpwuid(os.getuid()).pw_name  # the account sshd will check, not $USER
        self.remote_tmp = self.folder / "remote-tmp"
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def start(self) -> SSHServer:
        f = self.folder
        f.mkdir(parents=True, exist_ok=True)
        self.remote_tmp.mkdir(exist_ok=True)
        self.host_key = keygen(f / "host_key")
        self.user_key = keygen(f / "user_key")
        self.other_key = keygen(f / "other_key")  # never authorized: for the auth-failure test
        (f / "authorized_keys").write_text((f / "user_key.pub").read_text())
        for attempt in range(5):  # the free port may be taken between picking and binding it
            self.port = free_port()
            config = f / "sshd_config"
            config.write_text("\n".join([
                f"ListenAddress 127.0.0.1:{self.port}",
                f"HostKey {self.host_key}",
                f"AuthorizedKeysFile {f / 'authorized_keys'}",
                "PermitRootLogin prohibit-password",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "StrictModes no",
                "UsePAM no",
                f"PidFile {f / 'sshd.pid'}",
                f"SetEnv TMPDIR={self.remote_tmp}",
                "MaxSessions 20",
                ""]))
            log = open(f / "sshd.log", "w")
            self.proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            log.close()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                if "Server listening" in (f / "sshd.log").read_text():
                    self.write_known_hosts()
                    return self
                time.sleep(0.05)
            self.stop()
            if "Address already in use" not in (f / "sshd.log").read_text():
                break
        raise RuntimeError(f"sshd did not start: {(f / 'sshd.log').read_text()[-2000:]}")

    def write_known_hosts(self) -> None:
        key = " ".join(self.host_key.with_suffix(".pub").read_text().split()[:2])
        self.known_hosts = self.folder / "known_hosts"
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {key}\n")
        wrong = " ".join((self.folder / "other_key.pub").read_text().split()[:2])  # a different ed25519 key
        self.wrong_known_hosts = self.folder / "known_hosts_changed"
        self.wrong_known_hosts.write_text(f"[127.0.0.1]:{self.port} {wrong}\n")
        self.empty_known_hosts = self.folder / "known_hosts_empty"
        self.empty_known_hosts.write_text("")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def host_entry(self, known_hosts: Path | None = None, **overrides) -> dict:
        """A hosts.toml table for this server (overrides replace keys; None drops one)."""
        entry = {
            "host": "127.0.0.1", "port": self.port, "user": self.user, "identity_file": str(self.user_key),
            "ssh_config": "/dev/null",  # the tester's own ~/.ssh/config must not change what is tested
            "ssh_options": [f"UserKnownHostsFile={known_hosts or self.known_hosts}", "GlobalKnownHostsFile=/dev/null",
                            "StrictHostKeyChecking=yes"],
        }
        entry.update(overrides)
        return {k: v for k, v in entry.items() if v is not None}

    # -- what runs on the "device" ------------------------------------------------------------------------------
    def _descendants(self) -> list[int]:
        parents = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                    parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
        found, frontier = [], [self.proc.pid]
        while frontier:
            children = [p for p, pp in parents.items() if pp in frontier]
            found += children
            frontier = children
        return found

    @staticmethod
    def _cmdline(pid: int) -> str:
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return ""

    def agent_pids(self) -> list[int]:
        """Agent processes running in this server's remote TMPDIR (also once orphaned by a lost connection)."""
        mine = [int(p) for p in os.listdir("/proc") if p.isdigit()]
        return [p for p in mine if "agent.py" in (cmd := self._cmdline(p)) and str(self.remote_tmp) in cmd]

    def kill_connections(self) -> int:
        """SIGKILL this server's per-connection sshd processes (not the agent they started); how many."""
        pids = [p for p in self._descendants() if self._cmdline(p).startswith("sshd:")]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return len(pids)

    def logins(self) -> int:
        """Connections accepted so far (sshd -e logs each one)."""
        return (self.folder / "sshd.log").read_text().count("Accepted publickey")

    def leftovers(self) -> list[str]:
        return sorted(os.listdir(self.remote_tmp))
