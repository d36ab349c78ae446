"""Writing logs of records: JSON Lines, a JSON array, CSV/TSV and Parquet, atomically.

The reading half is :mod:`refusal_predictor.records`. Writing is its own concern: an output only
appears, whole, when the run closes it (a temp file renamed over the target), and every field of
every input record is kept, whatever order or types the records bring them in.
"""
from __future__ import annotations

import csv
import datetime
import gzip
import io
import logging
import math
import os
import pickle
import tempfile
from pathlib import Path
from typing import IO, Iterator, Sequence

from .artifacts import PathLike, fsync_file
from .jsonvalues import JsonNumber, dumps_value, plain_value
from .paths import check_output_path, link_target, new_file_mode, resolved_target, temp_name_prefix
from .records import DELIMITED, detect_format, is_gzipped, require_pyarrow, without_gz

logger = logging.getLogger(__name__)


class RecordWriter:
    """Writes records to JSONL, CSV or Parquet atomically (a temp file renamed at ``close``).

    Logs are not uniform: a field may first appear on line 90,000, or hold a number on one line
    and a string on the next. JSON Lines takes each record as it is. CSV and Parquet need their
    columns up front, so their records are spooled (pickled, so values keep their types) to a
    temporary file and the real file is written at ``close`` with the union of all fields (in order of first appearance):
    every field of every record is kept. A Parquet column whose values have different types
    across records is written as strings (JSON for non-strings), with a warning naming it.

    A ``.json`` path (format not given) gets one JSON array, as ``.json`` input is read; a
    ``.gz`` suffix gzips JSON Lines and CSV. ``fieldnames`` are written first, as columns even
    when no record has them (a header-only input keeps its columns). ``schema``: the Arrow
    schema of a Parquet input; Parquet output keeps its column types (nanosecond timestamps,
    decimal precision, small integers) where the values still fit them.
    """

    def __init__(self, path: PathLike, fmt: str | None = None, fieldnames: Sequence[str] | None = None,
                 schema=None) -> None:
        self.path = Path(path)
        self.schema = schema
        self.fmt = detect_format(path, fmt)
        if self.fmt == "parquet":
            require_pyarrow("writing")
        self._array = fmt is None and without_gz(path).endswith(".json")
        self.fieldnames: list[str] = list(fieldnames) if fieldnames else []
        # Made here one by one, so only the folders this writer made are removed again (when still
        # empty) by abort(): a run stopped or failing leaves no folder behind, and one another run
        # made meanwhile, or that existed already, is not taken for its own.
        # Behind a link, the folders of the file it names: a link into a missing folder made that
        # folder, which abort() did not take for its own and left behind.
        self._made_folders = _make_folders(link_target(self.path, "output").parent)
        check_output_path(self.path, create=True)
        # A symbolic link is written through (its target replaced), not replaced by a file.
        self._target = resolved_target(self.path, "output")
        try:
            fd, tmp = tempfile.mkstemp(prefix=temp_name_prefix(self._target), dir=self._target.parent)
        except OSError as exc:
            raise OSError(f"{self.path}: cannot write in {self._target.parent} ({exc.strerror or exc})") from exc
        os.close(fd)
        self._tmp = Path(tmp)
        self._spool: Path | None = None
        if self.fmt != "jsonl":
            fd, spool = tempfile.mkstemp(prefix=temp_name_prefix(self._target), suffix=".spool", dir=self._target.parent)
            os.close(fd)
            self._spool = Path(spool)
            # Pickled chunks, not JSON: Parquet input round-trips timestamps, dates, bytes and
            # decimals with their types. The spool is this process's own temporary file.
            self._handle = open(self._spool, "wb")
        else:
            self._handle = self._open_text(self._tmp)
            if self._array:
                self._handle.write("[")
        self._kinds: dict[str, set[str]] = {}
        self.count = 0
        self._finished = self._closed = self._aborted = False

    def _open_text(self, path: Path) -> IO[str]:
        if is_gzipped(self.path):
            # The header names the final file, not the temp file, and has no timestamp: the
            # same records give the same bytes. Level 6: level 9 costs much more for little.
            raw = open(path, "wb")
            inner = _OwningGzipFile(filename=self.path.name[: -len(".gz")], mode="wb", compresslevel=6, mtime=0, fileobj=raw)
            return io.TextIOWrapper(inner, encoding="utf-8", newline="")
        return open(path, "w", encoding="utf-8", newline="")

    def write_many(self, records: Sequence[dict]) -> None:
        if not records:
            return
        try:
            self._write_many(records)
        except OSError as exc:  # a full disk: say which file
            raise OSError(exc.errno, f"{self.path}: cannot be written ({exc.strerror or exc})") from exc

    def _write_many(self, records: Sequence[dict]) -> None:
        if self._spool is None:
            for i, record in enumerate(records, start=self.count):
                line = dumps_value(record)
                self._handle.write(("\n" if i == 0 else ",\n") + line if self._array else line + "\n")
        else:
            if self.fmt == "parquet":  # Parquet's numbers are doubles: a JsonNumber goes as the nearest one
                records = [_doubles_for_parquet(record) for record in records]
            pickle.dump(list(records), self._handle, protocol=pickle.HIGHEST_PROTOCOL)
            for record in records:
                for key, value in record.items():
                    if key not in self._kinds:
                        self._kinds[key] = set()
                        if key not in self.fieldnames:
                            self.fieldnames.append(key)
                    if value is not None:
                        self._kinds[key].add(_kind(value))
        self.count += len(records)

    def _spooled(self) -> Iterator[list[dict]]:
        with open(self._spool, "rb") as handle:
            while True:
                try:
                    yield pickle.load(handle)
                except EOFError:
                    return

    def _write_csv(self) -> None:
        with self._open_text(self._tmp) as handle:
            writer = csv.DictWriter(handle, fieldnames=self.fieldnames, delimiter="\t" if self.fmt == "tsv" else ",")
            writer.writeheader()
            for chunk in self._spooled():
                for record in chunk:
                    writer.writerow({k: csv_value(v) for k, v in record.items()})

    def _write_parquet(self) -> None:
        import pyarrow as pa  # checked in __init__
        import pyarrow.parquet as pq

        as_text: set[str] = set()

        def as_strings(key: str, why: str) -> None:
            as_text.add(key)
            logger.warning("%s: field %r %s; written as strings (JSON for non-strings)", self.path, key, why)

        given = {field.name: field.type for field in self.schema} if self.schema is not None else {}
        for key, kinds in self._kinds.items():
            if key not in given and len(kinds - {"int", "float"}) > 0 and len(kinds) > 1:
                as_strings(key, f"holds {' and '.join(sorted(kinds))} values")
        # Pass 1: every field's type in every chunk (pa.array infers over all values, nested
        # keys included; Table.from_pylist would only look at the first record), unified.
        types: dict[str, list] = {key: [] for key in self.fieldnames}
        for chunk in self._spooled():
            for key in self.fieldnames:
                if key in as_text or key in given:
                    continue
                try:
                    kind = pa.array([r.get(key) for r in chunk]).type
                except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
                    numbers = _BEYOND_DOUBLE in self._kinds.get(key, ())
                    as_strings(key, "holds numbers beyond the range of a double" if numbers else
                               "has values of incompatible types")  # e.g. nested ones
                    continue
                if pa.types.is_struct(kind) and kind.num_fields == 0:
                    continue  # only {} in this chunk: it fits any struct another chunk brings
                if not pa.types.is_null(kind):
                    types[key].append(kind)
        for key, kinds in self._kinds.items():
            if key not in given and kinds == {"dict"} and not types[key]:
                as_text.add(key)  # only ever {}: Parquet cannot store a struct without fields
        chosen: dict[str, object] = {}
        for key in self.fieldnames:
            found = types[key]
            if key in as_text:
                continue
            if key in given:
                chosen[key] = given[key]  # the input's type, checked against the values below
            elif found:
                try:
                    merged = pa.unify_schemas([pa.schema([pa.field(key, t)]) for t in found], promote_options="permissive")
                    chosen[key] = merged.field(key).type
                except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
                    as_strings(key, "has values of incompatible types")
        for key in [key for key, kind in chosen.items() if _has_empty_struct(kind)]:
            del chosen[key]  # a nested {} in every record: Parquet cannot store a struct without fields
            as_strings(key, "holds an empty object {} inside, which Parquet cannot store")
        for key in [key for key, kind in chosen.items() if key not in given and 1 + _parquet_levels(kind) > PARQUET_MAX_LEVELS]:
            del chosen[key]  # written, such a file is one no Parquet reader opens ("schema too deeply nested")
            as_strings(key, f"nests deeper than Parquet readers open ({PARQUET_MAX_LEVELS} schema levels)")
        # Pass 2, for the columns whose type is not the one every chunk inferred: do all values fit
        # it? (int64 and double unify to double, which cannot hold 2**53 + 1; the input's types
        # are checked too.) Writing must not fail after a whole run's scoring.
        check = {key for key, kind in chosen.items() if key in given or any(t != kind for t in types[key])}
        for chunk in self._spooled() if check else ():
            for key in sorted(check):
                try:
                    pa.array([r.get(key) for r in chunk], type=chosen[key])
                except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError) as exc:
                    check.discard(key)
                    del chosen[key]
                    as_strings(key, f"holds values that do not fit one type ({exc})")
        schema = pa.schema([pa.field(key, pa.string() if key in as_text else chosen.get(key, pa.null()))
                            for key in self.fieldnames])
        # Pass 3: write every record under that one schema; absent fields are null. Chunks are
        # gathered into row groups of up to PARQUET_ROW_GROUP_ROWS: one per chunk made 6,250 row
        # groups of 100,000 records at --chunk-size 16, a file 6x larger and 19x slower to read.
        with pq.ParquetWriter(self._tmp, schema) as writer:
            pending: list = []
            rows_pending = bytes_pending = 0
            for chunk in self._spooled():
                table = pa.Table.from_pylist([_for_parquet(r, as_text) for r in chunk], schema=schema)
                pending.append(table)
                rows_pending += table.num_rows
                bytes_pending += table.nbytes
                if rows_pending >= PARQUET_ROW_GROUP_ROWS or bytes_pending >= PARQUET_ROW_GROUP_BYTES:
                    writer.write_table(pa.concat_tables(pending), row_group_size=rows_pending)
                    pending, rows_pending, bytes_pending = [], 0, 0
            if pending:
                writer.write_table(pa.concat_tables(pending), row_group_size=rows_pending)

    def finish(self) -> None:
        """Write the whole file aside, without putting it in place yet.

        A caller with a second file to write (the errors file) writes it between ``finish`` and
        ``close``: if that fails, the output is not swapped in and an earlier output stays whole.
        """
        if self._finished:
            return
        if self._array:
            self._handle.write("\n]\n")
        self._handle.close()
        try:
            if self.fmt in DELIMITED:
                self._write_csv()
            elif self.fmt == "parquet":
                self._write_parquet()
            if self._spool is not None:
                self._spool.unlink(missing_ok=True)
            # On the disk before the caller puts the errors file in place: flushed in close(), a
            # slow flush (a network file system) held the new errors file beside the old output
            # for seconds, and a kill then left the pair mixed.
            os.chmod(self._tmp, new_file_mode(self._target))
            fsync_file(self._tmp)
        except OSError as exc:
            self.abort()
            raise OSError(exc.errno, f"{self.path}: cannot be written ({exc.strerror or exc})") from exc
        except BaseException:
            self.abort()
            raise
        self._finished = True

    def close(self) -> None:
        """Finish the file and put it in place of the output (one rename; a second close does nothing)."""
        if self._closed:
            return
        self.finish()
        try:
            os.replace(self._tmp, self._target)
        except OSError as exc:
            self._aborted = True  # not renamed, whether or not its temporary file is still there
            self.abort()
            raise OSError(f"{self.path}: cannot be written ({exc.strerror or exc})") from exc
        self._closed = True

    def in_place(self) -> bool:
        """Whether the output has been renamed into place, read from the disk: a signal handled
        just after the rename raises out of :meth:`close` as one handled just before it does."""
        return self._finished and not self._aborted and not self._tmp.exists()

    def abort(self) -> None:
        """Throw the output away; an earlier file at the path is left as it was. An output already
        in place (see :meth:`in_place`) is whole and stays."""
        self._closed = True  # a later close() or __exit__ does nothing more
        if self.in_place():
            return
        self._aborted = True
        try:
            self._handle.close()
        except Exception:
            pass
        self._tmp.unlink(missing_ok=True)
        if self._spool is not None:
            self._spool.unlink(missing_ok=True)
        for folder in reversed(self._made_folders):  # deepest first; one holding anything else stays
            try:
                folder.rmdir()
            except OSError:
                break

    def __enter__(self) -> "RecordWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        elif not self._closed:
            self.abort()


