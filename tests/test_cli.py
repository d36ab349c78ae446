"""The command line: every input field kept, bad lines reported by number, nothing lost."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from refusal_predictor import ResponseClassifier
from refusal_predictor.cli import main
from training import data


@pytest.fixture(scope="module")
def ngram_model(tmp_path_factory):
    """A small n-gram response model (seconds to train) saved like a user's model."""
    train, _, _ = data.paper_split()
    folder = tmp_path_factory.mktemp("models") / "response"
    ResponseClassifier(use_embeddings=False, validation_curve=False).fit(
        train["response"].tolist(), train["label"].tolist()
    ).save(folder)
    return folder


def _jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_help_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "refusal_predictor.cli", "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("label-responses", "train-response", "evaluate", "bootstrap", "train-prompt", "score-prompts", "explain", "export-encoder"):
        assert command in out


def test_label_responses_keeps_fields_and_reports_bad_lines(ngram_model, tmp_path, capsys):
    log = tmp_path / "log.jsonl"
    log.write_bytes(
        b'{"id": 1, "response": "As an AI language model, I cannot do that.", "meta": {"k": [1]}}\n'
        b'{"id": 2, "response": "broken\n'
        b'{"id": 3, "text": "no response field"}\n'
        b'{"id": 4, "response": ""}\n'
        b'{"id": 5, "response": "caf\xe9"}\n'
        b'{"id": 6, "response": null}\n'
        b'{"id": 7, "response": "Sure! Here are five ideas for a birthday party."}\n'
    )
    out = tmp_path / "out.jsonl"
    assert main(["label-responses", str(log), "-o", str(out), "--model", str(ngram_model), "--no-progress"]) == 0
    rows = _jsonl(out)
    assert [r["id"] for r in rows] == [1, 4, 7]
    assert rows[0]["meta"] == {"k": [1]} and rows[0]["label"] == "refusal"
    assert rows[2]["label"] == "compliance"
    assert all(0 <= r["refusal_probability"] <= 1 for r in rows)
    errors = _jsonl(tmp_path / "out.jsonl.errors.jsonl")
    assert [e["line"] for e in errors] == [2, 3, 5, 6]
    assert "missing field 'response'" in errors[1]["reason"]
    summary = capsys.readouterr().out
    assert "read 7 records, scored 3" in summary and "skipped 4" in summary


def test_csv_in_csv_out_and_field_collision(ngram_model, tmp_path, capsys):
    log = tmp_path / "log.csv"
    log.write_text('response,label\n"I cannot help with that.",gold\n', encoding="utf-8")
    out = tmp_path / "out.csv"
    assert main(["label-responses", str(log), "-o", str(out), "--model", str(ngram_model), "--no-progress"]) == 2
    assert "already has a field 'label'" in capsys.readouterr().err
    assert not out.exists()
    assert main(["label-responses", str(log), "-o", str(out), "--model", str(ngram_model), "--no-progress",
                 "--label-field", "predicted"]) == 0
    text = out.read_text(encoding="utf-8")
    assert text.splitlines()[0] == "response,label,refusal_probability,predicted"
    assert ",gold," in text


def test_missing_input_and_model_are_clear_errors(ngram_model, tmp_path, capsys):
    assert main(["label-responses", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "o.jsonl"), "--model", str(ngram_model)]) == 2
    assert "nope.jsonl" in capsys.readouterr().err
    log = tmp_path / "log.jsonl"
    log.write_text('{"response": "x"}\n')
    assert main(["label-responses", str(log), "-o", str(tmp_path / "o.jsonl"), "--model", str(tmp_path / "nomodel")]) == 2
    assert "nomodel" in capsys.readouterr().err


def test_train_response_and_evaluate(tmp_path, capsys):
    train, _, test = data.paper_split()
    labelled = tmp_path / "train.jsonl"
    labelled.write_text("".join(json.dumps({"response": r, "label": l}) + "\n" for r, l in zip(train["response"], train["label"]))
                        + '{"response": "x", "label": "perhaps"}\n', encoding="utf-8")
    model_dir = tmp_path / "model"
    assert main(["train-response", str(labelled), "-o", str(model_dir), "--no-embeddings"]) == 0
    out = capsys.readouterr()
    assert f"line {len(train) + 1}" not in out.out and f"train.jsonl:{len(train) + 1}" in out.err
    held = tmp_path / "test.csv"
    test[["response", "label"]].to_csv(held, index=False)
    assert main(["evaluate", str(held), "--model", str(model_dir), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["n"] == 256 and metrics["accuracy"] > 0.86


def test_json_array_input_and_varying_fields_to_every_format(ngram_model, tmp_path, capsys):
    # A ".json" export (one JSON array) used to be read line by line: every line skipped, exit 0.
    records = [{"id": i, "response": "As an AI language model, I cannot do that." if i % 2 else "Sure, here is the answer."} for i in range(700)]
    records[650]["late_field"] = "kept"  # first seen after the first 512-record chunk
    records[10]["id"] = "ten"  # an int column with one string in it
    log = tmp_path / "log.json"
    log.write_text(json.dumps(records, indent=2), encoding="utf-8")
    for suffix in (".jsonl", ".csv", ".parquet"):
        out = tmp_path / f"out{suffix}"
        assert main(["label-responses", str(log), "-o", str(out), "--model", str(ngram_model), "--no-progress"]) == 0
        assert "scored 700" in capsys.readouterr().out
        from refusal_predictor.records import read_all

        good, bad = read_all(out)
        rows = [r for _, r in good]
        assert not bad and len(rows) == 700 and rows[650]["late_field"] == "kept", suffix
        assert str(rows[10]["id"]) == "ten" and str(rows[11]["id"]) == "11"
        assert {r["label"] for r in rows} == {"refusal", "compliance"}


def test_nothing_scored_is_a_failure_exit(ngram_model, tmp_path, capsys):
    log = tmp_path / "log.jsonl"
    log.write_text('{"text": "I cannot."}\n{"text": "Sure."}\n', encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert main(["label-responses", str(log), "-o", str(out), "--model", str(ngram_model), "--no-progress"]) == 1
    assert "none of the 2 records" in capsys.readouterr().err
    assert main(["label-responses", str(log), "-o", str(out), "--model", str(ngram_model), "--no-progress",
                 "--text-field", "text"]) == 0
