"""Where outputs may go: checks made before a run, and how a file behind a link is written.

A run that scores a large log for an hour must not find at its end that its output cannot be
written, or that writing it replaced the input, a device or the file a link stands for. These
checks are made up front by every command that writes (outputs, errors files, model and encoder
folders); the writers themselves live with their formats (:mod:`.records`, :mod:`.artifacts`).
"""
from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path

from .artifacts import PathLike, short_name


def resolved_target(path: Path, what: str) -> Path:
    """The file a write to ``path`` replaces: a symbolic link's target (written through, as a
    user who links a file means); a device or pipe there is refused (it cannot be replaced
    atomically, and replacing /dev/null with a file would break the system)."""
    if is_device_or_pipe(path):
        raise ValueError(f"{what} {path} is not a regular file (a device or a pipe, or a name of this process's "
                         "own streams); give a file path")
    return link_target(path, what)


# This process's own streams by name: whatever they point at (a terminal, a pipe, a file the
# shell redirected them to), they are written as they are, never replaced: /dev/stdout
# redirected to a file was renamed over, and what the command printed next went nowhere.
_STREAM_NAMES = {"/dev/stdin": 0, "/dev/stdout": 1, "/dev/stderr": 2}
_STREAM_FOLDERS = ("/dev/fd/", "/proc/self/fd/", "/proc/thread-self/fd/")


def own_stream_number(path: PathLike) -> int | None:
    """The file descriptor ``path`` names among this process's own (/dev/stdout: 1, /dev/fd/3: 3), else None."""
    name = os.path.abspath(path)
    if name in _STREAM_NAMES:
        return _STREAM_NAMES[name]
    folder = next((f for f in _STREAM_FOLDERS if name.startswith(f)), None)
    number = name[len(folder):] if folder else ""
    return int(number) if number.isdigit() else None


def is_device_or_pipe(path: Path) -> bool:
    """Something at ``path`` (through any link) that is neither a regular file nor a folder: a
    device, a pipe; or a name of this process's own streams (/dev/stdout, /dev/fd/N, /dev/tty)."""
    if own_stream_number(path) is not None or os.path.abspath(path) == "/dev/tty":
        return True
    return path.exists() and not path.is_file() and not path.is_dir()


def link_target(path: Path, what: str) -> Path:
    """``path``, or the file its symbolic link (chain) names, existing or not."""
    if not path.is_symlink():
        return path
    try:
        return path.resolve()
    except (RuntimeError, OSError) as exc:  # a loop
        raise ValueError(f"{what} {path}: its symbolic link cannot be followed ({exc})") from exc


def new_file_mode(target: Path) -> int:
    """An existing file's permissions, else those any new file gets (mkstemp creates 0600)."""
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except (OSError, RuntimeError):  # RuntimeError: a symbolic link loop, refused by the later checks
        return False


def _existing_ancestor(folder: Path) -> Path:
    """``folder``, or its nearest ancestor that exists (a file, possibly)."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _check_parent(path: Path, what: str, create: bool) -> None:
    """The folder ``path`` goes in exists or can be made: its nearest existing ancestor is a folder."""
    parent = path.parent
    ancestor = _existing_ancestor(parent)
    if not ancestor.is_dir():
        raise ValueError(f"{what} {path}: {ancestor} is a file, not a folder")
    if create:
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"{what} {path}: cannot create the folder {parent} ({exc.strerror or exc})") from exc
    else:  # the up-front check; a writer that creates its file finds out at once anyway
        _check_writable(ancestor, what, path)


def _check_writable(folder: Path, what: str, path: Path) -> None:
    """A run must not discover at its end that its output cannot be written (a read-only or full
    file system, missing permissions): a temporary file is made and removed in ``folder`` now."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ValueError(f"{what} {path}: cannot write in {folder} ({exc.strerror or exc})") from exc


def check_output_path(path: PathLike, what: str = "output", create: bool = False) -> Path:
    """A file we may write: not '-', not a folder, in a folder that exists or can be made
    (made only with ``create``, i.e. when the file is written), with a name its file system takes."""
    path = Path(path)
    if str(path) == "-":
        raise ValueError(f"{what} '-': standard input/output is not supported; give a file path")
    _check_name_length(path, what, path)  # first: asked about a name too long, is_dir() raises
    if path.is_dir():
        raise ValueError(f"{what} {path} is a folder; give a file path")
    if is_device_or_pipe(path):
        return path  # --errors /dev/null: opened as it is, no file is made beside it
    target = link_target(path, what)  # behind a link, where the file is written
    if target != path:
        _check_name_length(target, what, path)
    _check_not_read_only(target, what, path)
    _check_parent(target, what, create)
    return path


