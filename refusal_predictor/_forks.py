"""Module-level locks a forked child must not inherit as the parent's other threads held them."""
from __future__ import annotations

import os
from typing import Any, Callable


def renew_in_child(namespace: dict[str, Any], name: str, make: Callable[[], Any]) -> None:
    """Rebind ``namespace[name]`` to ``make()`` in every forked child: a lock copied while another
    thread of the parent held it is never released there, and the child's first use hung."""
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=lambda: namespace.__setitem__(name, make()))
