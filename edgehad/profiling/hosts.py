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
checking stays on: ``ssh_options`` are read the way ssh reads them (see
``parse_ssh_option``) and every spelling of an option that turns checking off
or lets something other than known_hosts vouch for a key is refused (see
``check_ssh_option``). Types and ranges of the keys are one JSON Schema,
``ENTRY_SCHEMA``, checked with ``edgehad.core.validation.check``.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from edgehad.core.errors import UserInputError
from edgehad.core.validation import check

ENV_VAR = "EDGEHAD_HOSTS_FILE"
DEFAULT_PYTHON = "python3"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# A user or address must not start with "-" (ssh would read it as an option), nor hold spaces, control
# characters or shell metacharacters: ssh expands %h, %r and %u into ProxyCommand, LocalCommand,
# KnownHostsCommand and "Match exec" command lines, which it runs through a shell without quoting them
# (CVE-2023-51385). OpenSSH 9.6 refuses the same characters itself; older clients (Debian 12 ships 9.2) do not.
_WORD = re.compile(r"""^[^\s\x00-\x1f\x7f'`"$\\;&<>|(){}-][^\s\x00-\x1f\x7f'`"$\\;&<>|(){}]*$""")

_TEXT = {"type": "string", "minLength": 1}
ENTRY_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["host"],
    "properties": {
        "host": {**_TEXT, "description": "address, or an alias from ~/.ssh/config"},
        "user": {**_TEXT, "description": "login user (default: ~/.ssh/config's User, else your user name)"},
        "port": {"type": "integer", "minimum": 1, "maximum": 65535, "description": "SSH port"},
        "identity_file": {**_TEXT, "description": "private key, passed as ssh -i"},
        "python": {**_TEXT, "description": "the interpreter on the device"},
        "ssh_options": {"type": "array", "items": _TEXT, "description": "ssh -o options, e.g. ProxyJump=gw"},
        "ssh_config": {**_TEXT, "description": "an ssh config file, passed as ssh -F"},
        "target": {**_TEXT, "description": "the targets/ description to compare with"},
    },
}
FILE_SCHEMA = {"type": "object", "additionalProperties": ENTRY_SCHEMA}

# -- ssh_options, read as ssh reads them ------------------------------------------------------------------------
# OpenSSH's readconf.c (process_config_line, strdelim) and misc.c (argv_split), 8.7 to 9.x: the keyword ends
# at whitespace, a quote or one "="; "=" may have whitespace on either side; the keyword is matched without
# regard to case and may itself be quoted; arguments are split on spaces/tabs, '...' and "..." quote, a
# backslash escapes a quote, a backslash or a space, and a "#" that starts an argument ends the line.
_WHITESPACE = " \t\r\n"
# StrictHostKeyChecking's values (readconf.c multistate_strict_host_key_checking, matched by strcasecmp)
# that keep a key not in known_hosts out. "accept-new" is refused too: it stores any first key without a
# person looking at it, and edgehad's promise is that a person accepted every key (ssh to it once by hand).
_CHECKING_ON = {"yes", "true", "ask"}


def _strdelim(text: str) -> tuple[str | None, str | None]:
    """readconf.c's strdelim: (the first token, the rest), the rest None at the end; (None, None) for an
    unmatched quote (ssh then ignores the line)."""
    cut = next((i for i, c in enumerate(text) if c in _WHITESPACE + '"='), None)
    if cut is None:
        return text, None
    if text[cut] == '"':
        text = text[:cut] + text[cut + 1:]
        close = text.find('"', cut)
        if close < 0:
            return None, None
        return text[:close], text[close + 1:].lstrip(_WHITESPACE)
    rest = text[cut + 1:].lstrip(_WHITESPACE)
    if text[cut] != "=" and rest.startswith("="):  # one "=" may follow whitespace: "Key = value"
        rest = rest[1:].lstrip(_WHITESPACE)
    return text[:cut], rest