def _check_not_read_only(target: Path, what: str, path: Path) -> None:
    """A file made read-only (``chmod a-w``, often to keep a result) is not replaced: outputs are
    swapped in by a rename, which needs only the folder's permission, so it was replaced without
    a word (and a shell's ``>`` fails on it). Judged by its mode bits, as ``rm`` asks before
    removing a write-protected file, so that a run as root refuses it too."""
    try:
        mode = target.stat().st_mode
    except OSError:
        return  # nothing there yet (or unreadable: the write itself reports it)
    if not stat.S_ISREG(mode) or _read_only_file_system(target):  # that one: _check_parent says so
        return
    shown = path if target == path else f"{path} (a link to {target})"
    if not mode & 0o222:
        raise ValueError(f"{what} {shown} is write-protected (mode {stat.filemode(mode)}), so it is not replaced; "
                         "make it writable (chmod u+w) or choose another path")
    if not os.access(target, os.W_OK):
        raise ValueError(f"{what} {shown} may not be written by this user (mode {stat.filemode(mode)}, owner uid "
                         f"{target.stat().st_uid}), so it is not replaced; choose another path")


def _read_only_file_system(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # no statvfs (Windows)
        return False


def _check_name_length(target: Path, what: str, path: Path) -> None:
    """A name longer than the file system takes failed at the run's end, when the file was
    written (a 250-character output name after an hour of scoring), with "cannot write in" its
    folder; the up-front write check makes an unnamed file, which no name can fail."""
    try:
        limit = os.pathconf(_existing_ancestor(target.parent), "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # no pathconf (Windows), or not a folder: the usual 255
        limit = 255
    size = len(os.fsencode(target.name))
    if size > limit:
        hint = " (--errors names it; its default is the output's name + .errors.jsonl)" if what == "errors file" else ""
        raise ValueError(f"{what} {path}: its name is {size} bytes long, and this file system takes at most {limit}; "
                         f"choose a shorter name{hint}")


def temp_name_prefix(target: Path) -> str:
    """The prefix of the hidden temporary files written beside ``target`` and renamed onto it.

    Named after the file, so a user who finds one left by a killed run knows whose it is, but cut
    short: the whole name plus mkstemp's characters and a suffix passed 255 bytes for output
    names of 225 characters, which then failed only when the output was written.
    """
    return f".{short_name(target.name)}."


def check_output_folder(path: PathLike, what: str = "model folder", *, staged: bool = False) -> Path:
    """A folder we may write into: not an existing file, under a folder that exists or can be made.

    ``staged``: the folder is built beside itself and swapped in, so its parent is written to,
    and an existing folder's files are removed, so it must be writable too.
    """
    path = Path(path)
    _check_name_length(path, what, path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{what} {path} is a file; give a folder path")
    if path.is_dir():
        _check_writable(path, what, path)
    if staged or not path.is_dir():
        _check_parent(path, what, create=False)
    return path


def check_replaceable_folder(path: PathLike, manifest: str, fmt: str, what: str) -> tuple[Path, dict | None]:
    """A folder a save may replace whole: new, empty, or holding an earlier artefact of ``fmt``.

    Saves build the folder beside itself and swap it in (:func:`.artifacts.staged_folder`), so a
    user's own non-empty folder is refused rather than taken over. Callers check before their
    work (training, an export), so the refusal does not come after it. Returns the folder and
    the earlier artefact's manifest (``None`` for a new or empty folder), for checks of its own.
    """
    folder = check_output_folder(path, what, staged=True)
    found = None
    if folder.is_dir() and any(folder.iterdir()):
        try:
            found = json.loads((folder / manifest).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            found = None
        if not isinstance(found, dict) or found.get("format") != fmt:
            raise ValueError(f"{folder} is a non-empty folder that is not a refusal-predictor {what} "
                             f"(no {manifest} of format {fmt!r}); save into a new or empty folder")
    return folder, found
