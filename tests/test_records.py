"""Readers and writers keep every field and report every bad line with its number."""
from __future__ import annotations

import gzip
import json
import os
import sys
from pathlib import Path

import pytest

from refusal_predictor.record_writer import RecordWriter
from refusal_predictor.records import BadRecord, detect_format, get_text, read_all, read_records


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


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".tsv", ".tsv.gz", ".parquet"])
def test_writer_round_trip(tmp_path, suffix):
    path = tmp_path / f"out{suffix}"
    rows = [{"a": "x", "b": "1"}, {"a": "y\nz", "b": "2"}, {"a": 'tab\there, "quoted"; and, commas', "b": ""}]
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


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_writer_keeps_fields_that_appear_late(tmp_path, suffix):
    # Columnar outputs need their columns up front; a field first seen after the first chunk must
    # still be written (it used to be dropped from Parquet and abort CSV with a wrong record number).
    path = tmp_path / f"out{suffix}"
    with RecordWriter(path) as writer:
        writer.write_many([{"a": "x"}] * 600)
        writer.write_many([{"a": "y", "late": "kept"}])
    good, bad = read_all(path)
    assert not bad and len(good) == 601
    assert good[-1][1]["late"] == "kept"
    assert good[0][1]["late"] in ("", None)


def test_parquet_writer_turns_mixed_types_into_strings(tmp_path, caplog):
    path = tmp_path / "out.parquet"
    rows = [{"id": 1, "score": 1, "meta": {"k": 1}}, {"id": "b-2", "score": 2.5, "meta": {"k": 2, "j": "x"}}]
    with caplog.at_level("WARNING"), RecordWriter(path) as writer:
        writer.write_many(rows[:1])
        writer.write_many(rows[1:])
    good, _ = read_all(path)
    out = [r for _, r in good]
    assert [r["id"] for r in out] == ["1", "b-2"]  # int and str in one column: strings, announced
    assert "'id'" in caplog.text and "'score'" not in caplog.text
    assert [r["score"] for r in out] == [1.0, 2.5]  # int and float: a float column
    assert out[1]["meta"] == {"k": 2, "j": "x"} and out[0]["meta"]["j"] is None


def test_json_array_files_are_read_with_line_numbers(tmp_path):
    path = tmp_path / "log.json"
    path.write_text('[\n  {"response": "a"},\n  {"response": "b",\n   "n": 2},\n  3,\n  {"response": "c"}\n]\n')
    good, bad = read_all(path)
    assert [(line, r["response"]) for line, r in good] == [(2, "a"), (3, "b"), (6, "c")]
    assert [(b.line, "expected an object" in b.reason) for b in bad] == [(5, True)]


def test_malformed_json_array_names_the_line(tmp_path):
    path = tmp_path / "log.json"
    path.write_text('[\n  {"response": "a"},\n  {"response": \n]\n')
    with pytest.raises(ValueError, match=r"log.json:4: malformed JSON array"):
        read_all(path)


def test_jsonl_whose_first_line_is_an_array_stays_jsonl(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('[1, 2]\n{"response": "a"}\n')
    good, bad = read_all(path)
    assert [line for line, _ in good] == [2] and [b.line for b in bad] == [1]


def test_parquet_round_trip_keeps_column_types(tmp_path):
    import datetime as dt
    from decimal import Decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    source = tmp_path / "in.parquet"
    pq.write_table(pa.table({
        "ts": pa.array([dt.datetime(2024, 5, 1, 12, tzinfo=dt.timezone.utc)] * 2, pa.timestamp("us", "UTC")),
        "day": pa.array([dt.date(2024, 5, 1)] * 2, pa.date32()),
        "blob": pa.array([b"\x00\xff", b"ok"], pa.binary()),
        "dec": pa.array([Decimal("1.25"), Decimal("2.50")], pa.decimal128(5, 2)),
        "response": ["a", "b"],
    }), source)
    good, _ = read_all(source)
    out = tmp_path / "out.parquet"
    with RecordWriter(out) as writer:
        writer.write_many([{**r, "empty": {}} for _, r in good])
    schema = pq.read_schema(out)
    assert schema.field("ts").type == pa.timestamp("us", "UTC") and schema.field("day").type == pa.date32()
    assert schema.field("blob").type == pa.binary() and pa.types.is_decimal(schema.field("dec").type)
    first = [r for _, r in read_all(out)[0]][0]
    assert first["blob"] == b"\x00\xff" and first["dec"] == Decimal("1.25")
    assert first["empty"] == "{}"  # Parquet has no struct without fields
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


def test_json_file_with_text_after_the_array_is_an_error(tmp_path):
    path = tmp_path / "log.json"
    path.write_text('[\n  {"response": "a"},\n  {"response": "b"}\n]\nx\n')
    with pytest.raises(ValueError, match=r"log.json:5: text after the end of the JSON array"):
        read_all(path)


@pytest.mark.parametrize("first", ['[{"response": "a"}, {oops}]', '["unterminated'])
def test_jsonl_with_a_bad_first_line_that_opens_an_array(tmp_path, first):
    path = tmp_path / "log.jsonl"
    path.write_text(first + '\n{"response": "b"}\n{"response": "c"}\n')
    good, bad = read_all(path)
    assert [line for line, _ in good] == [2, 3] and [b.line for b in bad] == [1]


def test_score_file_refuses_a_scorer_that_returns_too_few_scores(tmp_path):
    from refusal_predictor.batch import score_file

    log = tmp_path / "log.jsonl"
    log.write_text('{"response": "a"}\n{"response": "b"}\n{"response": "c"}\n', encoding="utf-8")
    out = tmp_path / "out.jsonl"
    with pytest.raises(ValueError, match=r"\(2,\) scores for 3 texts"):
        score_file(lambda texts: [0.5] * (len(texts) - 1), log, out, text_field="response", progress=False)
    assert not out.exists()  # nothing half-written


def test_parquet_without_pyarrow_is_refused_before_any_record_is_scored(tmp_path, monkeypatch, capsys):
    """pyarrow is an optional extra; a missing one must not cost a whole scoring run."""
    from refusal_predictor import cli
    from refusal_predictor.batch import score_file
    from refusal_predictor.bootstrap import bootstrap_file

    log = tmp_path / "log.jsonl"
    log.write_text('{"prompt": "p", "response": "a"}\n{"prompt": "q", "response": "b"}\n', encoding="utf-8")
    (tmp_path / "in.parquet").write_bytes(b"never opened")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    scored = []

    def scorer(texts):
        scored.append(texts)
        return [0.5] * len(texts)

    class NeverAsked:
        def __getattr__(self, name):
            raise AssertionError(f"the response classifier was used ({name}) before the format check")

    with pytest.raises(ImportError, match=r'writing Parquet needs pyarrow: pip install "refusal-predictor\[parquet\]"'):
        score_file(scorer, log, tmp_path / "out.parquet", text_field="response", progress=False)
    with pytest.raises(ImportError, match="writing Parquet needs pyarrow"):
        score_file(scorer, log, tmp_path / "out.data", output_format="parquet", text_field="response", progress=False)
    with pytest.raises(ImportError, match="reading Parquet needs pyarrow"):
        score_file(scorer, tmp_path / "in.parquet", tmp_path / "out.jsonl", text_field="response", progress=False)
    with pytest.raises(ImportError, match="writing Parquet needs pyarrow"):
        bootstrap_file(log, tmp_path / "labels.parquet", NeverAsked())
    assert scored == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet", "log.jsonl"]  # nothing half-written
    assert cli.main(["label-responses", str(log), "-o", str(tmp_path / "out.parquet"), "--model", "ngrams"]) == 2
    assert "writing Parquet needs pyarrow" in capsys.readouterr().err


def test_outputs_that_cannot_be_written_are_refused_before_any_work(tmp_path, monkeypatch, capsys):
    """A read-only or full folder, a file where a folder goes, a user's own folder, a bad option:
    found before scoring, training or exporting, not after."""
    import tempfile

    from refusal_predictor import cli
    from refusal_predictor.batch import score_file
    from refusal_predictor.bootstrap import bootstrap_file
    from refusal_predictor.classifiers import ResponseClassifier
    from refusal_predictor.exporters import onnx as onnx_exporter
    from refusal_predictor.prompt_training import train_prompt_model

    log = tmp_path / "log.jsonl"
    log.write_text('{"prompt": "p", "response": "I cannot help.", "label": 1}\n', encoding="utf-8")
    locked = tmp_path / "locked"
    locked.mkdir()
    real_temporary_file = tempfile.TemporaryFile

    def temporary_file(*args, dir=None, **kwargs):  # root ignores chmod: simulate a read-only folder
        if dir is not None and Path(dir) == locked:
            raise PermissionError(13, "Permission denied")
        return real_temporary_file(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", temporary_file)

    def never(*args, **kwargs):
        raise AssertionError("work started before the output was checked")

    monkeypatch.setattr(ResponseClassifier, "fit", never)
    monkeypatch.setattr(onnx_exporter, "export_encoder", never)

    class NeverAsked:
        def __getattr__(self, name):
            never()

    with pytest.raises(ValueError, match=r"labels.jsonl: cannot write in .*locked \(Permission denied\)"):
        bootstrap_file(log, locked / "labels.jsonl", NeverAsked())
    with pytest.raises(ValueError, match="errors file .*cannot write in"):
        score_file(never, log, tmp_path / "out.jsonl", errors_path=locked / "e.jsonl", text_field="response", progress=False)
    with pytest.raises(ValueError, match="output field 'x' is named twice"):
        score_file(never, log, tmp_path / "out.jsonl", probability_field="x", label_field="x", text_field="response")
    with pytest.raises(ValueError, match="chunk_size must be a whole number of at least 1, got 0"):
        score_file(never, log, tmp_path / "out.jsonl", chunk_size=0, text_field="response")
    for test_size in (0, 1.0, -0.1):
        with pytest.raises(ValueError, match="test_size must be a fraction between 0 and 1"):
            train_prompt_model(log, "t", tmp_path / "m", test_size=test_size)
    with pytest.raises(ValueError, match="cannot write in"):
        train_prompt_model(log, "t", locked, response_model="ngrams")
    (tmp_path / "afile").write_text("", encoding="utf-8")
    for argv, message in [
        (["train-response", str(log), "-o", str(tmp_path / "afile"), "--no-embeddings"], "is a file"),
        (["train-response", str(log), "-o", str(locked / "m"), "--no-embeddings"], "cannot write in"),
        (["train-response", str(log), "-o", str(tmp_path), "--no-embeddings"], "not a refusal-predictor model"),
        (["export-encoder", "any-model", "-o", str(tmp_path / "afile")], "is a file"),
        (["export-encoder", "any-model", "-o", str(tmp_path)], "not a refusal-predictor encoder folder"),
        (["label-responses", str(log), "-o", str(locked / "o.jsonl"), "--model", "ngrams"], "cannot write in"),
    ]:
        assert cli.main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "locked", "log.jsonl"]  # nothing left behind
    assert list(locked.iterdir()) == []


def test_an_output_field_in_the_input_is_refused_before_any_scoring(tmp_path):
    """A clash on line 3,000 of a log used to stop the run there, throwing away the 2,999 records
    scored before it; it is now found in a first pass, whatever the format."""
    import json

    from refusal_predictor.batch import score_file
    from refusal_predictor.records import find_field

    def never(texts):
        raise AssertionError("scoring started before the input's fields were checked")

    rows = [{"response": f"text {i}"} for i in range(3000)]
    rows[2999] = {"response": "last", "label": "gold"}
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    with pytest.raises(ValueError, match=r"log.jsonl:3000: the record already has a field 'label'"):
        score_file(never, log, out, text_field="response", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.jsonl"]

    # A key spelt with escapes is still the same key; the name inside a value is not a clash.
    escaped = tmp_path / "escaped.jsonl"
    escaped.write_text('{"response": "the label is fine"}\n{"response": "x", "\\u006cabel": 1}\n', encoding="utf-8")
    assert find_field(escaped, ["refusal_probability", "label"]) == (2, "label")
    assert find_field(escaped, ["refusal_probability", "predicted"]) is None
    csv_log = tmp_path / "log.csv"
    csv_log.write_text("response,refusal_probability\nhello,0.1\n", encoding="utf-8")
    assert find_field(csv_log, ["refusal_probability", "label"]) == (1, "refusal_probability")  # the header
    array = tmp_path / "log.json"
    array.write_text('[\n{"response": "a"},\n{"response": "b", "label": 0}\n]\n', encoding="utf-8")
    assert find_field(array, ["label"]) == (3, "label")
    pytest.importorskip("pyarrow")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"response": ["a"], "label": ["b"]}), tmp_path / "log.parquet")
    assert find_field(tmp_path / "log.parquet", ["refusal_probability", "label"]) == (1, "label")