def _argv_split(text: str) -> list[str] | None:
    """misc.c's argv_split with comments: the arguments, or None for an unclosed quote."""
    args: list[str] = []
    i = 0
    while i < len(text):
        if text[i] in " \t":
            i += 1
            continue
        if text[i] == "#":
            break
        arg, quote = [], ""
        while i < len(text):
            c = text[i]
            if c == "\\" and i + 1 < len(text) and (text[i + 1] in "'\"\\" or (not quote and text[i + 1] == " ")):
                i += 1
                arg.append(text[i])
            elif not quote and c in " \t":
                break
            elif not quote and c in "'\"":
                quote = c
            elif quote and c == quote:
                quote = ""
            else:
                arg.append(c)
            i += 1
        if quote:
            return None
        args.append("".join(arg))
    return args


def parse_ssh_option(option: str) -> tuple[str, list[str]] | None:
    """``(keyword in lower case, arguments)`` as ``ssh -o OPTION`` reads ``option``; None where ssh would
    ignore or reject the line as a whole (empty, a comment, no argument, an unclosed quote)."""
    line = option.rstrip(_WHITESPACE + "\f")
    keyword, rest = _strdelim(line)
    if keyword == "":  # leading whitespace or "=": the keyword is the next token
        keyword, rest = _strdelim(rest) if rest is not None else (None, None)
    if not keyword or keyword.startswith("#"):
        return None
    rest = rest.lstrip(_WHITESPACE) if rest is not None else ""
    args = _argv_split(rest) if rest else None
    if not args:
        return None
    return keyword.lower(), args


def check_ssh_option(option: str, where: str) -> None:
    """A UserInputError unless ``option`` is one ``ssh -o`` option that keeps host-key checking on.

    Refused, in every spelling ssh accepts: StrictHostKeyChecking other than yes/true/ask;
    UserKnownHostsFile /dev/null or none (its only use is forgetting keys, which with a
    StrictHostKeyChecking=accept-new in ~/.ssh/config would accept any key every time);
    KnownHostsCommand (a command that may vouch for any key); and what ssh rejects on its command
    line anyway (Host, Match, Include) or what would replace edgehad's own command (RemoteCommand).

    Allowed: ProxyCommand, LocalCommand/PermitLocalCommand and the like. hosts.toml is the user's own
    file, written by them with the same authority as ~/.ssh/config, which edgehad applies on purpose
    (and ``ssh_config = FILE`` may name any config holding such a line): refusing the option here would
    not keep a command out, only break gateways that need it (cloudflared, AWS SSM, ``ssh -W`` through an
    old server). edgehad itself runs none of it: each option is one argv word to ssh, no shell on our side,
    and what the user types on edgehad's command line (``--host``) cannot carry shell syntax into ssh's
    %h/%r expansions (see ``_WORD``).
    """
    usage = "ssh_options entries are ssh -o options like \"ProxyJump=gw\""
    if option.lstrip().startswith("-") or any(c in option for c in "\r\n\x00"):
        raise UserInputError(f"{where}: {usage}, got {option!r}")
    parsed = parse_ssh_option(option)
    if parsed is None:
        raise UserInputError(f"{where}: {usage} (a keyword, then its value), got {option!r}")
    keyword, args = parsed
    keep_on = (f"{where}: edgehad keeps host-key checking on; remove {option!r} and ssh to the device once by "
               f"hand to accept its key")
    if keyword == "stricthostkeychecking" and args[0].lower() not in _CHECKING_ON:
        raise UserInputError(keep_on)
    if keyword == "userknownhostsfile" and any(_forgets_keys(a) for a in args):
        raise UserInputError(keep_on)
    if keyword == "knownhostscommand":
        raise UserInputError(f"{where}: edgehad checks host keys against known_hosts only; remove {option!r} and "
                             f"ssh to the device once by hand to accept its key")
    if keyword in ("host", "match", "include"):
        raise UserInputError(f"{where}: {keyword.capitalize()} cannot be an ssh -o option; put it in an ssh config "
                             f"file and name that file with ssh_config = \"...\"")
    if keyword == "remotecommand":
        raise UserInputError(f"{where}: edgehad runs its own command on the device; remove {option!r}")


