"""Streaming readers and writers for logs of records: JSON Lines, CSV and Parquet.

Logs are large and dirty, so records are streamed in chunks and a bad record never stops a run:
every malformed line, undecodable byte or missing field comes back as a :class:`BadRecord` that
names its line (or Parquet row), for the caller to report. Nothing the user gave is dropped
silently.
"""
from __future__ import annotations

import csv
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from .artifacts import PathLike

FORMATS = ("jsonl", "csv", "parquet")
_EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv",
               ".parquet": "parquet", ".pq": "parquet"}

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


@dataclass(frozen=True)
class BadRecord:
    """A record that could not be used; ``line`` is 1-based (row number for Parquet)."""

    line: int
    reason: str
    raw: str = ""

    def describe(self, path: PathLike) -> str:
        return f"{path}:{self.line}: {self.reason}"


def detect_format(path: PathLike, fmt: str | None = None) -> str:
    if fmt:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; choose one of {FORMATS}")
        return fmt
    name = str(path).lower()
    for suffix in (".gz",):
        name = name.removesuffix(suffix)
    ext = os.path.splitext(name)[1]
    if ext not in _EXTENSIONS:
        raise ValueError(f"{path}: cannot tell the format from the extension {ext!r}; pass --format {FORMATS}")
    return _EXTENSIONS[ext]


def read_records(path: PathLike, fmt: str | None = None, encoding: str = "utf-8") -> Iterator[tuple[int, dict | BadRecord]]:
    """Yield ``(line, record)`` pairs; a record is a dict, or a BadRecord saying what is wrong."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such file")
    fmt = detect_format(path, fmt)
    if fmt == "jsonl":
        yield from _read_jsonl(path, encoding)
    elif fmt == "csv":
        yield from _read_csv(path, encoding)
    else:
        yield from _read_parquet(path)


def _read_jsonl(path: PathLike, encoding: str) -> Iterator[tuple[int, dict | BadRecord]]:
    with open(path, "rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                text = raw.decode(encoding)
            except UnicodeDecodeError as exc:
                yield line_no, BadRecord(line_no, f"not valid {encoding} at byte {exc.start}", raw.decode(encoding, "replace"))
                continue
            if not text.strip():
                continue  # blank lines carry nothing
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                yield line_no, BadRecord(line_no, f"malformed JSON ({exc.msg} at column {exc.colno})", text.rstrip("\n"))
                continue
            if not isinstance(record, dict):
                yield line_no, BadRecord(line_no, f"a JSON {type(record).__name__}, expected an object", text.rstrip("\n"))
                continue
            yield line_no, record


def _read_csv(path: PathLike, encoding: str) -> Iterator[tuple[int, dict | BadRecord]]:
    with open(path, encoding=encoding, errors="surrogateescape", newline="") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            return
        header[0] = header[0].lstrip("\ufeff")
        last_line = reader.line_num
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                yield last_line + 1, BadRecord(last_line + 1, f"malformed CSV ({exc})")
                last_line = reader.line_num
                continue
            line_no = last_line + 1
            last_line = reader.line_num
            if not row:
                continue
            if len(row) != len(header):
                yield line_no, BadRecord(line_no, f"{len(row)} fields, header has {len(header)}", ",".join(row))
                continue
            if any(_has_surrogates(v) for v in row):
                raw = ",".join(row).encode(encoding, "surrogateescape").decode(encoding, "replace")
                yield line_no, BadRecord(line_no, f"not valid {encoding}", raw)
                continue
            yield line_no, dict(zip(header, row))


def _has_surrogates(value: str) -> bool:
    try:
        value.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def _read_parquet(path: PathLike) -> Iterator[tuple[int, dict | BadRecord]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError('reading Parquet needs pyarrow: pip install "refusal-predictor[parquet]"') from exc
    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:
        raise ValueError(f"{path}: not a readable Parquet file ({exc})") from exc
    row = 0
    for batch in parquet.iter_batches(batch_size=8192):
        for record in batch.to_pylist():
            row += 1
            yield row, record


def get_text(record: dict, field: str, line: int) -> str | BadRecord:
    """The string in ``field``; a BadRecord when it is missing, null or not a string."""
    if field not in record:
        return BadRecord(line, f"missing field {field!r} (fields: {sorted(record)[:10]})", json.dumps(record, ensure_ascii=False, default=str)[:500])
    value = record[field]
    if value is None:
        return BadRecord(line, f"field {field!r} is null", json.dumps(record, ensure_ascii=False, default=str)[:500])
    if not isinstance(value, str):
        return BadRecord(line, f"field {field!r} is {type(value).__name__}, expected a string", json.dumps(record, ensure_ascii=False, default=str)[:500])
    return value


class RecordWriter:
    """Writes records to JSONL, CSV or Parquet atomically (a temp file renamed at ``close``)."""

    def __init__(self, path: PathLike, fmt: str | None = None, fieldnames: Sequence[str] | None = None) -> None:
        self.path = Path(path)
        self.fmt = detect_format(path, fmt)
        self.fieldnames = list(fieldnames) if fieldnames else None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        os.close(fd)
        self._tmp = Path(tmp)
        self._handle = None
        self._csv = None
        self._parquet = None
        self.count = 0
        if self.fmt in ("jsonl", "csv"):
            self._handle = open(self._tmp, "w", encoding="utf-8", newline="")

    def write_many(self, records: Sequence[dict]) -> None:
        if not records:
            return
        if self.fmt == "jsonl":
            for record in records:
                self._handle.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        elif self.fmt == "csv":
            if self._csv is None:
                if self.fieldnames is None:
                    self.fieldnames = list(dict.fromkeys(k for r in records for k in r))
                self._csv = csv.DictWriter(self._handle, fieldnames=self.fieldnames)
                self._csv.writeheader()
            for record in records:
                extra = set(record) - set(self.fieldnames)
                if extra:
                    raise ValueError(
                        f"record {self.count + 1} has fields {sorted(extra)} not in the CSV header; "
                        "write JSONL or Parquet output to keep varying fields"
                    )
                self._csv.writerow(record)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pylist(list(records))
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self._tmp, table.schema)
            else:
                table = table.cast(self._parquet.schema)
            self._parquet.write_table(table)
        self.count += len(records)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
        if self._parquet is not None:
            self._parquet.close()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        for closer in (self._handle, self._parquet):
            try:
                if closer is not None:
                    closer.close()
            except Exception:
                pass
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "RecordWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_bad_records(path: PathLike, bad: Sequence[BadRecord], source: PathLike) -> None:
    """Keep what could not be used, with its line number and reason, as JSON Lines."""
    with open(path, "w", encoding="utf-8") as handle:
        for item in bad:
            handle.write(json.dumps({"file": str(source), "line": item.line, "reason": item.reason, "raw": item.raw}, ensure_ascii=False) + "\n")


def read_all(path: PathLike, fmt: str | None = None, encoding: str = "utf-8") -> tuple[list[tuple[int, dict]], list[BadRecord]]:
    """Every record of a (small) file, with the bad ones apart."""
    good: list[tuple[int, dict]] = []
    bad: list[BadRecord] = []
    for line, record in read_records(path, fmt, encoding):
        (bad.append(record) if isinstance(record, BadRecord) else good.append((line, record)))
    return good, bad
