"""Bootstrapped prompt labels: let the ResponseClassifier label a log of (prompt, response) pairs.

This is the paper's trick for training a prompt classifier without hand labels: whatever the LLM
answered tells whether it refused. Options drop labels the response classifier is unsure of and
merge duplicate prompts (a prompt asked several times may be refused only sometimes; the majority
label is kept together with its refusal rate).
"""
from __future__ import annotations

import hashlib
import logging
from collections import Counter, defaultdict
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from .artifacts import PathLike
from .batch import check_max_skipped, checked_scores, skip
from .errors_file import default_errors_path, write_with_errors
from .record_writer import RecordWriter, csv_value
from .progress import advance, finish, line_bar
from .records import BadRecord, check_paths, count_lines, get_text, raw_of, read_records
from .skipped import InLineOrder, SkippedRecords
from .text import is_blank, text_key
from .thresholds import check_threshold, written_probability

logger = logging.getLogger(__name__)

OUTPUT_FIELDS = ("prompt", "label", "refusal_probability", "model", "source")


@dataclass
class BootstrapReport:
    """Counts of what happened to every input row."""

    read: int = 0
    labelled: int = 0
    merged_duplicates: int = 0
    conflicting_prompts: int = 0
    repeated_rows: int = 0  # kept rows repeating an earlier kept row (prompt up to whitespace and case, response, model)
    written: int = 0
    output_written: bool = True  # False when a non-empty log gave no row to write: an earlier output stays
    # Past the first thousand, spooled to a temporary file (see skipped.py).
    bad: SkippedRecords = field(default_factory=SkippedRecords)
    low_confidence: SkippedRecords = field(default_factory=SkippedRecords)
    errors_path: Path | None = None
    # Where and why ``max_skipped`` stopped the labelling (see batch.stop_reason); None: read to the end.
    stopped_at: int | None = None
    stop_reason: str | None = None

    def __post_init__(self) -> None:
        # A report built with plain lists (as before skipped.py) counts its reasons the same way.
        if not isinstance(self.bad, SkippedRecords):
            self.bad = SkippedRecords(self.bad)
        if not isinstance(self.low_confidence, SkippedRecords):
            self.low_confidence = SkippedRecords(self.low_confidence)

    @property
    def dropped_low_confidence(self) -> int:
        return len(self.low_confidence)

    def unused(self) -> InLineOrder:
        """Every row not used, in line order, for the errors file: bad rows and unsure labels."""
        return InLineOrder(self.bad, self.low_confidence)

    def reasons(self) -> Counter:
        """How many bad rows per reason (the reason's text before any parenthesised detail)."""
        return self.bad.reasons()

    def summary(self) -> str:
        if self.stopped_at is not None:  # the labels made before the stop were thrown away
            return (f"read {self.read} rows; skipped {len(self.bad)} bad rows{self._reasons_text()}; stopped at line "
                    f"{self.stopped_at}: {self.stop_reason}; nothing written (an earlier output is left as it was)")
        if not self.output_written:
            return self.counts() + "; nothing written (an earlier output is left as it was)"
        return self.counts() + f"; wrote {self.written}"

    def counts(self) -> str:
        """What happened to the rows read, without what was written (the summary's first part)."""
        if self.merged_duplicates:
            duplicates = (f"merged {self.merged_duplicates} duplicate rows ({self.repeated_rows} repeats of an "
                          f"earlier row; {self.conflicting_prompts} prompts with conflicting labels)")
        elif self.repeated_rows:
            duplicates = (f"kept {self.repeated_rows} repeats of an earlier row (same prompt up to whitespace and "
                          f"case, response and model; --dedupe merges them)")
        else:
            duplicates = "merged 0 duplicate rows"
        return (f"read {self.read} rows; labelled {self.labelled}; dropped {self.dropped_low_confidence} "
                f"below the confidence cut; {duplicates}; skipped {len(self.bad)} bad rows{self._reasons_text()}")

    def _reasons_text(self) -> str:
        """`` (3x empty 'prompt'; ...)``: the bad rows' commonest reasons, or nothing."""
        reasons = self.reasons()
        if not reasons:
            return ""
        shown = reasons.most_common(5)
        text = " (" + "; ".join(f"{n}x {r}" for r, n in shown)
        rest = sum(reasons.values()) - sum(n for _, n in shown)
        if rest:
            text += f"; {rest} more for {len(reasons) - len(shown)} other reasons, in the errors file"
        return text + ")"


