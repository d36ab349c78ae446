"""Batch scoring of log files: stream records, score one text field per record, write them back.

Every input field is kept and two are added (a probability and a label), or more where the
scorer says more (a response's tone). Records that cannot be
scored are reported with their line numbers and written to an errors file beside the output, so
nothing the user gave disappears without a trace.
"""
from __future__ import annotations

import logging
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .artifacts import PathLike
from .encoder import check_count
from .errors_file import default_errors_path, write_with_errors
from .record_writer import RecordWriter
from .skipped import SkippedRecords
from .progress import advance, finish, line_bar
from .records import (BadRecord, check_paths, count_lines, detect_format, find_field, get_text, input_columns, raw_of,
                      read_records)
from .thresholds import check_threshold, written_probability

logger = logging.getLogger(__name__)


@dataclass
class ScoreReport:
    """What a scoring run did; ``bad`` holds every record that was not scored, with its line."""

    input: Path
    output: Path
    read: int = 0
    scored: int = 0
    positives: int = 0
    # Past the first thousand, spooled to a temporary file: a misspelt --text-field skips every record.
    bad: SkippedRecords = field(default_factory=SkippedRecords)
    errors_path: Path | None = None
    output_written: bool = True  # False when a non-empty input gave nothing to score: an earlier output stays
    # Where and why ``max_skipped`` stopped the run (too many skipped, or the rest of the file
    # lost); None: read to the end.
    stopped_at: int | None = None
    stop_reason: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.bad, SkippedRecords):
            self.bad = SkippedRecords(self.bad)

    def summary(self) -> str:
        rate = self.positives / self.scored if self.scored else 0.0
        where = f" -> {self.output}" if self.output_written else f"; nothing written to {self.output}"
        if self.stopped_at is not None:  # the scores of the chunks before the stop were thrown away
            text = (f"{self.input}: read {self.read} records, skipped {len(self.bad)}; stopped at line "
                    f"{self.stopped_at}: {self.stop_reason}{where}")
        else:
            text = (f"{self.input}: read {self.read} records, scored {self.scored} "
                    f"({self.positives} refusal, {rate:.1%}), skipped {len(self.bad)}{where}")
        if self.bad:
            text += f"; skipped records with line numbers in {self.errors_path}"
        return text


def stop_reason(bad: BadRecord, skipped: int, max_skipped: int | None, unit: str = "record",
                records: int | None = None) -> str | None:
    """Why a run given ``max_skipped`` stops at ``bad``, in the words every command prints; None:
    it goes on. ``skipped`` counts the skipped records so far, ``bad`` included, and each row a CSV
    quote left open swallowed (``BadRecord.span``; ``records`` counts them as one each), and a record with which the rest of the
    file is lost (a gzip stream cut short) stops the run whatever the count: one skipped record
    there stood for thousands, and the run passed."""
    if max_skipped is None:
        return None
    if bad.rest_lost:
        return (f"the rest of the file is lost with this {unit}, which max_skipped / --max-skipped {max_skipped} "
                "stops on whatever the count")
    if skipped > max_skipped:
        units = unit if max_skipped == 1 else unit + "s"
        swallowed = ""
        if records is not None and skipped > records:
            swallowed = f" ({records} skipped, {skipped} counting the rows malformed CSV quotes swallowed)"
        return f"more than {max_skipped} {units} skipped{swallowed} (max_skipped / --max-skipped {max_skipped})"
    return None


def skip(report: Any, bad: BadRecord, max_skipped: int | None, unit: str = "record") -> bool:
    """Add ``bad`` to ``report.bad``; True where ``max_skipped`` stops the run at it, with
    ``report.stopped_at`` and ``report.stop_reason`` set (a score or a bootstrap report)."""
    report.bad.append(bad)
    report.stop_reason = stop_reason(bad, report.bad.spanned, max_skipped, unit, records=len(report.bad))
    if report.stop_reason is None:
        return False
    report.stopped_at = bad.line
    return True


def check_max_skipped(max_skipped: int | None) -> int | None:
    """``None`` (no limit) or a count of at least 0: -1 or 2.5 would stop at the first record or never."""
    if max_skipped is not None and (isinstance(max_skipped, bool) or not isinstance(max_skipped, (int, np.integer))
                                    or max_skipped < 0):
        raise ValueError(f"max_skipped must be None or an integer >= 0, got {max_skipped!r}")
    return max_skipped


def checked_scores(score: Callable[[list[str]], np.ndarray], texts: list[str]) -> np.ndarray:
    """One score per text, or an error: zipping records with too few scores would lose records silently."""
    return _check_count(np.asarray(score(texts), dtype=np.float64), len(texts), "scores")


def _check_count(values: np.ndarray, n: int, what: str) -> np.ndarray:
    if values.shape[:1] != (n,) or values.ndim != 1:
        raise ValueError(f"the scorer returned {values.shape} {what} for {n} texts")
    return values


Scorer = Callable[[list[str]], "np.ndarray | tuple[np.ndarray, dict[str, Sequence]]"]


