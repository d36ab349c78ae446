"""The records a run skipped, kept for its errors file without holding them all in memory.

A misspelt ``--text-field`` skips every record of a log. Held as a list (each with its line's
text) and then again as the errors file's lines, the skipped records of 1,000,000 short lines
took 880 MB, and a larger log would run out of memory before the errors file that explains the
mistake was written. The first :data:`KEPT_IN_MEMORY` stay in memory (what the summaries print);
the rest go, a batch at a time, to an anonymous temporary file and are read back in order when
the errors file is written (878 MB -> 278 MB for 1,000,000 skipped lines).

:class:`SkippedRecords` behaves as the list it replaces for what the reports' users do with one
(``len``, iteration, indexing, slicing, ``+``, ``==``, ``sorted``, pickling); each iteration
reads its own snapshot, so iterations may nest and records appended meanwhile are kept.
"""
from __future__ import annotations

import heapq
import os
import pickle
import tempfile
import weakref
from collections import Counter
from typing import IO, Iterable, Iterator

from .records import BadRecord

KEPT_IN_MEMORY = 1000
_BATCH = 1024  # records pickled together: one at a time cost 8 s per 1,000,000 (dataclass pickling)


def reason_kind(reason: str) -> str:
    """A reason without its detail (the text before `` (``), as summaries count them."""
    return reason.split(" (")[0]


class _Reader:
    """A read position of its own in the spool: iterations do not move each other (nor the
    appends, which seek to the end first)."""

    def __init__(self, spool: IO[bytes]) -> None:
        self.spool, self.position = spool, 0

    def read(self, size: int = -1) -> bytes:
        size = size if size >= 0 else 1 << 30
        if hasattr(os, "pread"):
            data = os.pread(self.spool.fileno(), size, self.position)
        else:  # Windows: no pread; each read seeks for itself
            self.spool.seek(self.position)
            data = self.spool.read(size)
        self.position += len(data)
        return data

    def readline(self) -> bytes:  # pickle asks for it; frames are read with read()
        data = b""
        while not data.endswith(b"\n"):
            chunk = self.read(1)
            if not chunk:
                break
            data += chunk
        return data


def _as_tuple(record: BadRecord) -> tuple:
    return record.line, record.reason, record.raw, record.raw_bytes, record.rest_lost, record.span


class SkippedRecords:
    """:class:`~refusal_predictor.records.BadRecord` s in the order appended."""

    def __init__(self, records: Iterable[BadRecord] = (), kept_in_memory: int | None = None) -> None:
        self._kept = KEPT_IN_MEMORY if kept_in_memory is None else kept_in_memory
        self._head: list[BadRecord] = []  # the first records, for summaries
        self._tail: list[tuple] = []  # appended since the last batch went to the spool
        self._spool: IO[bytes] | None = None
        self._spooled_bytes = 0
        self._count = 0
        self._spanned = 0
        self._reasons: Counter = Counter()
        self.extend(records)

    def append(self, record: BadRecord) -> None:
        self._count += 1
        self._spanned += record.span
        self._reasons[reason_kind(record.reason)] += 1
        if len(self._head) < self._kept:
            self._head.append(record)
            return
        self._tail.append(_as_tuple(record))
        if len(self._tail) >= _BATCH:
            self._spill()

    def extend(self, records: Iterable[BadRecord]) -> None:
        for record in list(records) if records is self else records:
            self.append(record)

    def _spill(self) -> None:
        if self._spool is None:
            self._spool = tempfile.TemporaryFile(prefix="refusal-predictor-skipped-")
            # Closed (and so removed) with this object, or by close(); no ResourceWarning either way.
            self._closer = weakref.finalize(self, self._spool.close)
        self._spool.seek(0, os.SEEK_END)
        self._spool.write(pickle.dumps(self._tail, protocol=pickle.HIGHEST_PROTOCOL))
        self._spool.flush()
        self._spooled_bytes = self._spool.tell()
        self._tail = []

    def reasons(self) -> Counter:
        """How many records per reason (the reason's text before any parenthesised detail)."""
        return Counter(self._reasons)

    @property
    def spanned(self) -> int:
        """The records skipped, each row a malformed CSV quote swallowed counted as one
        (``BadRecord.span``): what ``max_skipped`` is held to. Like ``reasons()``, it counts every
        record appended, after ``close()`` too."""
        return self._spanned

    def close(self) -> None:
        """Drop the records past the first :data:`KEPT_IN_MEMORY` now, and the temporary file
        holding them, rather than when the object goes: ``len`` and iteration then cover the
        first records only; ``reasons()`` still counts every record appended."""
        if self._spool is not None:
            self._closer()
            self._spool, self._spooled_bytes, self._tail = None, 0, []
            self._count = len(self._head)

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return self._count > 0

    def __iter__(self) -> Iterator[BadRecord]:
        # A snapshot of what is there now: the head and tail copied, the spool read up to its size.
        head, tail, end = list(self._head), list(self._tail), self._spooled_bytes
        yield from head
        if self._spool is not None and end:
            reader = _Reader(self._spool)
            while reader.position < end:
                for item in pickle.load(reader):
                    yield BadRecord(*item)
        for item in tail:
            yield BadRecord(*item)

    def __reversed__(self) -> Iterator[BadRecord]:
        return reversed(list(self))

    def __getitem__(self, index):
        if isinstance(index, slice):
            start, stop, step = index.indices(self._count)
            if step == 1 and stop <= len(self._head):
                return self._head[start:stop]
            return list(self)[index]
        if not isinstance(index, int):
            raise TypeError(f"skipped record indices must be integers or slices, not {type(index).__name__}")
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

    def __add__(self, other: Iterable[BadRecord]) -> list[BadRecord]:
        return list(self) + list(other)

    def __radd__(self, other: Iterable[BadRecord]) -> list[BadRecord]:
        return list(other) + list(self)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (SkippedRecords, InLineOrder, list)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment] - mutable, as a list

    def __reduce__(self):
        # Pickled (and deep-copied) as its records: an open temporary file cannot travel.
        return (SkippedRecords, (list(self), self._kept))

    def __repr__(self) -> str:
        return f"SkippedRecords({self._count} records, {min(self._count, self._kept)} in memory)"


class InLineOrder:
    """Line-ordered collections of skipped records as one, merged by line as it is read (for
    equal lines, the earlier collection's record first, as a stable sort of their sum put it)."""

    def __init__(self, *parts) -> None:
        self._parts = parts

    def __len__(self) -> int:
        return sum(len(part) for part in self._parts)

    def __bool__(self) -> bool:
        return any(len(part) for part in self._parts)

    def __iter__(self) -> Iterator[BadRecord]:
        return heapq.merge(*self._parts, key=lambda record: record.line)

    def __getitem__(self, index):
        return list(self)[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (SkippedRecords, InLineOrder, list)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]
