"""Progress bars over a log file, counted in its lines (Parquet: rows) against the file's total.

A bar counting records read, with no total, showed neither how far a run over a large log had
got nor how long it had left; lines are what a file's size is known in before it is parsed, and
every reader gives each record its line.
"""
from __future__ import annotations

from typing import Any


def line_bar(desc: str, total: int | None, *, parquet: bool = False, enabled: bool = True) -> Any:
    """A tqdm bar over ``total`` lines (``None``: an unknown total, counted all the same)."""
    from tqdm.auto import tqdm

    # k and M only where they shorten: a 40-line log read "0.00/40.0" with them
    return tqdm(total=total, unit=" rows" if parquet else " lines", desc=desc, disable=not enabled,
                unit_scale=total is not None and total >= 10_000, dynamic_ncols=True)


def advance(bar: Any, line: int) -> None:
    """Move ``bar`` to ``line``, the line of the record just read: a record spanning lines (a CSV
    field holding line breaks, an object of a JSON array) moves it by all of them at once. A file
    grown since it was counted (a log still being written) raises the total rather than
    passing 100 %."""
    if bar.total is not None and line > bar.total:
        bar.total = line
    if line > bar.n:
        bar.update(line - bar.n)


def finish(bar: Any) -> None:
    """Fill ``bar`` after a pass that read the whole file (blank lines at its end give no record)."""
    if bar.total is not None and bar.n < bar.total:
        bar.update(bar.total - bar.n)
