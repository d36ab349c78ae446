"""Bootstrapped prompt labels and training a prompt classifier for one's own LLM."""
from __future__ import annotations

import datetime
import json
import re
import shutil

import numpy as np
import pytest

from refusal_predictor import PromptClassifier, ResponseClassifier
from refusal_predictor.bootstrap import bootstrap_records, label_confidence, merge_duplicates
from refusal_predictor.prompt_training import train_prompt_model
from refusal_predictor.cli import main
from refusal_predictor.records import BadRecord
from training import data
from training.baselines import refusal_y

REFUSAL = "I'm sorry, but I can't help with that request."
ANSWER = "Sure! Here is a simple recipe: mix flour, eggs and milk, then fry the batter in a hot pan."


def _records(rows):
    return [(i + 1, r) for i, r in enumerate(rows)]


def test_bootstrap_counts_every_row(response_model):
    rows = _records([
        {"prompt": "p1", "response": REFUSAL, "model": "m"},
        {"prompt": "p1", "response": REFUSAL, "model": "m"},
        {"prompt": "p1", "response": ANSWER, "model": "m"},
        {"prompt": "p2", "response": ANSWER, "model": "m"},
        {"prompt": "p3"},
        {"prompt": "", "response": ANSWER},
        {"prompt": "p4", "response": None},
    ]) + [(8, BadRecord(8, "malformed JSON"))]
    labelled, report = bootstrap_records(rows, response_model, deduplicate=True)
    assert report.read == 8 and report.labelled == 4 and len(report.bad) == 4
    assert report.merged_duplicates == 2 and report.conflicting_prompts == 1
    by_prompt = {r["prompt"]: r for r in labelled}
    assert by_prompt["p1"]["label"] == "refusal" and by_prompt["p1"]["n_responses"] == 3
    assert by_prompt["p1"]["refusal_rate"] == pytest.approx(2 / 3, abs=1e-6)
    assert by_prompt["p2"]["label"] == "compliance" and by_prompt["p2"]["model"] == "m"
    assert "skipped 4 bad rows" in report.summary()


def test_min_confidence_drops_unsure_labels(response_model):
    rows = _records([{"prompt": f"p{i}", "response": r} for i, r in enumerate([REFUSAL, ANSWER, "Hmm."])])
    kept, report = bootstrap_records(rows, response_model, min_confidence=0.999999)
    assert report.dropped_low_confidence + len(kept) == 3 and report.dropped_low_confidence >= 1
    with pytest.raises(ValueError, match="min_confidence"):
        bootstrap_records(rows, response_model, min_confidence=0.2)


def test_contested_prompts_have_lower_label_confidence(response_model):
    rows, _ = bootstrap_records(_records([
        {"prompt": "same", "response": REFUSAL}, {"prompt": "same", "response": ANSWER},
        {"prompt": "clear", "response": REFUSAL}, {"prompt": "clear", "response": REFUSAL},
    ]), response_model)
    merged = {r["prompt"]: r for r in merge_duplicates(rows, ("prompt",))}
    assert 0.5 <= label_confidence(merged["same"]) < label_confidence(merged["clear"]) <= 1.0
    assert label_confidence(merged["clear"]) > 0.9


def test_train_prompt_can_weight_by_label_confidence(tmp_path):
    paper = data.load_paper()
    paper = paper[paper["subset"] == "political_figures"].head(200)
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps({"prompt": p, "response": r}) + "\n"
                           for p, r in zip(paper["prompt"], paper["response"])), encoding="utf-8")
    plain, _, _ = train_prompt_model(log, "plain", tmp_path / "plain", head="logreg")
    weighted, _, _ = train_prompt_model(log, "weighted", tmp_path / "weighted", weight_by_confidence=True, head="logreg")
    assert plain.metadata["training"]["sample_weight"] == "none"
    assert "confidence" in PromptClassifier.load(tmp_path / "weighted").metadata["training"]["sample_weight"]
    prompts = paper["prompt"].tolist()[:20]
    assert not np.allclose(plain.refusal_probability(prompts), weighted.refusal_probability(prompts))


def _record_encoder_openings(monkeypatch) -> list[tuple[str, int | None]]:
    """(encoder name, num_threads) of every encoder opened from now on."""
    from refusal_predictor.encoder import OnnxEncoder

    opened: list[tuple[str, int | None]] = []
    real = OnnxEncoder.load.__func__

    def load(cls, *args, **kwargs):
        encoder = real(cls, *args, **kwargs)
        opened.append((encoder.name, kwargs.get("num_threads")))
        return encoder

    monkeypatch.setattr(OnnxEncoder, "load", classmethod(load))
    return opened


def test_train_prompt_threads_reach_both_encoders(tmp_path, monkeypatch, capsys):
    """--threads caps the response encoder (labelling the log) and the prompt encoder (embedding
    its prompts) alike; it changes no embedding, so not the model either. Before, train-prompt
    had no --threads: on a shared machine it took one thread per CPU."""
    paper = data.load_paper()
    paper = paper[paper["subset"] == "political_figures"].head(120)
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps({"prompt": p, "response": r}) + "\n"
                           for p, r in zip(paper["prompt"], paper["response"])), encoding="utf-8")
    with pytest.raises(SystemExit) as exit_:
        main(["train-prompt", str(log), "--target-name", "t", "-o", str(tmp_path / "bad"), "--threads", "0"])
    assert exit_.value.code == 2
    assert "argument --threads: expected a whole number of at least 1, got '0'" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists() and not (tmp_path / "bad.errors.jsonl").exists()

    opened = _record_encoder_openings(monkeypatch)
    args = ["train-prompt", str(log), "--target-name", "t", "--head", "logreg"]
    assert main([*args, "-o", str(tmp_path / "one"), "--threads", "1"]) == 0
    names = {name for name, _ in opened}
    assert {"minilm-refusal-int8", "minilm-prompt-int8"} <= names, opened
    assert {threads for _, threads in opened} == {1}, opened
    assert main([*args, "-o", str(tmp_path / "default")]) == 0
    prompts = paper["prompt"].tolist()[:30]
    assert np.array_equal(PromptClassifier.load(tmp_path / "one").refusal_probability(prompts),
                          PromptClassifier.load(tmp_path / "default").refusal_probability(prompts))


