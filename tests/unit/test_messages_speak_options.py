"""Library messages name options by their API keyword; only the CLI knows flags (issue #14).

Library code outside ``edgehad/cli/`` says `input_shape`, not --input-shape: a Python caller never typed a
flag. The CLI's one table, ``edgehad.cli.flags.FLAGS``, turns `keyword` back into the flag when it prints an
error, so a CLI user still reads --input-shape.
"""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path

import click
import pytest

import edgehad
import edgehad.api
from edgehad.cli.flags import FLAGS, speak_flags

PACKAGE = Path(edgehad.__file__).resolve().parent

# A command-line flag as a person would read it in a message: "--input-shape", not "x--y" nor "---".
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]+")

# A string that starts with a flag and is passed to a function: a label the function puts in its message.
LABEL = re.compile(r"--[a-z][a-z0-9-]+(?: |$)")

# Modules whose messages may name flags, and why.
EXEMPT = {
    "cli": "the command line: it owns the flags",
    "profiling/agent.py": "a standalone device program with its own argparse command line; its messages are "
                          "about its own flags",
}

# Calls whose string arguments a person reads: by the callee's last name.
SPOKEN_CALLS = {"warn", "warning", "progress", "print", "echo"}
ERROR_SUFFIXES = ("Error", "Failed", "Exception")
# args.append("--power"): a command line being built for a child process, which is no message; but
# problems.append("..."): a list of messages the CLI prints
ARGV_BUILDERS = {"append", "extend", "insert"}
MESSAGE_LISTS = {"problems", "notes", "warnings", "messages", "hints"}
# {"note": "..."}, result["warning"] = "...": texts a report or the CLI shows a person
MESSAGE_KEYS = {"note", "notes", "warning", "warnings", "message", "hint", "problems"}


def _callee(node: ast.Call) -> str:
    f = node.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""


def _receiver(node: ast.Call) -> str:
    """``problems`` in ``problems.append(...)`` or ``self.problems.append(...)``."""
    owner = node.func.value if isinstance(node.func, ast.Attribute) else None
    return owner.attr if isinstance(owner, ast.Attribute) else owner.id if isinstance(owner, ast.Name) else ""