def test_a_record_that_gains_an_output_field_after_the_first_pass_is_skipped_not_fatal(tmp_path, monkeypatch):
    """A log still being appended to can gain a clashing record after the check: that record is
    skipped with its line (kept whole in the errors file) and the others are written."""
    import json

    from refusal_predictor import batch

    monkeypatch.setattr(batch, "find_field", lambda *args, **kwargs: None)
    log = tmp_path / "log.jsonl"
    log.write_text('{"response": "a"}\n{"response": "b", "label": "gold"}\n{"response": "c"}\n', encoding="utf-8")
    out = tmp_path / "out.jsonl"
    report = batch.score_file(lambda texts: [0.9] * len(texts), log, out, text_field="response", progress=False)
    assert (report.read, report.scored) == (3, 2)
    assert [json.loads(l)["response"] for l in out.read_text(encoding="utf-8").splitlines()] == ["a", "c"]
    [skipped] = [json.loads(l) for l in report.errors_path.read_text(encoding="utf-8").splitlines()]
    assert skipped["line"] == 2 and "already has a field 'label'" in skipped["reason"]
    assert json.loads(skipped["raw"]) == {"response": "b", "label": "gold"}


def test_a_lone_surrogate_is_a_bad_line_not_a_failed_run(tmp_path):
    """JSON allows "\\ud83d" alone (what a logger writes after cutting an emoji in two); the string
    it decodes to can be neither tokenized nor written, and one such line stopped every command."""
    from refusal_predictor import ResponseClassifier
    from refusal_predictor.batch import score_file
    from refusal_predictor.records import read_records

    log = tmp_path / "log.jsonl"
    log.write_text('{"response": "fine \\ud83d\\ude00"}\n{"response": "cut \\ud83d"}\n{"response": "ok", "note": "\\udc00"}\n'
                   '{"response": "I cannot help."}\n', encoding="utf-8")
    read = list(read_records(log))
    assert [type(r).__name__ for _, r in read] == ["dict", "BadRecord", "BadRecord", "dict"]
    assert read[1][1].line == 2 and "lone UTF-16 surrogate" in read[1][1].reason
    array = tmp_path / "log.json"
    array.write_text('[{"response": "a"},\n {"response": "b \\udc00"}]', encoding="utf-8")
    assert [(line, type(r).__name__) for line, r in read_records(array)] == [(1, "dict"), (2, "BadRecord")]
    report = score_file(ResponseClassifier.load("ngrams").refusal_probability, log, tmp_path / "out.jsonl", text_field="response", progress=False)
    assert (report.read, report.scored, [b.line for b in report.bad]) == (4, 2, [2, 3])
    with pytest.raises(ValueError, match=r"text 1 holds a lone UTF-16 surrogate '\\ud83d' at character 4"):
        ResponseClassifier.load("ngrams").predict(["fine", "cut \ud83d"])


def test_a_json_file_holding_one_object_is_named_not_read_as_broken_lines(tmp_path):
    from refusal_predictor.records import read_records

    dump = tmp_path / "artifact.json"
    dump.write_text(json.dumps({"parameters": {}, "jailbreaks": [{"prompt": "p"}]}, indent=2), encoding="utf-8")
    with pytest.raises(ValueError, match=r"artifact.json: holds one JSON object \(keys 'parameters', 'jailbreaks'\), "
                                         "not records"):
        list(read_records(dump))
    one_line = tmp_path / "one.json"  # a JSON Lines file of one record, named .json: read as before
    one_line.write_text('{"prompt": "p", "response": "r"}\n', encoding="utf-8")
    assert [r for _, r in read_records(one_line)] == [{"prompt": "p", "response": "r"}]


def test_a_json_lines_log_named_json_with_a_bad_first_line_is_not_read_whole(tmp_path, monkeypatch):
    """Its first line not a value by itself, a 1e6-line log was read whole (twice: the field check
    and the scoring) to learn whether it held one pretty-printed object."""
    from refusal_predictor import records

    log = tmp_path / "log.json"
    log.write_text('{"id": broken\n' + "".join(json.dumps({"id": i}) + "\n" for i in range(5)), encoding="utf-8")
    reads = []
    real = records._open_bytes

    def spying(path):
        handle = real(path)
        original = handle.read
        handle.read = lambda *a: (reads.append(a), original(*a))[1]
        return handle
    monkeypatch.setattr(records, "_open_bytes", spying)
    got = list(records.read_records(log))
    assert [line for line, r in got if isinstance(r, dict)] == [2, 3, 4, 5, 6] and isinstance(got[0][1], BadRecord)
    assert () not in reads  # no read() of the whole file