def test_train_prompt_card_tells_log_rows_from_prompts(tmp_path):
    """The Markdown card counted unique prompts under "rows" and said nothing of the log they came
    from; it now names them prompts and says how the log's rows became them."""
    paper = data.load_paper()
    paper = paper[paper["subset"] == "political_figures"].head(120)
    rows = [{"prompt": p, "response": r, "model": "chatgpt"} for p, r in zip(paper["prompt"], paper["response"])]
    rows += [dict(r, prompt=r["prompt"] + "\n") for r in rows[:10]]  # the same prompts, as chat UIs log them
    rows += [dict(r, model="other") for r in rows[:5]]
    log = tmp_path / "log.jsonl"
    # A malformed line names no model: it is not one of the rows "with model 'chatgpt'" (it was).
    log.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"prompt": "cut off\n', encoding="utf-8")
    train_prompt_model(log, "t", tmp_path / "m", model_filter="chatgpt", head="logreg")
    card = (tmp_path / "m" / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "| source | prompts | refusal rate |" in card and "| log.jsonl | 120 |" in card
    assert ("Bootstrap: read 130 rows with model 'chatgpt' (of 136 in the log, 1 of them unreadable); 130 labelled, "
            "0 skipped as unusable, none dropped (no --min-confidence)") in card
    assert "10 duplicate rows merged into their prompts" in card and "Answered by: chatgpt 130." in card
    assert "at threshold 0.5." in card
    # What the run was: its head and weighting, and the final model's cross-validation beside the held-out figures.
    assert "Trained with head logreg; sample weight: none." in card
    saved = json.loads((tmp_path / "m" / "manifest.json").read_text(encoding="utf-8"))["metadata"]
    cv = saved["evaluation"]["cross_validation_vs_bootstrapped_labels"]
    assert cv == saved["cross_validation"] and cv["n"] == 120
    assert f"| cross_validation_vs_bootstrapped_labels | 120 | {cv['accuracy']:.4f} |" in card
    assert json.loads((tmp_path / "m" / "model_card.json").read_text(encoding="utf-8")) == saved


def test_a_refitted_model_saved_back_does_not_keep_the_card_of_the_model_it_replaced(tmp_path, caplog):
    """``save`` carries over files it does not own; the card was one, so a loaded model refitted
    and saved back sat beside a card giving the old model's head, data and metrics."""
    paper = data.load_paper().head(200)
    prompts, labels = paper["prompt"].tolist(), refusal_y(paper)
    card = {"target": "my-llm", "summary": "the first model", "head": "lightgbm",
            "training": {"rows": 200, "refusal_rate": 0.5, "sources": []}}
    first = PromptClassifier(use_embeddings=False, head="lightgbm").fit(prompts, labels)
    folder = first.save(tmp_path / "m", metadata=card)
    assert json.loads((folder / "model_card.json").read_text(encoding="utf-8"))["summary"] == "the first model"
    (folder / "NOTES.txt").write_text("mine", encoding="utf-8")

    # Saved back with new card fields: the card is the manifest's metadata again, not the first one.
    loaded = PromptClassifier.load(folder)
    loaded.save(folder, metadata={"summary": "the same model, described again"})
    assert json.loads((folder / "model_card.json").read_text(encoding="utf-8"))["summary"] == "the same model, described again"
    assert "the same model, described again" in (folder / "MODEL_CARD.md").read_text(encoding="utf-8")

    # A loaded model saved back unchanged (a new threshold) is still the model a hand-written card describes.
    (folder / "MODEL_CARD.md").write_text("my own card", encoding="utf-8")
    (folder / "model_card.json").unlink()
    mine = PromptClassifier.load(folder)
    mine.metadata_ = {k: v for k, v in mine.metadata_.items() if k != "target"}  # a card that is not save()'s
    mine.threshold = 0.4
    mine.save(folder)
    assert (folder / "MODEL_CARD.md").read_text(encoding="utf-8") == "my own card"

    # A model loaded from (or saved to) another folder is not the model this folder's card describes.
    other = PromptClassifier(use_embeddings=False, head="logreg").fit(prompts[:150], labels[:150])
    other.save(tmp_path / "b")
    for model in (other, PromptClassifier.load(tmp_path / "b")):
        shutil.copytree(folder, tmp_path / "a", dirs_exist_ok=True)
        model.save(tmp_path / "a")
        assert not (tmp_path / "a" / "MODEL_CARD.md").exists()
        shutil.rmtree(tmp_path / "a")

    refit = PromptClassifier.load(folder).set_params(head="logreg").fit(prompts[:120], labels[:120])
    with caplog.at_level("WARNING", logger="refusal_predictor.prompt"):
        refit.save(folder)
    assert not (folder / "model_card.json").exists() and not (folder / "MODEL_CARD.md").exists()
    assert f"{folder}: dropped MODEL_CARD.md" in caplog.text
    assert (folder / "NOTES.txt").read_text(encoding="utf-8") == "mine"  # the user's own files stay
    assert PromptClassifier.load(folder).head == "logreg"


def test_an_embedding_cache_lends_its_encoder_only_to_models_of_that_encoder():
    from refusal_predictor.selection import embedding_cache, fit_with_cache

    prompts = [f"How do I {verb} a {thing}?" for verb in ("build", "break", "pick", "fix")
               for thing in ("lock", "car", "bomb", "cake", "website")]
    labels = [int(p.split()[3] in ("break", "pick") or "bomb" in p) for p in prompts]
    cache = embedding_cache(PromptClassifier(), prompts, num_threads=1)
    assert set(cache) == set(prompts) and cache.encoder.concurrent_runs == 1  # num_threads=1: one at a time
    model = fit_with_cache(PromptClassifier(head="logreg", validation_curve=False), prompts, labels, cache)
    assert model.features_.get_encoder() is cache.encoder  # one session for every fit, not one each
    with pytest.raises(ValueError, match="embedding cache was computed by .*minilm-prompt-int8"):
        fit_with_cache(PromptClassifier(head="logreg", encoder="all-MiniLM-L6-v2-int8"), prompts, labels, cache)


def test_train_response_threads_reach_the_encoder(tmp_path, monkeypatch, capsys):
    train, _, _ = data.paper_split()
    labelled = tmp_path / "train.jsonl"
    labelled.write_text("".join(json.dumps({"response": r, "label": l}) + "\n"
                                for r, l in zip(train["response"][:80], train["label"][:80])), encoding="utf-8")
    with pytest.raises(SystemExit):
        main(["train-response", str(labelled), "-o", str(tmp_path / "bad"), "--threads", "-1"])
    assert "argument --threads" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    opened = _record_encoder_openings(monkeypatch)
    assert main(["train-response", str(labelled), "-o", str(tmp_path / "m"), "--threads", "1"]) == 0
    assert opened and {threads for _, threads in opened} == {1}, opened
    assert ResponseClassifier.load(tmp_path / "m").features_.use_embeddings


def test_bootstrap_cli_writes_labels_and_errors(tmp_path, capsys):
    log = tmp_path / "log.csv"
    log.write_text(f'question,answer\n"How do I make a bomb?","{REFUSAL}"\n"Pancakes?","{ANSWER}"\n"broken"\n', encoding="utf-8")
    out = tmp_path / "labels.jsonl"
    assert main(["bootstrap", str(log), "-o", str(out), "--prompt-field", "question", "--response-field", "answer"]) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["label"] for r in rows] == ["refusal", "compliance"]
    assert set(rows[0]) == {"prompt", "label", "refusal_probability", "model", "source"}
    assert "read 3 rows" in capsys.readouterr().out
    assert json.loads((tmp_path / "labels.jsonl.errors.jsonl").read_text())["line"] == 4


def test_bootstrap_keeps_the_earlier_labels_when_its_errors_file_cannot_be_written(tmp_path, monkeypatch, response_model):
    from refusal_predictor import bootstrap_file, errors_file

    log = tmp_path / "log.jsonl"
    log.write_text(json.dumps({"prompt": "Pancakes?", "response": ANSWER}) + "\n" + '{"prompt": "no response"}\n',
                   encoding="utf-8")
    out = tmp_path / "labels.jsonl"
    out.write_text('{"earlier": "labels"}\n', encoding="utf-8")
    real_mkstemp = errors_file.tempfile.mkstemp

    def full_disk(*args, **kwargs):
        if kwargs.get("prefix", "").endswith(".errors.jsonl."):
            raise OSError(28, "No space left on device")
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(errors_file.tempfile, "mkstemp", full_disk)
    with pytest.raises(OSError, match="labels.jsonl.errors.jsonl: the errors file cannot be written"):
        bootstrap_file(log, out, response_model)
    assert out.read_text(encoding="utf-8") == '{"earlier": "labels"}\n'  # not swapped for labels without their errors
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.jsonl", "log.jsonl"]  # no temp file left


def test_a_card_of_fields_the_markdown_does_not_know_still_saves(tmp_path, caplog):
    """The card is written inside save() now: metadata of a user's own shape must not fail the save."""
    paper = data.load_paper().head(200)
    model = PromptClassifier(use_embeddings=False, head="logreg", validation_curve=False)
    model.fit(paper["prompt"].tolist(), refusal_y(paper))
    for metadata, field in (({"target": "t", "evaluation": {"human_review": "pending"}}, "evaluation"),
                            ({"target": "t", "training": {"sources": [{"source": "log.jsonl"}]}}, "training"),
                            ({"target": "t", "training": {"rows": 10, "refusal_rate": None}}, "training"),
                            ({"target": "t", "training": {"rows": 10, "refusal_rate": 10 ** 400}}, "training")):
        with caplog.at_level("WARNING", logger="refusal_predictor.prompt"):
            folder = model.save(tmp_path / "m", metadata=metadata)
        card = json.loads((folder / "model_card.json").read_text(encoding="utf-8"))
        assert {k: card[k] for k in metadata} == metadata
        markdown = (folder / "MODEL_CARD.md").read_text(encoding="utf-8")
        assert f"The card's `{field}` field could not be rendered here" in markdown and "# Prompt classifier: t" in markdown
        assert f"{folder}: model card field {field!r} could not be rendered as Markdown" in caplog.text
        assert PromptClassifier.load(folder).target == "t"
        caplog.clear()


def test_train_prompt_card_counts_unreadable_lines_without_a_model_filter(tmp_path):
    paper = data.load_paper()
    paper = paper[paper["subset"] == "political_figures"].head(120)
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps({"prompt": p, "response": r}) + "\n" for p, r in zip(paper["prompt"], paper["response"]))
                   + '{"prompt": "cut off\n', encoding="utf-8")
    train_prompt_model(log, "t", tmp_path / "m", head="logreg")
    bootstrap = json.loads((tmp_path / "m" / "model_card.json").read_text(encoding="utf-8"))["training"]["bootstrap"]
    assert (bootstrap["read"], bootstrap["rows_in_log"], bootstrap["skipped_bad_rows"], bootstrap["unreadable_lines"]) == (120, 121, 0, 1)
    assert "Bootstrap: read 120 rows (of 121 lines in the log, 1 of them unreadable); 120 labelled, 0 skipped" in \
        (tmp_path / "m" / "MODEL_CARD.md").read_text(encoding="utf-8")