def _spoken(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    name = _callee(node)
    return name in SPOKEN_CALLS or name.endswith(ERROR_SUFFIXES) \
        or name in ARGV_BUILDERS and _receiver(node) in MESSAGE_LISTS


def _keyed_messages(tree: ast.Module) -> list[ast.AST]:
    """Values stored under a message key: {"note": ...}, entry["warning"] = ..."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            found += [v for k, v in zip(node.keys, node.values)
                      if isinstance(k, ast.Constant) and k.value in MESSAGE_KEYS]
        elif isinstance(node, ast.Assign):
            if any(isinstance(t, ast.Subscript) and isinstance(t.slice, ast.Constant) and t.slice.value in MESSAGE_KEYS
                   for t in node.targets):
                found.append(node.value)
    return found


def _error_inits(tree: ast.Module) -> list[ast.Call]:
    """``super().__init__(message)`` in an error class: the message the class always carries."""
    return [call for cls in ast.walk(tree) if isinstance(cls, ast.ClassDef) and cls.name.endswith(ERROR_SUFFIXES)
            for call in ast.walk(cls) if isinstance(call, ast.Call) and _callee(call) == "__init__"]


def _strings(node: ast.AST):
    """Every string constant under ``node``, f-string parts included (they are Constants in the tree), and
    every f-string that builds a flag from a name (f"--{key}")."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str) \
                or isinstance(sub, ast.JoinedStr) and _flag_prefix(sub):
            yield sub


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _assigned(node: ast.AST) -> tuple[set[str], ast.AST | None]:
    """The names an assignment binds (``a, b = ...`` binds both) and its value; (set(), None) for anything else."""
    if isinstance(node, ast.Assign):
        return set().union(*(_names(t) for t in node.targets)), node.value
    if isinstance(node, (ast.AugAssign, ast.AnnAssign)) and node.value is not None:
        return _names(node.target), node.value
    return set(), None


def _textual(value: ast.AST) -> bool:
    """Text, or a lookup in a table of texts; not a call's result nor a list (an argv list is no message)."""
    if isinstance(value, ast.Constant):
        return isinstance(value.value, str)
    if isinstance(value, (ast.JoinedStr, ast.Name, ast.Subscript)):
        return True
    if isinstance(value, ast.BinOp):
        return _textual(value.left) or _textual(value.right)
    if isinstance(value, ast.IfExp):
        return _textual(value.body) or _textual(value.orelse)
    if isinstance(value, (ast.Dict, ast.Tuple)):  # a table of messages, such as {module: (what, how to get it)}
        return any(_textual(v) for v in (value.values if isinstance(value, ast.Dict) else value.elts))
    return False


def _feeding(assignments: list[ast.AST], used: set[str]) -> list[ast.AST]:
    """Values of the assignments whose names end up in a message, followed through other names."""
    values, done = [], set()
    changed = True
    while changed:
        changed = False
        for node in assignments:
            names, value = _assigned(node)
            if id(node) not in done and names & used and _textual(value):
                done.add(id(node))
                values.append(value)
                used |= _names(value)
                changed = True
    return values


def _message_strings(tree: ast.Module):
    """String constants a person reads as a message: in a raise, an error's or warn/progress/print/echo call,
    a module-level *HINT* / *MESSAGE* / *WARNING* constant, or a variable (local, or a module constant such as
    ``REFIT = "refit with ..."``) whose value one of those then uses."""
    roots: list[ast.AST] = []
    for node in tree.body:
        names, value = _assigned(node)
        if any(word in name for name in names for word in ("HINT", "MESSAGE", "WARNING")):
            roots.append(value)
    spoken = [n for n in ast.walk(tree) if isinstance(n, ast.Raise) or _spoken(n)] + _error_inits(tree) \
        + _keyed_messages(tree)
    roots += spoken
    # message = f"..."; raise Error(message): the text lives in an assignment of the same function
    module_used = set().union(*(_names(n) for n in spoken)) if spoken else set()
    for func in [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]:
        used = set().union(*(_names(n) for n in ast.walk(func) if isinstance(n, ast.Raise) or _spoken(n)))
        values = _feeding([n for n in ast.walk(func) if _assigned(n)[1] is not None], used)
        roots += values
        module_used |= set().union(*(_names(v) for v in values)) if values else set()
    roots += _feeding(list(tree.body), module_used)
    # check_writable(out, "--out"), f"--input-shape {text}", f"--{key}": a label the callee puts in its message
    for call in [n for n in ast.walk(tree) if isinstance(n, ast.Call) and _callee(n) not in ARGV_BUILDERS]:
        for arg in [*call.args, *(k.value for k in call.keywords)]:
            first = arg.values[0] if isinstance(arg, ast.JoinedStr) and arg.values else arg
            if isinstance(first, ast.Constant) and isinstance(first.value, str) and LABEL.match(first.value) \
                    or isinstance(arg, ast.JoinedStr) and _flag_prefix(arg):
                roots.append(arg)
    seen = set()
    for root in roots:
        for const in _strings(root):
            if id(const) not in seen:
                seen.add(id(const))
                yield const


def _exempt(rel: str) -> bool:
    return any(rel == e or rel.startswith(e + "/") for e in EXEMPT)


def _flag_prefix(node: ast.JoinedStr) -> bool:
    """An f-string that builds a flag from a name: f"--{key}"."""
    parts = node.values
    return any(isinstance(a, ast.Constant) and isinstance(a.value, str) and re.search(r"(?<![\w-])--$", a.value)
               and isinstance(b, ast.FormattedValue) for a, b in zip(parts, parts[1:]))


def flag_mentions(path: Path) -> list[str]:
    """``edgehad/FILE:LINE: 'text'`` for every message string in ``path`` that names a --flag."""
    rel = path.relative_to(PACKAGE).as_posix()
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    hits = []
    for node in _message_strings(tree):
        if isinstance(node, ast.JoinedStr):
            hits.append((node.lineno, ast.unparse(node)))
        elif FLAG.search(node.value):
            hits.append((node.lineno, repr(node.value)))
    return [f"edgehad/{rel}:{line}: {text}" for line, text in sorted(set(hits))]


def _scan(source: str) -> list[str]:
    return [c.value if isinstance(c, ast.Constant) else ast.unparse(c) for c in _message_strings(ast.parse(source))
            if not isinstance(c, ast.Constant) or FLAG.search(c.value)]


def test_the_scan_finds_flags_in_every_kind_of_message():
    found = _scan(textwrap.dedent('''
        HINT = "pass --hint"
        REFIT = "refit with --refit"
        OPTIONAL = {"x": ("what", "pass --table")}

        class SlowError(Exception):
            def __init__(self, t):
                super().__init__(f"took {t} s: give --init")

        def f(x, problems, progress, out, key):
            if x:
                raise UserInputError(f"--raise {x} is wrong")
            message = "use --local"
            warn(message)
            what, how = OPTIONAL["x"]
            progress(f"note: {how}")
            problems.append("try --append")
            result = {"note": "see --note"}
            check_writable(out, "--label", folder=True)
            check_setting(f"--{key}", x)
            raise ConversionFailed(REFIT)
    '''))
    assert sorted(found) == sorted(["pass --hint", "refit with --refit", "pass --table", " s: give --init",
                                    "--raise ", "use --local", "try --append", "see --note", "--label", "f'--{key}'"])


def test_the_scan_leaves_command_lines_and_plain_text_alone():
    found = _scan(textwrap.dedent('''
        def f(model, runs):
            args = [model, "--runs", str(runs)]
            args.append("--power")
            proc = run_child([*args, "--seed", "0"])
            if proc.returncode:
                raise EdgehadError(f"the agent failed (exit {proc.returncode}): -- see above, x--y")
            return "--not-a-message"
    '''))
    assert found == []


def test_no_library_message_names_a_flag():
    files = sorted(p for p in PACKAGE.rglob("*.py") if not _exempt(p.relative_to(PACKAGE).as_posix()))
    assert len(files) > 50  # the walk found the package
    hits = [hit for path in files for hit in flag_mentions(path)]
    assert not hits, ("library messages name a --flag; name the option as `keyword` (edgehad.cli.flags.FLAGS "
                      "turns it into the flag for CLI users):\n" + "\n".join(hits))


# -- the table -------------------------------------------------------------------------------------------

# Flags of the command line alone: no API keyword stands behind them.
CLI_ONLY = {"--json", "--debug", "--help", "-h", "--version", "--list", "--explain"}


def _commands(group: click.Group, ctx: click.Context, path: str = "edgehad"):
    """(command path, command) for every command under ``group``, subgroups (osr, targets) included."""
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        yield f"{path} {name}", command
        if isinstance(command, click.Group):
            yield from _commands(command, click.Context(command, parent=ctx, info_name=name), f"{path} {name}")


def _options() -> list[tuple[str, click.Option]]:
    from edgehad.cli import main

    return [(where, param) for where, command in _commands(main, click.Context(main, info_name="edgehad"))
            for param in command.params if isinstance(param, click.Option)]


def test_every_flag_in_the_table_is_an_option_of_a_command():
    flags = {flag for _, option in _options() for flag in option.opts + option.secondary_opts}
    assert {"--input-shape", "--prune-structure", "--ep", "--no-distill", "--arena-kb", "--stats"} <= flags
    assert sorted(set(FLAGS.values()) - flags) == []


def test_every_option_of_every_command_is_in_the_table():
    missing = [f"{where} {option.opts[0]}" for where, option in _options()
               if not set(option.opts) & (set(FLAGS.values()) | CLI_ONLY)]
    assert missing == []


def test_a_keyword_means_the_same_flag_in_every_command():
    """Where a command's option has a keyword of the table as its name, the table's flag is that option's:
    a command that named another flag so would be mistranslated by the one table."""
    clashes = [f"{where}: {option.name} is {option.opts[0]}, the table says {FLAGS[option.name]}"
               for where, option in _options() if option.name in FLAGS and FLAGS[option.name] not in option.opts]
    assert clashes == []


@pytest.mark.parametrize("message, spoken", [
    ("give the shape of each symbolic dim with `input_shape` (e.g. images=1x3x640x640)",
     "give the shape of each symbolic dim with --input-shape (e.g. images=1x3x640x640)"),
    ("`finetune_epochs` must be >= 0, got -1", "--finetune-epochs must be >= 0, got -1"),
    ("pass `finetune_epochs=0` to skip it", "pass --finetune-epochs 0 to skip it"),
    ("`keep_float='auto'` cannot be combined with `osr`", "--keep-float auto cannot be combined with --osr"),
    ("pick another name (`name='g model'`)", "pick another name (--name 'g model')"),
    ("pass `force=True` to replace it", "pass --force to replace it"),
    ("pass `distill=False` to train on labels only", "pass --no-distill to train on labels only"),
    ("`provider` cuda is an onnxruntime provider", "--ep cuda is an onnxruntime provider"),
    ("`prune_*` options need `prune` RATIO", "--prune-* options need --prune RATIO"),
    # not keywords of the table, or values the flag cannot say: left as they are
    ("refit with `edgehad osr fit`; set `[prune] ratio`", "refit with `edgehad osr fit`; set `[prune] ratio`"),
    ("`force=False`, `distill=True`, `input_shape=[1, 3]`, `shape=1`, `x_*`",
     "`force=False`, `distill=True`, `input_shape=[1, 3]`, `shape=1`, `x_*`"),
])
def test_speak_flags(message, spoken):
    assert speak_flags(message) == spoken


def test_a_library_error_reads_as_a_flag_on_the_command_line(tmp_path, cli):
    """The same refusal: the keyword form from Python, the flag form on the CLI's one error line."""
    from edgehad.core.errors import UserInputError

    path = tmp_path / "m.tflite"  # never read: the options are refused first
    with pytest.raises(UserInputError) as raised:
        edgehad.api.micro(path, arena_kb=8, find_arena=True)
    assert str(raised.value) == ("`arena_kb` and `find_arena` exclude each other: pass `arena_kb` N to try one "
                                 "size, or `find_arena=True` to search for the smallest")
    result = cli("micro", path, "--arena-kb", "8", "--find-arena")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: --arena-kb and --find-arena exclude each other: pass --arena-kb N to try one size, or "
        "--find-arena to search for the smallest"]
