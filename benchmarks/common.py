"""What every benchmark script shares: option checks, and saying how much was measured.

A benchmark whose options were mistyped must stop with a one-line error, not print a plausible
table of something else (``--n -1`` once sliced to 1,705 texts) or end in a traceback after
minutes of loading (``--runs 0`` has no median).
"""
from __future__ import annotations

import argparse
from typing import Sequence, TypeVar

T = TypeVar("T")


def at_least_one(text: str) -> int:
    """An argparse type: a whole number of at least 1 (runs, texts, threads, processes)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def first_n(items: Sequence[T], n: int, what: str) -> list[T]:
    """The first ``n`` items, saying so on stdout when the data holds fewer (the table then
    measures that many, and its title says how many)."""
    taken = list(items[:n])
    if len(taken) < n:
        print(f"note: --n {n} asked for more {what} than the data holds; measuring all {len(taken)}")
    return taken