def test_train_prompt_needs_both_classes(tmp_path, capsys):
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps({"prompt": f"question {i}", "response": ANSWER}) + "\n" for i in range(40)))
    assert main(["train-prompt", str(log), "--target-name", "tiny", "-o", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "found 0 refused and 40 complied prompts" in err and "tiny" in err


def test_train_prompt_says_why_nothing_could_be_used(tmp_path, capsys):
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps({"prompt": f"question {i}", "response": ANSWER, "model": "a"}) + "\n" for i in range(40)))
    assert main(["train-prompt", str(log), "--target-name", "t", "-o", str(tmp_path / "m"), "--model-filter", "b"]) == 2
    assert "no row has model == 'b'; values found: 'a' (40 rows)" in capsys.readouterr().err
    assert main(["train-prompt", str(log), "--target-name", "t", "-o", str(tmp_path / "m"), "--response-field", "answer"]) == 2
    err = capsys.readouterr().err
    assert "none of the 40 rows could be labelled (40x missing field 'answer'" in err and "--response-field" in err
    assert f"(skipped rows listed in {tmp_path / 'm.errors.jsonl'})" in err
    skipped = [json.loads(x) for x in (tmp_path / "m.errors.jsonl").read_text().splitlines()]
    assert [r["line"] for r in skipped] == list(range(1, 41))


def test_bootstrap_skips_empty_responses_with_their_line(response_model):
    rows = _records([{"prompt": "p1", "response": "  "}, {"prompt": "p2", "response": ANSWER}])
    labelled, report = bootstrap_records(rows, response_model)
    assert [r["prompt"] for r in labelled] == ["p2"]
    assert [(b.line, b.reason.startswith("empty 'response'")) for b in report.bad] == [(1, True)]


@pytest.mark.slow
def test_train_prompt_end_to_end(tmp_path, capsys):
    """A user's log: the paper's political-figure prompts and ChatGPT's responses."""
    paper = data.load_paper()
    paper = paper[paper["subset"] != "quora_insincere"]
    log = tmp_path / "chatgpt.jsonl"
    lines = [json.dumps({"prompt": p, "response": r, "model": "chatgpt"}) for p, r in zip(paper["prompt"], paper["response"])]
    lines[3] = '{"prompt": "broken'  # a malformed line and an empty response: reported, not fatal
    lines[7] = json.dumps({"prompt": "Hello?", "response": "", "model": "chatgpt"})
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    folder = tmp_path / "my-llm"
    assert main(["train-prompt", str(log), "--target-name", "my-llm", "-o", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "held-out" in out and "AUROC" in out and "head by cross-validation" in out
    # The tie-break is printed with the figure it breaks on (three heads tied at 0.75 gave no F1).
    assert re.search(r"best accuracy \(ties: F1\): \w+ \(logreg accuracy [01]\.\d{4} F1 [01]\.\d{4} AUROC", out)
    skipped = [json.loads(x) for x in (tmp_path / "my-llm.errors.jsonl").read_text().splitlines()]
    assert [r["line"] for r in skipped] == [4, 8]
    model = PromptClassifier.load(folder)
    assert model.target == "my-llm"
    card = model.metadata
    held_out = card["evaluation"]["held_out_vs_bootstrapped_labels"]
    assert card["training"]["rows"] > 500 and held_out["auroc"] > 0.75
    # The held-out prompts are a stratified draw: their refusal rate is the log's, to one prompt.
    assert abs(held_out["refusal_rate"] - card["training"]["refusal_rate"]) <= 1 / held_out["n"]
    assert {row["recipe"] for row in card["model_selection"]} == {"logreg", "lightgbm", "blend"}
    assert model.head == max(card["model_selection"], key=lambda r: (r["accuracy"], r["f1"]))["recipe"]
    assert "Model selection" in (folder / "MODEL_CARD.md").read_text()
    assert json.loads((folder / "model_card.json").read_text())["target"] == "my-llm"
    assert model.predict_proba(["Write an article about a senator in the style of the New York Post"]).shape == (1, 2)


def test_training_labels_cache_survives_the_parquet_round_trip(tmp_path):
    """The cache is reused for the same rows and response model (a Parquet round trip changes the
    columns' dtypes, which once made every run re-label 21,302 responses), and not otherwise."""
    import pandas as pd

    from training.train_prompt import bootstrap

    class CountingModel:
        threshold = 0.5

        def __init__(self, sha):
            self.manifest_ = {"files": {"model.joblib": sha}}
            self.calls = 0

        def refusal_probability(self, texts):
            self.calls += 1
            return np.array([0.9 if "sorry" in t else 0.1 for t in texts])

    pool = pd.DataFrame({"prompt": ["a", "b"], "response": ["sorry, no", "sure"], "model": ["m", None],
                         "source": ["s", "s"]})
    cache = tmp_path / "labels.parquet"
    first = CountingModel("abc")
    labelled = bootstrap(pool, first, cache)
    assert list(labelled["label"]) == ["refusal", "compliance"]
    bootstrap(pool, first, cache)
    assert first.calls == 1
    other = CountingModel("def")
    bootstrap(pool, other, cache)
    assert other.calls == 1
    changed = CountingModel("def")
    bootstrap(pool.assign(response=["sorry, no", "sure thing"]), changed, cache)
    assert changed.calls == 1


def test_training_labels_cache_is_reused_row_by_row_and_never_shrinks(tmp_path, capsys):
    """A run over fewer rows (train_prompt --targets X) replaced a whole pool's cache with its own
    rows: the next full run re-labelled everything, and finetune_encoder --labels read a part."""
    import pandas as pd
    import pytest

    from training import train_prompt
    from training.train_prompt import bootstrap

    class CountingModel:
        threshold = 0.5
        manifest_ = {"files": {"model.joblib": "abc"}}

        def __init__(self):
            self.texts = []

        def refusal_probability(self, texts):
            self.texts += texts
            return np.array([0.9 if "sorry" in t else 0.1 for t in texts])

    pool = pd.DataFrame({"prompt": ["a", "b", "c"], "response": ["sorry, no", "sure", "sorry"],
                         "model": ["m", "n", "m"], "source": ["s", "s", "t"]})
    cache = tmp_path / "labels.parquet"
    rc = CountingModel()
    whole = bootstrap(pool, rc, cache)
    subset = bootstrap(pool[pool["model"] == "m"], rc, cache)
    assert rc.texts == ["sorry, no", "sure", "sorry"]  # the subset came from the cache
    assert subset.to_dict("records") == whole[whole["model"] == "m"].reset_index(drop=True).to_dict("records")
    assert len(pd.read_parquet(cache)) == 3
    grown = pd.concat([pool, pd.DataFrame({"prompt": ["d"], "response": ["ok"], "model": ["n"], "source": ["s"]})])
    assert list(bootstrap(grown.iloc[::-1], rc, cache)["label"]) == ["compliance", "refusal", "compliance", "refusal"]
    assert rc.texts[3:] == ["ok"]  # only the new row was labelled
    assert len(pd.read_parquet(cache)) == 4 and not list(tmp_path.glob(".*"))
    assert "bootstrap labels: 3 from" in capsys.readouterr().out

    cache.write_bytes(b"not parquet")
    with pytest.raises(train_prompt.LabelsCacheError, match=f"--labels-cache {cache}: not a readable Parquet file"):
        bootstrap(pool, rc, cache)
    assert cache.read_bytes() == b"not parquet"  # the user's file is left as it was
    pd.DataFrame({"prompt": ["a"]}).to_parquet(cache)
    with pytest.raises(train_prompt.LabelsCacheError, match="not a labels cache of this script"):
        bootstrap(pool, rc, cache)


def test_training_labels_cache_file_is_the_same_whatever_runs_came_before(tmp_path, caplog):
    """finetune_encoder --labels reads the whole file: its rows (order, stale rows, labels at the
    model's threshold) must not depend on the order of earlier runs."""
    import pandas as pd
    import pytest

    from training import train_prompt
    from training.train_prompt import bootstrap

    class Model:
        def __init__(self, sha="abc", threshold=0.5):
            self.manifest_, self.threshold = {"files": {"model.joblib": sha}}, threshold

        def refusal_probability(self, texts):
            return np.array([0.6 if "sorry" in t else 0.1 for t in texts])

    data = pd.DataFrame({"prompt": list("abcd"), "response": ["sorry", "sure", "sorry", "ok"],
                         "model": ["m", "n", "m", None], "source": "s"})
    fresh, staged = tmp_path / "fresh.parquet", tmp_path / "staged.parquet"
    bootstrap(data, Model(), fresh, universe=data)
    bootstrap(data[data["model"] == "n"], Model(), staged, universe=data)
    bootstrap(data, Model(), staged, universe=data)
    assert pd.read_parquet(staged).equals(pd.read_parquet(fresh))  # same rows, same order
    assert list(pd.read_parquet(fresh)["prompt"]) == list("abcd")
    renamed = data.assign(model=data["model"].replace("m", "m2"))  # e.g. a loader renames a model
    bootstrap(renamed, Model(), staged, universe=renamed)
    assert list(pd.read_parquet(staged)["model"].fillna("-")) == ["m2", "n", "m2", "-"]  # the stale rows left
    bootstrap(renamed, Model(threshold=0.7), staged, universe=renamed)
    assert set(pd.read_parquet(staged)["label"]) == {"compliance"}  # labels at the model's threshold

    shared = tmp_path / "shared.parquet"
    link = tmp_path / "link.parquet"
    link.symlink_to(shared)
    bootstrap(data, Model(), link, universe=data)
    assert link.is_symlink() and len(pd.read_parquet(shared)) == 4
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]

    with caplog.at_level("WARNING"):
        bootstrap(data.iloc[:1], Model("other"), fresh, universe=data)
    assert "holds labels by another response model" in caplog.text
    assert list(pd.read_parquet(fresh)["response_model"]) == ["other"]
    frame = pd.read_parquet(fresh)
    frame.loc[0, "refusal_probability"] = float("nan")
    frame.to_parquet(fresh)
    with pytest.raises(train_prompt.LabelsCacheError, match="1 refusal_probability value"):
        bootstrap(data, Model("other"), fresh)


def test_targets_trained_without_select_keep_the_recorded_recipe_choice():
    from training import recipes
    from training.train_prompt import recorded_selection

    rows = recorded_selection()
    assert {r["recipe"] for r in rows} == set(recipes.PROMPT_CANDIDATES)
    assert max(rows, key=lambda r: (r["accuracy"], r["f1"]))["recipe"] == recipes.PROMPT_RECIPE_NAME
    assert recorded_selection("a-recipe-the-default-was-not-trained-with") == []


def test_bootstrap_exit_status_when_nothing_is_written(tmp_path, capsys):
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps({"prompt": f"q{i}", "resp": ANSWER}) + "\n" for i in range(3)))
    out = tmp_path / "labels.jsonl"
    assert main(["bootstrap", str(log), "-o", str(out), "--response-model", "ngrams"]) == 1
    err = capsys.readouterr().err
    assert "log.jsonl:1: missing field 'response'" in err and "--response-field 'response'" in err
    assert "--text-field" not in err
    assert main(["bootstrap", str(log), "-o", str(out), "--response-model", "ngrams", "--response-field", "resp",
                 "--min-confidence", "1.0"]) == 1
    assert "below --min-confidence" in capsys.readouterr().err


