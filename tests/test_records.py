"""Readers and writers keep every field and report every bad line with its number."""
from __future__ import annotations

import pytest

from refusal_predictor.records import BadRecord, RecordWriter, detect_format, get_text, read_all, read_records


def test_jsonl_bad_lines_are_reported_with_line_numbers(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_bytes(
        b'{"response": "ok", "extra": 1}\n'
        b'{"response": "broken\n'
        b"\n"
        b'[1, 2]\n'
        b'{"response": "caf\xe9"}\n'
        b'{"response": "fine"}\n'
    )
    good, bad = read_all(path)
    assert [line for line, _ in good] == [1, 6]
    assert good[0][1] == {"response": "ok", "extra": 1}
    assert {b.line for b in bad} == {2, 4, 5}
    reasons = {b.line: b.reason for b in bad}
    assert "malformed JSON" in reasons[2]
    assert "expected an object" in reasons[4]
    assert "utf-8" in reasons[5]


def test_csv_with_multiline_fields_bad_bytes_and_wrong_widths(tmp_path):
    path = tmp_path / "log.csv"
    path.write_bytes(
        b"prompt,response\n"
        b'"p1","line one\nline two"\n'
        b"p2\n"
        b'p3,"caf\xe9"\n'
        b"p4,r4\n"
    )
    good, bad = read_all(path)
    assert [(line, r["prompt"]) for line, r in good] == [(2, "p1"), (6, "p4")]
    assert good[0][1]["response"] == "line one\nline two"
    assert {b.line: b.reason for b in bad}.keys() == {4, 5}


def test_get_text_missing_null_and_wrong_type():
    assert get_text({"response": ""}, "response", 3) == ""
    for record, fragment in (({}, "missing"), ({"response": None}, "null"), ({"response": 5}, "int")):
        bad = get_text(record, "response", 7)
        assert isinstance(bad, BadRecord) and bad.line == 7 and fragment in bad.reason


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_writer_round_trip(tmp_path, suffix):
    path = tmp_path / f"out{suffix}"
    rows = [{"a": "x", "b": "1"}, {"a": "y\nz", "b": "2"}]
    with RecordWriter(path) as writer:
        writer.write_many(rows)
    good, bad = read_all(path)
    assert not bad and [r for _, r in good] == rows


def test_writer_is_atomic_on_error(tmp_path):
    path = tmp_path / "out.jsonl"
    with pytest.raises(RuntimeError):
        with RecordWriter(path) as writer:
            writer.write_many([{"a": 1}])
            raise RuntimeError("boom")
    assert not path.exists() and not list(tmp_path.iterdir())


def test_unknown_extension_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="format"):
        detect_format(tmp_path / "x.txt")
    with pytest.raises(FileNotFoundError, match="x.jsonl"):
        list(read_records(tmp_path / "x.jsonl"))


def test_corrupt_parquet_names_the_file(tmp_path):
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"not parquet")
    with pytest.raises(ValueError, match="bad.parquet"):
        list(read_records(path))