def score_file(
    score: Scorer,
    input_path: PathLike,
    output_path: PathLike,
    *,
    text_field: str,
    threshold: float = 0.5,
    probability_field: str = "refusal_probability",
    label_field: str = "label",
    labels: Sequence[str] = ("compliance", "refusal"),
    input_format: str | None = None,
    output_format: str | None = None,
    encoding: str = "utf-8",
    separator: str | None = None,
    chunk_size: int = 512,
    errors_path: PathLike | None = None,
    progress: bool = True,
    extra_fields: Sequence[str] = (),
    log_skipped: bool = True,
    max_skipped: int | None = None,
) -> ScoreReport:
    """Score ``text_field`` of every record of ``input_path`` with ``score(texts) -> P(refusal)``.

    A scorer that says more per text (a response's tone) returns ``(P(refusal), {field: values})``
    for the fields named in ``extra_fields``; each is added to the records like the label.
    ``log_skipped``: log the first skipped records as warnings (the CLI prints them itself).
    ``max_skipped``: stop reading once more than this many records are skipped (0: at the first),
    or at a skipped record with which the rest of the file is lost, writing only the errors file, as for an input with nothing to score: a pipeline asked to fail
    on a corrupt log gets no output it could take for a whole one. ``report.stopped_at`` names
    the line; ``None`` (default) reads every record whatever is skipped.
    A non-empty input of which no record can be scored writes only the errors file:
    ``report.output_written`` is False, and a file already at ``output_path`` is left as it was
    (none is created). An empty input writes an empty output.

    Output fields must not already exist in the input (that would overwrite user data): a pass
    before any scoring finds the first record holding one and the run is refused, naming its
    line, with nothing written. A record that gains one after that pass (a log still being
    appended to) is skipped with its line, like any bad record. Neither may the output or the
    errors file be the input file: that is refused before anything is read.
    """
    check_threshold(threshold)
    outputs = (probability_field, label_field, *extra_fields)
    if not all(isinstance(name, str) and name.strip() for name in outputs):
        raise ValueError(f"output field names must be non-empty, got {list(outputs)}")
    repeated = sorted({name for name in outputs if outputs.count(name) > 1})
    if repeated:
        raise ValueError(f"output field {repeated[0]!r} is named twice (probability, label or extra field): "
                         "one would overwrite the other")
    check_count(chunk_size, "chunk_size")
    check_max_skipped(max_skipped)
    errors_file = default_errors_path(output_path, errors_path)
    check_paths(input_path, output_path, errors_file, input_format=input_format, output_format=output_format,
                separator=separator)
    clash = find_field(input_path, outputs, input_format, encoding, separator=separator)
    if clash:
        raise ValueError(f"{input_path}:{clash[0]}: the record already has a field {clash[1]!r}; choose "
                         "another output field name so the input value is not overwritten")

    report = ScoreReport(input=Path(input_path), output=Path(output_path))
    pending: list[dict] = []
    texts: list[str] = []

    def flush(writer: RecordWriter) -> None:
        if not pending:
            return
        result = score(texts)
        extra: dict[str, Sequence] = {}
        if isinstance(result, tuple):
            result, extra = result
        if sorted(extra) != sorted(extra_fields):
            raise ValueError(f"the scorer returned the fields {sorted(extra)}; expected {sorted(extra_fields)}")
        proba = _check_count(np.asarray(result, dtype=np.float64), len(texts), "scores")
        columns = {name: _check_count(np.asarray(values, dtype=object), len(texts), f"{name!r} values")
                   for name, values in extra.items()}
        for i, (record, p) in enumerate(zip(pending, proba)):
            record[probability_field] = written_probability(p, threshold)
            record[label_field] = labels[1] if p >= threshold else labels[0]
            for name, values in columns.items():
                record[name] = values[i]
        writer.write_many(pending)
        report.scored += len(pending)
        report.positives += int((proba >= threshold).sum())
        pending.clear()
        texts.clear()

    # A CSV header or Parquet schema: every column is written even if no record has it (a
    # header-only file), and Parquet output keeps the input's column types.
    columns, schema = input_columns(input_path, input_format, encoding, separator=separator)
    keep_types = schema is not None and detect_format(output_path, output_format) == "parquet"
    # closing: a run stopped by max_skipped closes the input now, not when the generator is collected
    with closing(read_records(input_path, input_format, encoding, separator=separator)) as records, \
            RecordWriter(output_path, output_format, fieldnames=None if columns is None else [*columns, *outputs],
                         schema=schema if keep_types else None) as writer, \
            line_bar("scoring", count_lines(input_path, input_format, encoding) if progress else None,
                     parquet=detect_format(input_path, input_format) == "parquet", enabled=progress) as bar:
        for line, record in records:
            report.read += 1
            advance(bar, line)
            clash = None if isinstance(record, BadRecord) else next((n for n in outputs if n in record), None)
            if isinstance(record, BadRecord):
                bad = record
            elif clash is not None:
                bad = BadRecord(line, f"the record already has a field {clash!r}, which scoring would overwrite",
                                raw_of(record))
            else:
                text = get_text(record, text_field, line)
                bad = text if isinstance(text, BadRecord) else None
            if bad is not None:
                if skip(report, bad, max_skipped):
                    break
                continue
            pending.append(record)
            texts.append(text)
            if len(pending) >= chunk_size:
                flush(writer)
        if report.stopped_at is None:
            flush(writer)
            finish(bar)
        # Nothing could be scored (a misspelt --text-field, a wrong --format), or too many records
        # were skipped: exit 1 for the CLI, and an earlier output is not replaced by an empty or a
        # partial one. The errors file says why.
        report.output_written = report.stopped_at is None and not (report.read and not report.scored)
        report.errors_path = write_with_errors(writer, errors_file, report.bad, input_path,
                                               keep_output=report.output_written)
    if report.bad and log_skipped:
        for item in report.bad[:5]:
            logger.warning("skipped %s", item.describe(input_path))
        if len(report.bad) > 5:
            logger.warning("... and %d more skipped records", len(report.bad) - 5)
    return report
