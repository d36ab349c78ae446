"""The command line's interrupts, deferred while a pair of files is put in place.

A run stopped between the rename of its output and the last step of its errors file left the new
output beside the earlier run's errors file (or a new model beside its predecessor's). The command
line's own signal handlers (Ctrl-C, SIGTERM, SIGHUP) go through :func:`interrupt`, which raises
at once, or, inside a :func:`deferred` block of the main thread, at that block's end. Nothing
else is touched: a program that scores from Python keeps its own signal handling, and its files
are paired by reading the disk instead (``RecordWriter.in_place``).
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, Iterator


_depth = 0  # deferred blocks the main thread is in (signal handlers run in the main thread)
_pending: tuple[BaseException, Callable[[], None] | None] | None = None


@contextmanager
def deferred() -> Iterator[None]:
    """Hold the command line's interrupts until the block ends (a few renames, or a model's save:
    never a wait for someone else, such as a pipe's reader, which would make a run unstoppable)."""
    global _depth, _pending
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _depth += 1
    failure: BaseException | None = None
    try:
        yield
    except Exception as error:  # not a KeyboardInterrupt or SystemExit: those say why it stopped, not what failed
        failure = error
        raise
    finally:
        _depth -= 1
        if not _depth and _pending is not None:
            (exc, before), _pending = _pending, None
            if failure is not None:  # the step failed too (a full disk): the interrupt must not hide it
                exc.failed_step = failure  # type: ignore[attr-defined]
            if before is not None:
                before()
            raise exc


def failed_step(exc: BaseException) -> BaseException | None:
    """The error the deferred step raised itself, where an interrupt held back until its end was
    raised in its place (the interrupt says why the run stopped; this says what else went wrong)."""
    return getattr(exc, "failed_step", None)


def interrupt(exc: BaseException, before: Callable[[], None] | None = None) -> None:
    """Raise ``exc`` (from a signal handler) now, or at the end of the deferred block it came in;
    ``before`` runs just before it is raised (the CLI lets a second SIGTERM kill the clean-up that
    follows, not the block: a second one during the block was the default action, mid-swap)."""
    global _pending
    if _depth:
        if _pending is None:  # the first one says why the run stopped
            _pending = (exc, before)
        return
    if before is not None:
        before()
    raise exc