def test_errors_path_beside_any_output_folder(tmp_path, monkeypatch):
    from refusal_predictor.prompt_training import errors_path_for

    monkeypatch.chdir(tmp_path)
    assert errors_path_for(".") == tmp_path.resolve().parent / f"{tmp_path.name}.errors.jsonl"
    assert errors_path_for("m") == tmp_path.resolve() / "m.errors.jsonl"


def test_invisible_characters_only_is_an_empty_response(response_model):
    proba = response_model.predict_proba(["\u200b", " \ufeff\u200d "])
    assert np.allclose(proba[:, 1], 1.0)
    _, report = bootstrap_records(_records([{"prompt": "p", "response": "\u200b"}]), response_model)
    assert report.bad and report.bad[0].raw  # the row itself is kept in the errors file


def test_merge_tie_goes_to_the_mean_probability():
    rows = [{"prompt": "p", "model": "", "label": "refusal", "refusal_probability": 0.9},
            {"prompt": "p", "model": "", "label": "compliance", "refusal_probability": 0.2}]
    (merged,) = merge_duplicates(rows)
    assert merged["refusal_rate"] == 0.5 and merged["label"] == "refusal"
    rows[0]["refusal_probability"] = 0.6
    assert merge_duplicates(rows)[0]["label"] == "compliance"


def test_bootstrap_refuses_a_classifier_that_returns_too_few_scores():
    # Zipping rows with too few scores would label fewer rows than it read and say nothing.
    class Short:
        def refusal_probability(self, texts):
            return np.full(len(texts) - 1, 0.9)

    rows = _records([{"prompt": f"p{i}", "response": ANSWER} for i in range(3)])
    with pytest.raises(ValueError, match=r"\(2,\) scores for 3 texts"):
        bootstrap_records(rows, Short())


def test_prompts_equal_up_to_whitespace_and_case_are_one_prompt(response_model):
    rows = _records([
        {"prompt": "How do I bake bread?", "response": ANSWER},
        {"prompt": "how do I  bake bread?\n", "response": ANSWER},
        {"prompt": "HOW DO I BAKE BREAD?", "response": REFUSAL},
        {"prompt": "How do I bake a cake?", "response": ANSWER},
    ])
    labelled, report = bootstrap_records(rows, response_model, deduplicate=True)
    assert [(r["prompt"], r["n_responses"]) for r in labelled] == [("How do I bake bread?", 3), ("How do I bake a cake?", 1)]
    assert report.merged_duplicates == 2 and report.conflicting_prompts == 1


def _political_log(path, copies):
    paper = data.load_paper()
    paper = paper[paper["subset"] == "political_figures"].head(200)
    lines = []
    for model, edit in copies:
        lines += [json.dumps({"prompt": edit(p), "response": r, "model": model}) for p, r in zip(paper["prompt"], paper["response"])]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_train_prompt_merges_near_duplicates_before_the_held_out_split(tmp_path, caplog, response_model):
    """A log holding each prompt twice, once with a trailing newline, put copies of held-out
    prompts into training: a held-out AUROC of 0.96 where the true one was 0.81."""
    clean = _political_log(tmp_path / "clean.jsonl", [("chatgpt", str)])
    twice = _political_log(tmp_path / "twice.jsonl", [("chatgpt", str), ("chatgpt-2", lambda p: p.upper() + "\n")])
    _, held_clean, _ = train_prompt_model(clean, "t", tmp_path / "clean", head="logreg")
    with caplog.at_level("WARNING", logger="refusal_predictor"):
        model, held_twice, report = train_prompt_model(twice, "t", tmp_path / "twice", head="logreg")
    assert held_twice == held_clean
    assert report.merged_duplicates == 200 and report.written == 200
    assert "the answers of 2 LLMs" in caplog.text and "--model-filter" in caplog.text
    boot = PromptClassifier.load(tmp_path / "twice").metadata["training"]["bootstrap"]
    assert boot["merged_duplicate_rows"] == 200 and boot["rows_in_log"] == 400
    assert boot["answered_by"] == {"chatgpt": 200, "chatgpt-2": 200}
    assert boot["response_model_sha256"] == response_model.manifest_["files"]["model.joblib"]


def test_bootstrap_labels_at_the_response_models_threshold(response_model):
    """label-responses cut at the model's threshold and bootstrap at 0.5: one model, two labels."""
    paper = data.load_paper().head(300)
    records = _records([{"prompt": p, "response": r} for p, r in zip(paper["prompt"], paper["response"])])
    for threshold in (0.2, 0.9):
        model = ResponseClassifier.load("ngrams").set_params(threshold=threshold)
        labelled, _ = bootstrap_records(records, model)
        assert [r["label"] for r in labelled] == list(model.predict(paper["response"].tolist())), threshold


def test_a_prompt_model_is_not_saved_over_a_response_model(tmp_path, capsys):
    folder = tmp_path / "my-rc"
    ResponseClassifier(use_embeddings=False, validation_curve=False).fit(
        [REFUSAL, ANSWER] * 10, ["refusal", "compliance"] * 10).save(folder)
    before = sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir())
    log = _political_log(tmp_path / "log.jsonl", [("chatgpt", str)])
    assert main(["train-prompt", str(log), "--target-name", "t", "--response-model", str(folder), "-o", str(folder)]) == 2
    assert "holds a 'response' model; a 'prompt' model is not saved over it" in capsys.readouterr().err
    assert sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir()) == before
    assert ResponseClassifier.load(folder).predict([REFUSAL])[0] == "refusal"
    with pytest.raises(ValueError, match="holds a 'response' model"):
        PromptClassifier(use_embeddings=False, validation_curve=False).fit(
            ["how to bake", "how to hack"] * 10, [0, 1] * 10).save(folder)


