"""What every benchmark script shares: saying how much was measured (option checks: refusal_predictor.cli.at_least_one).

A benchmark whose options were mistyped must stop with a one-line error, not print a plausible
table of something else (``--n -1`` once sliced to 1,705 texts) or end in a traceback after
minutes of loading (``--runs 0`` has no median).
"""
from __future__ import annotations

from typing import Sequence, TypeVar

T = TypeVar("T")


def first_n(items: Sequence[T], n: int, what: str) -> list[T]:
    """The first ``n`` items, saying so on stdout when the data holds fewer (the table then
    measures that many, and its title says how many)."""
    taken = list(items[:n])
    if len(taken) < n:
        print(f"note: --n {n} asked for more {what} than the data holds; measuring all {len(taken)}")
    return taken
