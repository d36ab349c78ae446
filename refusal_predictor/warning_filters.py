"""Silence one known library warning for a block, without ``warnings.catch_warnings``.

``catch_warnings`` saves the process-wide filter list and puts the saved copy back at its end, so
two blocks overlapping in two threads (two models loading at once in a server) left one block's
"ignore" in the host's filters for good, and a filter the host added meanwhile was undone. Here a
block adds its filter and, when the last block using it ends, removes that one filter: the rest of
the list is left as the host has it, and a filter the host had already set is neither added nor
removed. Python's filters are still one list per process: another thread's own
``catch_warnings`` spanning the block's end puts the block's filter back when it ends, which
nothing here can prevent, so the callers use a block only where the warning is expected.
"""
from __future__ import annotations

import os
import re
import threading
import warnings
from collections import Counter
from contextlib import contextmanager
from typing import Iterator

_LOCK = threading.Lock()
_USERS: Counter = Counter()
_ADDED: dict[tuple, tuple | None] = {}  # None: the host had the same filter; it is not ours to remove


def _new_lock() -> None:  # a forked child: the lock as another thread of the parent held it
    global _LOCK
    _LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock)


@contextmanager
def ignoring(*, message: str = "", category: type[Warning] = Warning, module: str = "") -> Iterator[None]:
    """Ignore warnings matching ``message`` / ``category`` / ``module`` (as ``warnings.filterwarnings``
    reads them) inside the block. While it runs, other threads' matching warnings are ignored too."""
    key = (message, category, module)
    with _LOCK:
        if not _USERS[key]:
            # The entry filterwarnings would make; it replaces an equal one, which would then be removed.
            item = ("ignore", re.compile(message, re.I) if message else None, category,
                    re.compile(module) if module else None, 0)
            if item in warnings.filters:
                _ADDED[key] = None
            else:
                warnings.filterwarnings("ignore", message=message, category=category, module=module)
                _ADDED[key] = warnings.filters[0]
        _USERS[key] += 1
    try:
        yield
    finally:
        with _LOCK:
            _USERS[key] -= 1
            if not _USERS[key]:
                del _USERS[key]
                added = _ADDED.pop(key)
                try:
                    if added is not None:
                        warnings.filters.remove(added)
                except ValueError:  # the host removed it (resetwarnings) or replaced the list
                    pass