def _make_folders(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; return those this call created, outermost first.

    The path is made absolute and its ``..`` resolved first: ``a/../b`` does not exist while ``a``
    is missing, even when ``b`` does, and ``b`` was taken for a folder of this writer's."""
    folder = Path(os.path.abspath(folder))
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    made = []
    for path in reversed(missing):
        try:
            path.mkdir()
        except FileExistsError:
            continue  # made meanwhile by someone else: not ours to remove
        except OSError:
            break  # check_output_path says why, naming the output
        made.append(path)
    return made


class _OwningGzipFile(gzip.GzipFile):
    """A GzipFile over an open file object that closes that file too."""

    def close(self) -> None:
        owned = self.fileobj
        try:
            super().close()
        finally:
            if owned is not None:
                owned.close()


PARQUET_ROW_GROUP_ROWS = 65_536
PARQUET_ROW_GROUP_BYTES = 64 << 20
"""A Parquet output's row groups: up to this many records, or this many bytes of them in memory
(wide records), whichever comes first; the records held are the memory writing costs."""

PARQUET_MAX_LEVELS = 100
"""Schema levels a Parquet reader opens (pyarrow's default limit): the file's root, and per
column :func:`_parquet_levels`. 49 nested lists or 98 nested objects fit; a log may nest more."""


def _parquet_levels(kind) -> int:
    """Levels a column of Arrow type ``kind`` takes below the Parquet root: a list two (its group
    and its repeated element), a struct or map one plus its deepest child, a value one."""
    import pyarrow as pa

    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return 2 + _parquet_levels(kind.value_type)
    if pa.types.is_struct(kind):
        return 1 + max((_parquet_levels(kind.field(i).type) for i in range(kind.num_fields)), default=0)
    if pa.types.is_map(kind):
        return 2 + max(_parquet_levels(kind.key_type), _parquet_levels(kind.item_type))
    return 1


def _has_empty_struct(kind) -> bool:
    import pyarrow as pa

    if pa.types.is_struct(kind):
        return kind.num_fields == 0 or any(_has_empty_struct(kind.field(i).type) for i in range(kind.num_fields))
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return _has_empty_struct(kind.value_type)
    if pa.types.is_map(kind):
        return _has_empty_struct(kind.key_type) or _has_empty_struct(kind.item_type)
    return False


def _doubles_for_parquet(value):
    """``value`` with every :class:`JsonNumber` in range as the nearest double (Parquet has no
    arbitrary-precision number; a JSON Lines to Parquet run wrote them so before they were kept);
    one beyond the double range (``1e400``) stays, and its column is written as strings."""
    if isinstance(value, JsonNumber):
        number = float(value.text)
        return number if math.isfinite(number) else value
    if isinstance(value, dict):
        return {k: _doubles_for_parquet(v) for k, v in value.items()} if _holds_number(value) else value
    if isinstance(value, list):
        return [_doubles_for_parquet(v) for v in value] if _holds_number(value) else value
    return value


def _holds_number(value) -> bool:
    items = value.values() if isinstance(value, dict) else value
    return any(isinstance(v, (JsonNumber, dict, list)) and (isinstance(v, JsonNumber) or _holds_number(v))
               for v in items)


_BEYOND_DOUBLE = "number beyond the range of a double"  # the kind of a JsonNumber left by _doubles_for_parquet


def _kind(value: object) -> str:
    if isinstance(value, JsonNumber):
        return _BEYOND_DOUBLE
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, dict):
        return "dict"
    return type(value).__name__  # str, datetime, date, bytes, Decimal, ...


def csv_value(value: object) -> object:
    """A value as CSV text: JSON's spelling for booleans and nested values, as JSON output has it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list, tuple)):
        return dumps_value(value)
    if isinstance(value, (bytes, bytearray, memoryview, datetime.datetime, datetime.date, datetime.time)):
        return plain_value(value)
    return value


def _for_parquet(record: dict, as_text: set[str]) -> dict:
    if not as_text:
        return record
    out = dict(record)
    for key in as_text & record.keys():
        value = out[key]
        if value is not None and not isinstance(value, str):
            out[key] = dumps_value(value)
    return out