def bootstrap_records(
    records: Iterable[tuple[int, dict | BadRecord]],
    response_classifier,
    *,
    prompt_field: str = "prompt",
    response_field: str = "response",
    model_field: str | None = "model",
    source: str = "",
    min_confidence: float | None = None,
    deduplicate: bool = False,
    batch_size: int = 512,
    progress: bool = False,
    sink: Callable[[list[dict]], None] | None = None,
    max_skipped: int | None = None,
    lines: int | None = None,
) -> tuple[list[dict], BootstrapReport]:
    """Label each record's response; return rows of prompt, label, probability, model, source.

    ``min_confidence`` drops rows whose label has a probability below it (:func:`label_confidence`).
    ``deduplicate`` merges rows with the same (prompt, model): the majority label wins, and
    ``refusal_rate`` / ``n_responses`` say how split the LLM was. Kept rows that repeat an earlier
    kept row's prompt (up to whitespace and case), response and model are counted
    (``report.repeated_rows``) either way: a log written twice would otherwise pass for twice the
    evidence without a word. Rows below ``min_confidence`` are dropped before they are counted.
    ``progress`` shows a bar of the lines read (labelling a large log with the encoder takes
    minutes), out of ``lines``, the log's line count (:func:`~refusal_predictor.records.count_lines`),
    where known.
    ``sink`` (not with ``deduplicate``, which needs every row) takes each batch of labelled rows as
    it is made, and the returned list is empty: a log of 1,000,000 rows held 840 MB of rows.
    ``max_skipped`` stops reading once more than this many rows are bad, or at a bad row with
    which the rest of the file is lost (rows below ``min_confidence`` are dropped by choice and do
    not count): ``report.stopped_at`` names the
    line, and the rows returned (or given to ``sink``) so far are not the whole log's.
    """
    if min_confidence is not None and not 0.5 <= min_confidence <= 1.0:
        raise ValueError(f"min_confidence must be in [0.5, 1], got {min_confidence}")
    if prompt_field == response_field:
        raise ValueError(f"the prompt field and the response field are both {prompt_field!r} (--prompt-field, "
                         "--response-field): each text would be labelled as its own answer")
    check_max_skipped(max_skipped)
    report = BootstrapReport()
    # The model's own cut, as label-responses applies it: one model, one label per response.
    # Checked as predict checks it: NaN or 1.5 (a config file's typo) labelled every row compliance.
    threshold = check_threshold(getattr(response_classifier, "threshold", 0.5), "the response model's threshold")
    if sink is not None and deduplicate:
        raise ValueError("sink and deduplicate exclude each other: merging duplicates needs every row")
    rows: list[dict] = []
    pending: list[tuple[str, str, str, int, dict]] = []
    # Of kept rows (a repeat the cut drops is not "kept"), by a 16-byte digest of the key: the keys
    # themselves held every response of the log.
    seen_rows: set[bytes] = set()

    def flush() -> None:
        if not pending:
            return
        proba = checked_scores(response_classifier.refusal_probability, [r for _, r, *_ in pending])
        batch: list[dict] = []
        for (prompt, response, model, line, record), p in zip(pending, proba):
            report.labelled += 1
            label = "refusal" if p >= threshold else "compliance"
            confidence = p if label == "refusal" else 1.0 - p
            if min_confidence is not None and confidence < min_confidence:
                digits = _digits_below(confidence, min_confidence)
                report.low_confidence.append(BadRecord(
                    line, f"label confidence {confidence:.{digits}f} below the cut {min_confidence} "
                          f"({label}, refusal probability {p:.{digits}f})", raw_of(record)))
                continue
            key = _row_digest(text_key(prompt), response, model)
            report.repeated_rows += key in seen_rows
            seen_rows.add(key)
            batch.append({
                "prompt": prompt,
                "label": label,
                "refusal_probability": written_probability(p, threshold),
                "model": model,
                "source": source,
            })
        pending.clear()
        if sink is None:
            rows.extend(batch)
        elif batch:
            sink(batch)
            report.written += len(batch)

    bar = line_bar("labelling", lines, enabled=progress)
    for line, record in records:
        report.read += 1
        advance(bar, line)
        bad = _bad_row(line, record, prompt_field, response_field)
        if bad is not None:
            if skip(report, bad, max_skipped, "row"):
                break
            continue
        prompt, response = record[prompt_field], record[response_field]
        model = record.get(model_field) if model_field else None
        # A model field that is not text is spelled as the CSV output spells it (true, {"n": "gpt"},
        # ISO 8601 dates, base64 bytes): str() wrote True, {'n': 'gpt'}.
        model = "" if model is None else str(csv_value(model))
        pending.append((prompt, response, model, line, record))
        if len(pending) >= batch_size:
            flush()
    if report.stopped_at is None:
        flush()
        finish(bar)
    bar.close()
    if deduplicate and report.stopped_at is None:
        rows = merge_duplicates(rows, ("prompt", "model"), report, threshold=threshold)
    if sink is None:
        report.written = len(rows)
    return rows, report


