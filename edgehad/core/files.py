"""Writing files so that nothing is lost.

Files are written to a temporary name in the destination folder and renamed
into place (``os.replace`` is atomic within one file system), so an
interrupted run never leaves a half-written model and never replaces a good
file with a bad one.

An output folder is published whole: the run writes into a staging folder
beside ``out`` and, once every check passed, the staging folder *becomes*
``out`` in one atomic exchange (``renameat2(RENAME_EXCHANGE)``). ``out`` is
therefore always exactly one run's output, the old one or the new one, never
a mix of both. A folder that holds files no edgehad run wrote is refused
before any work starts, so publishing never deletes a user's own files.

Temporary names carry the writer's pid (``.NAME.<pid>.<random>.partial``):
a run that was killed (SIGKILL, power loss) leaves its staging folder behind,
and the next run into the same ``out`` removes every one whose writer is no
longer alive.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from edgehad.core.errors import UserInputError

RUN_FILES = ("report.json", "report.md")     # what every conversion writes besides its models
_VIRTUAL_ROOTS = ("/proc", "/sys", "/dev")  # writable-looking to root, but not where files belong
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[A-Za-z0-9_]+\.(?:partial|tmp|old)$")


def check_writable(dest: str | os.PathLike, what: str, *, folder: bool) -> Path:
    """Refuse, before any heavy work, a destination that cannot be written.

    ``dest`` may not exist yet: its nearest existing parent must be a
    writable folder. Paths under /proc, /sys or /dev are refused outright.
    """
    dest = Path(dest).absolute()
    if any(str(dest) == root or str(dest).startswith(root + "/") for root in _VIRTUAL_ROOTS):
        raise UserInputError(f"{what} {dest} is under a virtual file system: pick a folder on a disk")
    if dest.exists():
        if folder and not dest.is_dir():
            raise UserInputError(f"{what} {dest} is a file, not a folder: pick a folder path")
        if not folder and dest.is_dir():
            raise UserInputError(f"{what} {dest} is a folder, not a file: give a file name")
    parent = dest.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UserInputError(f"{what} {dest} is under {parent}, which is a file: pick a path in a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserInputError(f"{what} {dest}: {parent} is not writable: pick a folder you can write to")
    return dest


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike):
    """Yield a temporary path beside ``dest``; rename it onto ``dest`` on success."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(dest)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.{os.getpid()}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; a model file is an ordinary file
    try:
        yield Path(tmp)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(dest: str | os.PathLike, text: str) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_text(text)


def check_out_folder(out: str | os.PathLike) -> Path:
    """``out`` is new, empty, or one earlier edgehad run's output; anything else is refused.

    Called before the model loads, so a bad ``out`` costs nothing.
    """
    out = check_writable(out, "`out`", folder=True)
    if out.is_symlink():  # publish replaces the folder it points to, not the link
        out = out.resolve()
    foreign = foreign_entries(out)
    if foreign:
        raise UserInputError(
            f"`out` {out} holds {foreign[0]!r}, which no edgehad run wrote: the folder is replaced whole by the "
            "new run, so move your files out of it or pick an empty or new folder"
        )
    return out


def foreign_entries(out: Path) -> list[str]:
    """Names in ``out`` that its ``report.json`` does not account for (all of them if there is no report)."""
    if not out.is_dir():
        return []
    names = sorted(p.name for p in out.iterdir())
    if not names:
        return []
    try:
        report = json.loads((out / "report.json").read_text())
        ours = set(RUN_FILES) | {Path(a["path"]).name for a in report["artifacts"]}
        if "edgehad_version" not in report:
            raise KeyError("edgehad_version")
    except (OSError, ValueError, KeyError, TypeError):
        return names
    # a model's side files (ONNX external data "model.onnx.data") belong to it
    ours |= {f"{o}.data" for o in ours}
    return [n for n in names if n not in ours or (out / n).is_dir()]


@contextlib.contextmanager
def staging_dir(out: str | os.PathLike):
    """Yield a fresh staging folder; on success it replaces ``out`` whole, in one atomic exchange.

    A failed or interrupted run removes the staging folder and leaves ``out``
    exactly as it was.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(out)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.{os.getpid()}.", suffix=".partial", dir=out.parent))
    try:
        yield stage
        os.chmod(stage, 0o777 & ~current_umask())  # mkdtemp makes 0700; the published folder is an ordinary one
        publish(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def publish(stage: Path, out: Path) -> None:
    """Make ``stage`` be ``out`` unless ``out`` gained foreign files; see :func:`replace_dir`."""
    from edgehad.core import stop

    stop.check()  # a Ctrl-C or SIGTERM that a library swallowed still publishes nothing
    foreign = foreign_entries(out)
    if foreign:  # checked at the start too; a file that appeared during the run is not ours to delete
        raise UserInputError(f"`out` {out} gained {foreign[0]!r} during the run: nothing was replaced; "
                             f"move it out and run again")
    replace_dir(stage, out)


def replace_dir(stage: Path, out: Path) -> None:
    """Make the folder ``stage`` be ``out`` in one step; the previous ``out`` (if any) ends at ``stage``'s
    path, for the caller to remove. Where the file system has no atomic exchange, two renames, the
    first undone if the second fails."""
    if not out.exists():
        os.rename(stage, out)
        return
    if _exchange(stage, out):
        return
    # no atomic exchange on this file system: two renames, undone if the second fails
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.{os.getpid()}.", suffix=".old", dir=out.parent))
    os.rmdir(old)
    os.rename(out, old)
    try:
        os.rename(stage, out)
    except OSError:
        os.rename(old, out)
        raise
    os.rename(old, stage)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2  # from fcntl.h and linux/fs.h
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def remove_stale(dest: Path) -> list[Path]:
    """Remove temporary files and folders of ``dest`` left by writers that are no longer alive."""
    removed = []
    try:
        entries = list(dest.parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        m = _TEMP.match(entry.name)
        if not m or m["name"] != dest.name or _alive(int(m["pid"])):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                entry.unlink()
        removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def current_umask() -> int:
    """The process's umask (reading it means setting it, so it is set back at once)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
