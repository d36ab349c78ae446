"""The errors file: every record a run could not use, with its line, reason and text as given.

Nothing the user gave is dropped silently: a command that skips a malformed line, an
undecodable byte or a missing field writes it here (JSON Lines beside the output, or where
``--errors`` says), so it can be mended and scored again.
"""
from __future__ import annotations

import base64
import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

from .artifacts import PathLike, same_inode
from .interrupts import deferred
from .paths import check_output_path, is_device_or_pipe, link_target, new_file_mode, own_stream_number, temp_name_prefix
from .record_writer import RecordWriter
from .records import BadRecord

logger = logging.getLogger(__name__)


def default_errors_path(output: PathLike, given: PathLike | None = None) -> Path:
    """``given`` when the user named an errors file, else ``OUTPUT.errors.jsonl`` beside the output.

    An empty ``given`` (``--errors "$FILE"`` with the variable unset) is an error, as an empty
    ``--model`` is, not the default; an output that names no file (``-o ''``, ``-o .``) is one
    before ``with_name`` says "PosixPath('.') has an empty name".
    """
    if given is not None:
        if not str(given).strip():
            raise ValueError("--errors is empty; name the errors file (or leave --errors out for OUTPUT.errors.jsonl)")
        return Path(given)
    if not str(output).strip() or not Path(output).name:
        raise ValueError(f"the output {str(output)!r} names no file; give a file path (-o)")
    output = Path(output)
    return output.with_name(output.name + ".errors.jsonl")


def write_bad_records(path: PathLike, bad: Sequence[BadRecord], source: PathLike) -> Path | None:
    """Keep what could not be used, with its line number and reason, as JSON Lines.

    With nothing to keep, an errors file left at ``path`` by an earlier run is removed (it would
    report that run's skipped records as this one's) and ``None`` is returned; a file there that
    is not an errors file is left alone.
    """
    return StagedErrors(path, bad, source).place()


def write_with_errors(writer: RecordWriter, path: PathLike, bad: Sequence[BadRecord], source: PathLike, *,
                      keep_output: bool = True) -> Path | None:
    """Put ``writer``'s output and its errors file in place as a pair; returns the errors file's path.

    ``keep_output=False`` (a run that could use nothing) throws the output away, leaving a file
    already at its path as it was, and writes only the errors file.

    Both are written aside first. The errors file goes in place next (an earlier one moved aside,
    not deleted), then the output is renamed; if that fails, the earlier errors file is moved
    back. A failure at any one step (a full disk, a device that refuses the write, a rename, an
    interrupt) leaves the earlier output and errors file as they were, not a new output beside
    an old errors file or the other way round.
    """
    if not keep_output:
        writer.abort()
        return write_bad_records(path, bad, source)
    writer.finish()
    staged = StagedErrors(path, bad, source)
    # An exception just after the output's rename (a signal a host program handles) is raised
    # all the same: the output is then in place, so its errors file stays.
    with staged.paired(done=writer.in_place):
        writer.close()
    return staged.result