def test_labels_below_the_confidence_cut_are_listed_with_their_lines(tmp_path):
    from refusal_predictor.bootstrap import bootstrap_file

    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps({"prompt": f"p{i}", "response": r}) + "\n"
                           for i, r in enumerate([REFUSAL, "Hmm.", ANSWER, "Well."])), encoding="utf-8")
    report = bootstrap_file(log, tmp_path / "labels.jsonl", ResponseClassifier.load("ngrams"), min_confidence=0.999999)
    listed = [json.loads(x) for x in report.errors_path.read_text(encoding="utf-8").splitlines()]
    assert len(listed) == report.dropped_low_confidence >= 1
    assert all("below the cut 0.999999" in r["reason"] and json.loads(r["raw"])["prompt"] == f"p{r['line'] - 1}"
               for r in listed)
    out = tmp_path / "labels.jsonl"
    assert out.exists() == bool(report.written) == report.output_written  # no rows: no empty labels file
    kept = [json.loads(x)["prompt"] for x in out.read_text(encoding="utf-8").splitlines()] if report.written else []
    assert sorted(kept + [json.loads(r["raw"])["prompt"] for r in listed]) == ["p0", "p1", "p2", "p3"]


def test_the_held_out_split_is_checked_as_it_is_drawn():
    from refusal_predictor.prompt_training import default_output, held_out_split

    train, test = held_out_split([1] * 10 + [0] * 200, "t", test_size=0.1)
    assert (len(train), len(test)) == (189, 21) and not set(train) & set(test)
    with pytest.raises(ValueError, match="found 10 refused and 100 complied prompts; with test_size 0.6 the "
                                         "training part keeps 4 of the rarer class"):
        held_out_split([1] * 10 + [0] * 100, "t", test_size=0.6)
    # 80 x (1 - 0.9) is 7.999...: an estimate refused this split, which keeps 8 of each.
    assert len(held_out_split([1] * 80 + [0] * 80, "t", test_size=0.9)[0]) == 16
    # Too small a test_size: sklearn said "test_size = 1 should be greater or equal to the number of classes".
    with pytest.raises(ValueError, match=r"test_size 0.05 holds out 1 of them, too few for one of each class: "
                                         r"raise test_size \(--test-size\); 0.1 holds out one of each$"):
        held_out_split([1] * 10 + [0] * 10, "t", test_size=0.05)
    # A held-out part without a refusal reported F1 0 and AUROC NaN, and the run succeeded.
    with pytest.raises(ValueError, match="holds out 8 of them, no refused prompt among them.*; 0.1 holds out one of each$"):
        held_out_split([1] * 10 + [0] * 150, "t", test_size=0.05)
    with pytest.raises(ValueError, match="training part keeps 0 of the rarer class"):
        held_out_split([1] * 10 + [0] * 10, "t", test_size=0.999)
    assert default_output("meta-llama/Llama-3-8B-Instruct") == "prompt-model-meta-llama-Llama-3-8B-Instruct"
    assert default_output("../") == "prompt-model-target"


def _small_log(path, n=20, extra_lines=()):
    paper = data.load_paper()
    paper = paper[paper["subset"] == "political_figures"].head(n)
    path.write_text("".join(json.dumps({"prompt": p, "response": r}) + "\n" for p, r in zip(paper["prompt"], paper["response"]))
                    + "".join(line + "\n" for line in extra_lines), encoding="utf-8")
    return path


def test_a_failed_or_stopped_train_prompt_leaves_the_earlier_models_errors_file(tmp_path, monkeypatch, capsys):
    """The errors file went in place right after labelling: a run that then failed (too few
    prompts) deleted the earlier model's errors file, and one stopped while training replaced it."""
    from refusal_predictor import prompt_training

    log = _small_log(tmp_path / "log.jsonl", n=120, extra_lines=['{"prompt": "cut'])
    folder, errors = tmp_path / "m", tmp_path / "m.errors.jsonl"
    args = ["--target-name", "t", "-o", str(folder), "--response-model", "ngrams", "--head", "logreg", "--no-progress"]
    assert main(["train-prompt", str(log), *args]) == 0
    model_bytes, errors_text = (folder / "model.joblib").read_bytes(), errors.read_text(encoding="utf-8")
    assert [json.loads(x)["line"] for x in errors_text.splitlines()] == [121]

    few = _small_log(tmp_path / "few.jsonl", n=5)  # nothing skipped, too few prompts
    assert main(["train-prompt", str(few), *args]) == 2
    assert "found" in capsys.readouterr().err
    assert errors.read_text(encoding="utf-8") == errors_text and (folder / "model.joblib").read_bytes() == model_bytes

    def stopped(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(prompt_training, "fit_with_cache", stopped)
    other = _small_log(tmp_path / "other.jsonl", n=120, extra_lines=["not json", "[1]"])
    with pytest.raises(KeyboardInterrupt):
        prompt_training.train_prompt_model(other, "t", folder, response_model="ngrams", head="logreg")
    assert errors.read_text(encoding="utf-8") == errors_text and (folder / "model.joblib").read_bytes() == model_bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["few.jsonl", "log.jsonl", "m", "m.errors.jsonl", "other.jsonl"]
    monkeypatch.undo()
    # A failure while fitting (not the log's shape) leaves it too: prompts without a word, and a bad line.
    wordless = tmp_path / "wordless.jsonl"
    wordless.write_text("".join(json.dumps({"prompt": "?" * (i + 1), "response": REFUSAL if i % 2 else ANSWER}) + "\n"
                                for i in range(40)) + "not json\n", encoding="utf-8")
    assert main(["train-prompt", str(wordless), *args]) == 2
    assert "no text holds a word" in capsys.readouterr().err
    assert errors.read_text(encoding="utf-8") == errors_text and (folder / "model.joblib").read_bytes() == model_bytes

    # A log that cannot train and skipped rows: those rows are what the user needs, named in the message.
    few_bad = _small_log(tmp_path / "few_bad.jsonl", n=5, extra_lines=["not json"])
    assert main(["train-prompt", str(few_bad), *args]) == 2
    assert f"(skipped rows listed in {errors})" in capsys.readouterr().err
    assert [json.loads(x)["file"].endswith("few_bad.jsonl") for x in errors.read_text(encoding="utf-8").splitlines()] == [True]


def test_user_commands_write_no_model_into_the_shipped_models(tmp_path, capsys):
    """train-prompt -o models/prompt/gpt-4 replaced the shipped GPT-4 target without a word."""
    from refusal_predictor.artifacts import sha256_file, shipped_path

    shipped = shipped_path("prompt", "gpt-4")
    before = sha256_file(shipped / "model.joblib")
    # Inputs that could not train or recalibrate anyway: were the check gone, nothing would be written there.
    log = _small_log(tmp_path / "log.jsonl", n=5)
    assert main(["train-prompt", str(log), "--target-name", "gpt-4", "-o", str(shipped), "--response-model", "ngrams"]) == 2
    assert "inside the shipped models" in capsys.readouterr().err
    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text("".join(json.dumps({"response": t, "label": "maybe"}) + "\n" for t in [REFUSAL, ANSWER] * 20),
                        encoding="utf-8")
    response_folder = shipped_path("response", "ngrams")
    assert main(["train-response", str(labelled), "-o", str(response_folder / "mine"), "--no-embeddings"]) == 2
    assert "inside the shipped models" in capsys.readouterr().err
    assert main(["recalibrate", str(labelled), "--model", "ngrams", "-o", str(response_folder), "--no-progress"]) == 2
    assert "inside the shipped models" in capsys.readouterr().err
    # export-encoder replaced a shipped encoder, and every model reading it then failed its hash check.
    assert main(["export-encoder", "no-such-model-anywhere", "-o", str(shipped_path("encoders", "mine"))]) == 2
    assert "inside the shipped models" in capsys.readouterr().err and not shipped_path("encoders", "mine").exists()
    assert sha256_file(shipped / "model.joblib") == before and not (response_folder / "mine").exists()


def test_train_prompt_keeps_one_targets_default_folder_from_another(tmp_path, monkeypatch, capsys):
    """"org/model" and "org model" share the default folder prompt-model-org-model: the second
    run replaced the first's model without a word."""
    monkeypatch.chdir(tmp_path)
    log = _small_log(tmp_path / "log.jsonl", n=120)
    args = ["--response-model", "ngrams", "--head", "logreg", "--no-progress"]
    assert main(["train-prompt", str(log), "--target-name", "org/model", *args]) == 0
    assert main(["train-prompt", str(log), "--target-name", "org model", *args]) == 2
    assert ("prompt-model-org-model holds the model of target 'org/model', the default folder of 'org model' too"
            in capsys.readouterr().err)
    assert PromptClassifier.load("prompt-model-org-model").target == "org/model"
    assert main(["train-prompt", str(log), "--target-name", "org/model", *args]) == 0  # its own: replaced, as asked
    for bad, message in ((["-o", ""], "-o/--output is empty"),
                         (["--target-name", "x" * 300], "--target-name is 300 bytes long"),
                         (["--target-name", "\u6a21" * 90], "--target-name is 270 bytes long"),
                         (["--target-name", "a\nb", "-o", "ab"], "control character"),
                         (["--prompt-field", "response"], "the prompt field and the response field are both 'response'"),
                         (["--model-field", "", "--model-filter", "gpt"], "--model-filter needs --model-field")):
        target = [] if "--target-name" in bad else ["--target-name", "t"]
        assert main(["train-prompt", str(log), *target, *bad, *args]) == 2, bad
        assert message in capsys.readouterr().err, bad
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.jsonl", "prompt-model-org-model"]


def test_prompts_without_a_word_get_an_error_that_says_so(tmp_path, capsys):
    """sklearn's "empty vocabulary; perhaps the documents only contain stop words" named no cause."""
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps({"prompt": "?" * (i + 1), "response": REFUSAL if i % 2 else ANSWER}) + "\n"
                           for i in range(30)), encoding="utf-8")
    assert main(["train-prompt", str(log), "--target-name", "t", "-o", str(tmp_path / "m"), "--response-model", "ngrams",
                 "--head", "logreg", "--no-progress"]) == 2
    assert "no text holds a word (a letter or digit)" in capsys.readouterr().err


