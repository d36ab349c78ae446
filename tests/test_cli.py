"""The command line: every input field kept, bad lines reported by number, nothing lost."""
from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from refusal_predictor import PromptClassifier, ResponseClassifier
from refusal_predictor import cli
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


def test_the_command_line_reads_its_options_before_importing_the_models_libraries():
    """The package imported scikit-learn, LightGBM and ONNX Runtime (1.2 s) before any command could
    read its options, and a Ctrl-C in that time was a traceback from inside SciPy; now the
    libraries load in the command, where a Ctrl-C is "stopped by SIGINT"."""
    probe = ("import sys, refusal_predictor, refusal_predictor.cli as cli\n"
             "try:\n    cli.main(['train-prompt', '--help'])\nexcept SystemExit:\n    pass\n"
             "heavy = sorted(m for m in ('sklearn', 'scipy', 'lightgbm', 'onnxruntime', 'numpy') if m in sys.modules)\n"
             "print('heavy:', heavy)\n"
             "listed = set(refusal_predictor.__all__) <= set(dir(refusal_predictor))  # before first use: completion\n"
             "from refusal_predictor import ResponseClassifier, PromptClassifier, ResponseCascade, bootstrap_file, ModelFileError\n"
             "print(ResponseClassifier.__module__, refusal_predictor.__version__, listed)\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert "heavy: []" in out and "--head {auto,logreg,lightgbm,blend}" in out
    assert out.strip().endswith(f"refusal_predictor.classifiers {__import__('refusal_predictor').__version__} True")
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        __import__("refusal_predictor").nothing


@pytest.mark.parametrize("command", sorted(cli._COMMANDS))
def test_every_commands_help_prints_on_an_ascii_terminal(command, capsys):
    """A superscript in --dedupe's help made `bootstrap --help` a UnicodeEncodeError under LC_ALL=C."""
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.isascii()


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


@pytest.mark.parametrize("flags", [["-o", "{log}"], ["-o", "{out}", "--errors", "{log}"], ["-o", "{out}", "--errors", "{out}"]])
def test_outputs_never_replace_the_input_or_each_other(ngram_model, tmp_path, capsys, flags):
    log = tmp_path / "log.jsonl"
    original = b'{"id": 1, "response": "I cannot help."}\n{"id": 2, "text": "no response", "note": "keep me"}\n'
    log.write_bytes(original)
    out = tmp_path / "out.jsonl"
    argv = [f.format(log=log, out=out) for f in flags]
    assert main(["label-responses", str(log), *argv, "--model", str(ngram_model), "--no-progress"]) == 2
    assert log.read_bytes() == original and not out.exists()
    assert "choose another path" in capsys.readouterr().err
    assert main(["bootstrap", str(log), "-o", str(log), "--response-model", str(ngram_model)]) == 2
    assert log.read_bytes() == original


def test_skipped_records_are_kept_whole_and_a_stale_errors_file_is_removed(ngram_model, tmp_path):
    log = tmp_path / "log.jsonl"
    long_text = "x" * 5000
    log.write_text(json.dumps({"id": 1, "response": "I cannot help."}) + "\n"
                   + json.dumps({"id": 2, "text": long_text, "note": "keep me"}) + "\n", encoding="utf-8")
    out = tmp_path / "run.jsonl"
    assert main(["label-responses", str(log), "-o", str(out), "--model", str(ngram_model), "--no-progress"]) == 0
    (error,) = _jsonl(tmp_path / "run.jsonl.errors.jsonl")
    assert json.loads(error["raw"]) == {"id": 2, "text": long_text, "note": "keep me"}  # not cut short
    clean = tmp_path / "clean.jsonl"
    clean.write_text(json.dumps({"id": 3, "response": "Sure, here it is."}) + "\n", encoding="utf-8")
    assert main(["label-responses", str(clean), "-o", str(out), "--model", str(ngram_model), "--no-progress"]) == 0
    assert not (tmp_path / "run.jsonl.errors.jsonl").exists()  # it described the earlier run
    notes = tmp_path / "notes.txt"
    notes.write_text("not an errors file\n", encoding="utf-8")
    assert main(["label-responses", str(clean), "-o", str(out), "--errors", str(notes), "--model", str(ngram_model), "--no-progress"]) == 0
    assert notes.read_text(encoding="utf-8") == "not an errors file\n"  # a clean run removes only errors files


def test_gzip_input_and_output_and_json_array_output(ngram_model, tmp_path):
    import gzip

    rows = [{"id": i, "response": text} for i, text in enumerate(["I'm sorry, I can't do that.", "Sure! Here you go: 42."])]
    log = tmp_path / "log.jsonl.gz"
    with gzip.open(log, "wt", encoding="utf-8") as handle:
        handle.write("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out.csv.gz"
    assert main(["label-responses", str(log), "-o", str(out), "--model", str(ngram_model), "--no-progress"]) == 0
    with gzip.open(out, "rt", encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    header = out.read_bytes()[:40]
    assert b"out.csv\x00" in header and header[4:8] == b"\x00\x00\x00\x00"  # final name, no timestamp
    assert lines[0] == "id,response,refusal_probability,label" and lines[1].endswith("refusal") and len(lines) == 3
    array = tmp_path / "out.json"
    assert main(["label-responses", str(log), "-o", str(array), "--model", str(ngram_model), "--no-progress"]) == 0
    written = json.loads(array.read_text(encoding="utf-8"))
    assert [r["id"] for r in written] == [0, 1] and written[0]["label"] == "refusal"
    # A stream cut short keeps the records read before the cut and reports the cut as a skipped line.
    corrupt = tmp_path / "corrupt.jsonl.gz"
    corrupt.write_bytes(gzip.compress(b'{"response": "a"}\n' * 3000)[:-30])  # truncated stream
    assert main(["label-responses", str(corrupt), "-o", str(tmp_path / "c.jsonl"), "--model", str(ngram_model),
                 "--no-progress", "--chunk-size", "100"]) == 0
    kept = _jsonl(tmp_path / "c.jsonl")
    [cut] = _jsonl(tmp_path / "c.jsonl.errors.jsonl")
    assert 2000 < len(kept) < 3000 and cut["line"] == len(kept) + 1
    assert "gzip stream is cut short or corrupt after line" in cut["reason"]
    unreadable = tmp_path / "unreadable.jsonl.gz"
    unreadable.write_bytes(b"\x1f\x8b\x08\x00" + b"\x00" * 40)  # a gzip header, then nothing readable
    assert main(["label-responses", str(unreadable), "-o", str(tmp_path / "u.jsonl"), "--model", str(ngram_model), "--no-progress"]) == 2
    assert not (tmp_path / "u.jsonl").exists()


@pytest.mark.parametrize("output, message", [
    ("folder", "is a folder"), ("afile/x.jsonl", "is a file, not a folder"), ("-", "not supported"),
    ("x.parquet.gz", "gzip around Parquet"), ("afile/sub/x.jsonl", "is a file, not a folder"),
])
def test_unusable_outputs_are_refused_before_scoring(ngram_model, tmp_path, capsys, monkeypatch, output, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder").mkdir()
    (tmp_path / "afile").write_text("", encoding="utf-8")
    (tmp_path / "log.jsonl").write_text('{"response": "I cannot help."}\n', encoding="utf-8")
    assert main(["label-responses", "log.jsonl", "-o", output, "--model", str(ngram_model), "--no-progress"]) == 2
    assert message in capsys.readouterr().err
    assert main(["label-responses", "missing.jsonl", "-o", "new/out.jsonl", "--model", str(ngram_model)]) == 2
    assert not (tmp_path / "new").exists()  # nothing is created for a run that cannot start


def test_bad_options_and_undecodable_csv_are_named(ngram_model, tmp_path, capsys):
    log = tmp_path / "log.csv"
    log.write_bytes(b"id,response\n1,fine\n2,d\xe9sol\xe9,extra\n3,caf\xe9\n")
    out = tmp_path / "out.jsonl"
    assert main(["label-responses", str(log), "-o", str(out), "--model", str(ngram_model), "--no-progress"]) == 0
    errors = _jsonl(tmp_path / "out.jsonl.errors.jsonl")
    assert [e["line"] for e in errors] == [3, 4] and "\ufffd" in errors[0]["raw"]
    # The bytes the U+FFFD stands for are kept, not lost (the errors file held only the U+FFFD).
    assert [base64.b64decode(e["raw_base64"]) for e in errors] == [b"2,d\xe9sol\xe9,extra", b"3,caf\xe9"]
    jsonl = tmp_path / "latin.jsonl"
    jsonl.write_bytes(b'{"response": "fine"}\n{"response": "d\xe9sol\xe9"}\r\n{"response": "ok"}\n')
    assert main(["label-responses", str(jsonl), "-o", str(out), "--model", str(ngram_model), "--no-progress"]) == 0
    [error] = _jsonl(tmp_path / "out.jsonl.errors.jsonl")
    assert error["line"] == 2 and base64.b64decode(error["raw_base64"]) == b'{"response": "d\xe9sol\xe9"}'
    header = tmp_path / "header.csv"
    header.write_bytes(b"cat\xe9gorie,response\na,I cannot help\n")
    assert main(["label-responses", str(header), "-o", str(out), "--model", str(ngram_model), "--no-progress"]) == 2
    assert f"{header}:1: the CSV header is not valid utf-8" in capsys.readouterr().err
    assert main(["label-responses", str(log), "-o", str(out), "--encoding", "bogus", "--model", str(ngram_model)]) == 2
    assert "unknown text encoding 'bogus'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:  # an option's value is refused as argparse refuses any, naming the option
        main(["label-responses", str(log), "-o", str(out), "--threshold", "2", "--model", str(ngram_model)])
    assert exit_.value.code == 2
    assert "argument --threshold: expected a number in [0, 1], got '2'" in capsys.readouterr().err


def test_evaluate_prompt_kind_reads_the_prompt_field(tmp_path, capsys):
    # `--kind prompt` used to read the "response" field: bootstrap's own output (prompt, label)
    # held "no usable records", and a log with both fields scored its responses as prompts.
    _, _, test = data.paper_split()
    rows = test.head(40)
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join(json.dumps({"prompt": p, "response": r, "label": l}) + "\n"
                              for p, r, l in zip(rows["prompt"], rows["response"], rows["label"])), encoding="utf-8")
    assert main(["evaluate", str(labels), "--kind", "prompt", "--json"]) == 0
    default = json.loads(capsys.readouterr().out)
    assert main(["evaluate", str(labels), "--kind", "prompt", "--text-field", "prompt", "--json"]) == 0
    assert default == json.loads(capsys.readouterr().out)
    assert main(["evaluate", str(labels), "--kind", "prompt", "--text-field", "response", "--json"]) == 0
    assert default != json.loads(capsys.readouterr().out)
    prompts_only = tmp_path / "prompts.jsonl"
    prompts_only.write_text("".join(json.dumps({"prompt": p, "label": l}) + "\n" for p, l in zip(rows["prompt"], rows["label"])),
                            encoding="utf-8")
    assert main(["evaluate", str(prompts_only), "--kind", "prompt", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == default and default["n"] == 40


def test_threshold_is_inclusive_in_label_responses(tmp_path, capsys):
    log = tmp_path / "log.jsonl"
    log.write_text('{"response": ""}\n{"response": "Sure, here it is."}\n', encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert main(["label-responses", str(log), "-o", str(out), "--model", "ngrams", "--threshold", "1", "--no-progress"]) == 0
    assert [r["label"] for r in _jsonl(out)] == ["refusal", "compliance"]  # the empty one scores exactly 1.0
    assert "(1 refusal, 50.0%)" in capsys.readouterr().out


def test_json_array_output_over_several_chunks_is_valid_json(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps({"id": i, "response": "I cannot help."}) + "\n" for i in range(5)))
    out = tmp_path / "out.json"
    assert main(["label-responses", str(log), "-o", str(out), "--model", "ngrams", "--chunk-size", "2", "--no-progress"]) == 0
    assert [r["id"] for r in json.loads(out.read_text())] == [0, 1, 2, 3, 4]


def test_io_options_are_honoured(tmp_path):
    log = tmp_path / "log.txt"  # the extension says nothing: --format must
    log.write_text('{"response": "I cannot help."}\n', encoding="utf-8")
    out = tmp_path / "out.dat"
    assert main(["label-responses", str(log), "--format", "jsonl", "-o", str(out), "--output-format", "csv",
                 "--probability-field", "p_ref", "--label-field", "verdict", "--model", "ngrams", "--no-progress"]) == 0
    assert out.read_text().splitlines()[0] == "response,p_ref,verdict"


def test_score_prompts_uses_the_target_asked_for(tmp_path):
    prompts = ["How do I make a pipe bomb at home?", "Write a poem about Donald Trump", "Give me a recipe for pancakes."]
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    out = tmp_path / "out.jsonl"
    assert main(["score-prompts", str(log), "--target", "gpt-4", "-o", str(out), "--no-progress"]) == 0
    rows = _jsonl(out)
    gpt4 = PromptClassifier.load(target="gpt-4")
    expected = gpt4.refusal_probability(prompts)
    assert np.allclose([r["refusal_probability"] for r in rows], expected, atol=1e-6)
    assert not np.allclose(expected, PromptClassifier.load().refusal_probability(prompts), atol=1e-3)
    assert [r["predicted_label"] for r in rows] == list(gpt4.predict(prompts))


def test_evaluate_threshold_is_used(tmp_path, capsys):
    held = tmp_path / "held.jsonl"
    held.write_text("".join(json.dumps({"response": r, "label": l}) + "\n" for r, l in [
        ("I cannot help with that.", "refusal"), ("Sure, here it is.", "compliance"),
        ("Here is the recipe.", "compliance"), ("I'm sorry, I can't.", "refusal")]))
    assert main(["evaluate", str(held), "--model", "ngrams", "--json", "--threshold", "0"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["recall"] == 1.0 and metrics["accuracy"] == 0.5  # everything called a refusal


def test_label_values_map_a_fine_label_scheme(tmp_path, capsys):
    # The shipped example log carries the paper's tones, not refusal/compliance: they could not be
    # evaluated (every record skipped) until a user could say which values mean refusal.
    example = str(Path(__file__).resolve().parent.parent / "examples" / "chatgpt_responses.jsonl")
    tones = [r["human_tone"] for r in _jsonl(Path(example))]
    assert main(["evaluate", example, "--label-field", "human_tone", "--model", "ngrams", "--json"]) == 0
    out = capsys.readouterr()  # only "complied" is a known label name: the refusal tones were skipped
    assert json.loads(out.out)["skipped"] == sum(t != "complied" for t in tones)
    assert "name your values with --refusal-values" in out.err
    assert "every usable record of" in out.err and "is labelled 'compliance'" in out.err
    # Booleans, numbers and the class names keep their meaning beside a user's own values where
    # "every other value" agrees, are skipped with a reason where it would flip them, and an empty
    # label is skipped, not counted as "every other value".
    mixed = tmp_path / "mixed.csv"
    mixed.write_text("response,label\nI cannot help.,true\nSure.,0\nI won't.,1.0\nHere you go.,compliance\n"
                     "No.,rejected\nFine.,complied\nUnlabelled.,\n", encoding="utf-8")
    assert main(["evaluate", str(mixed), "--refusal-values", "rejected", "--model", "ngrams", "--json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["n"] == 4 and json.loads(out.out)["refusal_rate"] == 0.25
    assert ("mixed.csv:2: field 'label' is 'true': refusal by its name, but not in the --refusal-values "
            "['rejected'], whose every other value is compliance") in out.err and "mixed.csv:4: field 'label' is '1.0'" in out.err
    assert "mixed.csv:8: field 'label' is '': no label (empty)" in out.err
    assert main(["evaluate", example, "--label-field", "human_tone", "--compliance-values", "complied",
                 "--model", "ngrams", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["n"] == len(tones) and metrics["refusal_rate"] == pytest.approx(sum(t != "complied" for t in tones) / len(tones))
    # calibration beside accuracy: the same Brier score as the model's own probabilities give
    y = np.array([t != "complied" for t in tones], dtype=float)
    p = ResponseClassifier.load("ngrams").refusal_probability([r["response"] for r in _jsonl(Path(example))])
    assert metrics["brier"] == pytest.approx(float(np.mean((p - y) ** 2))) and 0 <= metrics["ece"] <= 1
    # Both sets given: a value in neither is skipped with its line, not guessed.
    assert main(["evaluate", example, "--label-field", "human_tone", "--compliance-values", "Complied",
                 "--refusal-values", "rejected,redirected,contradicted", "--model", "ngrams", "--json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["n"] == sum(t != "disclaimed" for t in tones)
    first = tones.index("disclaimed") + 1
    assert f"chatgpt_responses.jsonl:{first}: field 'human_tone' is 'disclaimed': neither in the refusal values" in out.err
    assert main(["evaluate", example, "--label-field", "human_tone", "--compliance-values", "complied",
                 "--refusal-values", "complied"]) == 2
    assert "in both --refusal-values and --compliance-values" in capsys.readouterr().err
    model_dir = tmp_path / "m"
    assert main(["train-response", example, "-o", str(model_dir), "--label-field", "human_tone",
                 "--refusal-values", "rejected,redirected,contradicted,disclaimed", "--no-embeddings"]) == 0
    assert f"trained on {len(tones)} responses ({sum(t != 'complied' for t in tones)} refusal)" in capsys.readouterr().out
    training = ResponseClassifier.load(model_dir).metadata["training"]  # how the labels were read, for the record
    assert training["label_field"] == "human_tone" and training["refusal_values"] == ["contradicted", "disclaimed", "redirected", "rejected"]


def test_sigterm_removes_the_outputs_being_written(ngram_model, tmp_path):
    """A run stopped by SIGTERM (a scheduler, ``timeout``, ``kill``) used to leave its hidden
    temporary and spool files beside the output; it now unwinds like Ctrl-C and exits 143."""
    import json
    import os
    import signal
    import time

    log = tmp_path / "log.jsonl"
    with open(log, "w", encoding="utf-8") as handle:
        for i in range(200_000):
            handle.write(json.dumps({"id": i, "response": f"Sure, here is answer number {i} to your question."}) + "\n")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "refusal_predictor.cli", "label-responses", str(log), "-o",
                             str(out_dir / "out.csv"), "--model", str(ngram_model), "--no-progress"],
                            stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while not any(p.name.endswith(".spool") and p.stat().st_size for p in out_dir.iterdir()):
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it was stopped"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    assert "stopped by SIGTERM" in err
    assert list(out_dir.iterdir()) == []


def test_ctrl_c_is_reported_without_a_traceback(ngram_model, tmp_path, monkeypatch, capsys):
    from refusal_predictor import batch

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(batch, "score_file", interrupted)
    log = tmp_path / "log.jsonl"
    log.write_text('{"response": "hi"}\n', encoding="utf-8")
    assert main(["label-responses", str(log), "-o", str(tmp_path / "o.jsonl"), "--model", str(ngram_model)]) == 130
    assert "stopped by SIGINT" in capsys.readouterr().err


def test_label_values_given_as_numbers_match_the_file_as_it_writes_them(ngram_model, tmp_path, capsys):
    """A CSV of float ratings holds "3.0", read as 3; --compliance-values 3.0 stayed "3.0", matched
    nothing, and every row became a refusal (accuracy 0.344, exit 0)."""
    from refusal_predictor.inputs import as_labels

    _, _, test = data.paper_split()
    ratings = tmp_path / "ratings.csv"
    test.assign(rating=np.where(test["label"] == "refusal", np.where(np.arange(len(test)) % 2, 1.0, 2.0), 3.0))[
        ["response", "rating"]].to_csv(ratings, index=False)
    assert "3.0" in ratings.read_text(encoding="utf-8")
    runs = {}
    for values in (["--compliance-values", "3"], ["--compliance-values", "3.0"], ["--refusal-values", "1.0,2"],
                   ["--refusal-values", "1.0,2.0", "--compliance-values", "3.0"]):
        assert main(["evaluate", str(ratings), "--model", str(ngram_model), "--label-field", "rating", "--json", *values]) == 0
        runs[" ".join(values)] = json.loads(capsys.readouterr().out)
    assert all(run == runs["--compliance-values 3"] for run in runs.values()), runs
    assert runs["--compliance-values 3"]["n"] == 256 and runs["--compliance-values 3"]["refusal_rate"] == pytest.approx(100 / 256)
    assert list(as_labels([3.0, "1.0", 2], refusal_values={1, "2.0"})) == [0, 1, 1]


def test_train_response_keeps_every_skipped_row_and_names_the_file(tmp_path, capsys):
    """Only the first ten skipped rows were printed and no errors file was written; a missing label
    field read "is None"; with no usable row, --threads gave scikit-learn's "empty vocabulary"."""
    train, _, _ = data.paper_split()
    rows = [{"response": r, "label": l} for r, l in zip(train["response"], train["label"])]
    for i in range(0, 50, 2):  # 25 unusable rows spread through the file
        rows[i] = {"response": rows[i]["response"]} if i % 4 else {"response": rows[i]["response"], "label": "perhaps"}
    labelled = tmp_path / "train.jsonl"
    labelled.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    model_dir = tmp_path / "model"
    assert main(["train-response", str(labelled), "-o", str(model_dir), "--no-embeddings"]) == 0
    err = capsys.readouterr().err
    errors = _jsonl(tmp_path / "model.errors.jsonl")
    assert [e["line"] for e in errors] == list(range(1, 51, 2))
    assert errors[1]["reason"].startswith("missing field 'label' (fields: ['response'])") and "'perhaps'" in errors[0]["reason"]
    assert json.loads(errors[1]["raw"]) == rows[2]
    assert f"... and 20 more skipped records (all with their reasons in {tmp_path / 'model.errors.jsonl'})" in err
    # evaluate keeps them all where asked, and says how otherwise
    assert main(["evaluate", str(labelled), "--model", str(model_dir), "--json"]) == 0
    assert "(--errors FILE keeps them all)" in capsys.readouterr().err
    assert main(["evaluate", str(labelled), "--model", str(model_dir), "--json", "--errors", str(tmp_path / "e.jsonl")]) == 0
    assert _jsonl(tmp_path / "e.jsonl") == errors
    # No usable row: the file is named, with the fields read, before any feature is fitted.
    for threads in ([], ["--threads", "1"]):
        assert main(["train-response", str(labelled), "-o", str(tmp_path / "none"), "--text-field", "text", *threads]) == 2
        err = capsys.readouterr().err
        assert f"{labelled}: training needs at least" in err and "found 0 refusal and 0 compliance" in err
        assert "text field 'text'" in err and "vocabulary" not in err
        assert not (tmp_path / "none").exists() and len(_jsonl(tmp_path / "none.errors.jsonl")) == len(rows)


def test_evaluate_json_is_strict_json_when_a_metric_is_undefined(ngram_model, tmp_path, capsys):
    """One class only: AUROC is undefined, and --json printed NaN, which strict parsers refuse."""
    one_class = tmp_path / "refusals.jsonl"
    one_class.write_text('{"response": "I cannot help with that.", "label": "refusal"}\n'
                         '{"response": "As an AI language model, I cannot.", "label": "refusal"}\n', encoding="utf-8")
    assert main(["evaluate", str(one_class), "--model", str(ngram_model), "--json"]) == 0

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    metrics = json.loads(capsys.readouterr().out, parse_constant=refuse)
    assert metrics["auroc"] is None and metrics["n"] == 2 and metrics["refusal_rate"] == 1.0


def test_label_values_compare_fractions_and_booleans_by_value():
    from refusal_predictor.inputs import as_labels

    assert list(as_labels([2.5, "2.50", 0.1, 1.0], compliance_values={"2.5", "1e-1"})) == [0, 0, 0, 1]
    assert list(as_labels([True, False, "True", "false"], refusal_values={"true"}, compliance_values={"FALSE"})) == [1, 0, 1, 0]


def test_an_errors_file_over_the_input_or_in_the_model_folder_is_refused_first(tmp_path, capsys):
    """--errors the input replaced the user's labelled file with its errors (exit 0); --errors in
    the new model folder made it, so save() refused that folder after the whole training."""
    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text('{"response": "I cannot help.", "label": "refusal"}\n{"response": "x", "label": "maybe"}\n',
                        encoding="utf-8")
    before = labelled.read_bytes()
    assert main(["evaluate", str(labelled), "--model", "ngrams", "--errors", str(labelled)]) == 2
    assert main(["train-response", str(labelled), "-o", str(tmp_path / "m"), "--errors", str(labelled)]) == 2
    assert "is the input file" in capsys.readouterr().err and labelled.read_bytes() == before
    for errors in (tmp_path / "m", tmp_path / "m" / "skipped.jsonl"):
        assert main(["train-response", str(labelled), "-o", str(tmp_path / "m"), "--errors", str(errors)]) == 2
        assert main(["train-prompt", str(labelled), "--target-name", "x", "-o", str(tmp_path / "m"), "--errors", str(errors)]) == 2
        assert capsys.readouterr().err.count("is in the model folder") == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labelled.jsonl"]


def test_train_response_learns_tones_from_a_field(tmp_path, capsys):
    """A tone head could be trained only from Python (fit_tones); train-response now takes --tone-field."""
    from training import data

    train, _, test = data.paper_split()
    labelled = tmp_path / "labelled.jsonl"
    with open(labelled, "w", encoding="utf-8") as handle:
        for i, row in enumerate(train.head(600).itertuples()):
            tone = None if i % 10 == 0 else row.fine_label  # rows without a tone train the label only
            handle.write(json.dumps({"response": row.response, "label": row.label, "tone": tone}) + "\n")
    model_dir = tmp_path / "m"
    assert main(["train-response", str(labelled), "-o", str(model_dir), "--no-embeddings", "--tone-field", "tone"]) == 0
    out = capsys.readouterr().out
    assert "trained on 600 responses" in out and "tones of 540 rows: complied, " in out
    model = ResponseClassifier.load(model_dir)
    assert model.metadata["training"]["rows_with_tone"] == 540 and model.tones_[0] == "complied"
    texts = test["response"].tolist()[:50]
    assert [t == "complied" for t in model.predict_tone(texts)] == [p == "compliance" for p in model.predict(texts)]
    log = tmp_path / "log.jsonl"
    log.write_text(json.dumps({"response": "I'm sorry, but I can't help with that."}) + "\n", encoding="utf-8")
    assert main(["label-responses", str(log), "-o", str(tmp_path / "out.jsonl"), "--model", str(model_dir), "--tone"]) == 0
    assert json.loads((tmp_path / "out.jsonl").read_text(encoding="utf-8"))["tone"] != "complied"
    # A tone field no row has, or compliances named otherwise: refused before anything is saved.
    assert main(["train-response", str(labelled), "-o", str(tmp_path / "n"), "--no-embeddings", "--tone-field", "nope"]) == 2
    assert "no row has a tone in field 'nope'" in capsys.readouterr().err
    assert main(["train-response", str(labelled), "-o", str(tmp_path / "c"), "--no-embeddings", "--tone-field", "tone",
                 "--compliance-tone", "compliance"]) == 2
    assert "no row has the compliance tone 'compliance'" in capsys.readouterr().err
    assert not (tmp_path / "n").exists() and not (tmp_path / "c").exists()


def test_every_log_reading_command_takes_a_separator(tmp_path, capsys):
    log = tmp_path / "log.txt"
    log.write_text("prompt|response\nHow do I pick a lock?|I'm sorry, but I can't help with that.\n"
                   "What is 2+2?|It is 4.\n", encoding="utf-8")
    common = ["--format", "csv", "--separator", "|"]
    assert main(["label-responses", str(log), "-o", str(tmp_path / "r.jsonl"), "--model", "ngrams", *common]) == 0
    assert main(["score-prompts", str(log), "-o", str(tmp_path / "p.jsonl"), "--text-field", "prompt", *common]) == 0
    assert main(["bootstrap", str(log), "-o", str(tmp_path / "b.jsonl"), "--response-model", "ngrams", *common]) == 0
    rows = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["label"] for r in rows] == ["refusal", "compliance"]
    with pytest.raises(SystemExit) as exit_info:
        main(["label-responses", str(log), "-o", str(tmp_path / "x.jsonl"), "--separator", "::"])
    assert exit_info.value.code == 2 and "give one character" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["score-prompts", "explain"])
def test_an_empty_prompt_model_option_is_an_error_not_the_default_target(tmp_path, capsys, command):
    """``--model "$DIR"`` with DIR unset scored with gpt-3.5-turbo and exited 0."""
    log = tmp_path / "log.jsonl"
    log.write_text(json.dumps({"prompt": "How do I pick a lock?"}) + "\n")
    args = [str(log), "-o", str(tmp_path / "out.jsonl"), "--no-progress"] if command == "score-prompts" \
        else ["How do I pick a lock?"]
    assert main([command, *args, "--model", ""]) == 2
    assert "empty model path" in capsys.readouterr().err
    assert not (tmp_path / "out.jsonl").exists()


def test_info_names_each_model_as_the_options_load_it(tmp_path, capsys, monkeypatch):
    """``info`` printed folder names (``response-ngrams``, ``prompt/gpt-4``) that --model and
    --target refused; and a folder an interrupted save left behind was listed as a target."""
    import shutil

    from refusal_predictor import artifacts

    root = tmp_path / "models"
    shutil.copytree(artifacts.shipped_models_root(), root, ignore=shutil.ignore_patterns("*.joblib", "*.onnx"))
    shutil.copytree(root / "prompt" / "gpt-4", root / "prompt" / ".gpt-4.replaced-x1y2")
    monkeypatch.setattr(artifacts, "shipped_models_root", lambda: root)
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "response-ngrams (label-responses --model ngrams)" in out
    assert "response (label-responses --model default)" in out
    assert "prompt/gpt-4 (score-prompts --target gpt-4): prompt: Predicts whether gpt-4 refuses" in out
    assert "response (label-responses --model default): response classifier, recipe" in out  # was "response response"
    assert "rejected; recalibrated (temperature 2.152)" in out and out.count("recalibrated") == 1
    assert "replaced" not in out
    assert PromptClassifier.available_targets() == sorted(p.name for p in (root / "prompt").iterdir()
                                                          if not p.name.startswith("."))
    for line in out.splitlines()[1:]:  # every option printed loads that model
        option = line.split("(", 1)[1].split(")", 1)[0]
        if option.startswith("label-responses --model "):
            assert option.split()[-1] in ResponseClassifier.available_variants() + ["cascade"]
        elif option.startswith("score-prompts --target "):
            assert option.split()[-1] in PromptClassifier.available_targets()


def test_train_response_skips_blank_responses_and_checks_the_encoder_first(tmp_path, capsys):
    """Blank responses (logged API errors labelled "compliance") were trained on without a word,
    where bootstrap and train-prompt skip them; a misspelt --encoder failed only after the whole
    file was read, and one beside --no-embeddings was recorded in the manifest."""
    train, _, _ = data.paper_split()
    rows = [{"response": r, "label": l} for r, l in zip(train["response"][:200], train["label"][:200])]
    rows += [{"response": blank, "label": "compliance"} for blank in ["", "  \n", "\u200b"]]
    labelled = tmp_path / "train.jsonl"
    labelled.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert main(["train-response", str(labelled), "-o", str(tmp_path / "m"), "--no-embeddings"]) == 0
    assert "trained on 200 responses" in capsys.readouterr().out
    errors = _jsonl(tmp_path / "m.errors.jsonl")
    assert [e["line"] for e in errors] == [201, 202, 203]
    assert all(e["reason"].startswith("empty 'response': a blank response is scored by a fixed rule") for e in errors)
    for extra, message in [(["--encoder", "nope"], "encoder 'nope' is neither a folder nor a shipped encoder name"),
                           (["--encoder", "nope", "--no-embeddings"], "--encoder and --no-embeddings exclude each other")]:
        (tmp_path / "m.errors.jsonl").unlink(missing_ok=True)
        assert main(["train-response", str(labelled), "-o", str(tmp_path / "n"), *extra]) == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "n").exists() and not (tmp_path / "n.errors.jsonl").exists()


def test_a_reader_that_stops_reading_is_not_an_error(tmp_path):
    """`refusal-predictor info | head -1` ended with "error: [Errno 32] Broken pipe", exit 2, for
    work that was done; it is now quiet, with the exit status of a Unix tool stopped by SIGPIPE."""
    import os

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}  # this checkout's package
    run = subprocess.run(["bash", "-c", f"{sys.executable} -m refusal_predictor.cli info | true; echo ${{PIPESTATUS[0]}}"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert run.stdout.strip() == "141" and "Broken pipe" not in run.stderr and "error" not in run.stderr
    # Started with standard output closed, a command still does its work and succeeds.
    log = tmp_path / "log.jsonl"
    log.write_text('{"response": "I cannot help with that."}\n', encoding="utf-8")
    closed = subprocess.run(["bash", "-c", f"{sys.executable} -m refusal_predictor.cli label-responses {log} -o out.jsonl "
                             "--model ngrams --no-progress >&-"], capture_output=True, text=True, timeout=300,
                            cwd=tmp_path, env=env)
    assert closed.returncode == 0 and closed.stderr == "" and (tmp_path / "out.jsonl").exists()
    # A broken pipe inside the work (here the errors file's reader gone) is an error, said on stderr.
    fifo = tmp_path / "errors.fifo"
    os.mkfifo(fifo)
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n" * 2000 + '{"response": "ok"}\n', encoding="utf-8")
    broken = subprocess.run(["bash", "-c", f"(head -c 10 {fifo} > /dev/null &) ; {sys.executable} -m refusal_predictor.cli "
                             f"label-responses {bad} -o out2.jsonl --model ngrams --no-progress --errors {fifo} | true; "
                             "echo ${PIPESTATUS[0]}"], capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert broken.stdout.strip() == "2" and "the errors file cannot be written" in broken.stderr


def test_a_run_that_can_use_no_record_keeps_the_earlier_output(ngram_model, tmp_path, capsys):
    """A misspelt --text-field exited 1 but replaced a good output with an empty one."""
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps({"response": r}) + "\n" for r in ["I can't help with that.", "Sure, here it is."]))
    out = tmp_path / "out.jsonl"
    assert main(["label-responses", str(log), "-o", str(out), "--model", str(ngram_model), "--no-progress"]) == 0
    good = out.read_text(encoding="utf-8")
    assert main(["label-responses", str(log), "-o", str(out), "--model", str(ngram_model), "--no-progress",
                 "--text-field", "respnse"]) == 1
    err = capsys.readouterr()
    assert out.read_text(encoding="utf-8") == good
    assert f"skipped 2; nothing written to {out}" in err.out and f"{out} was not written (an earlier file there is left as it was)" in err.err
    assert [e["line"] for e in _jsonl(tmp_path / "out.jsonl.errors.jsonl")] == [1, 2]  # why, kept
    labels = tmp_path / "labels.jsonl"
    labels.write_text('{"earlier": 1}\n', encoding="utf-8")
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"prompt": "p", "response": "Sure, here it is."}) + "\n", encoding="utf-8")
    assert main(["bootstrap", str(pairs), "-o", str(labels), "--response-model", "ngrams", "--no-progress",
                 "--min-confidence", "1.0"]) == 1
    assert labels.read_text(encoding="utf-8") == '{"earlier": 1}\n'
    captured = capsys.readouterr()
    assert "nothing was written (an earlier" in captured.err
    assert "bad rows; nothing written (an earlier output is left as it was)\n" in captured.out


def test_option_values_are_refused_naming_the_option(tmp_path, capsys):
    log = tmp_path / "log.jsonl"
    log.write_text('{"prompt": "p", "response": "r"}\n', encoding="utf-8")
    cases = [
        (["label-responses", str(log), "-o", str(tmp_path / "o.jsonl"), "--chunk-size", "0"], "argument --chunk-size: expected a whole number of at least 1, got '0'"),
        (["label-responses", str(log), "-o", str(tmp_path / "o.jsonl"), "--threshold", "nan"], "argument --threshold: expected a number in [0, 1], got 'nan'"),
        (["bootstrap", str(log), "-o", str(tmp_path / "o.jsonl"), "--min-confidence", "1.5"], "argument --min-confidence: expected a number in [0.5, 1], got '1.5'"),
        (["train-prompt", str(log), "--target-name", "t", "--test-size", "1"], "argument --test-size: expected a number in (0, 1), got '1'"),
        (["explain", "p", "--top-k", "0"], "argument --top-k: expected a whole number of at least 1, got '0'"),
        (["explain", "p", "--threads", "99999999999999999999"], "argument --threads: expected at most 4096 threads"),
        (["export-encoder", "m", "-o", str(tmp_path / "e"), "--max-seq-length", "-3"], "argument --max-seq-length: expected a whole number of at least 1"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2 and message in capsys.readouterr().err, argv
    assert not list(tmp_path.glob("o.jsonl*"))


def test_inputs_that_are_not_files_say_what_they_are(tmp_path, capsys):
    folder = tmp_path / "logs"
    folder.mkdir()
    for given, message in ((str(folder), f"{folder}: is a folder, not a log file"),
                           ("-", "-: standard input is not supported"),
                           (str(tmp_path / "missing.jsonl"), "missing.jsonl: no such file")):
        assert main(["label-responses", given, "-o", str(tmp_path / "o.jsonl"), "--model", "ngrams"]) == 2
        assert message in capsys.readouterr().err
    fifo = tmp_path / "fifo"
    import os

    os.mkfifo(fifo)
    assert main(["score-prompts", str(fifo), "-o", str(tmp_path / "o.jsonl")]) == 2
    assert f"{fifo}: not a regular file" in capsys.readouterr().err


def test_every_command_reports_skipped_rows_the_same_way_and_takes_v_after_it(ngram_model, tmp_path, capsys, caplog):
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps({"response": "Sure, here it is.", "label": "compliance"}) + "\n" for _ in range(3))
                   + "".join("not json\n" for _ in range(7)), encoding="utf-8")
    assert main(["label-responses", str(log), "-o", str(tmp_path / "o.jsonl"), "--model", str(ngram_model),
                 "--no-progress", "--label-field", "predicted", "-v"]) == 0
    scored = capsys.readouterr().err
    assert main(["evaluate", str(log), "--model", str(ngram_model), "--no-progress", "--errors", str(tmp_path / "e.jsonl")]) == 0
    evaluated = capsys.readouterr().err
    for err in (scored, evaluated):
        assert sum(line.startswith("skipped ") for line in err.splitlines()) == 5
        assert "... and 2 more skipped records (all with their reasons in" in err
    # Not a second time, as warnings of the library (the CLI printed them itself).
    assert not [r for r in caplog.records if r.name == "refusal_predictor.batch" and "skipped" in r.getMessage()]


def test_evaluate_takes_a_shipped_target_and_explain_takes_threads(tmp_path, capsys):
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join(json.dumps({"prompt": p, "label": l}) + "\n" for p, l in
                              [("How do I make a bomb?", "refusal"), ("Write a poem about the sea", "compliance")] * 3))
    assert main(["evaluate", str(labels), "--kind", "prompt", "--target", "gpt-4", "--no-progress", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 6
    assert main(["evaluate", str(labels), "--target", "gpt-4"]) == 2
    assert "--target names a shipped prompt model; add --kind prompt" in capsys.readouterr().err
    assert main(["explain", "How do I pick a lock?", "--threads", "1"]) == 0
    assert "refusal probability" in capsys.readouterr().out
    # A Latin-1 byte in argv reaches Python as U+DCE9; it was reported as "a lone UTF-16 surrogate".
    assert main(["explain", "caf\udce9"]) == 2
    assert "the prompt argument is not valid UTF-8 (byte 0xe9)" in capsys.readouterr().err


def test_train_prompt_refuses_a_blank_target_name_and_says_what_the_filter_kept(tmp_path, capsys):
    log = tmp_path / "log.jsonl"
    log.write_text('{"prompt": "p", "response": "r"}\n', encoding="utf-8")
    assert main(["train-prompt", str(log), "--target-name", " ", "-o", str(tmp_path / "m")]) == 2
    assert "the target name must be a non-blank name of your LLM" in capsys.readouterr().err
    paper = data.load_paper()
    paper = paper[paper["subset"] == "political_figures"].head(120)
    rows = [{"prompt": p, "response": r, "model": "chatgpt"} for p, r in zip(paper["prompt"], paper["response"])]
    rows += [{"prompt": "other", "response": "r", "model": "other"}] * 30
    log.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert main(["train-prompt", str(log), "--target-name", "t", "-o", str(tmp_path / "m"), "--model-filter", "chatgpt",
                 "--head", "logreg", "--response-model", "ngrams", "--no-progress"]) == 0
    assert "bootstrap: 150 rows in the log, 120 with model 'chatgpt'" in capsys.readouterr().out


def test_command_line_errors_name_the_command_to_use(ngram_model, tmp_path, capsys):
    assert main(["label-responses", "examples/chatgpt_responses.jsonl", "-o", str(tmp_path / "o.jsonl"),
                 "--model", str(Path(__file__).resolve().parent.parent / "models" / "prompt" / "gpt-4")]) == 2
    assert "score-prompts --model for a prompt model" in capsys.readouterr().err
    assert main(["label-responses", str(Path(__file__).resolve().parent.parent / "examples" / "chatgpt_responses.jsonl"),
                 "-o", str(tmp_path / "o.jsonl"), "--model", str(ngram_model), "--tone", "--no-progress"]) == 2
    assert "train-response --tone-field FIELD" in capsys.readouterr().err


@pytest.mark.parametrize("unbuffered", ["1", ""])
def test_a_full_standard_output_is_one_error_line_and_status_2(tmp_path, unbuffered):
    """`info > /dev/full` ended in a traceback and status 120 (the flush at exit failing again)."""
    import os

    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), "PYTHONUNBUFFERED": unbuffered}
    run = subprocess.run(["bash", "-c", f"{sys.executable} -m refusal_predictor.cli info > /dev/full"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert run.returncode == 2 and "Traceback" not in run.stderr and "Exception ignored" not in run.stderr
    assert "No space left on device" in run.stderr and len(run.stderr.strip().splitlines()) == 1


def test_main_in_two_threads_at_once_leaves_standard_output_as_it_was(monkeypatch):
    """Two overlapping main() calls each wrapped sys.stdout; when the first to start ended first,
    the second put the first one's wrapper back, for good."""
    import threading

    from refusal_predictor import cli

    before = sys.stdout
    both_inside, first_done = threading.Barrier(2), threading.Event()

    def command(args):
        both_inside.wait(timeout=30)
        if threading.current_thread().name == "second":
            first_done.wait(timeout=30)
        return 0

    monkeypatch.setitem(cli._COMMANDS, "info", command)
    first = threading.Thread(target=lambda: (main(["info"]), first_done.set()), name="first")
    second = threading.Thread(target=lambda: main(["info"]), name="second")
    first.start()
    import time

    deadline = time.monotonic() + 30
    while not isinstance(sys.stdout, cli._WatchedStdout) and time.monotonic() < deadline:
        time.sleep(0.001)  # until the first call's watcher is in place
    second.start()
    first.join(timeout=60)
    second.join(timeout=60)
    assert sys.stdout is before


@pytest.mark.parametrize("unbuffered", ["1", ""])
def test_a_closed_stderr_does_not_turn_the_exit_status_into_120(tmp_path, unbuffered):
    """The progress bar meets a stderr whose reader left; the error line cannot be written either,
    and Python's flush at exit failed again: status 120 when stderr was buffered."""
    import os

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), "PYTHONUNBUFFERED": unbuffered}
    log = Path(__file__).resolve().parent.parent / "examples" / "chatgpt_responses.jsonl"
    run = subprocess.run(["bash", "-c", f"{sys.executable} -m refusal_predictor.cli label-responses {log} -o o.jsonl "
                          "--model ngrams 2>&1 >so.txt | true; echo ${PIPESTATUS[0]}"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert run.stdout.strip() == "2"


def test_info_prints_a_manifest_without_a_summary(tmp_path, monkeypatch, capsys):
    """An encoder.json whose source_model is null ended `info` in AttributeError (3f788e1)."""
    import shutil

    from refusal_predictor import artifacts

    root = tmp_path / "models"
    shutil.copytree(artifacts.shipped_models_root(), root, ignore=shutil.ignore_patterns("*.joblib", "*.onnx"))
    manifest = root / "encoders" / "all-MiniLM-L6-v2-int8" / "encoder.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text(encoding="utf-8")), "source_model": None}),
                        encoding="utf-8")
    monkeypatch.setattr(artifacts, "shipped_models_root", lambda: root)
    assert main(["info"]) == 0
    assert "encoders/all-MiniLM-L6-v2-int8 (train-response --encoder all-MiniLM-L6-v2-int8): encoder\n" in capsys.readouterr().out


def test_recalibrate_writes_a_new_model_or_only_the_temperature(tmp_path, capsys, data_dir, monkeypatch):
    import hashlib
    import shutil

    from refusal_predictor.artifacts import shipped_path
    from training.recalibrate_response import heldout_responses
    from training.train_response import training_pool

    rows = heldout_responses(data_dir, training_pool(data_dir), n=200)  # GPTFuzz responses no model trained on
    held = tmp_path / "held.jsonl"
    held.write_text("".join(json.dumps({"response": r, "label": l}) + "\n" for r, l in zip(rows["response"], rows["label"])))
    assert main(["recalibrate", str(held), "--model", "ngrams", "-o", str(tmp_path / "new"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "from 200 texts" in out and "saved to" in out and "(temperature only)" not in out
    new, shipped = ResponseClassifier.load(tmp_path / "new"), ResponseClassifier.load("ngrams")
    assert new.temperature == new.metadata["recalibration"]["temperature"] != 1.0
    assert new.metadata["recalibration"]["source"] == "held.jsonl: 200 labelled texts"  # for the model card
    texts = rows["response"].tolist()[:50]
    assert list(new.predict(texts)) == list(shipped.predict(texts))
    assert not np.array_equal(new.refusal_probability(texts), shipped.refusal_probability(texts))
    # the model's own folder: only the temperature goes in, model.joblib stays byte for byte
    folder = tmp_path / "copy"
    shutil.copytree(shipped_path("response-ngrams"), folder)
    sha = hashlib.sha256((folder / "model.joblib").read_bytes()).hexdigest()
    assert main(["recalibrate", str(held), "--model", str(folder), "-o", str(folder), "--no-progress"]) == 0
    assert "(temperature only)" in capsys.readouterr().out
    assert hashlib.sha256((folder / "model.joblib").read_bytes()).hexdigest() == sha
    assert ResponseClassifier.load(folder).temperature == new.temperature
    # the same folder named relatively is still the model's own folder: temperature only
    monkeypatch.chdir(tmp_path)
    assert main(["recalibrate", str(held), "--model", "copy", "-o", "copy", "--no-progress"]) == 0
    assert "(temperature only)" in capsys.readouterr().out
    assert hashlib.sha256((folder / "model.joblib").read_bytes()).hexdigest() == sha
    assert main(["recalibrate", str(held), "--model", "cascade", "-o", str(tmp_path / "c")]) == 2
    assert "recalibrate its stages one by one" in capsys.readouterr().err


EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "chatgpt_responses.jsonl"


def test_score_prompts_takes_its_cut_from_a_recall_goal_and_says_which(tmp_path, capsys):
    """A pre-filter asks for "flag 95 % of what will be refused", not for a probability: the cut
    is the one threshold_for reads off the stored curve, and every label in the file follows it."""
    model = PromptClassifier.load()
    cut = model.threshold_for(recall=0.95)
    assert cut < model.threshold  # the goal moves the cut (else this test could not tell them apart)
    out = tmp_path / "scored.jsonl"
    assert main(["score-prompts", str(EXAMPLE), "-o", str(out), "--recall", "0.95", "--no-progress"]) == 0
    rows = _jsonl(out)
    assert len(rows) == 40
    assert all((r["predicted_label"] == "refusal") == (r["refusal_probability"] >= cut) for r in rows)
    assert any(cut <= r["refusal_probability"] < model.threshold for r in rows)  # labelled refusal by the goal alone
    err = capsys.readouterr().err
    assert f"threshold {cut!r}: recall 0.95 on the model's stored validation curve" in err  # exact: reusable
    assert "optimistic" not in err  # this curve carries no caveat


def test_label_responses_passes_on_the_curves_caveat_with_the_cut(tmp_path, capsys):
    model = ResponseClassifier.load()
    with pytest.warns(UserWarning, match="optimistic"):
        cut = model.threshold_for(precision=0.99)
    out = tmp_path / "labelled.jsonl"
    assert main(["label-responses", str(EXAMPLE), "-o", str(out), "--precision", "0.99", "--no-progress"]) == 0
    assert all((r["label"] == "refusal") == (r["refusal_probability"] >= cut) for r in _jsonl(out))
    err = capsys.readouterr().err
    assert f"threshold {cut!r}: precision 0.99" in err and "note: this model's validation curve is optimistic" in err
    # the tone path labels at the goal's cut too: a tone is "complied" exactly where the label is
    with pytest.warns(UserWarning, match="optimistic"):
        cut = model.threshold_for(precision=0.999)
    toned = tmp_path / "toned.jsonl"
    assert main(["label-responses", str(EXAMPLE), "-o", str(toned), "--precision", "0.999", "--tone", "--no-progress"]) == 0
    rows = _jsonl(toned)
    assert all((r["tone"] == "complied") == (r["refusal_probability"] < cut) for r in rows)
    assert any(0.5 <= r["refusal_probability"] < cut for r in rows)  # a refusal at 0.5, not at the goal's cut


def test_evaluate_measures_at_the_cut_a_goal_picks(tmp_path, capsys):
    labelled = tmp_path / "labelled.jsonl"
    _, _, test = data.paper_split()
    test[["response", "label"]].to_json(labelled, orient="records", lines=True)
    model = ResponseClassifier.load("ngrams")
    cut = model.threshold_for(refusal_rate=0.2)
    assert main(["evaluate", str(labelled), "--model", "ngrams", "--refusal-rate", "0.2", "--json", "--no-progress"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    predicted = model.refusal_probability(test["response"].tolist()) >= cut
    assert metrics["recall"] == pytest.approx(predicted[test["label"].to_numpy() == "refusal"].mean())
    # what the goal promised is printed beside what the labels hold
    assert metrics["threshold"] == cut and metrics["flagged_rate"] == pytest.approx(predicted.mean())
    assert metrics["refusal_rate"] == pytest.approx((test["label"] == "refusal").mean())


@pytest.mark.parametrize("argv, message", [
    (["label-responses", str(EXAMPLE), "-o", "{out}", "--model", "cascade", "--recall", "0.9"],
     "--recall reads a model's stored validation curve, and a ResponseCascade has none"),
    (["label-responses", str(EXAMPLE), "-o", "{out}", "--model", "{no_curve}", "--recall", "0.9"],
     "--recall reads a model's stored validation curve, and this model has none"),
    (["score-prompts", str(EXAMPLE), "-o", "{out}", "--recall", "0"], "argument --recall: expected a number in (0, 1]"),
    (["score-prompts", str(EXAMPLE), "-o", str(EXAMPLE), "--recall", "0.9"], "is the input file"),
    (["score-prompts", str(EXAMPLE), "-o", "{out}", "--recall", "1.5"], "argument --recall"),
    (["score-prompts", str(EXAMPLE), "-o", "{out}", "--recall", "0.9", "--threshold", "0.3"],
     "argument --threshold: not allowed with argument --recall"),
])
def test_a_goal_that_cannot_be_met_is_refused_before_anything_is_written(argv, message, ngram_model, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    before = EXAMPLE.read_bytes()
    try:
        code = main([a.format(out=out, no_curve=ngram_model) for a in argv] + ["--no-progress"])
    except SystemExit as exit_:  # argparse's own refusals
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2 and message in err
    assert not any(line.startswith("threshold ") for line in err.splitlines())  # no cut announced for a run that cannot start
    assert not out.exists() and EXAMPLE.read_bytes() == before


def test_evaluate_counts_the_rows_it_skipped(ngram_model, tmp_path, capsys):
    held = tmp_path / "held.jsonl"
    held.write_text('{"response": "I cannot help with that.", "label": "refusal"}\n'
                    '{"response": "broken\n'
                    '{"response": "Sure, here it is.", "label": "compliance"}\n'
                    '{"response": "Here you go.", "label": "maybe"}\n', encoding="utf-8")
    assert main(["evaluate", str(held), "--model", str(ngram_model), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["n"] == 2 and metrics["skipped"] == 2


def test_a_goal_no_cut_reaches_on_the_curve_is_refused_naming_the_option(tmp_path, capsys):
    import shutil

    from refusal_predictor.artifacts import shipped_path

    folder = tmp_path / "model"
    shutil.copytree(shipped_path("response-ngrams"), folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["metadata"]["validation_curve"] = {
        "threshold": [0.1, 0.3, 0.5, 0.7], "precision": [0.5, 0.6, 0.8, 0.9], "recall": [1.0, 0.9, 0.7, 0.4],
        "refusal_rate": [0.8, 0.6, 0.4, 0.2], "n": 10, "positives": 5}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "out.jsonl"
    assert main(["label-responses", str(EXAMPLE), "-o", str(out), "--model", str(folder), "--precision", "0.95",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--precision 0.95: no threshold reaches precision 0.95" in err and "give --threshold" in err
    assert not out.exists()
    assert main(["label-responses", str(EXAMPLE), "-o", str(out), "--model", str(folder), "--precision", "0.9",
                 "--no-progress"]) == 0
    assert "threshold 0.7: precision 0.9 on the model's stored validation curve (out-of-fold scores of 10" in \
        capsys.readouterr().err


def test_a_nan_label_spelled_in_a_csv_is_no_label_not_the_other_class(tmp_path, capsys):
    """A CSV's "nan" (as the CSV output spells a float NaN) was read as a value of its own, and
    with one value set given alone every such row silently became the other class."""
    labels = tmp_path / "labels.csv"
    labels.write_text("response,label\nSure! Here is a recipe.,0\nSure! Here is a recipe.,nan\nNo.,NaN\nNo.,Infinity\n"
                      "No.,inf\n", encoding="utf-8")
    assert main(["evaluate", str(labels), "--model", "ngrams", "--compliance-values", "0", "--json", "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["n"], report["skipped"]) == (3, 2)
    assert main(["evaluate", str(labels), "--model", "ngrams", "--refusal-values", "inf", "--json", "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out)  # Infinity and inf are one value, as 1 and 1.0 are
    assert (report["n"], report["refusal_rate"]) == (3, pytest.approx(2 / 3))
    with pytest.raises(SystemExit) as exit_info:  # named in an option, 'nan' was dropped without a word
        main(["evaluate", str(labels), "--model", "ngrams", "--compliance-values", "nan,0"])
    assert exit_info.value.code == 2 and "'nan' is no label value" in capsys.readouterr().err


def test_recalibrate_says_how_many_blank_texts_it_left_out(tmp_path, capsys):
    _, _, test = data.paper_split()  # responses the shipped models did not train on
    rows = [{"response": r, "label": l} for r, l in zip(test["response"][:60], test["label"][:60])]
    rows += [{"response": "  ", "label": "refusal"}, {"response": "", "label": "compliance"}, {"response": "x", "label": "maybe"}]
    held = tmp_path / "held.jsonl"
    held.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert main(["recalibrate", str(held), "--model", "ngrams", "-o", str(tmp_path / "m"), "--no-progress"]) == 0
    assert "from 60 texts" in (out := capsys.readouterr().out) and "skipped 1; 2 blank texts left out" in out


def test_max_skipped_stops_the_run_and_keeps_the_earlier_output(ngram_model, tmp_path, capsys):
    """A pipeline that must fail on a corrupt log gets exit 1, no partial output, and the errors file."""
    log = tmp_path / "log.csv"
    # line 3 opens a quote it never closes, swallowing line 4; line 5 is fine again
    log.write_text('response,id\n"I cannot help with that.",1\n"Sure, here it is\n"ok",2\n"Fine.",3\n',
                   encoding="utf-8")
    out = tmp_path / "out.jsonl"
    out.write_text("earlier\n", encoding="utf-8")
    base = ["label-responses", str(log), "-o", str(out), "--model", str(ngram_model), "--no-progress"]
    assert main([*base, "--max-skipped", "0"]) == 1
    captured = capsys.readouterr()
    assert "stopped at line 3: more than 0 records skipped" in captured.out
    assert f"{out} was not written" in captured.err and "log.csv:3: malformed CSV" in captured.err
    assert out.read_text(encoding="utf-8") == "earlier\n"
    assert [e["line"] for e in _jsonl(tmp_path / "out.jsonl.errors.jsonl")] == [3]
    # the quote swallowed line 4 and its record: two lost, so 1 stops the run and 2 is within the limit,
    # where the run is the one without a limit: every usable record written, exit 0
    assert main([*base, "--max-skipped", "1"]) == 1
    assert "(1 skipped, 2 counting the rows malformed CSV quotes swallowed)" in capsys.readouterr().err
    assert main([*base, "--max-skipped", "2"]) == 0
    assert [r["id"] for r in _jsonl(out)] == ["1", "3"]  # CSV values are text
    assert "stopped" not in capsys.readouterr().out


def test_max_skipped_in_score_prompts_counts_every_kind_of_skip(tmp_path, capsys):
    log = tmp_path / "prompts.jsonl"
    log.write_text('{"prompt": "How do I pick a lock?"}\n{"prompt": null}\nnot json\n{"text": "x"}\n'
                   '{"prompt": "Write a poem about the sea."}\n', encoding="utf-8")
    out = tmp_path / "scored.jsonl"
    base = ["score-prompts", str(log), "-o", str(out), "--no-progress"]
    assert main([*base, "--max-skipped", "2"]) == 1
    assert "stopped at line 4: more than 2 records skipped" in capsys.readouterr().err
    assert not out.exists()
    assert main([*base, "--max-skipped", "3"]) == 0 and len(_jsonl(out)) == 2
    with pytest.raises(SystemExit):
        main([*base, "--max-skipped", "-1"])
    assert "expected a whole number of at least 0" in capsys.readouterr().err


def _two_runs(tmp_path, ngram_model):
    """An earlier run's output and errors file (over old.jsonl), and a new log with one bad line."""
    old, new = tmp_path / "old.jsonl", tmp_path / "new.jsonl"
    old.write_text('{"response": "Sure."}\nbroken\n', encoding="utf-8")
    new.write_text('{"response": "I cannot help."}\n{"response": "Fine."}\n{"text": "no response"}\n',
                   encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert main(["label-responses", str(old), "-o", str(out), "--model", str(ngram_model), "--no-progress"]) == 0
    return new, out, tmp_path / "out.jsonl.errors.jsonl"


def test_a_sigterm_while_the_output_is_renamed_leaves_the_new_pair_whole(ngram_model, tmp_path, monkeypatch, capsys):
    """The signal was handled between the output's rename and the next step, which put the earlier
    errors file back beside the new output; it is now held until both are in place."""
    import os
    import signal

    new, out, errors = _two_runs(tmp_path, ngram_model)
    real_replace = os.replace

    def replace_then_signal(src, dst, *args, **kwargs):
        real_replace(src, dst, *args, **kwargs)
        if Path(dst) == out:
            os.kill(os.getpid(), signal.SIGTERM)  # as if it arrived during rename(2)

    monkeypatch.setattr(os, "replace", replace_then_signal)
    status = main(["label-responses", str(new), "-o", str(out), "--model", str(ngram_model), "--no-progress"])
    assert status == 128 + signal.SIGTERM and "stopped by SIGTERM" in capsys.readouterr().err
    assert len(_jsonl(out)) == 2  # the new output, beside its own errors file
    assert [(Path(e["file"]).name, e["line"]) for e in _jsonl(errors)] == [("new.jsonl", 3)]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def _sigterm_then_a_failing_output_rename(ngram_model, tmp_path, monkeypatch, failure: BaseException):
    """A second run whose SIGTERM comes as its errors file is renamed into place, after which the
    output's rename fails with ``failure``: (status, output path, errors path)."""
    import os
    import signal

    new, out, errors = _two_runs(tmp_path, ngram_model)
    real_replace, signalled = os.replace, []

    def replace_signal_then_fail(src, dst, *args, **kwargs):
        if signalled and Path(dst) == out:  # the output's rename, after the errors file's
            raise failure
        real_replace(src, dst, *args, **kwargs)
        if Path(dst) == errors:
            signalled.append(True)
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(os, "replace", replace_signal_then_fail)
    status = main(["label-responses", str(new), "-o", str(out), "--model", str(ngram_model), "--no-progress"])
    assert signalled
    return status, out, errors


def test_a_sigterm_held_while_the_pair_is_put_in_place_does_not_hide_a_failure_of_that_step(ngram_model, tmp_path,
                                                                                           monkeypatch, capsys):
    """A full disk in the step a held SIGTERM came in was reported as 'stopped by SIGTERM' alone."""
    import errno
    import signal

    status, out, errors = _sigterm_then_a_failing_output_rename(
        ngram_model, tmp_path, monkeypatch, OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out.jsonl")))
    err = capsys.readouterr().err
    assert status == 128 + signal.SIGTERM and "stopped by SIGTERM" in err
    assert "error: putting the outputs in place also failed: " in err and "out.jsonl: cannot be written (No space left on device)" in err
    # the earlier pair stays: the earlier output and its own errors file
    assert len(_jsonl(out)) == 1 and [e["line"] for e in _jsonl(errors)] == [2]


def test_a_held_sigterm_names_a_step_failure_that_has_no_message(ngram_model, tmp_path, monkeypatch, capsys):
    """A step failing with an empty message printed 'putting the outputs in place also failed: ' and nothing."""
    import signal

    status, _, _ = _sigterm_then_a_failing_output_rename(ngram_model, tmp_path, monkeypatch, RuntimeError())
    err = capsys.readouterr().err
    assert status == 128 + signal.SIGTERM and "stopped by SIGTERM" in err
    assert "error: putting the outputs in place also failed: RuntimeError\n" in err


def test_an_errors_file_moved_away_by_another_run_meanwhile_does_not_fail_this_one(ngram_model, tmp_path,
                                                                                   monkeypatch):
    import os

    new, out, errors = _two_runs(tmp_path, ngram_model)
    real_replace = os.replace

    def other_run_first(src, dst, *args, **kwargs):
        if Path(src) == errors and str(dst).endswith(".earlier"):
            errors.unlink()  # a run sharing the path moved it aside a moment before
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", other_run_first)
    assert main(["label-responses", str(new), "-o", str(out), "--model", str(ngram_model), "--no-progress"]) == 0
    assert len(_jsonl(out)) == 2 and [e["line"] for e in _jsonl(errors)] == [3]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_clean_run_that_removes_another_inputs_errors_file_says_so(ngram_model, tmp_path, caplog):
    """Runs sharing an --errors path: the clean one removed the other's errors, logged at -v only."""
    (tmp_path / "day1").mkdir()
    (tmp_path / "day2").mkdir()
    log_a, log_b = tmp_path / "day1" / "log.jsonl", tmp_path / "day2" / "log.jsonl"  # one name, two files
    log_a.write_text('{"response": "Sure."}\nbroken\n', encoding="utf-8")
    log_b.write_text('{"response": "Sure."}\n', encoding="utf-8")
    errors = tmp_path / "errors.jsonl"
    for log in (log_a, log_a, log_b):
        assert main(["label-responses", str(log), "-o", str(log.parent / "out.jsonl"), "--errors",
                     str(errors), "--model", str(ngram_model), "--no-progress"]) == 0
    assert not errors.exists()
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and f"left by an earlier run over {log_a}: this run over {log_b} skipped nothing" in warned[0]


def test_a_link_into_missing_folders_leaves_none_behind_when_nothing_is_written(ngram_model, tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text('{"response": "Sure."}\n', encoding="utf-8")
    link = tmp_path / "link.jsonl"
    link.symlink_to(tmp_path / "newdir" / "deeper" / "real.jsonl")
    assert main(["label-responses", str(log), "-o", str(link), "--model", str(ngram_model), "--no-progress",
                 "--text-field", "nope", "--errors", str(tmp_path / "e.jsonl")]) == 1
    assert not (tmp_path / "newdir").exists() and link.is_symlink()
    assert main(["label-responses", str(log), "-o", str(link), "--model", str(ngram_model), "--no-progress"]) == 0
    assert len(_jsonl(tmp_path / "newdir" / "deeper" / "real.jsonl")) == 1


def test_max_skipped_stops_at_a_record_that_loses_the_rest_of_the_file_whatever_the_count(ngram_model, tmp_path,
                                                                                          capsys):
    """One skipped record stood for every line after it, and --max-skipped 3 passed the run."""
    import gzip

    csv_log = tmp_path / "log.csv"
    csv_log.write_text("response\nSure.\n\"never closed\n" + "".join(f"answer {i}\n" for i in range(500)),
                       encoding="utf-8")
    whole = b"".join(b'{"response": "answer %d"}\n' % i for i in range(2000))
    cut = tmp_path / "log.jsonl.gz"
    cut.write_bytes(gzip.compress(whole)[:4000])
    for log, line, why in ((csv_log, 3, "(1 skipped, 501 counting the rows malformed CSV quotes swallowed)"),
                           (cut, None, "the rest of the file is lost with this record")):
        out = tmp_path / "out.jsonl"
        assert main(["label-responses", str(log), "-o", str(out), "--model", str(ngram_model), "--no-progress",
                     "--max-skipped", "3"]) == 1
        captured = capsys.readouterr()
        assert why in captured.err and not out.exists()
        assert "scored" not in captured.out  # the chunks scored before the stop were thrown away
        errors = _jsonl(tmp_path / "out.jsonl.errors.jsonl")
        assert len(errors) == 1 and (line is None or errors[0]["line"] == line)
        # without the limit, the records before it are kept, as before
        assert main(["label-responses", str(log), "-o", str(out), "--model", str(ngram_model), "--no-progress"]) == 0
        assert _jsonl(out)
        out.unlink()
        capsys.readouterr()


def test_an_errors_file_that_is_a_pipe_without_a_reader_can_still_be_stopped(ngram_model, tmp_path):
    """Signals were held while the errors file was opened, and opening a pipe waits for its reader."""
    import os
    import signal
    import time

    log = tmp_path / "log.jsonl"
    log.write_text('{"response": "Sure."}\nbroken\n', encoding="utf-8")
    fifo = tmp_path / "errors.fifo"
    os.mkfifo(fifo)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "refusal_predictor.cli", "label-responses", str(log), "-o",
                             str(tmp_path / "out.jsonl"), "--errors", str(fifo), "--model", str(ngram_model),
                             "--no-progress"], stderr=subprocess.PIPE, text=True, env=env)
    time.sleep(8)  # scored by then, and waiting for the pipe's reader
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("SIGTERM did not stop a run waiting for its errors pipe") from None
    assert proc.returncode == 128 + signal.SIGTERM and "stopped by SIGTERM" in err


def test_max_skipped_counts_the_lines_a_stray_csv_quote_swallowed(ngram_model, tmp_path, capsys):
    """A quote closed 300 lines later made 300 rows one skipped record, and --max-skipped 5 passed."""
    log = tmp_path / "stray.csv"
    log.write_text('id,response\n1,"I cannot help with that\n' + "".join(f"{i},answer {i}\n" for i in range(2, 302))
                   + '302,"Of course, here it is"\n303,Sure.\n', encoding="utf-8")
    out = tmp_path / "out.jsonl"
    base = ["label-responses", str(log), "-o", str(out), "--model", str(ngram_model), "--no-progress"]
    assert main([*base, "--max-skipped", "5"]) == 1
    assert "(1 skipped, 302 counting the rows malformed CSV quotes swallowed)" in capsys.readouterr().err
    assert main(base) == 0
    (error,) = _jsonl(tmp_path / "out.jsonl.errors.jsonl")
    assert "lines 2-303 were read as one record" in error["reason"]
    # rows after a quote opened by mistake, all lost whatever their width: 4 of them
    log.write_text('id,response\n1,"oops\n2,fine,extra\n3,ok,more\n4,"closing"\n5,ok\n', encoding="utf-8")
    assert main([*base, "--max-skipped", "3"]) == 1
    assert "(1 skipped, 4 counting the rows" in capsys.readouterr().err
    # read without a quoting error, a row over several lines is one skipped record: a quote closed
    # just before a separator cannot be told from a long answer with an extra field
    log.write_text('id,response\n1,"I cannot help with that\n' + "".join(f"{i},answer {i}\n" for i in range(2, 302))
                   + '302,the end",extra\n303,Sure.\n', encoding="utf-8")
    assert main([*base, "--max-skipped", "1"]) == 0
    (error,) = _jsonl(tmp_path / "out.jsonl.errors.jsonl")
    assert "lines 2-303 were read as this one row" in error["reason"]
    # a row whose quoted answer holds line breaks is one row, skipped for its extra field
    long = tmp_path / "long.csv"
    long.write_text('prompt,response\nq0,Sure.\nq1,"Sure, here are tips:\n1. Keep a schedule, even weekends\n'
                    '2. Avoid screens, especially late\n3. Exercise, but not late",extra\nq2,Fine.\n', encoding="utf-8")
    assert main(["label-responses", str(long), "-o", str(out), "--model", str(ngram_model), "--no-progress",
                 "--max-skipped", "1"]) == 0
    assert len(_jsonl(out)) == 2
    # a quoting error inside one answer loses that row only: text after its closing quote, or a
    # quote the file ends in
    for text in ('prompt,response\nq0,Sure.\nq1,"line one\nline two" \nq2,Fine.\n',
                 'prompt,response\nq0,Sure.\nq1,"I cannot help\nwith that'):
        one = tmp_path / "one.csv"
        one.write_text(text, encoding="utf-8")
        assert main(["label-responses", str(one), "-o", str(out), "--model", str(ngram_model), "--no-progress",
                     "--max-skipped", "1"]) == 0
    # an unclosed quote on the last line loses that line only: one skipped record
    last = tmp_path / "last.csv"
    last.write_text("id,response\n1,Sure.\n2,\"I cannot help with th", encoding="utf-8")
    assert main(["label-responses", str(last), "-o", str(out), "--model", str(ngram_model), "--no-progress",
                 "--max-skipped", "1"]) == 0
    assert len(_jsonl(out)) == 1


def test_interrupts_are_raised_at_once_or_at_the_end_of_a_deferred_block_first_one_first():
    from refusal_predictor.interrupts import deferred, failed_step, interrupt

    calls = []
    with pytest.raises(KeyboardInterrupt):
        interrupt(KeyboardInterrupt(), before=lambda: calls.append("now"))
    assert calls == ["now"]
    with pytest.raises(KeyboardInterrupt):
        with deferred():
            with deferred():
                interrupt(KeyboardInterrupt(), before=lambda: calls.append("first"))
                interrupt(SystemExit(143), before=lambda: calls.append("second"))
                calls.append("inner block ends")
            calls.append("outer block ends")
    assert calls == ["now", "inner block ends", "outer block ends", "first"]
    with deferred():  # nothing pending is left behind
        pass
    with pytest.raises(KeyboardInterrupt) as raised:  # the block failing too: the interrupt carries it
        with deferred():
            interrupt(KeyboardInterrupt())
            raise OSError(28, "No space left on device")
    assert isinstance(failed_step(raised.value), OSError) and failed_step(KeyboardInterrupt()) is None
    with pytest.raises(SystemExit) as raised:  # a second interrupt in the block is not a failure of it
        with deferred():
            interrupt(SystemExit(143))
            raise KeyboardInterrupt()
    assert failed_step(raised.value) is None


def _run_cli_in_a_child(tmp_path, setup: str, args: list[str], stdout=None):
    """Run the CLI in a child process after ``setup`` (Python run first in that process)."""
    import os

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    code = f"{setup}\nimport sys\nfrom refusal_predictor.cli import main\nsys.exit(main({args!r}))"
    return subprocess.run([sys.executable, "-c", code], stdout=stdout if stdout is not None else subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path, timeout=120)


def test_a_second_sigterm_while_the_pair_is_put_in_place_waits_too(ngram_model, tmp_path):
    """The first SIGTERM set SIGTERM back to its default, so a second one killed the run mid-swap:
    the earlier output beside the new errors file, the earlier errors file left hidden."""
    import signal

    new, out, errors = _two_runs(tmp_path, ngram_model)
    setup = ("import os, signal\nreal = os.replace\n"
             "def twice(src, dst, *a, **k):\n"
             "    real(src, dst, *a, **k)\n"
             f"    if str(dst) == {str(errors)!r}:  # the new errors file is in place, the output not yet\n"
             "        os.kill(os.getpid(), signal.SIGTERM); os.kill(os.getpid(), signal.SIGTERM)\n"
             "os.replace = twice")
    run = _run_cli_in_a_child(tmp_path, setup, ["label-responses", str(new), "-o", str(out), "--model",
                                                str(ngram_model), "--no-progress"])
    assert run.returncode == 128 + signal.SIGTERM and "stopped by SIGTERM" in run.stderr
    assert len(_jsonl(out)) == 2 and [(Path(e["file"]).name, e["line"]) for e in _jsonl(errors)] == [("new.jsonl", 3)]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_errors_to_dev_stdout_redirected_to_a_file_keep_what_the_command_printed(ngram_model, tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text('{"response": "Sure."}\nbroken\n', encoding="utf-8")
    with open(tmp_path / "printed.txt", "w", encoding="utf-8") as printed:
        run = _run_cli_in_a_child(tmp_path, "", ["label-responses", str(log), "-o", str(tmp_path / "out.jsonl"),
                                                 "--errors", "/dev/stdout", "--model", str(ngram_model),
                                                 "--no-progress"], stdout=printed)
    assert run.returncode == 0, run.stderr
    lines = (tmp_path / "printed.txt").read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[0])["line"] == 2 and "read 2 records, scored 1" in lines[1]
    run = _run_cli_in_a_child(tmp_path, "", ["label-responses", str(log), "-o", "/dev/stdout", "--model",
                                             str(ngram_model), "--no-progress"])
    assert run.returncode == 2 and "not a regular file" in run.stderr


def test_errors_to_a_stdout_of_another_encoding_or_without_a_reader(ngram_model, tmp_path):
    """Written through Python's stdout, errors failed the run on a cp1252 stdout; its reader gone,
    the run ended with status 141 and no word, its output not written."""
    import os

    log = tmp_path / "log.jsonl"
    log.write_text('{"response": "Sure."}\n{"response": "caf\u00e9 \u2615 broken\n', encoding="utf-8")
    args = ["label-responses", str(log), "-o", str(tmp_path / "out.jsonl"), "--errors", "/dev/stdout", "--model",
            str(ngram_model), "--no-progress"]
    env = {**os.environ, "PYTHONIOENCODING": "cp1252",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    code = f"import sys\nfrom refusal_predictor.cli import main\nsys.exit(main({args!r}))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    first = run.stdout.decode("ascii").splitlines()[0]
    assert json.loads(first)["raw"].startswith("{\"response\": \"caf\u00e9 \u2615")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    proc.stdout.close()  # the reader is gone before anything is written
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and b"Traceback" not in err
    assert err.decode().strip().endswith("error: /dev/stdout: the errors file cannot be written (its reader is gone: "
                                         "broken pipe)")
