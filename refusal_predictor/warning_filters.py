"""Silence one known library warning for a block, without ``warnings.catch_warnings``.

``catch_warnings`` saves the process-wide filter list and puts the saved copy back at its end, so
two blocks overlapping in two threads (two models loading at once in a server) left one block's
"ignore" in the host's filters for good, and a filter the host added meanwhile was undone. Here a
block adds its filter and, when the last block using it ends, removes that one filter: the rest of
the list is left as the host has it, a filter equal to it included. Python's filters are still
one list per process: another thread's own ``catch_warnings`` spanning the block's end puts the
block's filter back when it ends, which nothing here can prevent, so the callers use a block only
where the warning is expected.
"""
from __future__ import annotations

import re
import threading
import warnings
from collections import Counter
from contextlib import contextmanager
from typing import Iterator

from ._forks import renew_in_child

_LOCK = threading.Lock()
_USERS: Counter = Counter()
_ADDED: dict[tuple, tuple] = {}  # the entry each key's blocks share
renew_in_child(globals(), "_LOCK", threading.Lock)


@contextmanager
def ignoring(*, message: str = "", category: type[Warning] = Warning, module: str = "") -> Iterator[None]:
    """Ignore warnings matching ``message`` / ``category`` / ``module`` (as ``warnings.filterwarnings``
    reads them) inside the block. While it runs, other threads' matching warnings are ignored too."""
    key = (message, category, module)
    with _LOCK:
        if not _USERS[key]:
            # Our own entry, first in the list and removed by identity: filterwarnings would take
            # the place of a host's equal filter, which the block's end would then remove, and
            # leaving a host's equal filter to act is not enough when a later one overrides it.
            item = ("ignore", re.compile(message, re.I) if message else None, category,
                    re.compile(module) if module else None, 0)
            warnings.filters.insert(0, item)
            _mutated()
            _ADDED[key] = item
        _USERS[key] += 1
    try:
        yield
    finally:
        with _LOCK:
            _USERS[key] -= 1
            if not _USERS[key]:
                del _USERS[key]
                item = _ADDED.pop(key)
                for index, entry in enumerate(warnings.filters):
                    if entry is item:  # gone if the host reset or replaced the list meanwhile
                        del warnings.filters[index]
                        _mutated()
                        break


def _mutated() -> None:
    """Tell the warnings machinery its filters changed, as filterwarnings does (its caches of
    warnings already shown are kept per filter list version)."""
    mutated = getattr(warnings, "_filters_mutated", None)
    if mutated is not None:
        mutated()