class StagedErrors:
    """An errors file written aside (``__init__``), put in place reversibly (:meth:`put_in_place`),
    then either kept (:meth:`finalize`) or undone (:meth:`restore`)."""

    def __init__(self, path: PathLike, bad: Sequence[BadRecord], source: PathLike) -> None:
        self.path = Path(path)
        self.result: Path | None = None  # the errors file's path once in place; None when nothing was skipped
        self._tmp: Path | None = None  # the new errors file, written aside
        self._aside: Path | None = None  # the earlier errors file, moved aside while the output is renamed
        self._aside_name: Path | None = None
        self._placed = False
        self._bad, self._source = bad, source
        self._earlier_source: str | None = None  # the input the errors file moved aside was about
        self._earlier_stat: os.stat_result | None = None  # that file, before it moved
        self._count = len(bad)
        self._stream = False
        if not bad:
            self._target = link_target(self.path, "errors file") if _is_errors_file(self.path) else None
            return
        check_output_path(self.path, what="errors file", create=True)
        if is_device_or_pipe(self.path):  # /dev/null, /dev/stderr, a pipe: written as asked, in put_in_place
            self._target, self._stream = None, True
            return
        self._target = link_target(self.path, "errors file")
        # Written aside and renamed, as outputs are: a full disk leaves no half-written errors file.
        try:
            fd, tmp = tempfile.mkstemp(prefix=temp_name_prefix(self._target), dir=self._target.parent)
        except OSError as exc:
            raise self._error(exc) from exc
        try:
            with open(fd, "w", encoding="utf-8", errors="replace") as handle:
                self._write(handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, new_file_mode(self._target))
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            raise self._error(exc) from exc
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._tmp = Path(tmp)

    def place(self) -> Path | None:
        """:meth:`put_in_place` and :meth:`finalize`, with no output to pair: the errors file's
        path, or None when nothing was skipped."""
        with self.paired():  # stopped between the two, the earlier file stayed hidden beside it
            pass
        return self.result

    @contextmanager
    def paired(self, done: Callable[[], bool] = lambda: False) -> Iterator[None]:
        """Put the errors file in place with what the block puts in place (an output, a model):
        both stay, or, when the block fails and ``done()`` says its own step did not happen, the
        earlier errors file comes back. The command line's Ctrl-C or SIGTERM is acted on once
        both are in place (``interrupts.deferred``); a stream (a pipe, which may wait for its
        reader) is written before that, so the wait stays interruptible."""
        if self.is_stream:
            self.put_in_place()
        with deferred():
            self.put_in_place()  # undoes its own steps when it fails part-way (a stream: already written)
            try:
                yield
                self.finalize()
            except BaseException:
                if done():
                    self.finalize()
                else:
                    self.restore()
                raise

    @property
    def is_stream(self) -> bool:
        """Skipped records going to a device or a pipe (/dev/stderr, a FIFO): written as they are,
        once, never staged or undone."""
        return self._stream

    def _write(self, handle, ascii_only: bool = False) -> None:
        """One JSON line per skipped record, streamed: the records may be spooled on disk (skipped.py).
        ``ascii_only``: non-ASCII as JSON escapes, for a stream whose encoding may not hold it."""
        for item in self._bad:
            entry = {"file": str(self._source), "line": item.line, "reason": item.reason, "raw": item.raw}
            if item.raw_bytes is not None:
                entry["raw_base64"] = base64.b64encode(item.raw_bytes).decode("ascii")
            handle.write(json.dumps(entry, ensure_ascii=ascii_only) + "\n")

    def _error(self, exc: OSError) -> OSError:
        return OSError(exc.errno, f"{self.path}: the errors file cannot be written ({exc.strerror or exc})")

    def put_in_place(self) -> None:
        """The new errors file where the user asked for it (or, with nothing skipped, an earlier
        run's out of the way); undone before raising when a step fails."""
        try:
            if self._stream:  # a device or a pipe: cannot be staged or undone, and is written once
                if self.result is None:
                    own = _own_stream(self.path)
                    if own is not None:  # through Python's own stream: a second handle on it
                        try:  # (a file the shell redirected it to) wrote over what it printed
                            own.flush()
                            self._write(own, ascii_only=True)  # whatever the stream's encoding
                            own.flush()
                        except BrokenPipeError:  # its reader is gone: this run's errors are lost
                            raise _ReaderGone(f"{self.path}: the errors file cannot be written (its reader "
                                              "is gone: broken pipe)") from None
                    else:  # appended: /dev/fd/3 opened by the shell with >> is not emptied
                        with open(self.path, "a", encoding="utf-8", errors="replace") as handle:
                            self._write(handle)
                    self.result = self.path
                return
            if self._target is not None and self._target.exists():
                fd, aside = tempfile.mkstemp(prefix=temp_name_prefix(self._target), suffix=".earlier", dir=self._target.parent)
                os.close(fd)
                self._aside_name = Path(aside)  # an empty placeholder until the earlier file moves in
                self._earlier_stat = self._target.stat()
                try:
                    os.replace(self._target, aside)
                except FileNotFoundError:
                    # Moved or removed meanwhile by a run sharing this path: nothing to move aside
                    # (the run failed here, throwing its finished output away).
                    self._aside_name = None
                    Path(aside).unlink(missing_ok=True)
                else:
                    self._aside = Path(aside)
                    self._earlier_source = _errors_source(self._aside)
            if self._tmp is not None:
                os.replace(self._tmp, self._target)
                self._tmp, self._placed, self.result = None, True, self.path
        except _ReaderGone:  # says it all already (and an errno would make it a BrokenPipeError again)
            self.restore()
            raise
        except OSError as exc:
            self.restore()
            raise self._error(exc) from exc
        except BaseException:
            self.restore()
            raise

    def restore(self) -> None:
        """Undo :meth:`put_in_place`: the earlier errors file back, the new one gone (best effort).

        What a step did is read from the disk where an exception may have come between a rename
        and the note of it (a signal a host program handles): the new file renamed (its temporary
        name gone), the earlier one moved aside (the target gone, the placeholder holding it)."""
        try:
            renamed = self._tmp is not None and not self._tmp.exists()
            if (self._placed or renamed) and self._target is not None:
                self._target.unlink(missing_ok=True)
            moved = self._aside is None and self._aside_name is not None and self._target is not None \
                and same_inode(self._aside_name, self._earlier_stat)
            if self._aside is not None and self._target is not None:
                os.replace(self._aside, self._target)
            elif moved:  # moved aside just before the exception: it is in the placeholder
                os.replace(self._aside_name, self._target)
            elif self._aside_name is not None:  # interrupted before the earlier file moved: only the placeholder
                self._aside_name.unlink(missing_ok=True)
            self._aside = self._aside_name = None
        except OSError as exc:
            logger.error("%s: the earlier errors file could not be put back (%s); it is kept as %s",
                         self.path, exc, self._aside)
        finally:
            if self._tmp is not None:
                self._tmp.unlink(missing_ok=True)
            self._tmp, self._placed, self.result = None, False, None

    def finalize(self) -> None:
        """Keep what :meth:`put_in_place` did: drop the earlier errors file moved aside."""
        if self._aside is not None:
            self._aside.unlink(missing_ok=True)
            self._aside = self._aside_name = None
            if self.result is None:
                # Said, not only logged at -v: it may be the errors of another input (a run sharing
                # this --errors path, maybe at the same time, whose report now points at nothing),
                # and the paths recorded in it are as that run was given them, so which input it
                # was about cannot always be told.
                about = f" over {self._earlier_source}" if self._earlier_source else ""
                logger.warning("removed %s, left by an earlier run%s: this run over %s skipped nothing",
                               self.path, about, self._source)


_ERRORS_KEYS = {"file", "line", "reason", "raw"}


class _ReaderGone(OSError):
    """Errors sent to this process's stdout or stderr, whose reader has gone: an error of the run
    (exit 2, naming the errors file), not the quiet end of a reader that stopped early (141)."""


def _own_stream(path: Path):
    """``sys.stdout`` or ``sys.stderr`` where ``path`` names one (/dev/stdout, /dev/fd/2, ...), else None."""
    return {1: sys.stdout, 2: sys.stderr}.get(own_stream_number(path))


def _errors_source(path: Path) -> str | None:
    """The input an errors file's first entry names (its ``file``), or None."""
    try:
        with open(path, "rb") as handle:
            first = json.loads(handle.readline(1 << 20).decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    source = first.get("file") if isinstance(first, dict) else None
    return source if isinstance(source, str) else None


def _is_errors_file(path: Path) -> bool:
    """Whether ``path`` holds what :func:`write_bad_records` writes (judged by its first line)."""
    if not path.is_file():
        return False
    try:
        with open(path, "rb") as handle:
            first = json.loads(handle.readline(1 << 20).decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(first, dict) and _ERRORS_KEYS <= set(first) <= _ERRORS_KEYS | {"raw_base64"}
