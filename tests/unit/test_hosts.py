"""hosts.toml: ssh_options read the way ssh reads them, host-key checking kept on, types and ranges by schema.

The guard's verdict on each spelling is checked against the real OpenSSH client: ``ssh -G`` prints the
configuration an option would give, without connecting, for the exact command line edgehad builds.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from edgehad.core.errors import UserInputError
from edgehad.profiling.hosts import Host, check_ssh_option, load_hosts, parse_ssh_option, resolve_host
from edgehad.profiling.remote import _ssh

# Spellings ssh accepts that turn host-key checking off (or let any key in), one per way of writing them.
REFUSED = [
    "StrictHostKeyChecking=no",
    "StrictHostKeyChecking=false",
    "StrictHostKeyChecking=off",
    "StrictHostKeyChecking=OFF",
    "StrictHostKeyChecking=accept-new",
    "StrictHostKeyChecking\tno",
    "stricthostkeychecking no",
    "STRICTHOSTKEYCHECKING=False",
    "StrictHostKeyChecking = no",
    "StrictHostKeyChecking =no",
    "StrictHostKeyChecking\t=\tno",
    " StrictHostKeyChecking=no",
    "StrictHostKeyChecking=no ",
    'StrictHostKeyChecking "no"',
    "StrictHostKeyChecking='no'",
    '"StrictHostKeyChecking" no',
    'Strict"HostKeyChecking" no',
    "StrictHostKeyChecking=No # a comment",
    "UserKnownHostsFile=/dev/null",
    "UserKnownHostsFile /dev//null",
    "UserKnownHostsFile=none",
    "UserKnownHostsFile ~/.ssh/known_hosts /dev/null",
    "KnownHostsCommand=/bin/echo %H %t %K",
]
# Spellings that keep it on: what passes the guard.
KEPT = [
    "StrictHostKeyChecking=yes",
    "StrictHostKeyChecking ask",
    "stricthostkeychecking=TRUE",
    "UserKnownHostsFile=~/.ssh/lab_known_hosts",
    "GlobalKnownHostsFile=/dev/null",  # narrows trust to the user's own file; never widens it
    "ProxyJump=me@gateway",
    "Compression=yes",
    "ProxyCommand=ssh -W %h:%p gateway",  # the user's own command, as in ~/.ssh/config (see check_ssh_option)
    "LocalCommand=echo connected",
]


def _effective(option: str) -> dict:
    """``ssh -G`` for the command line edgehad builds with ``option``: the configuration ssh would use."""
    host = Host(name="dev", address="device.invalid", ssh_config=os.devnull, ssh_options=(option,))
    proc = subprocess.run(_ssh(host, None, "-G"), capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        return {"error": " ".join(proc.stderr.split())}
    return dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)


def _checking_off(config: dict) -> bool:
    return (config.get("stricthostkeychecking") in ("false", "accept-new")
            or "knownhostscommand" in config
            or config.get("userknownhostsfile") == "none"
            or "/dev/null" in config.get("userknownhostsfile", "").replace("//", "/").split())


@pytest.mark.parametrize("option", REFUSED)
def test_every_spelling_that_turns_checking_off_is_refused(option):
    with pytest.raises(UserInputError, match=r"^hosts\.toml: host pi: edgehad (keeps host-key checking on|checks "
                                             r"host keys against known_hosts only); remove "):
        check_ssh_option(option, "hosts.toml: host pi")


@pytest.mark.parametrize("option", KEPT)
def test_options_that_keep_checking_on_pass(option):
    check_ssh_option(option, "hosts.toml: host pi")


needs_ssh = pytest.mark.skipif(shutil.which("ssh") is None, reason="no OpenSSH client (apt install openssh-client)")


@needs_ssh
def test_ssh_agrees_what_is_refused_would_turn_checking_off():
    """Each refused spelling, given to the real ssh as edgehad would, really turns checking off there."""
    config = {option: _effective(option) for option in REFUSED}
    assert {option: c for option, c in config.items() if not _checking_off(c)} == {}
    assert config["StrictHostKeyChecking\tno"]["stricthostkeychecking"] == "false"
    assert config['Strict"HostKeyChecking" no']["stricthostkeychecking"] == "false"
    assert config["StrictHostKeyChecking=accept-new"]["stricthostkeychecking"] == "accept-new"


@needs_ssh
def test_ssh_agrees_what_passes_keeps_checking_on():
    config = {option: _effective(option) for option in KEPT}
    assert [option for option, c in config.items() if "error" in c or _checking_off(c)] == []
    assert {c["stricthostkeychecking"] for c in config.values()} <= {"true", "ask"}
    # allowed commands reach ssh as the user wrote them: one argv word each, no shell on edgehad's side
    assert config["ProxyCommand=ssh -W %h:%p gateway"]["proxycommand"] == "ssh -W %h:%p gateway"


@needs_ssh
def test_ssh_itself_rejects_what_the_guard_rejects_as_no_option():
    """Unparseable or command-line-forbidden options: ssh fails on them too, so refusing early loses nothing."""
    for option in ("StrictHostKeyChecking", "Match exec true", "Include /tmp/x", "Host x"):
        assert "error" in _effective(option), option
        with pytest.raises(UserInputError, match=r"^w: "):
            check_ssh_option(option, "w")


@pytest.mark.parametrize("option, parsed", [
    ("StrictHostKeyChecking=no", ("stricthostkeychecking", ["no"])),
    ("StrictHostKeyChecking\t=  OFF", ("stricthostkeychecking", ["OFF"])),
    ('"StrictHostKeyChecking" "no"', ("stricthostkeychecking", ["no"])),
    ("StrictHostKeyChecking==no", ("stricthostkeychecking", ["=no"])),  # one "=" only: ssh rejects "=no"
    ("ProxyJump=me@gw # comment", ("proxyjump", ["me@gw"])),
    ("UserKnownHostsFile=/a\\ b '/c d' \"/e\"", ("userknownhostsfile", ["/a b", "/c d", "/e"])),
    ("=Compression yes", ("compression", ["yes"])),
    ("StrictHostKeyChecking", None),          # no argument
    ("# a comment", None),
    ("StrictHostKeyChecking 'no", None),      # unclosed quote
    ('"StrictHostKeyChecking no', None),      # unclosed quote in the keyword: ssh ignores the line
])
def test_parser_reads_options_like_ssh(option, parsed):
    assert parse_ssh_option(option) == parsed


@pytest.mark.parametrize("option, message", [
    ("-oProxyCommand=x", "ssh_options entries are ssh -o options"),
    ("StrictHostKeyChecking", "(a keyword, then its value)"),
    ("Compression=yes\nProxyCommand=x", "ssh_options entries are ssh -o options"),
    ("Match exec true", "Match cannot be an ssh -o option; put it in an ssh config file"),
    ("Include ~/.ssh/other", "Include cannot be an ssh -o option"),
    ("RemoteCommand=reboot", "edgehad runs its own command on the device; remove 'RemoteCommand=reboot'"),
])
def test_options_that_are_no_option_or_replace_our_command(option, message):
    with pytest.raises(UserInputError) as info:
        check_ssh_option(option, "w")
    assert message in str(info.value)


# -- hosts.toml entries and --host URLs ------------------------------------------------------------------------
def _load(tmp_path, text):
    path = tmp_path / "hosts.toml"
    path.write_text(text)
    return path, load_hosts(path)


@pytest.mark.parametrize("text, message", [
    ('[pi]\nhost = "a"\nport = 0\n', "pi.port must be in [1, 65535], got 0"),
    ('[pi]\nhost = "a"\nport = nan\n', "pi.port must be a finite number, got nan"),
    ('[pi]\nhost = "a"\nport = 22.5\n', "pi.port must be an integer in [1, 65535], got 22.5"),
    ('[pi]\nhost = "a"\nport = true\n', "pi.port must be an integer in [1, 65535], got true"),
    ('[pi]\nhost = "a"\nssh_options = "Compression=yes"\n', 'pi.ssh_options must be a list, got "Compression=yes"'),
    ('[pi]\nhost = "a"\nssh_options = [1]\n', "pi.ssh_options[0] must be a non-empty string, got 1"),
    ('[pi]\nhost = "a"\npython = ""\n', 'pi.python must be a non-empty string, got ""'),
    ('[pi]\nhost = "  "\n', 'host pi: host is blank; give host = "address or ~/.ssh/config alias"'),
    ('[pi]\nhost = "a"\npython = " "\n', "host pi: python must be the path or name of the device's interpreter"),
    ('[pi]\nhost = "a"\ntarget = 4\n', "pi.target must be a non-empty string, got 4"),
    ('[pi]\nhost = "a"\nssh_options = ["stricthostkeychecking\\tOff"]\n',
     "host pi: edgehad keeps host-key checking on"),
    ('[pi]\nhost = "a$(reboot)"\n', "host pi: host 'a$(reboot)' must not start with '-' nor contain"),
    ('[pi]\nhost = "a"\nuser = "pi;reboot"\n', "host pi: user 'pi;reboot' must not start with '-' nor contain"),
])
def test_bad_entries_name_the_key(tmp_path, text, message):
    with pytest.raises(UserInputError) as info:
        _load(tmp_path, text)
    assert str(info.value).startswith(f"{tmp_path / 'hosts.toml'}: ")
    assert message in str(info.value)


def test_a_good_entry_loads(tmp_path):
    _, hosts = _load(tmp_path, '[pi]\nhost = " 192.0.2.1 "\nport = 2222.0\nuser = "pi"\n'
                               'ssh_options = ["ProxyJump=me@gw", "StrictHostKeyChecking yes"]\n')
    assert hosts["pi"] == Host(name="pi", address="192.0.2.1", user="pi", port=2222,
                               ssh_options=("ProxyJump=me@gw", "StrictHostKeyChecking yes"))
    assert type(hosts["pi"].port) is int  # 2222.0 is an integer to JSON Schema; ssh -p wants "2222"


@pytest.mark.parametrize("spec", [
    "ssh://pi@a;touch${IFS}x",
    "ssh://pi@a$(reboot)",
    "ssh://pi@a|b:22",
    "ssh://p`id`@host",
    "ssh://pi'@host",
])
def test_url_with_shell_syntax_in_host_or_user_is_refused(spec):
    """ssh 9.2 would expand such a host into %h of a ProxyCommand/Match exec in ~/.ssh/config, unquoted."""
    with pytest.raises(UserInputError, match=r"must not start with '-' nor contain spaces or any of"):
        resolve_host(spec)
