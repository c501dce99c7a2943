"""Where ``--host`` points: an ``ssh://user@host[:port]`` URL or a name from ``hosts.toml``.

The hosts file is ``$EDGEHAD_HOSTS_FILE`` if set, else
``$XDG_CONFIG_HOME/edgehad/hosts.toml`` (``~/.config/edgehad/hosts.toml``).
Each top-level table is one device; only ``host`` is required::

    [pi4]
    host = "192.168.1.20"          # address, or an alias from ~/.ssh/config
    user = "pi"                    # default: ~/.ssh/config's User, else your local user name
    port = 22                      # default: ~/.ssh/config's Port, else 22
    identity_file = "~/.ssh/id_ed25519"
    python = "~/venv/bin/python"   # the interpreter on the device (default "python3"); it needs
                                   # numpy and onnxruntime and/or ai-edge-litert (or tflite-runtime)
    ssh_options = ["ProxyJump=me@gateway", "Compression=yes"]   # passed as ssh -o OPTION
    ssh_config = "~/.ssh/lab_config"   # passed as ssh -F FILE (default: your ~/.ssh/config)
    target = "rpi4"                # the targets/ description to compare with (default: the closest)

    [orin]
    host = "orin.lab"
    user = "nvidia"
    target = "jetson-orin-nano"

Connections go through the user's own OpenSSH client, so ``~/.ssh/config``,
keys, agents and ProxyJump apply as they do for ``ssh`` itself. Host-key
checking stays on: ``StrictHostKeyChecking=no``/``off`` is refused here.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from edgehad.core.errors import UserInputError

ENV_VAR = "EDGEHAD_HOSTS_FILE"
DEFAULT_PYTHON = "python3"
_KEYS = {"host": str, "user": str, "port": int, "identity_file": str, "python": str,
         "ssh_options": list, "ssh_config": str, "target": str}
_KIND_NAMES = {str: "a string", int: "an integer", list: "a list of strings"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# A user or address must not start with "-" (ssh would read it as an option) nor hold spaces/control characters.
_WORD = re.compile(r"^[^\s\x00-\x1f\x7f-][^\s\x00-\x1f\x7f]*$")
_INSECURE = re.compile(r"^\s*stricthostkeychecking\s*[= ]\s*\"?(no|off)\"?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Host:
    """One device to run the agent on.

    ``name`` is what tables show: the hosts.toml name or the URL as given. ``address``, ``user`` and
    ``port`` are handed to ssh as given; None lets ~/.ssh/config (or ssh's defaults) decide.
    """

    name: str
    address: str
    user: str | None = None
    port: int | None = None
    identity_file: str | None = None
    python: str = DEFAULT_PYTHON
    ssh_options: tuple[str, ...] = field(default_factory=tuple)
    ssh_config: str | None = None
    target: str | None = None


def hosts_file() -> Path:
    """$EDGEHAD_HOSTS_FILE, else $XDG_CONFIG_HOME/edgehad/hosts.toml, else ~/.config/edgehad/hosts.toml."""
    override = os.environ.get(ENV_VAR)
    if override:
        return Path(override).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(config) / "edgehad" / "hosts.toml"


def resolve_host(spec: str) -> Host:
    """``spec`` (``ssh://user@host[:port]`` or a hosts.toml name) as a Host; a UserInputError if it is neither."""
    spec = str(spec).strip()
    if "://" in spec:
        return _from_url(spec)
    if not _NAME.match(spec):
        raise UserInputError(f"--host {spec!r}: give ssh://user@host[:port] or a host name from "
                             f"{hosts_file()}")
    if not hosts_file().exists():
        raise UserInputError(f"--host {spec}: there is no hosts file {hosts_file()}; write one with a table "
                             f"named {spec} (host = ..., see edgehad.profiling.hosts) or give ssh://user@host[:port]")
    hosts = load_hosts()
    if spec not in hosts:
        known = ", ".join(sorted(hosts)) or "none"
        raise UserInputError(f"--host {spec}: no host named {spec} in {hosts_file()} (names there: {known}); "
                             f"add a table for it there or give ssh://user@host[:port]")
    return hosts[spec]


def _from_url(spec: str) -> Host:
    usage = "give ssh://user@host[:port]"
    try:
        url = urlsplit(spec)
        port = url.port
    except ValueError as exc:
        raise UserInputError(f"--host {spec}: {exc}; {usage}") from None
    if url.scheme != "ssh":
        raise UserInputError(f"--host {spec}: only ssh:// URLs are supported; {usage}")
    if url.path not in ("", "/") or url.query or url.fragment:
        raise UserInputError(f"--host {spec}: a host URL has no path, query or fragment; {usage}")
    if url.password is not None:
        raise UserInputError(f"--host {spec}: passwords in the URL are not supported; use an SSH key "
                             f"(ssh-copy-id) and {usage}")
    if not url.hostname:
        raise UserInputError(f"--host {spec}: no host name; {usage}")
    user = url.username or None
    _check_word(spec, "user", user)
    _check_word(spec, "host", url.hostname)
    if port == 0:
        raise UserInputError(f"--host {spec}: port 0 is not a port; {usage}")
    return Host(name=spec, address=url.hostname, user=user, port=port)


def _check_word(where: str, key: str, value) -> None:
    if value is not None and not _WORD.match(value):
        raise UserInputError(f"{where}: {key} {value!r} must not start with '-' or contain spaces; "
                             f"give a plain {key}")


def load_hosts(path: Path | None = None) -> dict[str, Host]:
    """Every entry of the hosts file, checked; {} when the file does not exist."""
    path = path or hosts_file()
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise UserInputError(f"{path}: cannot read the hosts file ({exc.__class__.__name__}: {exc}); "
                             f"fix its permissions or set {ENV_VAR} to another file") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserInputError(f"{path}: not valid TOML ({exc}); fix that line") from None
    return {name: _entry(path, name, entry) for name, entry in data.items()}


def _entry(path: Path, name: str, entry) -> Host:
    where = f"{path}: host {name}"  # no "[name]": the CLI prints messages through rich, which eats tags
    if not isinstance(entry, dict):
        raise UserInputError(f"{path}: {name} is not a host table; write a line with the name in square "
                             f"brackets, then host = \"...\" (see edgehad.profiling.hosts)")
    if not _NAME.match(name):
        raise UserInputError(f"{where}: a host name is letters, digits, '.', '_' and '-'; rename it")
    unknown = sorted(set(entry) - set(_KEYS))
    if unknown:
        raise UserInputError(f"{where}: unknown key(s) {', '.join(unknown)}; the keys are {', '.join(_KEYS)}")
    for key, value in entry.items():
        kind = _KEYS[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise UserInputError(f"{where}: {key} must be {_KIND_NAMES[kind]}, got {value!r}")
    if "host" not in entry or not entry["host"].strip():
        raise UserInputError(f"{where}: no host; add host = \"address or ~/.ssh/config alias\"")
    _check_word(where, "host", entry["host"])
    _check_word(where, "user", entry.get("user"))
    port = entry.get("port")
    if port is not None and not 0 < port < 65536:
        raise UserInputError(f"{where}: port {port} is not between 1 and 65535")
    options = entry.get("ssh_options", [])
    for option in options:
        if not isinstance(option, str) or not option.strip() or option.lstrip().startswith("-") \
                or any(c in option for c in "\r\n\x00"):
            raise UserInputError(f"{where}: ssh_options entries are ssh -o options like \"ProxyJump=gw\", "
                                 f"got {option!r}")
        if _INSECURE.match(option):
            raise UserInputError(f"{where}: edgehad keeps host-key checking on; remove {option!r} and ssh to "
                                 f"the device once by hand to accept its key")
    python = entry.get("python", DEFAULT_PYTHON)
    if not python.strip() or any(c in python for c in "\r\n\x00"):
        raise UserInputError(f"{where}: python must be the path or name of the device's interpreter")
    return Host(name=name, address=entry["host"].strip(), user=entry.get("user"), port=port,
                identity_file=entry.get("identity_file"), python=python, ssh_options=tuple(options),
                ssh_config=entry.get("ssh_config"), target=entry.get("target"))