@pytest.mark.parametrize("name", ["log.jsonl.gz", "log.json.gz", "log.csv.gz"])
def test_a_gzip_log_cut_within_its_first_kilobytes_keeps_its_whole_records(tmp_path, name):
    """The format sniffing read the first 4 KB whole, and a stream cut before them failed the file
    ("not a readable gzip file from its start"), losing the records before the cut: a 456-byte
    cut holding three whole records kept none. The line reader now keeps them and reports the cut."""
    import gzip
    import zlib

    texts = [f"response number {i}, " + "words " * 8 for i in range(60)]
    if name.startswith("log.csv"):
        body = "id,response\n" + "".join(f'{i},"{t}"\n' for i, t in enumerate(texts))
    else:
        body = "".join(json.dumps({"id": i, "response": t}) + "\n" for i, t in enumerate(texts))
    whole = gzip.compress(body.encode())
    cut = whole[: len(whole) // 3]
    readable = zlib.decompressobj(31).decompress(cut)
    header = int(name.startswith("log.csv"))
    complete = readable.count(b"\n") - header
    assert 3 <= complete < 60 and len(readable) < 4096  # cut within what the sniffing read whole
    path = tmp_path / name
    path.write_bytes(cut)
    records = list(read_records(path))
    kept = [r for _, r in records if isinstance(r, dict)]
    [(line, bad)] = [(n, r) for n, r in records if isinstance(r, BadRecord)]
    assert [int(r["id"]) for r in kept] == list(range(complete))
    assert line == complete + header + 1 and "gzip stream is cut short or corrupt" in bad.reason


# Fidelity of the user's own fields through batch scoring (each of these lost or altered a value).
def _score(log, out, **kwargs):
    """score_file with a scorer that reads the text: 'sorry' is a refusal (no model: the fields matter here)."""
    from refusal_predictor.batch import score_file

    kwargs.setdefault("text_field", "response")
    return score_file(lambda texts: [0.9 if "sorry" in t else 0.1 for t in texts], log, out, progress=False, **kwargs)


def _errors(out):
    return [json.loads(line) for line in Path(f"{out}.errors.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("name", ["log.jsonl", "log.json"])
def test_a_record_naming_a_field_twice_is_skipped_whole_not_read_as_its_last_value(tmp_path, name):
    """JSON keeps the last of two equal keys: the refusal text was lost and "Sure!" scored instead."""
    twice = '{"id": 1, "response": "I\'m sorry, I can\'t.", "response": "Sure!"}'
    rows = ['{"id": 0, "response": "fine"}', twice, '{"id": 2, "meta": {"k": 1, "k": 2}, "response": "ok"}']
    log = tmp_path / name
    log.write_text("\n".join(rows) + "\n" if name.endswith("l") else "[\n" + ",\n".join(rows) + "\n]\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    report = _score(log, out)
    assert report.scored == 1
    errors = _errors(out)
    assert [(e["line"], e["raw"]) for e in errors] == [(2 + name.endswith("json"), twice),
                                                       (3 + name.endswith("json"), rows[2])]
    assert "field 'response' appears twice" in errors[0]["reason"] and "'k' appears twice" in errors[1]["reason"]


@pytest.mark.parametrize("header, message", [
    ("response,id,id", "names 'id' in columns 2, 3"),
    ("response,,", "leaves columns 2, 3 without a name"),
])
def test_a_csv_header_naming_a_column_twice_is_refused_before_any_work(tmp_path, header, message):
    log = tmp_path / "log.csv"
    log.write_text(f"{header}\nok,a,b\n", encoding="utf-8")
    with pytest.raises(ValueError, match=f"log.csv:1: the CSV header {message}"):
        _score(log, tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()
    single = tmp_path / "single.csv"  # one unnamed column loses nothing: it is kept under ""
    single.write_text("response,\nok,a\n", encoding="utf-8")
    assert read_all(single)[0] == [(2, {"response": "ok", "": "a"})]


def test_a_parquet_schema_naming_a_column_twice_is_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    log = tmp_path / "log.parquet"
    pq.write_table(pa.Table.from_arrays([pa.array(["ok"]), pa.array([1]), pa.array(["x"])],
                                        names=["response", "id", "id"]), log)
    with pytest.raises(ValueError, match="names column 'id' 2 times"):
        _score(log, tmp_path / "out.jsonl")


def test_json_numbers_a_double_cannot_hold_are_written_back_as_the_same_numbers(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text('{"response": "ok", "big": 1e400, "long": 0.10000000000000000001, "plain": 1.50, '
                   '"n": [2.5, {"m": 1E-400}], "int": 123456789012345678901234567890}\n', encoding="utf-8")
    for name in ("out.jsonl", "out.json", "out.csv"):
        _score(log, tmp_path / name)
    text = (tmp_path / "out.jsonl").read_text(encoding="utf-8")
    assert text.startswith('{"response": "ok", "big": 1e400, "long": 0.10000000000000000001, "plain": 1.5, '
                           '"n": [2.5, {"m": 1E-400}], "int": 123456789012345678901234567890, ')
    assert json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))[0]["int"] == 123456789012345678901234567890
    assert "Infinity" not in (tmp_path / "out.json").read_text(encoding="utf-8")
    header, row = (tmp_path / "out.csv").read_text(encoding="utf-8").splitlines()
    assert row.startswith('ok,1e400,0.10000000000000000001,1.5,"[2.5, {""m"": 1E-400}]",123456789012345678901234567890,')


def test_parquet_to_parquet_keeps_the_input_column_types(tmp_path):
    """Nanosecond timestamps were cut to microseconds; int8, decimal precision and dictionaries widened."""
    from decimal import Decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    log = tmp_path / "log.parquet"
    types = {"ts": pa.timestamp("ns"), "small": pa.int8(), "dec": pa.decimal128(10, 2),
             "cat": pa.dictionary(pa.int32(), pa.string()), "u": pa.uint64(), "none": pa.string(),
             "meta": pa.struct([("a", pa.int64()), ("b", pa.string())])}
    pq.write_table(pa.table({
        "response": ["I'm sorry", "ok"],
        "ts": pa.array([1700000000123456789, None], types["ts"]),
        "small": pa.array([1, -2], types["small"]),
        "dec": pa.array([Decimal("1.50"), Decimal("-0.01")], types["dec"]),
        "cat": pa.array(["a", "b"]).dictionary_encode(),
        "u": pa.array([2**64 - 1, 0], types["u"]),
        "none": pa.array([None, None], types["none"]),
        "meta": pa.array([{"a": 1, "b": "x"}, None], types["meta"]),
    }), log)
    out = tmp_path / "out.parquet"
    _score(log, out)
    schema = pq.read_schema(out)
    assert {name: schema.field(name).type for name in types} == types
    assert pq.read_table(out).column("ts").cast(pa.int64()).to_pylist() == [1700000000123456789, None]
    assert pq.read_table(out).column("u").to_pylist() == [2**64 - 1, 0]
    assert pq.read_table(out).column("meta").to_pylist() == [{"a": 1, "b": "x"}, None]  # not a JSON string


def test_parquet_output_with_integers_beyond_2_53_beside_floats_is_written_not_failed(tmp_path, caplog):
    """Typed by chunk, int64 then double unified to double, which cannot hold 2**53 + 1: the write
    failed after the whole run's scoring, and no output was left."""
    log = tmp_path / "log.jsonl"
    rows = [{"response": "ok", "cost": 2**53 + 1}] * 3 + [{"response": "ok", "cost": 0.5}]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "out.parquet"
    _score(log, out, chunk_size=3)
    assert [r["cost"] for _, r in read_all(out)[0]] == [str(2**53 + 1)] * 3 + ["0.5"]
    assert "field 'cost' holds values that do not fit one type" in caplog.text


def test_a_parquet_string_that_is_not_utf8_skips_its_row_naming_the_column(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    log = tmp_path / "log.parquet"
    column = pa.array([b"ok", b"caf\xe9", b"fine"], pa.binary()).cast(pa.string(), safe=False)
    pq.write_table(pa.table({"response": column, "id": [1, 2, 3]}), log)
    out = tmp_path / "out.jsonl"
    report = _score(log, out)
    assert report.scored == 2 and [r["id"] for _, r in read_all(out)[0]] == [1, 3]
    (error,) = _errors(out)
    assert error["line"] == 2 and "column 'response' holds bytes that are not valid UTF-8" in error["reason"]
    assert error["raw_base64"] == "Y2Fm6Q=="  # b"caf\xe9"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
def test_utf16_json_lines_are_read(tmp_path, encoding):
    """Split at the byte 0x0A before decoding, every UTF-16 line was cut in two."""
    log = tmp_path / "log.jsonl"
    log.write_bytes('{"response": "I\'m sorry", "t": "é😀"}\n{"response": "ok"}\n'.encode(encoding))
    good, bad = read_all(log, encoding=encoding)
    assert bad == [] and [(line, r["t"] if "t" in r else None) for line, r in good] == [(1, "é😀"), (2, None)]


def test_csv_is_read_strictly_a_stray_or_unclosed_quote_is_a_skipped_row(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text('response,id\nok,1\n"x"y,2\nfine,3\n"never closed,4\nlost,5\nlost,6\n', encoding="utf-8")
    good, bad = read_all(log)
    assert [(line, r["id"]) for line, r in good] == [(2, "1"), (4, "3")]
    assert [(b.line, b.raw) for b in bad] == [(3, '"x"y,2'), (5, '"never closed,4\nlost,5\nlost,6')]
    assert "lines 5-7 (the end of the file) were read as one field" in bad[1].reason


def test_a_header_only_csv_keeps_its_columns(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("response,id\n", encoding="utf-8")
    _score(log, tmp_path / "out.csv")
    assert (tmp_path / "out.csv").read_text(encoding="utf-8") == "response,id,refusal_probability,label\n"


def test_the_written_probability_agrees_with_the_label_at_the_threshold(tmp_path):
    """Rounded to 6 places, 0.4999996 read 0.5 beside the label compliance."""
    from refusal_predictor.batch import score_file

    log = tmp_path / "log.jsonl"
    log.write_text('{"response": "a"}\n{"response": "b"}\n', encoding="utf-8")
    out = tmp_path / "out.jsonl"
    score_file(lambda texts: [0.4999996, 0.2500004], log, out, text_field="response", progress=False)
    assert [(r["refusal_probability"], r["label"]) for _, r in read_all(out)[0]] == [(0.4999996, "compliance"),
                                                                                     (0.25, "compliance")]


def test_json_and_csv_output_spell_parquet_values_as_json_tools_do(tmp_path):
    import datetime as dt

    import pyarrow as pa
    import pyarrow.parquet as pq

    log = tmp_path / "log.parquet"
    pq.write_table(pa.table({"response": ["ok"], "flag": [True], "blob": pa.array([b"\x00\xff"]),
                             "at": pa.array([dt.datetime(2024, 5, 1, 12, 30)], pa.timestamp("us"))}), log)
    _score(log, tmp_path / "out.jsonl")
    _score(log, tmp_path / "out.csv")
    record = json.loads((tmp_path / "out.jsonl").read_text(encoding="utf-8"))
    assert (record["flag"], record["blob"], record["at"]) == (True, "AP8=", "2024-05-01T12:30:00")
    assert (tmp_path / "out.csv").read_text(encoding="utf-8").splitlines()[1].startswith("ok,true,AP8=,2024-05-01T12:30:00,")


def test_an_errors_file_that_cannot_be_written_names_itself_and_leaves_nothing_half_written(tmp_path, monkeypatch):
    """The output and its errors file are put in place as a pair: a failure to write either leaves
    the earlier output and errors file as they were. (The output used to be swapped in first,
    without its record of skipped rows; then, for a while, the errors file went first.)"""
    import tempfile

    log = tmp_path / "log.jsonl"
    log.write_text('{"response": "ok"}\n{"text": "no response"}\n', encoding="utf-8")
    errors = tmp_path / "errors.jsonl"
    earlier_errors = '{"file": "earlier", "line": 1, "reason": "r", "raw": ""}\n'
    out = tmp_path / "out.jsonl"

    def earlier_pair():
        errors.write_text(earlier_errors, encoding="utf-8")
        out.write_text('{"earlier": "output"}\n', encoding="utf-8")

    def assert_earlier_pair_kept():
        assert errors.read_text(encoding="utf-8") == earlier_errors
        assert out.read_text(encoding="utf-8") == '{"earlier": "output"}\n'
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left

    real_mkstemp, real_replace = tempfile.mkstemp, os.replace

    def no_room_for_errors(*args, **kwargs):
        if kwargs.get("prefix", "").startswith(".errors.jsonl."):
            raise OSError(28, "No space left on device")
        return real_mkstemp(*args, **kwargs)

    earlier_pair()
    monkeypatch.setattr(tempfile, "mkstemp", no_room_for_errors)
    with pytest.raises(OSError, match="errors.jsonl: the errors file cannot be written"):
        _score(log, out, errors_path=errors)
    assert_earlier_pair_kept()
    monkeypatch.undo()

    def output_not_renamed(src, dst):
        if Path(dst) == out:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", output_not_renamed)
    with pytest.raises(OSError, match="out.jsonl: cannot be written"):
        _score(log, out, errors_path=errors)  # a new errors file is staged, then thrown away
    assert_earlier_pair_kept()
    log.write_text('{"response": "ok"}\n', encoding="utf-8")
    with pytest.raises(OSError, match="out.jsonl: cannot be written"):
        _score(log, out, errors_path=errors)  # a clean run would remove the earlier errors file: not yet
    assert_earlier_pair_kept()
    monkeypatch.undo()
    assert _score(log, out, errors_path=errors).errors_path is None and not errors.exists()


@pytest.mark.parametrize("failure", ["errors rename", "interrupt at errors rename", "earlier errors not moved aside"])
def test_the_output_and_its_errors_file_stay_a_pair_when_the_errors_file_fails_to_go_in_place(tmp_path, monkeypatch, failure):
    """After the output was renamed, a failing errors rename left the new output beside the earlier
    run's errors file; the errors file now goes in place first, reversibly."""
    log = tmp_path / "log.jsonl"
    log.write_text('{"response": "ok"}\n{"text": "no response"}\n', encoding="utf-8")
    errors, out = tmp_path / "errors.jsonl", tmp_path / "out.jsonl"
    earlier_errors = '{"file": "earlier", "line": 1, "reason": "r", "raw": ""}\n'
    errors.write_text(earlier_errors, encoding="utf-8")
    out.write_text('{"earlier": "output"}\n', encoding="utf-8")
    real_replace = os.replace

    def failing(src, dst):
        if failure == "earlier errors not moved aside" and Path(src) == errors:
            raise PermissionError(13, "Permission denied")
        if failure.endswith("errors rename") and Path(dst) == errors and not str(src).endswith(".earlier"):
            if failure.startswith("interrupt"):
                raise KeyboardInterrupt
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(KeyboardInterrupt if failure.startswith("interrupt") else OSError):
        _score(log, out, errors_path=errors)
    assert errors.read_text(encoding="utf-8") == earlier_errors
    assert out.read_text(encoding="utf-8") == '{"earlier": "output"}\n'
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_an_errors_device_that_refuses_the_write_leaves_the_earlier_output(tmp_path):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    log = tmp_path / "log.jsonl"
    log.write_text('{"response": "ok"}\n{"text": "no response"}\n', encoding="utf-8")
    out = tmp_path / "out.jsonl"
    out.write_text('{"earlier": "output"}\n', encoding="utf-8")
    with pytest.raises(OSError, match="/dev/full: the errors file cannot be written"):
        _score(log, out, errors_path="/dev/full")
    assert out.read_text(encoding="utf-8") == '{"earlier": "output"}\n'
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_write_bad_records_leaves_no_temp_file_when_interrupted(tmp_path, monkeypatch):
    from refusal_predictor.errors_file import write_bad_records
    from refusal_predictor.records import BadRecord

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_bad_records(tmp_path / "e.jsonl", [BadRecord(1, "bad", "x")], "log.jsonl")
    assert list(tmp_path.iterdir()) == []


def test_a_csv_header_holding_an_output_field_is_refused_even_without_a_usable_row(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text('response,label\n"never closed,x\n', encoding="utf-8")
    with pytest.raises(ValueError, match="log.csv:1: the record already has a field 'label'"):
        _score(log, tmp_path / "out.csv")


def _log_and_a_linked_file(tmp_path, link_name: str, text: str, mode: int):
    """A log whose line 2 is skipped, and a file of ``mode`` with a symbolic link to it."""
    log = tmp_path / "log.jsonl"
    log.write_text('{"response": "ok"}\n{"text": "no response"}\n', encoding="utf-8")
    kept = tmp_path / "kept.jsonl"
    kept.write_text(text, encoding="utf-8")
    kept.chmod(mode)
    link = tmp_path / link_name
    link.symlink_to(kept)
    return log, kept, link


def test_a_linked_errors_file_is_written_through_its_link_and_a_device_is_not_replaced(tmp_path):
    log, kept, link = _log_and_a_linked_file(tmp_path, "errors.jsonl", "", 0o640)
    _score(log, tmp_path / "out.jsonl", errors_path=link)
    assert link.is_symlink() and json.loads(kept.read_text(encoding="utf-8"))["line"] == 2
    assert kept.stat().st_mode & 0o777 == 0o640  # its permissions kept
    to_null = tmp_path / "null.jsonl"
    to_null.symlink_to(os.devnull)  # a regression replaces this link, never the device itself
    _score(log, tmp_path / "out2.jsonl", errors_path=to_null)
    assert to_null.is_symlink() and not Path(os.devnull).is_file()
    with pytest.raises(ValueError, match="is not a regular file"):
        _score(log, to_null)  # an output cannot be swapped in over a device
    assert to_null.is_symlink()


def test_json_numbers_beyond_a_double_go_to_parquet_as_doubles_or_as_strings_out_of_range(tmp_path, caplog):
    log = tmp_path / "log.jsonl"
    log.write_text('{"response": "ok", "ts": 1700000000.123456789012, "big": 1e400}\n'
                   '{"response": "ok", "ts": 1700000001.5, "big": 2.0}\n', encoding="utf-8")
    out = tmp_path / "out.parquet"
    _score(log, out)
    rows = [r for _, r in read_all(out)[0]]
    assert [r["ts"] for r in rows] == [1700000000.123456789012, 1700000001.5]
    assert [r["big"] for r in rows] == ["1e400", "2.0"]
    assert "field 'big' holds float and number beyond the range of a double values" in caplog.text


def test_bytes_not_valid_in_a_utf16_log_skip_their_line_only(tmp_path):
    lines = [f'{{"response": "r{i}"}}\n'.encode("utf-16-le") for i in range(1, 6)]
    lines[2] = b"\x00\xd8" + lines[2]  # a high surrogate with no low one: not UTF-16
    log = tmp_path / "log.jsonl"
    log.write_bytes(b"".join(lines))
    good, bad = read_all(log, encoding="utf-16-le")
    assert [line for line, _ in good] == [1, 2, 4, 5] and [(b.line, b.reason) for b in bad] == [(3, "not valid utf-16-le")]


def test_a_non_utf8_string_inside_a_nested_parquet_column_skips_its_row(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    tags = pa.array([[b"ok"], [b"caf\xe9"], [b"fine"]], pa.list_(pa.binary())).cast(pa.list_(pa.string()), safe=False)
    log = tmp_path / "log.parquet"
    pq.write_table(pa.table({"response": ["a", "b", "c"], "tags": tags}), log)
    good, bad = read_all(log)
    assert [line for line, _ in good] == [1, 3] and bad[0].line == 2 and "column 'tags'" in bad[0].reason


def test_bootstrap_writes_a_probability_that_agrees_with_its_label():
    from refusal_predictor.bootstrap import bootstrap_records

    class Fixed:
        threshold = 0.5

        def refusal_probability(self, texts):
            return [0.4999996] * len(texts)

    rows, _ = bootstrap_records([(1, {"prompt": "p", "response": "r"})], Fixed())
    assert (rows[0]["label"], rows[0]["refusal_probability"]) == ("compliance", 0.4999996)


def test_a_users_string_never_becomes_a_number_in_json_output(tmp_path):
    from refusal_predictor.jsonvalues import dumps_value

    log = tmp_path / "log.jsonl"
    placeholder = "\\u0000\\u0001refusal-predictor-number:42\\u0001\\u0000"
    log.write_text('{"response": "ok", "big": 1e400, "note": "%s"}\n' % placeholder, encoding="utf-8")
    (_, record), = read_all(log)[0]
    text = dumps_value(record)
    assert text.startswith('{"response": "ok", "big": 1e400, "note": "') and json.loads(text)["note"] == record["note"]


def test_a_utf16_json_array_is_read_as_an_array(tmp_path):
    log = tmp_path / "log.json"
    log.write_bytes('[\n{"response": "a"},\n{"response": "b"}\n]\n'.encode("utf-16"))
    good, bad = read_all(log, encoding="utf-16")
    assert bad == [] and [(line, r["response"]) for line, r in good] == [(2, "a"), (3, "b")]


def test_a_nested_empty_object_goes_to_parquet_as_text_not_a_failed_write(tmp_path, caplog):
    """Parquet has no struct without fields: {"meta": {"tags": {}}} failed the write after the run."""
    log = tmp_path / "log.jsonl"
    log.write_text('{"response": "ok", "meta": {"tags": {}}}\n{"response": "ok", "meta": {"tags": {}}}\n', encoding="utf-8")
    out = tmp_path / "out.parquet"
    _score(log, out)
    assert [r["meta"] for _, r in read_all(out)[0]] == ['{"tags": {}}'] * 2
    assert "field 'meta' holds an empty object {} inside" in caplog.text


def test_a_line_holding_an_integer_past_pythons_digit_limit_is_skipped_not_fatal(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text('{"response": "ok", "n": %s}\n{"response": "fine"}\n' % ("7" * 5000), encoding="utf-8")
    good, bad = read_all(log)
    assert [line for line, _ in good] == [2] and bad[0].line == 1 and "unreadable JSON" in bad[0].reason


def test_errors_behind_links_into_missing_folders_loops_and_devices(tmp_path, monkeypatch):
    from refusal_predictor import paths

    log = tmp_path / "log.jsonl"
    log.write_text('{"response": "ok"}\n{"text": "no response"}\n', encoding="utf-8")
    link = tmp_path / "errors.jsonl"
    link.symlink_to(tmp_path / "new" / "folder" / "errors.jsonl")  # the folder is made, as for a plain path
    _score(log, tmp_path / "out.jsonl", errors_path=link)
    assert link.is_symlink() and (tmp_path / "new" / "folder" / "errors.jsonl").is_file()
    clean = tmp_path / "clean.jsonl"
    clean.write_text('{"response": "ok"}\n', encoding="utf-8")
    _score(clean, tmp_path / "out.jsonl", errors_path=link)  # a clean run removes the stale file, not the link
    assert link.is_symlink() and not (tmp_path / "new" / "folder" / "errors.jsonl").exists()
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    for kwargs in ({"errors_path": tmp_path / "a"}, {}):
        with pytest.raises(ValueError, match="symbolic link cannot be followed"):
            _score(log, tmp_path / ("out.jsonl" if kwargs else "a"), output_format="jsonl", **kwargs)

    def no_temporary_file(folder, what, path):
        raise ValueError(f"a temporary file was made in {folder}")

    monkeypatch.setattr(paths, "_check_writable", no_temporary_file)  # /dev is not writable for most users
    assert paths.check_output_path(os.devnull, "errors file") == Path(os.devnull)


def test_tab_separated_logs_are_read_and_written_with_tabs(tmp_path):
    log = tmp_path / "log.tsv"
    log.write_text('id\tresponse\n1\tI\'m sorry, I can\'t help; no.\n2\t"Sure!\tHere it is"\n3\tone\ttoo many\n',
                   encoding="utf-8")
    good, bad = read_all(log)
    assert [r for _, r in good] == [{"id": "1", "response": "I'm sorry, I can't help; no."},
                                    {"id": "2", "response": "Sure!\tHere it is"}]
    assert [(b.line, b.reason, b.raw) for b in bad] == [(4, "3 fields, header has 2", "3\tone\ttoo many")]
    assert detect_format(tmp_path / "log.tab") == detect_format(tmp_path / "log.tsv.gz") == "tsv"
    _score(log, tmp_path / "out.tsv")
    lines = (tmp_path / "out.tsv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "id\tresponse\trefusal_probability\tlabel"
    assert lines[1] == "1\tI'm sorry, I can't help; no.\t0.9\trefusal"
    assert _errors(tmp_path / "out.tsv")[0]["raw"] == "3\tone\ttoo many"  # as the file has it, tabs and all


@pytest.mark.parametrize("separator", [";", "\t"])
def test_a_csv_whose_header_holds_another_separator_and_no_comma_is_read_with_it(tmp_path, separator):
    """Spreadsheets in many locales save CSV with semicolons; read with commas, every row lacked its field."""
    log = tmp_path / "log.csv"
    log.write_text(separator.join(["id", "response"]) + "\n" + separator.join(["1", '"I\'m sorry, I can\'t; no."'])
                   + "\n" + separator.join(["2", "fine, thanks"]) + "\n", encoding="utf-8")
    report = _score(log, tmp_path / "out.csv")
    assert report.scored == 2
    out = [r for _, r in read_all(tmp_path / "out.csv")[0]]
    assert [(r["id"], r["response"], r["label"]) for r in out] == [
        ("1", "I'm sorry, I can't; no.", "refusal"), ("2", "fine, thanks", "compliance")]
    assert (tmp_path / "out.csv").read_text(encoding="utf-8").startswith("id,response,")  # output: commas
    one_column = tmp_path / "one.csv"  # a comma file of one column keeps its semicolons and tabs as text
    one_column.write_text('response\n"a; b\tc"\n', encoding="utf-8")
    assert [r for _, r in read_all(one_column)[0]] == [{"response": "a; b\tc"}]


def test_the_separator_rule_reads_the_header_whole_and_a_separator_can_be_named(tmp_path):
    """A one-column comma file whose header holds a semicolon was split at it, with no way to say
    commas; a quoted name holding a comma decided the separator by its place in the header."""
    one = tmp_path / "one.csv"
    one.write_text("response; as given\nI'm sorry; I can't help with that.\nSure; here it is.\n", encoding="utf-8")
    assert [r for _, r in read_all(one, separator=",")[0]] == [
        {"response; as given": "I'm sorry; I can't help with that."}, {"response; as given": "Sure; here it is."}]
    report = _score(one, tmp_path / "out.jsonl", text_field="response; as given", separator="comma")
    assert report.scored == 2
    export = tmp_path / "export.txt"  # no extension to go by: --format csv, and the header decides
    export.write_text("id;response\n1;I'm sorry, no.\n", encoding="utf-8")
    assert [r for _, r in read_all(export, fmt="csv")[0]] == [{"id": "1", "response": "I'm sorry, no."}]
    piped = tmp_path / "piped.csv"
    piped.write_text("id|response\n1|sorry\n", encoding="utf-8")
    assert [r for _, r in read_all(piped, separator="pipe")[0]] == [{"id": "1", "response": "sorry"}]
    jsonl = tmp_path / "log.jsonl"
    jsonl.write_text('{"response": "x"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="log.jsonl: a separator applies to CSV and TSV input, not jsonl"):
        _score(jsonl, tmp_path / "out2.jsonl", separator=";")
    with pytest.raises(ValueError, match="separator '::': give one character"):
        read_all(one, separator="::")
    for header, row in (('id;"Antwort, roh"', '1;"sorry, no"'), ('"Antwort, roh";id', '"sorry, no";1')):
        log = tmp_path / "de.csv"
        log.write_text(f"{header}\n{row}\n", encoding="utf-8")
        assert [r for _, r in read_all(log)[0]] == [{"id": "1", "Antwort, roh": "sorry, no"}], header
    bom = tmp_path / "bom.csv"  # a byte-order mark before a quoted first name kept its quotes: '"id"'
    bom.write_bytes('\ufeff"id","response"\n"1","no; sorry"\n'.encode("utf-8"))
    assert [r for _, r in read_all(bom)[0]] == [{"id": "1", "response": "no; sorry"}]
    blank = tmp_path / "blank.tsv"
    blank.write_text("\nresponse\nx\n", encoding="utf-8")
    with pytest.raises(ValueError, match="blank.tsv:1: the first line is empty"):  # was an IndexError
        read_all(blank)


def test_a_csv_holding_only_a_byte_order_mark_is_empty(tmp_path):
    """A spreadsheet's empty "CSV UTF-8" export: read as an empty file, as a 0-byte one is."""
    bom = tmp_path / "empty.csv"
    bom.write_bytes("\ufeff".encode("utf-8"))
    assert read_all(bom) == ([], [])
    report = _score(bom, tmp_path / "out.jsonl")
    assert report.read == 0


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16-le"])
def test_a_byte_order_mark_before_the_first_json_line_is_not_part_of_its_record(tmp_path, encoding):
    log = tmp_path / "log.jsonl"
    log.write_bytes(("\ufeff" + '{"response": "a"}\n{"response": "b"}\n').encode(encoding))
    good, bad = read_all(log, encoding=encoding)
    assert bad == [] and [(line, r["response"]) for line, r in good] == [(1, "a"), (2, "b")]


def test_a_score_at_the_threshold_is_a_refusal_and_counted_as_one(tmp_path):
    from refusal_predictor.batch import score_file

    log, out = tmp_path / "log.jsonl", tmp_path / "out.jsonl"
    log.write_text("".join(json.dumps({"response": t}) + "\n" for t in ["a", "b", "c"]), encoding="utf-8")
    scores = {"a": 0.3, "b": 0.29, "c": 0.31}
    report = score_file(lambda texts: [scores[t] for t in texts], log, out, threshold=0.3, text_field="response",
                        progress=False)
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["label"] for r in rows] == ["refusal", "compliance", "refusal"]
    assert (report.read, report.scored, report.positives) == (3, 3, 2)


def test_the_scorer_gets_at_most_chunk_size_texts_at_a_time(tmp_path):
    from refusal_predictor.batch import score_file

    log, out = tmp_path / "log.jsonl", tmp_path / "out.jsonl"
    log.write_text("".join(json.dumps({"response": f"text {i}"}) + "\n" for i in range(7)), encoding="utf-8")
    calls = []
    report = score_file(lambda texts: calls.append(list(texts)) or [0.1] * len(texts), log, out, chunk_size=3,
                        text_field="response", progress=False)
    assert [len(c) for c in calls] == [3, 3, 1]
    assert report.scored == 7 and len(out.read_text(encoding="utf-8").splitlines()) == 7


def test_skipped_records_past_the_first_five_are_counted_in_the_log(tmp_path, caplog):
    log, out = tmp_path / "log.jsonl", tmp_path / "out.jsonl"
    log.write_text("".join(json.dumps({"other": i}) + "\n" for i in range(6)) + json.dumps({"response": "ok"}) + "\n",
                   encoding="utf-8")
    with caplog.at_level("WARNING", logger="refusal_predictor.batch"):
        report = _score(log, out)
    assert len(report.bad) == 6
    assert [r.getMessage().split(".jsonl:")[1][0] for r in caplog.records if r.getMessage().startswith("skipped ")] \
        == ["1", "2", "3", "4", "5"]  # the first five, each with its line
    assert any("and 1 more skipped records" in r.getMessage() for r in caplog.records)


def test_a_json_file_at_the_errors_path_that_is_not_an_errors_file_is_left_alone(tmp_path):
    log, out = tmp_path / "log.jsonl", tmp_path / "out.jsonl"
    log.write_text(json.dumps({"response": "fine"}) + "\n", encoding="utf-8")
    notes = tmp_path / "notes.jsonl"
    notes.write_text(json.dumps({"file": "mine", "line": 3}) + "\n", encoding="utf-8")  # JSON, but not an errors file
    report = _score(log, out, errors_path=notes)
    assert report.errors_path is None and not report.bad
    assert json.loads(notes.read_text(encoding="utf-8")) == {"file": "mine", "line": 3}


def test_a_second_run_leaves_no_earlier_errors_file_aside(tmp_path):
    log, out = tmp_path / "log.jsonl", tmp_path / "out.jsonl"
    log.write_text(json.dumps({"other": 1}) + "\n" + json.dumps({"response": "fine"}) + "\n", encoding="utf-8")
    _score(log, out)
    _score(log, out)  # replaces the errors file the first run wrote
    assert len(_errors(out)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.jsonl", "out.jsonl", "out.jsonl.errors.jsonl"]
    clean = tmp_path / "clean.jsonl"
    clean.write_text(json.dumps({"response": "fine"}) + "\n", encoding="utf-8")
    _score(clean, out)  # skips nothing: the earlier errors file goes, and nothing is kept aside
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean.jsonl", "log.jsonl", "out.jsonl"]


# ------------------------------------------------------------------ found by fuzzing the readers and writers

def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_a_record_nested_past_the_limit_is_skipped_with_its_line_and_one_at_it_is_written_everywhere(tmp_path):
    """1,000 nested arrays on one line stopped a run with a RecursionError traceback, and 500 got
    through the reader only to stop the CSV and Parquet writers after the scoring."""
    from refusal_predictor.batch import score_file
    from refusal_predictor.records import MAX_NESTING

    log = tmp_path / "log.jsonl"
    lines = [{"response": "kept", "a": 1}, None, {"response": "deep"}, None]
    text = [json.dumps(r) for r in lines]
    text[1] = '{"response": "too deep", "a": ' + _deep(1000) + "}"
    text[3] = '{"response": "too deep", "a": ' + _deep(MAX_NESTING) + "}"  # the record itself is one level more
    text[2] = '{"response": "at the limit", "a": ' + _deep(MAX_NESTING - 1) + "}"
    log.write_text("\n".join(text) + "\n", encoding="utf-8")
    good, bad = read_all(log)
    assert [line for line, _ in good] == [1, 3]
    assert [(b.line, b.reason, b.raw) for b in bad] == [
        (2, f"nested deeper than {MAX_NESTING} levels of arrays and objects", text[1]),
        (4, f"nested deeper than {MAX_NESTING} levels of arrays and objects", text[3])]
    for name in ("out.csv", "out.parquet", "out.jsonl"):
        report = score_file(lambda texts: [0.1] * len(texts), log, tmp_path / name, text_field="response", progress=False)
        assert (report.read, report.scored) == (4, 2)
    assert json.loads((tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()[1])["a"] == json.loads(_deep(MAX_NESTING - 1))
    # Parquet readers open 100 schema levels: the deep column is written as JSON text, and the file opens.
    good, bad = read_all(tmp_path / "out.parquet")
    assert bad == [] and [json.loads(r["a"]) if isinstance(r["a"], str) else r["a"] for _, r in good] == [1, json.loads(_deep(MAX_NESTING - 1))]


@pytest.mark.parametrize("nested, fits", [("lists", 49), ("objects", 98)])
def test_parquet_output_opens_whatever_the_nesting_and_keeps_shallow_columns_typed(tmp_path, nested, fits):
    """A column one level past what Parquet readers open was written, and then no reader (this
    tool, pandas, pyarrow) could open the file."""
    import pyarrow.parquet as pq

    def deep(n):
        value = 1
        for _ in range(n):
            value = [value] if nested == "lists" else {"k": value}
        return value

    for depth, as_text in ((fits, False), (fits + 1, True)):
        out = tmp_path / f"out{depth}.parquet"
        with RecordWriter(out) as writer:
            writer.write_many([{"response": "r", "a": deep(depth)}])
        table = pq.read_table(out)
        assert (str(table.schema.field("a").type) == "string") is as_text
        value = table.column("a")[0].as_py()
        assert (json.loads(value) if as_text else value) == deep(depth)


def test_a_json_array_file_nested_too_deeply_is_refused_naming_it(tmp_path):
    log = tmp_path / "log.json"
    log.write_text('[{"response": "ok"}, {"response": "x", "a": ' + _deep(1000) + "}]", encoding="utf-8")
    with pytest.raises(ValueError, match=r"log\.json: the JSON array nests too deeply"):
        read_all(log)
    log.write_text('[{"response": "ok"},\n {"response": "x", "a": ' + _deep(200) + "}]", encoding="utf-8")
    good, bad = read_all(log)  # decodable as a whole: only the deep element is skipped, with its line
    assert [line for line, _ in good] == [1] and [(b.line, b.reason.startswith("nested deeper")) for b in bad] == [(2, True)]


@pytest.mark.parametrize("codec", ["rot13", "base64", "zlib"])
def test_a_codec_that_is_not_a_text_encoding_is_refused_in_one_line(tmp_path, codec):
    log = tmp_path / "log.jsonl"
    log.write_text('{"response": "a"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=f"'{codec}' is not a text encoding"):
        read_all(log, encoding=codec)


@pytest.mark.parametrize("unit", [0xD800, 0xDBD8])  # lone high surrogates: one of a byte below 0x80, one not
@pytest.mark.parametrize("encoding, bom, codec", [("utf-16", b"\xff\xfe", "utf-16-le"), ("utf-16", b"\xfe\xff", "utf-16-be"),
                                                  ("utf-16-le", b"", "utf-16-le")])
def test_bytes_not_valid_in_a_utf16_csv_skip_their_row_and_keep_their_bytes(tmp_path, unit, encoding, bom, codec):
    """A UTF-16 CSV with one bad code unit stopped the whole run with a codec error naming neither
    file nor line: surrogateescape cannot escape a byte below 0x80."""
    from refusal_predictor.errors_file import write_bad_records

    bad_bytes = unit.to_bytes(2, "big" if codec.endswith("be") else "little")
    log = tmp_path / "log.csv"
    bad_row = "2,".encode(codec) + bad_bytes + "bad".encode(codec)
    log.write_bytes(bom + "id,response\n1,ok\n".encode(codec) + bad_row + "\n3,fine\n".encode(codec))
    good, bad = read_all(log, encoding=encoding)
    assert [(line, r["response"]) for line, r in good] == [(2, "ok"), (4, "fine")]
    [skipped] = bad
    assert skipped.line == 3 and skipped.reason.startswith(f"not valid {encoding}") and skipped.raw_bytes == bad_row
    errors = write_bad_records(tmp_path / "errors.jsonl", bad, log)
    import base64
    entry = json.loads(Path(errors).read_text(encoding="utf-8"))
    assert base64.b64decode(entry["raw_base64"]) == bad_row and entry["raw"] == "2,\ufffd\ufffdbad"


@pytest.mark.parametrize("encoding, bom, codec", [("utf-16", b"\xff\xfe", "utf-16-le"), ("utf-32", b"\x00\x00\xfe\xff", "utf-32-be")])
def test_a_bad_line_of_a_utf16_or_utf32_log_keeps_its_exact_bytes(tmp_path, encoding, bom, codec):
    """The wide reader wrote the line's text with one U+FFFD and no raw_base64: its bytes were lost."""
    good_line = '{"response": "ok"}\n'.encode(codec)
    bad_line = '{"response": "b\u00e4d"}'.encode(codec)[:8] + b"\x00\xd8\x00\x00" + '{"response": "bad"}'.encode(codec)[8:]
    log = tmp_path / "log.jsonl"
    log.write_bytes(bom + good_line + bad_line + "\n".encode(codec) + good_line)
    good, bad = read_all(log, encoding=encoding)
    assert [line for line, _ in good] == [1, 3]
    assert [(b.line, b.raw_bytes) for b in bad] == [(2, bad_line)]


def test_a_gzip_cut_after_blank_lines_is_reported_after_them(tmp_path):
    import gzip
    import random

    rng = random.Random(2)
    long = "".join(rng.choice("abc ") for _ in range(20000))
    body = ('{"response": "a"}\n{"response": "b"}\n\n\n{"response": "' + long + '"}\n').encode()
    whole = gzip.compress(body, mtime=0)
    log = tmp_path / "log.jsonl.gz"
    log.write_bytes(whole[: len(whole) // 2])
    good, bad = read_all(log)
    assert [line for line, _ in good] == [1, 2]
    [(line, reason)] = [(b.line, b.reason) for b in bad]
    assert line == 5 and "after line 4" in reason  # lines 3-4 were read: they were blank


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_a_crlf_log_reports_skipped_lines_without_their_carriage_return(tmp_path, suffix):
    log = tmp_path / f"log.{suffix}"
    if suffix == "jsonl":
        log.write_bytes(b'{"response": "a"}\r\n[1, 2]\r\n{\r\n')
        expected = [(2, "[1, 2]"), (3, "{")]
    else:
        log.write_bytes(b'id,response\r\n1,a\r\n2,b,extra\r\n')
        expected = [(3, "2,b,extra")]
    _, bad = read_all(log)
    assert [(b.line, b.raw) for b in bad] == expected


@pytest.mark.parametrize("codec", ["utf-7", "unicode_escape", "raw_unicode_escape", "idna", "punycode", "undefined"])
def test_an_encoding_whose_decoding_makes_half_characters_is_refused(tmp_path, codec):
    log = tmp_path / "log.csv"
    log.write_bytes(b"id,response\n1,ok\n")
    with pytest.raises(ValueError, match=f"'{codec}' cannot be read as a log"):
        read_all(log, encoding=codec)


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
@pytest.mark.parametrize("encoding", ["utf-16", "utf-32"])
def test_utf16_or_utf32_without_a_byte_order_mark_names_the_file_and_the_fix(tmp_path, suffix, encoding):
    log = tmp_path / f"log.{suffix}"
    body = '{"response": "a"}\n' if suffix == "jsonl" else "id,response\n1,a\n"
    log.write_bytes(body.encode(encoding + "-le"))
    with pytest.raises(ValueError, match=rf"log\.{suffix}: {encoding} without a byte-order mark.*--encoding {encoding}-le"):
        read_all(log, encoding=encoding)
    good, _ = read_all(log, encoding=encoding + "-le")
    assert len(good) == 1


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_utf8_sig_keeps_a_bad_lines_bytes_without_marks_inside(tmp_path, suffix):
    """utf-8-sig's encoder puts a byte-order mark before every piece it encodes: the kept bytes
    of a bad line had one before each bad byte."""
    bad_line = b'{"response": "b\xffc"}' if suffix == "jsonl" else b"2,b\xffcd,x\xfey"
    head = b'{"response": "ok"}\n' if suffix == "jsonl" else b"id,response,more\n1,ok,x\n"
    log = tmp_path / f"log.{suffix}"
    log.write_bytes(b"\xef\xbb\xbf" + head + bad_line + b"\n")
    _, bad = read_all(log, encoding="utf-8-sig")
    assert [b.raw_bytes for b in bad] == [bad_line]


def test_a_skipped_csv_row_is_reported_as_its_own_text_quotes_and_all(tmp_path):
    log = tmp_path / "log.csv"
    log.write_bytes(b'id,response\n1,"a, quoted ""answer"""\n2,"x",extra\n3,"multi\nline",more\n')
    good, bad = read_all(log)
    assert [line for line, _ in good] == [2]
    assert [(b.line, b.raw) for b in bad] == [(3, '2,"x",extra'), (4, '3,"multi\nline",more')]


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
@pytest.mark.parametrize("name", ["log.jsonl.gz", "log.csv.gz"])
def test_a_gzip_unreadable_from_its_start_is_one_error_naming_it_in_any_encoding(tmp_path, encoding, name):
    """The byte-order-mark check read the head of the file first, and a bad gzip's EOFError escaped as a traceback."""
    log = tmp_path / name
    log.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(ValueError, match=rf"{name}: not a readable gzip file from its start"):
        read_all(log, encoding=encoding)


def _label(tmp_path, log, output, *extra):
    from refusal_predictor import cli

    return cli.main(["label-responses", str(log), "-o", str(output), "--model", "ngrams", "--no-progress", *extra])


def test_a_long_output_name_is_written_or_refused_before_the_work(tmp_path, capsys):
    """A 235-character output name failed after the scoring: the hidden temporary files beside it
    (errors file 23 characters longer, the earlier errors file's placeholder 31) passed 255 bytes."""
    log = tmp_path / "log.jsonl"
    log.write_text('{"response": "Sure, here it is."}\n{"text": "no response field"}\n', encoding="utf-8")
    long_name = tmp_path / ("o" * 229 + ".jsonl")  # its errors file: 248 characters, which the file system takes
    long_name.with_name(long_name.name + ".errors.jsonl").write_text(
        json.dumps({"file": "x", "line": 1, "reason": "earlier run", "raw": ""}) + "\n", encoding="utf-8")
    assert _label(tmp_path, log, long_name) == 0
    assert [json.loads(x)["line"] for x in long_name.with_name(long_name.name + ".errors.jsonl").read_text().splitlines()] == [2]
    capsys.readouterr()
    too_long = tmp_path / ("o" * 250 + ".jsonl")
    assert _label(tmp_path, log, too_long) == 2
    assert "its name is 256 bytes long, and this file system takes at most 255" in capsys.readouterr().err
    # The output fits, its errors file would not: refused before reading, not after the scoring.
    assert _label(tmp_path, log, tmp_path / ("o" * 240 + ".jsonl")) == 2
    assert "errors file" in capsys.readouterr().err and not any(p.name.startswith(".") for p in tmp_path.iterdir())


@pytest.mark.parametrize("output, message", [("", "names no file"), (".", "names no file"),
                                             ("/", "names no file")])
def test_an_output_that_names_no_file_is_refused_in_words(tmp_path, capsys, output, message):
    """-o '' said "PosixPath('.') has an empty name"."""
    log = tmp_path / "log.jsonl"
    log.write_text('{"response": "ok"}\n', encoding="utf-8")
    assert _label(tmp_path, log, output) == 2
    err = capsys.readouterr().err
    assert message in err and "PosixPath" not in err


def test_an_empty_errors_option_is_refused(tmp_path, capsys):
    """--errors '' (an unset variable) silently meant the default path."""
    log = tmp_path / "log.jsonl"
    log.write_text('{"response": "ok"}\n', encoding="utf-8")
    with pytest.raises(SystemExit):
        _label(tmp_path, log, tmp_path / "o.jsonl", "--errors", "")
    assert "argument --errors: expected a file path, got ''" in capsys.readouterr().err
    from refusal_predictor.prompt_training import train_prompt_model

    with pytest.raises(ValueError, match="--errors is empty"):
        train_prompt_model(log, "t", tmp_path / "m", errors_path="", response_model="ngrams")


def test_parquet_output_gathers_small_chunks_into_row_groups(tmp_path):
    """Each --chunk-size batch was a row group: 6,250 of them for 100,000 records at 16."""
    pq = pytest.importorskip("pyarrow.parquet")
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps({"id": i, "response": f"I'm sorry, I can't help with that. #{i}"}) + "\n"
                           for i in range(3000)), encoding="utf-8")
    assert _label(tmp_path, log, tmp_path / "o.parquet", "--chunk-size", "16") == 0
    written = pq.ParquetFile(tmp_path / "o.parquet")
    assert written.metadata.num_row_groups == 1 and written.metadata.num_rows == 3000
    assert written.read().column("id").to_pylist() == list(range(3000))
    from refusal_predictor import record_writer

    with RecordWriter(tmp_path / "many.parquet") as writer:
        for start in range(0, record_writer.PARQUET_ROW_GROUP_ROWS + 10, 4096):
            writer.write_many([{"n": i} for i in range(start, min(start + 4096, record_writer.PARQUET_ROW_GROUP_ROWS + 10))])
    many = pq.ParquetFile(tmp_path / "many.parquet")
    assert [many.metadata.row_group(i).num_rows for i in range(many.metadata.num_row_groups)] == \
        [record_writer.PARQUET_ROW_GROUP_ROWS, 10]


def test_outputs_reach_the_disk_before_they_replace_an_earlier_file(tmp_path, monkeypatch):
    """Renamed unsynced, a crash just after the rename could leave an empty file where a whole one was."""
    synced = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real_fsync(fd)))
    monkeypatch.setattr(os, "replace", lambda a, b: (synced.append(("replace", str(a))), real_replace(a, b)))
    log = tmp_path / "log.jsonl"
    log.write_text('{"response": "ok"}\n{"text": "no response"}\n', encoding="utf-8")
    assert _label(tmp_path, log, tmp_path / "o.csv") == 0
    renamed = [s[1] for s in synced if isinstance(s, tuple)]
    assert len(renamed) == 2 and all(synced.index(name) < synced.index(("replace", name)) for name in renamed)


def test_running_out_of_memory_is_one_line_and_leaves_no_output(tmp_path, monkeypatch, capsys):
    """A 50 MB text's n-grams took 2.5 GB; out of memory, the run ended in a scikit-learn traceback."""
    from refusal_predictor.classifiers import ResponseClassifier

    def no_memory(self, texts):
        raise MemoryError
    monkeypatch.setattr(ResponseClassifier, "refusal_probability", no_memory)
    log = tmp_path / "log.jsonl"
    log.write_text('{"response": "ok"}\n', encoding="utf-8")
    assert _label(tmp_path, log, tmp_path / "o.jsonl") == 2
    err = capsys.readouterr().err
    assert "error: out of memory; outputs being written were removed" in err and "Traceback" not in err
    assert [p.name for p in tmp_path.iterdir()] == ["log.jsonl"]


def test_skipped_records_past_the_first_thousand_wait_on_disk_in_order(monkeypatch):
    from refusal_predictor import skipped as module
    from refusal_predictor.skipped import InLineOrder, SkippedRecords

    monkeypatch.setattr(module, "_BATCH", 2)  # records 4-9 spooled, 10 waiting in the batch

    skipped = SkippedRecords(kept_in_memory=3)
    for line in range(1, 11):
        skipped.append(BadRecord(line, f"missing field 'x' (line {line})", raw=f"raw {line}", raw_bytes=b"\xff" if line == 7 else None))
    assert len(skipped) == 10 and len(skipped._head) == 3 and skipped and skipped._spooled_bytes > 0
    assert [r.line for r in skipped] == list(range(1, 11)) == [r.line for r in skipped]  # read twice, same
    assert skipped[9].raw_bytes is None and skipped[6].raw_bytes == b"\xff" and skipped[-1].line == 10
    assert [r.line for r in skipped[:2]] == [1, 2] and [r.line for r in skipped[2:5]] == [3, 4, 5]
    skipped.append(BadRecord(11, "malformed JSON"))  # appended after a read: after the others
    assert [r.line for r in skipped][-2:] == [10, 11]
    assert skipped.reasons() == {"missing field 'x'": 10, "malformed JSON": 1}
    other = SkippedRecords([BadRecord(4, "low"), BadRecord(12, "low")], kept_in_memory=1)
    merged = InLineOrder(skipped, other)
    assert len(merged) == 13 and [r.line for r in merged] == [1, 2, 3, 4, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    assert not InLineOrder(SkippedRecords(), SkippedRecords())
    with pytest.raises(IndexError):
        skipped[11]


def test_skipped_records_count_the_rows_a_csv_quote_swallowed_for_max_skipped(monkeypatch):
    """score_file and bootstrap kept twin running counts; the count lives with the records now."""
    from refusal_predictor import skipped as module
    from refusal_predictor.batch import ScoreReport, skip
    from refusal_predictor.bootstrap import BootstrapReport
    from refusal_predictor.skipped import SkippedRecords

    monkeypatch.setattr(module, "_BATCH", 2)
    skipped = SkippedRecords([BadRecord(1, "a"), BadRecord(2, "quote", span=5), BadRecord(9, "b")], kept_in_memory=1)
    assert (len(skipped), skipped.spanned) == (3, 7)
    skipped.append(BadRecord(10, "quote", span=3))
    skipped.close()  # the spooled records go; the count of what was skipped does not
    assert (len(skipped), skipped.spanned, sum(skipped.reasons().values())) == (1, 10, 4)

    report = ScoreReport(input="in", output="out")
    assert not skip(report, BadRecord(3, "missing field"), max_skipped=2)
    assert report.stopped_at is None and report.stop_reason is None
    assert skip(report, BadRecord(7, "malformed CSV", span=2), max_skipped=2)  # 3 counted > 2
    assert report.stopped_at == 7 and "(2 skipped, 3 counting the rows malformed CSV quotes swallowed)" in report.stop_reason
    rows = BootstrapReport()
    assert skip(rows, BadRecord(4, "gzip cut short", rest_lost=True), max_skipped=100, unit="row")
    assert rows.stopped_at == 4 and rows.stop_reason.startswith("the rest of the file is lost with this row")
    assert not skip(ScoreReport(input="in", output="out"), BadRecord(1, "x", span=50), max_skipped=None)


def test_skipped_records_behave_as_the_list_they_replace(monkeypatch):
    """Nested iterations shared one read position (an IndexError, a count of 1,201 for 1,500), an
    append mid-iteration overwrote a record, and a report past 1,000 skips could not be pickled."""
    import copy
    import pickle

    from refusal_predictor import skipped as module
    from refusal_predictor.batch import ScoreReport
    from refusal_predictor.skipped import InLineOrder, SkippedRecords

    monkeypatch.setattr(module, "_BATCH", 7)
    records = [BadRecord(i, f"reason {i % 3}", raw=f"r{i}") for i in range(1, 101)]
    skipped = SkippedRecords(records, kept_in_memory=5)
    assert [(a.line, skipped[60].line, len(list(skipped))) for k, a in enumerate(skipped) if k in (30, 31)] == \
        [(31, 61, 100), (32, 61, 100)]
    walking = iter(skipped)
    assert [next(walking).line for _ in range(40)] == list(range(1, 41))
    skipped.append(BadRecord(101, "late"))
    assert [r.line for r in walking] == list(range(41, 101))  # the snapshot it began with
    assert [r.line for r in skipped] == list(range(1, 102)) and skipped == records + [BadRecord(101, "late")]
    assert skipped + [] == records + [BadRecord(101, "late")] and [] + skipped == skipped + []
    assert [r.line for r in reversed(skipped)][:2] == [101, 100] and sorted(skipped, key=lambda r: -r.line)[0].line == 101
    report = ScoreReport(input="in", output="out", bad=records)
    for copied in (pickle.loads(pickle.dumps(report)), copy.deepcopy(report)):
        assert copied.bad == records and len(copied.bad) == 100
    merged = InLineOrder(SkippedRecords(records[:50]), SkippedRecords(records[50:]))
    assert merged == records and merged[0] == records[0]


def test_a_misspelt_text_field_keeps_every_skipped_record_without_holding_them(tmp_path, monkeypatch):
    """A wrong --text-field skipped 1,000,000 records into memory twice (890 MB): a larger log ran
    out of memory before the errors file that explains the mistake was written."""
    from refusal_predictor import skipped
    from refusal_predictor.batch import score_file
    from refusal_predictor.classifiers import ResponseClassifier

    monkeypatch.setattr(skipped, "KEPT_IN_MEMORY", 10)
    monkeypatch.setattr(skipped, "_BATCH", 64)
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps({"id": i, "response": f"text {i}"}) + "\n" for i in range(2000)), encoding="utf-8")
    report = score_file(ResponseClassifier.load("ngrams").refusal_probability, log, tmp_path / "o.jsonl",
                        text_field="nope", progress=False)
    assert len(report.bad) == 2000 and len(report.bad._head) == 10 and not report.output_written
    listed = [json.loads(x) for x in (tmp_path / "o.jsonl.errors.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["line"] for r in listed] == list(range(1, 2001))
    assert [json.loads(r["raw"])["id"] for r in listed] == list(range(2000))


def test_temporary_names_are_cut_in_bytes_and_a_stopped_run_leaves_no_folder(tmp_path, capsys):
    """62 emoji make a 254-byte name the file system takes; cut at 64 characters (256 bytes), the
    temporary names beside it did not fit, and the run failed after its work. A writer stopped
    part-way left the folders it had made for its output."""
    from refusal_predictor.artifacts import short_name

    assert len(os.fsencode(short_name("\U0001F600" * 62))) <= 64 and short_name("abc") == "abc"
    log = tmp_path / "log.jsonl"
    log.write_text('{"response": "ok"}\n{"text": "no response field"}\n', encoding="utf-8")
    emoji = tmp_path / ("\U0001F600" * 62 + ".jsonl")  # 254 bytes
    assert _label(tmp_path, log, tmp_path / "o.jsonl", "--errors", str(emoji)) == 0
    assert [json.loads(x)["line"] for x in emoji.read_text(encoding="utf-8").splitlines()] == [2]
    capsys.readouterr()
    assert _label(tmp_path, log, tmp_path / ("a" * 249 + ".jsonl")) == 2
    assert "(--errors names it" in capsys.readouterr().err
    writer = RecordWriter(tmp_path / "new" / "sub" / "o.csv")
    writer.write_many([{"a": 1}])
    writer.abort()
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()
    writer = RecordWriter(tmp_path / "kept" / "sub" / "o.csv")
    (tmp_path / "kept" / "mine.txt").write_text("x")
    writer.abort()
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == ["mine.txt"]


@pytest.mark.parametrize("text", ['{"records": [\n{"prompt": "p", "response": "r"}\n]}\n',
                                  '{"meta":\n  {"prompt": "p", "response": "r"}\n}\n',
                                  '{"a": 1,\n"b": {"prompt": "p"}\n}\n'])
def test_a_pretty_printed_object_whose_second_line_is_an_object_is_still_refused(tmp_path, text):
    """Telling a JSON Lines log with a bad first line from such an object by its second line read
    a one-record wrapper as a log, scoring the record inside it."""
    from refusal_predictor.records import read_records

    dump = tmp_path / "one.json"
    dump.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match="holds one JSON object"):
        list(read_records(dump))


def test_a_writer_removes_only_the_folders_it_made(tmp_path, monkeypatch):
    """'a/../b' took an existing 'b' for a folder of its own, and removed it; a folder another run
    made between the look and the write was removed too."""
    from refusal_predictor import record_writer

    monkeypatch.chdir(tmp_path)
    (tmp_path / "b").mkdir()
    writer = RecordWriter("a/../b/out.jsonl")
    writer.write_many([{"x": 1}])
    writer.abort()
    assert (tmp_path / "b").is_dir() and list((tmp_path / "b").iterdir()) == []
    real = record_writer._make_folders

    def another_run_first(folder):
        os.makedirs(tmp_path / "shared")
        return real(folder)
    monkeypatch.setattr(record_writer, "_make_folders", another_run_first)
    RecordWriter(tmp_path / "shared" / "out.jsonl").abort()
    assert (tmp_path / "shared").is_dir()


def test_text_keys_are_their_own_keys_and_the_spool_closes_quietly(monkeypatch):
    import gc
    import warnings

    from refusal_predictor import skipped as module
    from refusal_predictor.text import is_blank, text_key

    for text in ["\u00df\u0301", "\u00df\u034f\u0301", "\uff28\uff49 there", "a\u3164b", "\u115f"]:
        assert text_key(text_key(text)) == text_key(text)
    assert is_blank("\u3164\u180b\u17b4") and text_key("a\u3164b") == "ab"
    monkeypatch.setattr(module, "_BATCH", 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        records = module.SkippedRecords([BadRecord(i, "r") for i in range(10)], kept_in_memory=2)
        assert records._spool is not None and len(records) == 10
        records.close()
        assert len(records) == 2 and records.reasons() == {"r": 10} and records._spool is None
        another = module.SkippedRecords([BadRecord(i, "r") for i in range(10)], kept_in_memory=2)
        del another
        gc.collect()


def test_a_write_protected_output_or_errors_file_is_refused_not_replaced(tmp_path):
    """``chmod a-w`` keeps a result: the rename that swaps outputs in would replace it regardless."""
    log, kept, link = _log_and_a_linked_file(tmp_path, "link.jsonl", "a result\n", 0o444)
    for output, errors in ((kept, None), (link, None), (tmp_path / "out.jsonl", kept)):
        with pytest.raises(ValueError, match=r"is write-protected \(mode -r--r--r--\), so it is not replaced"):
            _score(log, output, errors_path=errors)
        assert kept.read_text(encoding="utf-8") == "a result\n" and kept.stat().st_mode & 0o777 == 0o444
    assert not (tmp_path / "out.jsonl").exists()
    kept.chmod(0o644)  # writable again: replaced, as before
    _score(log, kept)
    assert json.loads(kept.read_text(encoding="utf-8").splitlines()[0])["response"] == "ok"


def test_count_lines_gives_the_progress_bars_total_in_every_format(tmp_path):
    from refusal_predictor.records import count_lines

    jsonl = tmp_path / "log.jsonl"
    jsonl.write_bytes(b'{"response": "a"}\n\n{"response": "b"}')  # a blank line, no newline at the end
    assert count_lines(jsonl) == 3
    with gzip.open(tmp_path / "log.jsonl.gz", "wb") as handle:
        handle.write(b'{"response": "a"}\n' * 5)
    assert count_lines(tmp_path / "log.jsonl.gz") == 5
    csv_file = tmp_path / "log.csv"
    csv_file.write_text('response\n"two\nlines"\nb\n', encoding="utf-8")
    assert count_lines(csv_file) == 4
    assert count_lines(tmp_path / "empty.jsonl", "jsonl") is None  # missing: the reading pass says so
    (tmp_path / "empty.jsonl").write_bytes(b"")
    assert count_lines(tmp_path / "empty.jsonl") == 0
    bom = tmp_path / "bom.jsonl"
    bom.write_text('{"response": "a"}\n{"response": "b"}\n', encoding="utf-8-sig")
    assert count_lines(bom, encoding="utf-8-sig") == 2
    wide = tmp_path / "wide.jsonl"
    wide.write_text('{"response": "\u0a0a"}\n', encoding="utf-16")  # U+0A0A holds two 0x0A bytes
    assert count_lines(wide, encoding="utf-16") is None
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    pq.write_table(pa.table({"response": ["a", "b", "c"]}), tmp_path / "log.parquet")
    assert count_lines(tmp_path / "log.parquet") == 3


def test_the_scoring_progress_bar_counts_lines_to_the_files_total(tmp_path, capsys):
    from refusal_predictor.batch import score_file

    log = tmp_path / "log.jsonl"
    log.write_text('{"response": "sorry"}\n\n{"response": "ok"}\nnot json\n\n\n', encoding="utf-8")
    score_file(lambda texts: [0.5] * len(texts), log, tmp_path / "out.jsonl", text_field="response")
    last = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    assert "100%" in last and "6/6" in last and "lines" in last


def test_a_signal_just_after_a_model_folders_rename_leaves_the_new_folder_whole(tmp_path, monkeypatch):
    """The undo renamed the earlier folder onto the new one, which failed (not empty): the new
    model stood with the earlier one hidden beside it, and the error was not the signal."""
    from refusal_predictor.artifacts import staged_folder

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "a.txt").write_text("earlier", encoding="utf-8")
    real_rename = os.rename

    def rename_then_interrupt(src, dst):
        real_rename(src, dst)
        if Path(dst) == folder and ".saving-" in Path(src).name:
            raise KeyboardInterrupt  # as a signal handled just after rename(2) returns

    monkeypatch.setattr(os, "rename", rename_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        with staged_folder(folder) as staging:
            (staging / "a.txt").write_text("new", encoding="utf-8")
    assert (folder / "a.txt").read_text(encoding="utf-8") == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_staging_folder_gone_before_its_rename_leaves_the_earlier_folder(tmp_path, monkeypatch):
    import shutil

    from refusal_predictor.artifacts import staged_folder

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "a.txt").write_text("earlier", encoding="utf-8")
    real_rename = os.rename

    def staging_vanishes(src, dst):
        if Path(dst) == folder and ".saving-" in Path(src).name:
            shutil.rmtree(src)
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", staging_vanishes)
    with pytest.raises(FileNotFoundError):
        with staged_folder(folder) as staging:
            (staging / "a.txt").write_text("new", encoding="utf-8")
    assert (folder / "a.txt").read_text(encoding="utf-8") == "earlier"


@pytest.mark.parametrize("after", ["the earlier errors file moved aside", "the new errors file renamed"])
def test_an_exception_just_after_an_errors_file_rename_is_undone_from_the_disk(tmp_path, monkeypatch, after):
    """A host program's signal handler raising between a rename and the note of it: the earlier
    errors file was deleted, or the new one left beside the earlier output."""
    log = tmp_path / "log.jsonl"
    earlier_skipped = after.startswith("the earlier")  # else no errors file before: the new one must go
    log.write_text('{"response": "ok"}\n' + ('{"text": "no response"}\n' if earlier_skipped else ""), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    _score(log, out)
    earlier_output = out.read_bytes()
    earlier_errors = _errors(out) if earlier_skipped else None
    log.write_text('{"response": "sorry"}\n{"response": "fine"}\nnot json\n', encoding="utf-8")
    real_replace = os.replace
    errors = tmp_path / "out.jsonl.errors.jsonl"

    def replace_then_raise(src, dst, *a, **k):
        real_replace(src, dst, *a, **k)
        moved_aside = Path(src) == errors and str(dst).endswith(".earlier")
        if (moved_aside and after.startswith("the earlier")) or (Path(dst) == errors and after.startswith("the new")):
            raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", replace_then_raise)
    with pytest.raises(KeyboardInterrupt):
        _score(log, out)
    monkeypatch.undo()
    assert out.read_bytes() == earlier_output
    assert (_errors(out) if earlier_skipped else errors.exists()) == (earlier_errors if earlier_skipped else False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.jsonl", "out.jsonl"] + earlier_skipped * [errors.name]


def test_an_errors_file_removed_by_another_run_meanwhile_is_not_replaced_by_an_empty_placeholder(tmp_path, monkeypatch):
    from refusal_predictor.errors_file import StagedErrors
    from refusal_predictor.records import BadRecord

    target = tmp_path / "errors.jsonl"
    target.write_text('{"file": "a.jsonl", "line": 1, "reason": "r", "raw": "x"}\n', encoding="utf-8")
    real_replace = os.replace

    def removed_then_interrupted(src, dst, *a, **k):
        if Path(src) == target and str(dst).endswith(".earlier"):
            target.unlink()  # another run sharing the path took it
            raise KeyboardInterrupt  # and a host program's Ctrl-C came
        return real_replace(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", removed_then_interrupted)
    with pytest.raises(KeyboardInterrupt):
        StagedErrors(target, [BadRecord(3, "bad", "zz")], "new.jsonl").put_in_place()
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no empty file passed off as an errors file