def _forgets_keys(path: str) -> bool:
    if path.lower() == "none":
        return True
    return os.path.realpath(os.path.expanduser(path)) == os.path.realpath(os.devnull)


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
        raise UserInputError(f"`host` {spec!r}: give ssh://user@host[:port] or a host name from "
                             f"{hosts_file()}")
    if not hosts_file().exists():
        raise UserInputError(f"`host` {spec}: there is no hosts file {hosts_file()}; write one with a table "
                             f"named {spec} (host = ..., see edgehad.profiling.hosts) or give ssh://user@host[:port]")
    hosts = load_hosts()
    if spec not in hosts:
        known = ", ".join(sorted(hosts)) or "none"
        raise UserInputError(f"`host` {spec}: no host named {spec} in {hosts_file()} (names there: {known}); "
                             f"add a table for it there or give ssh://user@host[:port]")
    return hosts[spec]


def _from_url(spec: str) -> Host:
    usage = "give ssh://user@host[:port]"
    try:
        url = urlsplit(spec)
        port = url.port
    except ValueError as exc:
        raise UserInputError(f"`host` {spec}: {exc}; {usage}") from None
    if url.scheme != "ssh":
        raise UserInputError(f"`host` {spec}: only ssh:// URLs are supported; {usage}")
    if url.path not in ("", "/") or url.query or url.fragment:
        raise UserInputError(f"`host` {spec}: a host URL has no path, query or fragment; {usage}")
    if url.password is not None:
        raise UserInputError(f"`host` {spec}: passwords in the URL are not supported; use an SSH key "
                             f"(ssh-copy-id) and {usage}")
    if not url.hostname:
        raise UserInputError(f"`host` {spec}: no host name; {usage}")
    user = url.username or None
    _check_word(spec, "user", user)
    _check_word(spec, "host", url.hostname)
    if port == 0:
        raise UserInputError(f"`host` {spec}: port 0 is not a port; {usage}")
    return Host(name=spec, address=url.hostname, user=user, port=port)


def _check_word(where: str, key: str, value) -> None:
    if value is not None and not _WORD.match(value):
        raise UserInputError(f"{where}: {key} {value!r} must not start with '-' nor contain spaces or any of "
                             f"'`\"$\\;&<>|(){{}}; give a plain {key}")


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
    check(data, FILE_SCHEMA, str(path))  # types and ranges first: the checks below read typed values
    return {name: _entry(path, name, entry) for name, entry in data.items()}


def _entry(path: Path, name: str, entry: dict) -> Host:
    where = f"{path}: host {name}"  # no "[name]": the CLI prints messages through rich, which eats tags
    if not _NAME.match(name):
        raise UserInputError(f"{where}: a host name is letters, digits, '.', '_' and '-'; rename it")
    if not entry["host"].strip():
        raise UserInputError(f"{where}: host is blank; give host = \"address or ~/.ssh/config alias\"")
    _check_word(where, "host", entry["host"].strip())
    _check_word(where, "user", entry.get("user"))
    port = entry.get("port")
    port = None if port is None else int(port)  # 22.0 is an integer to JSON Schema; ssh -p wants "22"
    options = entry.get("ssh_options", [])
    for option in options:
        check_ssh_option(option, where)
    python = entry.get("python", DEFAULT_PYTHON)
    if not python.strip() or any(c in python for c in "\r\n\x00"):
        raise UserInputError(f"{where}: python must be the path or name of the device's interpreter")
    return Host(name=name, address=entry["host"].strip(), user=entry.get("user"), port=port,
                identity_file=entry.get("identity_file"), python=python, ssh_options=tuple(options),
                ssh_config=entry.get("ssh_config"), target=entry.get("target"))