def _bad_row(line: int, record: dict | BadRecord, prompt_field: str, response_field: str) -> BadRecord | None:
    """Why a log row gives no label, or None when it has a prompt and a response to label."""
    if isinstance(record, BadRecord):
        return record
    prompt = get_text(record, prompt_field, line)
    response = get_text(record, response_field, line)
    bad = next((x for x in (prompt, response) if isinstance(x, BadRecord)), None)
    if bad is not None:
        return bad
    if is_blank(prompt):
        return BadRecord(line, f"empty {prompt_field!r}", raw_of(record))
    if is_blank(response):
        # ResponseClassifier calls an empty answer a refusal, but in a log it is as often a
        # timeout or an API error as a blocked generation: no label is better than a guess.
        return BadRecord(line, f"empty {response_field!r} (a blocked generation cannot be told from an API error)",
                         raw_of(record))
    return None


def _row_digest(*parts: str) -> bytes:
    """Two rows' keys are equal exactly when their digests are (up to a 2**-128 chance)."""
    digest = hashlib.blake2b(digest_size=16)
    for part in parts:
        encoded = part.encode("utf-8", "surrogatepass")
        digest.update(len(encoded).to_bytes(8, "little") + encoded)  # lengths: ("ab", "c") is not ("a", "bc")
    return digest.digest()


def _digits_below(value: float, cut: float) -> int:
    """Decimals enough to show ``value`` below ``cut`` (0.999848 is not "1.000 below 0.9999")."""
    digits = 3
    while digits < 12 and round(value, digits) >= cut:
        digits += 1
    return digits


def label_confidence(row: dict) -> float:
    """How sure the bootstrap is of a row's label: the probability of that label, ``p`` for a
    refusal and ``1 - p`` for a compliance, the measure ``--min-confidence`` cuts on. For one
    answer that is ``max(p, 1 - p)`` at the usual threshold 0.5; under a response model whose
    threshold is not 0.5, a row labelled refusal at p = 0.32 (threshold 0.3) is 0.32 sure of it,
    not 0.68. A merged row (:func:`merge_duplicates`) has its answers' majority label and their
    mean ``p``, which can fall on the other side of the cut (0.55, 0.55 and 0.0: refusal, mean
    0.367): its confidence is then below 0.5, so a contested prompt counts less than a clear one."""
    p = float(row["refusal_probability"])
    return p if row["label"] == "refusal" else 1.0 - p


