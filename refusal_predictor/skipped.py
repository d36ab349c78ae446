"""The records a run skipped, kept for its errors file without holding them all in memory.

A misspelt ``--text-field`` skips every record of a log. Held as a list (each with its line's
text) and then again as the errors file's lines, the skipped records of 1,000,000 short lines
took 890 MB, and a larger log would run out of memory before the errors file that explains the
mistake was written. The first :data:`KEPT_IN_MEMORY` stay in memory (what the summaries print);
the rest go to an anonymous temporary file and are read back, in order, when the errors file is
written.
"""
from __future__ import annotations

import heapq
import pickle
import tempfile
from collections import Counter
from typing import IO, Iterable, Iterator, overload

from .records import BadRecord

KEPT_IN_MEMORY = 1000


def reason_kind(reason: str) -> str:
    """A reason without its detail (the text before `` (``), as summaries count them."""
    return reason.split(" (")[0]


class SkippedRecords:
    """A list of :class:`~refusal_predictor.records.BadRecord` in the order appended: ``append``,
    ``len``, iteration, indexing and slicing, as the reports and the errors file use it."""

    def __init__(self, records: Iterable[BadRecord] = (), kept_in_memory: int = KEPT_IN_MEMORY) -> None:
        self._head: list[BadRecord] = []
        self._kept = kept_in_memory
        self._spool: IO[bytes] | None = None
        self._count = 0
        self._reasons: Counter = Counter()
        for record in records:
            self.append(record)

    def append(self, record: BadRecord) -> None:
        self._count += 1
        self._reasons[reason_kind(record.reason)] += 1
        if len(self._head) < self._kept:
            self._head.append(record)
            return
        if self._spool is None:
            self._spool = tempfile.TemporaryFile(prefix="refusal-predictor-skipped-")
        pickle.dump(record, self._spool, protocol=pickle.HIGHEST_PROTOCOL)

    def reasons(self) -> Counter:
        """How many records per reason (the reason's text before any parenthesised detail)."""
        return Counter(self._reasons)

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return self._count > 0

    def __iter__(self) -> Iterator[BadRecord]:
        yield from list(self._head)
        if self._spool is None:
            return
        end = self._spool.tell()
        self._spool.flush()
        self._spool.seek(0)
        try:
            while self._spool.tell() < end:
                yield pickle.load(self._spool)
        finally:
            self._spool.seek(end)  # later appends go after the records, not over them

    @overload
    def __getitem__(self, index: int) -> BadRecord: ...
    @overload
    def __getitem__(self, index: slice) -> list[BadRecord]: ...

    def __getitem__(self, index):
        if isinstance(index, slice):
            start, stop, step = index.indices(self._count)
            if stop <= len(self._head) and start <= len(self._head):
                return self._head[index]
            return list(self)[index]
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError("skipped record index out of range")
        if index < len(self._head):
            return self._head[index]
        for i, record in enumerate(self):
            if i == index:
                return record
        raise IndexError("skipped record index out of range")  # pragma: no cover - counted above

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (SkippedRecords, list)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    def __repr__(self) -> str:
        return f"SkippedRecords({self._count} records, {min(self._count, self._kept)} in memory)"

    def close(self) -> None:
        """Drop the spooled records (the anonymous file is removed when closed)."""
        if self._spool is not None:
            self._spool.close()
            self._spool = None


class InLineOrder:
    """Two line-ordered collections of skipped records as one, merged by line lazily."""

    def __init__(self, *parts) -> None:
        self._parts = parts

    def __len__(self) -> int:
        return sum(len(part) for part in self._parts)

    def __bool__(self) -> bool:
        return any(len(part) for part in self._parts)

    def __iter__(self) -> Iterator[BadRecord]:
        return heapq.merge(*self._parts, key=lambda record: record.line)