def test_cards_are_strict_json_and_render_an_undefined_metric_as_n_a(tmp_path):
    """An AUROC of one class (NaN) was written as NaN, which JavaScript's JSON.parse refuses."""
    from refusal_predictor.artifacts import write_json
    from refusal_predictor.prompt import model_card_markdown

    card = {"target": "t", "evaluation": {"held_out": {"n": 2, "accuracy": 1.0, "f1": 0.0, "auroc": float("nan"),
                                                       "majority_rate": 1.0, "brier": float("inf")}}}
    write_json(tmp_path / "card.json", card)
    text = (tmp_path / "card.json").read_text(encoding="utf-8")
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text, parse_constant=lambda c: pytest.fail(c))["evaluation"]["held_out"]["auroc"] is None
    for written in (card, json.loads(text)):
        assert "| held_out | 2 | 1.0000 | 0.0000 | n/a | 1.0000 |  |  |" in model_card_markdown(written)


def test_the_summary_says_when_it_lists_only_some_reasons():
    from refusal_predictor.bootstrap import BootstrapReport

    report = BootstrapReport(read=7, bad=[BadRecord(i, f"reason {i} (detail)") for i in range(7)])
    assert "2 more for 2 other reasons, in the errors file" in report.summary()


def test_protocols_hold_out_a_prompt_in_every_spelling():
    """The evaluation protocols removed their test prompts from training by exact text only."""
    import pandas as pd

    from training.train_prompt import same_prompt

    held = same_prompt(pd.Series(["What is  the capital of FRANCE?\n", "What is the capital of Spain?", None]),
                       ["what is the capital of france?"])
    assert held.tolist() == [True, False, False]


@pytest.mark.parametrize("threshold", [float("nan"), 1.5, -0.1, "0.5"])
def test_bootstrap_refuses_a_response_threshold_predict_would_refuse(threshold):
    """NaN or 1.5 labelled every response compliance, -0.1 every one refusal, without a word."""
    rc = ResponseClassifier.load("ngrams")
    rc.threshold = threshold
    rows = [{"prompt": "p", "response": "I'm sorry, but I can't help with that."}]
    with pytest.raises(ValueError, match="response model's threshold must be a probability"):
        bootstrap_records(rows, rc)


def test_model_filter_names_the_other_spellings_it_left_out(tmp_path, caplog):
    """``--model-filter gpt-4`` kept exact matches and dropped "GPT-4" and "gpt-4-0613" rows
    without a word."""
    log = _political_log(tmp_path / "log.jsonl", [("gpt-4", str), ("GPT-4", str), ("gpt-4-0613", str), ("claude", str)])
    with caplog.at_level("WARNING", logger="refusal_predictor"):
        train_prompt_model(log, "t", tmp_path / "m", model_field="model", model_filter="gpt-4", head="logreg")
    assert ("--model-filter 'gpt-4' keeps exact matches only (200 rows); left out: 'GPT-4' (200 rows), "
            "'gpt-4-0613' (200 rows)") in caplog.text
    assert "claude" not in caplog.text.split("left out:")[1]