def merge_duplicates(
    rows: list[dict], keys: tuple[str, ...] = ("prompt", "model"), report: BootstrapReport | None = None,
    threshold: float = 0.5,
) -> list[dict]:
    """One row per ``keys``: the majority label, with ``refusal_rate`` and ``n_responses``.

    Prompts are compared by :func:`~refusal_predictor.text.text_key`; the merged row keeps the first one's text. Rows
    that are already merges count with their ``n_responses``; a tie goes to the mean refusal
    probability, cut at ``threshold`` (the response model's, which labelled the rows: at 0.5 a
    threshold-0.3 model's answers at 0.45 and 0.25, both above its cut on average, became a
    compliance).
    """
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[tuple(text_key(row[k]) if k == "prompt" else row[k] for k in keys)].append(row)
    merged = []
    for group in groups.values():
        weights = [r.get("n_responses", 1) for r in group]
        rate = float(np.average([r.get("refusal_rate", float(r["label"] == "refusal")) for r in group], weights=weights))
        proba = float(np.average([r["refusal_probability"] for r in group], weights=weights))
        if report is not None:
            report.merged_duplicates += len(group) - 1
            report.conflicting_prompts += int(0 < rate < 1)
        label = "refusal" if rate > 0.5 or (rate == 0.5 and proba >= threshold) else "compliance"
        merged.append({**group[0], "label": label, "refusal_probability": written_probability(proba, threshold),
                       "refusal_rate": _written_rate(rate), "n_responses": int(sum(weights))})
    return merged


def _written_rate(rate: float) -> float:
    """``rate`` rounded to 6 places, unless that makes a majority a tie: 500000 of 1000001 answers
    written as 0.5 beside "compliance" would be merged again as a tie, decided another way."""
    rounded = round(rate, 6)
    return rate if rounded == 0.5 and rate != 0.5 else rounded


def bootstrap_file(
    log_path: PathLike,
    output_path: PathLike,
    response_classifier,
    *,
    input_format: str | None = None,
    output_format: str | None = None,
    encoding: str = "utf-8",
    errors_path: PathLike | None = None,
    separator: str | None = None,
    **options,
) -> BootstrapReport:
    """:func:`bootstrap_records` from a log file to a labels file (JSONL, CSV, TSV or Parquet).

    A non-empty log that gives no row to write (every row bad, or below ``min_confidence``), or
    one stopped by ``max_skipped``, writes only the errors file: ``report.output_written`` is False, and a labels file already at
    ``output_path`` is left as it was (none is created).

    >>> from refusal_predictor import ResponseClassifier, bootstrap_file
    >>> report = bootstrap_file("log.jsonl", "labels.jsonl", ResponseClassifier.load(), deduplicate=True)
    >>> print(report.summary())
    """
    check_max_skipped(options.get("max_skipped"))  # before the log is counted for the progress bar
    errors_file = default_errors_path(output_path, errors_path)
    check_paths(log_path, output_path, errors_file, input_format=input_format, output_format=output_format,
                separator=separator)
    options.setdefault("source", Path(log_path).name)
    # closing: a run stopped by max_skipped closes the log now, not when the generator is collected
    with closing(read_records(log_path, input_format, encoding, separator=separator)) as records, \
            RecordWriter(output_path, output_format) as writer:
        # Without --dedupe, rows are written as they are labelled, so memory does not grow with them.
        sink = None if options.get("deduplicate") else writer.write_many
        if options.get("progress"):
            options.setdefault("lines", count_lines(log_path, input_format, encoding))
        rows, report = bootstrap_records(records, response_classifier, sink=sink, **options)
        writer.write_many(rows)
        # Nothing to write, or a log stopped part-way: an earlier file is not emptied or replaced by a part.
        report.output_written = report.stopped_at is None and not (report.read and not report.written)
        # Stopped: the skipped rows that stopped it, not the unsure labels of whichever batches ran before.
        unused = report.bad if report.stopped_at is not None else report.unused()
        report.errors_path = write_with_errors(writer, errors_file, unused, log_path, keep_output=report.output_written)
    return report
