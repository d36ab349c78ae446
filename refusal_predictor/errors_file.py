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
import tempfile
from pathlib import Path
from typing import Sequence

from .artifacts import PathLike
from .paths import check_output_path, is_device_or_pipe, link_target, new_file_mode
from .records import BadRecord, RecordWriter

logger = logging.getLogger(__name__)


def default_errors_path(output: PathLike, given: PathLike | None = None) -> Path:
    """``given`` when the user named an errors file, else ``OUTPUT.errors.jsonl`` beside the output."""
    if given:
        return Path(given)
    output = Path(output)
    return output.with_name(output.name + ".errors.jsonl")


def write_bad_records(path: PathLike, bad: Sequence[BadRecord], source: PathLike) -> Path | None:
    """Keep what could not be used, with its line number and reason, as JSON Lines.

    With nothing to keep, an errors file left at ``path`` by an earlier run is removed (it would
    report that run's skipped records as this one's) and ``None`` is returned; a file there that
    is not an errors file is left alone.
    """
    return StagedErrors(path, bad, source).commit()


def write_with_errors(writer: RecordWriter, path: PathLike, bad: Sequence[BadRecord], source: PathLike) -> Path | None:
    """Put ``writer``'s output and its errors file in place as a pair; returns the errors file's path.

    Both are written aside first, then the output is renamed and the errors file after it: a
    failure to write either leaves the earlier output and errors file as they were, not a new
    output beside an old errors file (or none).
    """
    writer.finish()
    staged = StagedErrors(path, bad, source)
    try:
        writer.close()
    except BaseException:
        staged.discard()
        raise
    return staged.commit()


class StagedErrors:
    """An errors file written aside, put in place by :meth:`commit` (or thrown away by :meth:`discard`).

    A command that also writes an output stages the errors file after the output is written aside
    and commits it after the output is renamed into place: a failure to write either (a full
    disk) then leaves the earlier output and the earlier errors file as they were, a pair.
    """

    def __init__(self, path: PathLike, bad: Sequence[BadRecord], source: PathLike) -> None:
        self.path = Path(path)
        self._tmp: Path | None = None
        self._lines: list[str] | None = None
        if not bad:
            return
        check_output_path(self.path, what="errors file", create=True)
        lines = []
        for item in bad:
            entry = {"file": str(source), "line": item.line, "reason": item.reason, "raw": item.raw}
            if item.raw_bytes is not None:
                entry["raw_base64"] = base64.b64encode(item.raw_bytes).decode("ascii")
            lines.append(json.dumps(entry, ensure_ascii=False) + "\n")
        if is_device_or_pipe(self.path):  # /dev/null, /dev/stderr, a pipe: written as asked, at commit
            self._lines = lines
            return
        self._target = link_target(self.path, "errors file")
        # Written aside and renamed, as outputs are: a full disk leaves no half-written errors file.
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{self._target.name}.", dir=self._target.parent)
        except OSError as exc:
            raise self._error(exc) from exc
        try:
            with open(fd, "w", encoding="utf-8", errors="replace") as handle:
                handle.writelines(lines)
            os.chmod(tmp, new_file_mode(self._target))
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            raise self._error(exc) from exc
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._tmp = Path(tmp)

    def _error(self, exc: OSError) -> OSError:
        return OSError(exc.errno, f"{self.path}: the errors file cannot be written ({exc.strerror or exc})")

    def commit(self) -> Path | None:
        """Put the errors file in place (or remove an earlier run's when nothing was skipped)."""
        if self._lines is not None:
            try:
                with open(self.path, "w", encoding="utf-8", errors="replace") as handle:
                    handle.writelines(self._lines)
            except OSError as exc:
                raise self._error(exc) from exc
            return self.path
        if self._tmp is None:
            if _is_errors_file(self.path):
                link_target(self.path, "errors file").unlink()  # behind a link, the file it names
                logger.info("removed %s, left by an earlier run (this one skipped nothing)", self.path)
            return None
        try:
            os.replace(self._tmp, self._target)
        except OSError as exc:
            self.discard()
            raise self._error(exc) from exc
        self._tmp = None
        return self.path

    def discard(self) -> None:
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None


_ERRORS_KEYS = {"file", "line", "reason", "raw"}


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