class _FixedScores:
    """A response model that scores each response by a number written in it."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold

    def refusal_probability(self, texts):
        return np.asarray([float(t) for t in texts])


def test_label_confidence_is_the_probability_of_the_label_at_the_models_threshold():
    # Around 0.5 (max(p, 1 - p)), a threshold-0.3 model's refusal at p = 0.32 was kept as 0.68 sure
    # (of the other label), and its compliance at 0.20 and refusal at 0.45 were cut alike.
    rows = _records([{"prompt": f"p{i}", "response": str(p)} for i, p in enumerate([0.32, 0.2, 0.45, 0.95])])
    kept, report = bootstrap_records(rows, _FixedScores(0.3), min_confidence=0.6)
    assert {r["prompt"]: r["label"] for r in kept} == {"p1": "compliance", "p3": "refusal"}
    assert [b.line for b in report.low_confidence] == [1, 3]
    assert "label confidence 0.320 below the cut 0.6 (refusal, refusal probability 0.320)" in report.low_confidence[0].reason
    assert label_confidence({"label": "refusal", "refusal_probability": 0.32}) == pytest.approx(0.32)
    assert label_confidence({"label": "compliance", "refusal_probability": 0.2}) == pytest.approx(0.8)


def test_merge_tie_is_cut_at_the_response_models_threshold():
    # Two answers of a threshold-0.3 model, each labelled by it, average 0.35: above its cut.
    rows, _ = bootstrap_records(_records([{"prompt": "p", "response": "0.45"}, {"prompt": "p", "response": "0.25"}]),
                                _FixedScores(0.3), deduplicate=True)
    assert [(r["label"], r["refusal_rate"], r["refusal_probability"]) for r in rows] == [("refusal", 0.5, 0.35)]


def test_low_confidence_reason_shows_the_digits_that_put_it_below_the_cut():
    _, report = bootstrap_records(_records([{"prompt": "p", "response": "0.000152"}]), _FixedScores(0.5),
                                  min_confidence=0.9999)
    (dropped,) = report.low_confidence
    assert "label confidence 0.9998 below the cut 0.9999" in dropped.reason  # was "1.000 below the cut 0.9999"


def test_repeated_rows_are_counted_with_or_without_dedupe():
    rows = _records([{"prompt": "p", "response": "0.9", "model": "m"}, {"prompt": " P ", "response": "0.9", "model": "m"},
                     {"prompt": "p", "response": "0.9", "model": "other"}, {"prompt": "p", "response": "0.8", "model": "m"}])
    kept, report = bootstrap_records(rows, _FixedScores(0.5))
    assert len(kept) == 4 and report.repeated_rows == 1
    assert ("kept 1 repeats of an earlier row (same prompt up to whitespace and case, response and model; "
            "--dedupe merges them)") in report.summary()
    merged, report = bootstrap_records(rows, _FixedScores(0.5), deduplicate=True)
    assert len(merged) == 2 and report.repeated_rows == 1
    assert "merged 2 duplicate rows (1 repeats of an earlier row; 0 prompts with conflicting labels)" in report.summary()


def test_repeats_the_confidence_cut_drops_are_not_reported_as_kept():
    # The repeats were counted before the cut: "kept 1 exact repeats ... (--dedupe merges them)"
    # for rows that were dropped, under --dedupe.
    rows = _records([{"prompt": "p", "response": "0.95"}, {"prompt": "q", "response": "0.6"}, {"prompt": "q", "response": "0.6"}])
    for deduplicate in (False, True):
        kept, report = bootstrap_records(rows, _FixedScores(0.5), min_confidence=0.9, deduplicate=deduplicate)
        assert [r["prompt"] for r in kept] == ["p"] and report.dropped_low_confidence == 2
        assert report.repeated_rows == 0 and "repeats" not in report.summary()


def test_a_contested_merged_prompt_weighs_less_than_a_clear_one():
    # Answers at 0.55, 0.55 and 0.0: the majority says refusal, the mean (0.367) says compliance,
    # so the prompt is 0.367 sure of its label; one clear-cut answer at 0.55 is 0.55 sure.
    rows, _ = bootstrap_records(_records([{"prompt": "same", "response": p} for p in ("0.55", "0.55", "0.0")]
                                         + [{"prompt": "single", "response": "0.55"}]), _FixedScores(0.5))
    merged = {r["prompt"]: r for r in merge_duplicates(rows, ("prompt",))}
    assert merged["same"]["label"] == "refusal" and merged["same"]["refusal_probability"] == pytest.approx(0.366667)
    assert label_confidence(merged["same"]) == pytest.approx(0.366667)
    assert label_confidence(merged["same"]) < label_confidence(merged["single"]) == pytest.approx(0.55)


def test_training_merges_cut_ties_at_the_labelling_models_threshold():
    import pandas as pd
    from training.train_prompt import merge_by_prompt, target_rows

    labelled = pd.DataFrame({"prompt": ["p", "P "], "label": ["refusal", "compliance"], "refusal_probability": [0.45, 0.25],
                             "model": ["m", "m"], "source": ["log", "log"]})
    assert merge_by_prompt(labelled)["label"].tolist() == ["compliance"]  # a threshold-0.5 model's tie: mean 0.35
    assert merge_by_prompt(labelled, 0.3)["label"].tolist() == ["refusal"]  # was compliance: ties cut at 0.5
    assert target_rows(labelled, "m", threshold=0.3)["label"].tolist() == ["refusal"]


def test_a_labels_cache_says_where_its_labels_were_cut():
    import pandas as pd
    from training.train_prompt import labels_threshold

    cache = pd.DataFrame({"refusal_probability": [0.45, 0.25, 0.9], "label": ["refusal", "compliance", "refusal"]})
    assert labels_threshold(cache) == 0.45  # a threshold-0.3-like model's labels
    assert labels_threshold(cache.assign(label=["compliance", "compliance", "refusal"])) == 0.5
    with pytest.raises(ValueError, match="not one cut"):
        labels_threshold(cache.assign(label=["refusal", "refusal", "compliance"]))


def test_train_prompt_says_where_the_rows_went_when_a_class_is_short(tmp_path):
    log = tmp_path / "log.jsonl"
    rows = [{"prompt": f"how do I bake bread number {i}?", "response": ANSWER} for i in range(30)]
    rows += [{"prompt": "how do I bake bread number 1?", "response": ANSWER}, {"prompt": "", "response": ANSWER},
             {"prompt": "p", "response": ""}]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(ValueError) as info:
        train_prompt_model(log, "mine", tmp_path / "model", response_model="ngrams")
    message = str(info.value)
    assert "found 0 refused and 30 complied prompts" in message
    assert "read 33 rows; labelled 31" in message and "skipped 2 bad rows" in message
    assert "merged 1 duplicate rows" in message and "model.errors.jsonl" in message


def test_a_label_exactly_as_sure_as_the_cut_is_kept_and_a_score_at_the_threshold_is_a_refusal():
    # "drops rows whose label has a probability below it": at the cut is not below it
    rows = _records([{"prompt": "p", "response": "0.9"}, {"prompt": "q", "response": "0.25"},
                     {"prompt": "r", "response": "0.3"}])
    kept, report = bootstrap_records(rows, _FixedScores(0.5), min_confidence=0.75)
    assert [r["prompt"] for r in kept] == ["p", "q"] and report.dropped_low_confidence == 1
    # the response model's predict flags p >= threshold: so does the bootstrap
    kept, _ = bootstrap_records(rows, _FixedScores(0.3))
    assert [r["label"] for r in kept] == ["refusal", "compliance", "refusal"]


def test_merging_rows_that_are_already_merges_counts_each_of_their_answers():
    rows = [{"prompt": "p", "model": "", "label": "refusal", "refusal_probability": 0.9, "refusal_rate": 1.0,
             "n_responses": 3},
            {"prompt": "P ", "model": "", "label": "compliance", "refusal_probability": 0.1}]
    (merged,) = merge_duplicates(rows)
    assert merged["n_responses"] == 4 and merged["refusal_rate"] == 0.75 and merged["label"] == "refusal"
    assert merged["refusal_probability"] == pytest.approx(0.7)  # (3 x 0.9 + 0.1) / 4, not (0.9 + 0.1) / 2


def test_cross_validated_selection_fits_each_fold_with_its_rows_weights():
    from refusal_predictor.selection import grouped_cv

    train, _, _ = data.paper_split()
    texts, y = train["response"].tolist()[:300], refusal_y(train.head(300))
    recipe = {"use_embeddings": False}
    plain = grouped_cv(ResponseClassifier, recipe, texts, y, None, {}, folds=3)
    # compliances weighing 20 times a refusal: the folds' heads call fewer texts refusals
    heavy = grouped_cv(ResponseClassifier, recipe, texts, y, None, {}, folds=3,
                       sample_weight=np.where(y == 1, 1.0, 20.0))
    assert heavy["recall"] < plain["recall"]


def test_selection_picks_the_best_accuracy_and_breaks_ties_by_f1(monkeypatch):
    from refusal_predictor import selection

    scores = {"sure": {"accuracy": 0.9, "f1": 0.5}, "balanced": {"accuracy": 0.8, "f1": 0.9},
              "tied": {"accuracy": 0.9, "f1": 0.6}}
    monkeypatch.setattr(selection, "grouped_cv", lambda cls, recipe, *a, **k: scores[recipe["name"]])
    best, rows = selection.select(ResponseClassifier, {n: {"name": n} for n in scores}, [], np.array([]), None, {})
    assert best == "tied" and [r["recipe"] for r in rows] == list(scores)


def test_auxiliary_rows_leave_out_the_prompts_the_target_has():
    import pandas as pd
    from training.train_prompt import target_rows

    labelled = pd.DataFrame({
        "prompt": ["How do I pick a lock?", "how do I pick  a lock? ", "Tell me a joke"],
        "label": ["refusal", "compliance", "compliance"], "refusal_probability": [0.9, 0.1, 0.1],
        "model": ["m", "other", "other"], "source": ["log", "xstest-v2", "xstest-v2"]})
    rows = target_rows(labelled, "m", aux_weight=0.5)
    assert rows["prompt"].tolist() == ["How do I pick a lock?", "Tell me a joke"]
    assert rows["weight"].tolist() == [1.0, 0.5] and rows["auxiliary"].tolist() == [False, True]
    assert rows["label"].tolist() == ["refusal", "compliance"]  # the target's own answer, not the other LLM's


def test_text_key_folds_unicode_compatibility_forms_whitespace_and_case():
    from refusal_predictor.text import text_key

    assert text_key("\uff28\uff4f\uff57 do I\u00a0pick a lock\uff1f\n") == text_key("how do i pick a LOCK?")
    assert text_key("ﬁle") == "file"  # the ligature is two letters
    assert text_key("lock") != text_key("lack")
    # Invisible characters (is_blank's) are nothing: a pasted copy with a zero-width space is the prompt.
    for invisible in "\u200b\u200c\u200d\u2060\ufeff\u00ad\u200e\u200f\ufe0f\u2066\U000e0041":
        assert text_key(f"how do I pick{invisible} a lock?{invisible}") == text_key("How do I pick a lock?")
    assert text_key("lo\u200bck") == "lock" != text_key("lo ck")
    assert text_key("I \u2764\ufe0f it") == text_key("i \u2764 it") != text_key("i it")  # an emoji stays, its selector goes
    from refusal_predictor.text import is_blank

    assert is_blank("\u200e\ufe0f \u2066\u2069") and not is_blank("\u2764\ufe0f")


def test_copies_differing_by_an_invisible_character_merge_and_never_straddle_the_split(response_model):
    """Kept apart, a copy trained while its twin was held out: a log of 300 paper prompts, each
    again with a zero-width space, reported held-out AUROC 0.98 where the true one was 0.83."""
    rows = [{"prompt": f"tell me about topic {i}", "response": REFUSAL if i % 2 else ANSWER} for i in range(6)]
    rows += [{**r, "prompt": r["prompt"] + "\u200b"} for r in rows] + [{**r, "prompt": "\ufeff" + r["prompt"]} for r in rows]
    labelled, report = bootstrap_records(_records(rows), response_model, deduplicate=True)
    assert report.merged_duplicates == 12 and len(labelled) == 6
    assert [r["n_responses"] for r in labelled] == [3] * 6


def test_a_model_field_that_is_not_text_is_written_in_its_json_spelling(response_model):
    """str() wrote a boolean model field as "True" and an object as "{'n': 'gpt'}" (fuzzing)."""
    rows = _records([{"prompt": "p1", "response": ANSWER, "model": True},
                     {"prompt": "p2", "response": ANSWER, "model": {"n": "gpt"}},
                     {"prompt": "p3", "response": ANSWER, "model": 4},
                     {"prompt": "p4", "response": ANSWER, "model": "gpt-4"},
                     {"prompt": "p5", "response": ANSWER, "model": datetime.datetime(2024, 5, 1, 12)},
                     {"prompt": "p6", "response": ANSWER, "model": b"gpt-4"}])  # Parquet timestamps and bytes
    labelled, _ = bootstrap_records(rows, response_model, model_field="model")
    assert [r["model"] for r in labelled] == ["true", '{"n": "gpt"}', "4", "gpt-4", "2024-05-01T12:00:00", "Z3B0LTQ="]


def test_a_merged_tie_is_written_on_the_side_of_the_threshold_its_label_is(tmp_path):
    """A tie goes to the mean probability: 0.4999995 is a compliance, and was written as 0.5."""
    from refusal_predictor import bootstrap_file

    class Stub:
        threshold = 0.5

        def refusal_probability(self, texts):
            return np.array([{"a": 0.999998, "b": 0.000001}[t] for t in texts])

    log, out = tmp_path / "log.jsonl", tmp_path / "labels.jsonl"
    log.write_text(json.dumps({"prompt": "P", "response": "a"}) + "\n" + json.dumps({"prompt": "p ", "response": "b"}) + "\n",
                   encoding="utf-8")
    bootstrap_file(log, out, Stub(), deduplicate=True)
    [row] = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert row["label"] == "compliance" and row["refusal_rate"] == 0.5
    assert row["refusal_probability"] < 0.5 and row["refusal_probability"] == pytest.approx(0.4999995)


def test_a_majority_a_hair_from_half_is_not_written_as_a_tie():
    from refusal_predictor.bootstrap import merge_duplicates

    rows = [{"prompt": "P", "label": "compliance", "refusal_probability": 0.1, "refusal_rate": 0.0, "n_responses": 500001},
            {"prompt": "p", "label": "refusal", "refusal_probability": 0.9, "refusal_rate": 1.0, "n_responses": 500000}]
    [merged] = merge_duplicates(rows, ("prompt",), threshold=0.5)
    assert merged["label"] == "compliance" and merged["n_responses"] == 1000001
    assert merged["refusal_rate"] == pytest.approx(500000 / 1000001) and merged["refusal_rate"] < 0.5
    [again] = merge_duplicates([merged], ("prompt",), threshold=0.5)  # merged again, still the majority's label
    assert again["label"] == "compliance"


def test_bootstrap_without_dedupe_writes_rows_as_it_labels_them(tmp_path, response_model, monkeypatch):
    """Every labelled row (and every row's prompt and response, for the repeat count) was held
    until the end: 1,000,000 rows took 840 MB. Now rows go to the file batch by batch."""
    from refusal_predictor import bootstrap, record_writer
    from refusal_predictor.bootstrap import _row_digest, bootstrap_file

    log = tmp_path / "log.jsonl"
    rows = [{"prompt": f"p{i % 700}", "response": REFUSAL if i % 3 else ANSWER} for i in range(1500)]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows) + "broken\n", encoding="utf-8")
    batches = []
    real = record_writer.RecordWriter.write_many
    monkeypatch.setattr(record_writer.RecordWriter, "write_many", lambda self, records: (batches.append(len(records)), real(self, records)))
    report = bootstrap_file(log, tmp_path / "labels.jsonl", response_model)
    assert [n for n in batches if n] == [512, 512, 476]
    written = [json.loads(x) for x in (tmp_path / "labels.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["prompt"] for r in written] == [r["prompt"] for r in rows] and report.written == 1500
    seen, repeats = set(), 0
    for r in rows:
        repeats += (r["prompt"], r["response"]) in seen
        seen.add((r["prompt"], r["response"]))
    assert report.repeated_rows == repeats == 300
    assert report.output_written and [b.line for b in report.bad] == [1501]
    assert _row_digest("ab", "c") != _row_digest("a", "bc") and _row_digest("a", "b") == _row_digest("a", "b")
    with pytest.raises(ValueError, match="exclude each other"):
        bootstrap.bootstrap_records([], response_model, deduplicate=True, sink=print)


def test_bootstrap_max_skipped_stops_without_writing_and_does_not_count_the_confidence_cut(tmp_path, capsys):
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps(row) + "\n" for row in [
        {"prompt": "a", "response": REFUSAL}, {"prompt": "", "response": ANSWER}, {"prompt": "b"},
        {"prompt": "c", "response": ANSWER}]), encoding="utf-8")
    out = tmp_path / "labels.jsonl"
    base = ["bootstrap", str(log), "-o", str(out), "--response-model", "ngrams", "--no-progress"]
    for dedupe in ([], ["--dedupe"]):
        assert main([*base, "--max-skipped", "1", *dedupe]) == 1
        captured = capsys.readouterr()
        assert "stopped at line 3: more than 1 row skipped" in captured.out and "was not written" in captured.err
        assert not out.exists()
        assert [e["line"] for e in map(json.loads, (tmp_path / "labels.jsonl.errors.jsonl").open())] == [2, 3]
    # rows dropped below --min-confidence are dropped by choice: they do not count
    assert main([*base, "--max-skipped", "2", "--min-confidence", "1.0"]) == 1
    assert "below --min-confidence" in capsys.readouterr().err  # the run's own failure, not the limit's
    assert main([*base, "--max-skipped", "2"]) == 0
    assert [r["prompt"] for r in map(json.loads, out.open())] == ["a", "c"]


def test_bootstrap_records_refuses_a_negative_or_fractional_max_skipped(response_model):
    for value in (-1, 0.5, True):
        with pytest.raises(ValueError, match="max_skipped"):
            bootstrap_records(_records([{"prompt": "p", "response": ANSWER}]), response_model, max_skipped=value)


def test_a_stopped_bootstrap_lists_only_the_skipped_rows_and_counts_no_labels(tmp_path, capsys):
    """The errors file held the unsure labels of whichever batches ran before the stop."""
    log = tmp_path / "log.jsonl"
    rows = [{"prompt": f"q{i}", "response": ANSWER if i % 2 else REFUSAL} for i in range(600)]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows) + "not json\n[1]\n", encoding="utf-8")
    out = tmp_path / "labels.jsonl"
    assert main(["bootstrap", str(log), "-o", str(out), "--response-model", "ngrams", "--no-progress",
                 "--min-confidence", "0.999999", "--max-skipped", "1"]) == 1
    printed = capsys.readouterr().out
    assert "read 602 rows; skipped 2 bad rows" in printed and "labelled" not in printed
    errors = [json.loads(x) for x in (tmp_path / "labels.jsonl.errors.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [e["line"] for e in errors] == [601, 602]


def test_a_sigterm_just_after_train_prompt_swaps_its_model_in_keeps_the_new_errors_file(tmp_path, monkeypatch, capsys):
    """Handled between the model folder's rename and the errors file's last step, the signal put
    the earlier model's errors file back beside the new model; the command now acts on it after."""
    import os
    import signal

    folder, errors = tmp_path / "m", tmp_path / "m.errors.jsonl"
    args = ["--target-name", "t", "-o", str(folder), "--response-model", "ngrams", "--head", "logreg", "--no-progress"]
    assert main(["train-prompt", str(_small_log(tmp_path / "log.jsonl", n=120, extra_lines=["cut"])), *args]) == 0
    real_rename = os.rename

    def rename_then_signal(src, dst, *a, **k):
        real_rename(src, dst, *a, **k)
        if os.path.abspath(dst) == str(folder):
            os.kill(os.getpid(), signal.SIGTERM)  # as if it arrived during rename(2)

    monkeypatch.setattr(os, "rename", rename_then_signal)
    other = _small_log(tmp_path / "other.jsonl", n=120, extra_lines=["not json", "[1]"])
    assert main(["train-prompt", str(other), *args]) == 128 + signal.SIGTERM
    assert "stopped by SIGTERM" in capsys.readouterr().err
    monkeypatch.undo()
    assert PromptClassifier.load(folder).metadata["training"]["sources"][0]["source"] == "other.jsonl"  # the new model
    assert [(json.loads(x)["file"].endswith("other.jsonl"), json.loads(x)["line"])
            for x in errors.read_text(encoding="utf-8").splitlines()] == [(True, 121), (True, 122)]
