"""Silence one known library warning for a block, without ``warnings.catch_warnings``.

``catch_warnings`` saves the process-wide filter list and puts the saved copy back at its end, so
two blocks overlapping in two threads (two models loading at once in a server) left one block's
"ignore" in the host's filters for good, and a filter the host added meanwhile was undone. Here a
block adds its filter and, when the last block using it ends, removes that one filter: the rest of
the list is left as the host has it.
"""
from __future__ import annotations

import threading
import warnings
from collections import Counter
from contextlib import contextmanager
from typing import Iterator

_LOCK = threading.Lock()
_USERS: Counter = Counter()
_ITEMS: dict[tuple, tuple] = {}


@contextmanager
def ignoring(*, message: str = "", category: type[Warning] = Warning, module: str = "") -> Iterator[None]:
    """Ignore warnings matching ``message`` / ``category`` / ``module`` (as ``warnings.filterwarnings``
    reads them) inside the block. While it runs, other threads' matching warnings are ignored too:
    Python's filters are one list per process."""
    key = (message, category, module)
    with _LOCK:
        if not _USERS[key]:
            warnings.filterwarnings("ignore", message=message, category=category, module=module)
            _ITEMS[key] = warnings.filters[0]
        _USERS[key] += 1
    try:
        yield
    finally:
        with _LOCK:
            _USERS[key] -= 1
            if not _USERS[key]:
                del _USERS[key]
                try:
                    warnings.filters.remove(_ITEMS.pop(key))
                except ValueError:  # the host removed it (resetwarnings) or replaced the list
                    pass
