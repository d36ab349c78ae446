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
from .records import BadRecord

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
    path = Path(path)
    if not bad:
        if _is_errors_file(path):
            link_target(path, "errors file").unlink()  # behind a link, the file it names
            logger.info("removed %s, left by an earlier run (this one skipped nothing)", path)
        return None
    check_output_path(path, what="errors file", create=True)
    lines = []
    for item in bad:
        entry = {"file": str(source), "line": item.line, "reason": item.reason, "raw": item.raw}
        if item.raw_bytes is not None:
            entry["raw_base64"] = base64.b64encode(item.raw_bytes).decode("ascii")
        lines.append(json.dumps(entry, ensure_ascii=False) + "\n")
    if is_device_or_pipe(path):  # /dev/null, /dev/stderr, a pipe: written as asked
        try:
            with open(path, "w", encoding="utf-8", errors="replace") as handle:
                handle.writelines(lines)
        except OSError as exc:
            raise OSError(exc.errno, f"{path}: the errors file cannot be written ({exc.strerror or exc})") from exc
        return path
    target = link_target(path, "errors file")
    # Written aside and renamed, as outputs are: a full disk leaves no half-written errors file.
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    except OSError as exc:
        raise OSError(exc.errno, f"{path}: the errors file cannot be written ({exc.strerror or exc})") from exc
    try:
        with open(fd, "w", encoding="utf-8", errors="replace") as handle:
            handle.writelines(lines)
        os.chmod(tmp, new_file_mode(target))
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OSError(exc.errno, f"{path}: the errors file cannot be written ({exc.strerror or exc})") from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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
