"""The tone of a response (complied, rejected, redirected, ...) on the paper's hand-labelled tones.

The shipped models' tone heads are measured on the paper's test split; the fit / save / load
contract is tested on small n-gram models so it runs in seconds.
"""
from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import sklearn
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from refusal_predictor import ModelFileError, ResponseClassifier
from refusal_predictor.artifacts import shipped_path
from refusal_predictor.batch import score_file
from refusal_predictor.cli import main
from training import data

REFUSAL_TONES = ["contradicted", "disclaimed", "redirected", "rejected"]


@pytest.fixture(scope="module")
def split():
    train, val, test = data.paper_split()
    return pd.concat([train, val]), test


@pytest.fixture(scope="module")
def toned(split):
    """An n-gram model with a tone head, fitted on the paper's train + validation rows."""
    train, _ = split
    texts = train["response"].tolist()
    return ResponseClassifier(use_embeddings=False, validation_curve=False).fit(
        texts, train["label"].tolist()).fit_tones(texts, train["fine_label"].tolist())


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("variant", ["default", "ngrams"])
def test_shipped_tones_on_the_paper_test_split(variant, split):
    """Majority tone: accuracy 0.609, refusals 0.59; the shipped default measured 0.863 / 0.81."""
    _, test = split
    model = ResponseClassifier.load(variant)
    assert list(model.tones_) == ["complied", *REFUSAL_TONES]
    texts, truth = test["response"].tolist(), test["fine_label"].to_numpy(dtype=object)
    tones = model.predict_tone(texts)
    assert np.mean(tones == truth) > 0.84
    refused = (test["label"] == "refusal").to_numpy()
    _, how = model.refusal_probability_and_tone(texts, threshold=0.0)
    assert np.mean(how[refused] == truth[refused]) > 0.75
    assert set(how[refused]) >= {"rejected", "redirected"}  # not one tone for everything


def test_tone_refines_the_label_never_contradicts_it(response_model, split):
    _, test = split
    texts = test["response"].tolist()[:60] + ["", "I'm sorry, but I can't help with that."]
    labels, tones = response_model.predict(texts), response_model.predict_tone(texts)
    assert ((tones == "complied") == (labels == "compliance")).all()
    assert tones[-1] == "rejected"
    joint = response_model.predict_tone_proba(texts)
    assert joint.shape == (len(texts), 5)
    np.testing.assert_allclose(joint.sum(axis=1), 1.0, atol=1e-9)
    np.testing.assert_allclose(joint[:, 0], response_model.predict_proba(texts)[:, 0], atol=1e-12)
    at_zero = response_model.predict_tone(texts, threshold=0.0)
    assert "complied" not in set(at_zero)
    assert response_model.predict_tone([]).shape == (0,)
    assert response_model.predict_tone_proba([]).shape == (0, 5)
    assert response_model.predict_tone("I cannot help with that.").shape == (1,)


def test_fit_save_load_keeps_the_tone_head_and_fit_drops_it(toned, split, tmp_path):
    _, test = split
    texts = test["response"].tolist()
    before = toned.predict_tone(texts)
    assert list(toned.tones_) == ["complied", *REFUSAL_TONES]
    assert toned.metadata["tones"]["dropped_tones"] == {"counseling": 1}
    toned.save(tmp_path / "m")
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["tones"] == {"compliance": "complied", "refusal": REFUSAL_TONES,
                                 "versions": {"scikit-learn": sklearn.__version__}}  # of the tone head's pickle
    assert "tones.joblib" in manifest["files"]
    loaded = ResponseClassifier.load(tmp_path / "m")
    assert (loaded.predict_tone(texts) == before).all()
    refit = clone(toned).fit(texts, test["label"].tolist())
    with pytest.raises(NotFittedError, match="fit_tones"):
        refit.predict_tone(texts)
    loaded.fit(texts, test["label"].tolist())  # a refit voids the tone head, also on disk
    loaded.save(tmp_path / "m")
    assert not (tmp_path / "m" / "tones.joblib").exists()
    assert not hasattr(ResponseClassifier.load(tmp_path / "m"), "tones_")


def test_fit_tones_errors_say_what_they_found(split):
    train, _ = split
    texts = train["response"].tolist()[:200]
    model = ResponseClassifier(use_embeddings=False, validation_curve=False).fit(texts, train["label"].tolist()[:200])
    with pytest.raises(NotFittedError):
        ResponseClassifier().fit_tones(texts, ["rejected"] * len(texts))
    with pytest.raises(ValueError, match=r"at least two refusal tones .* rejected: 3"):
        model.fit_tones(texts[:10], ["complied"] * 7 + ["rejected"] * 3)
    with pytest.raises(ValueError, match="all 4 tones are 'complied'"):
        model.fit_tones(texts[:4], ["Complied "] * 4)
    with pytest.raises(ValueError, match="10 texts but 9 tones"):
        model.fit_tones(texts[:10], ["rejected"] * 9)
    with pytest.raises(TypeError, match="tone 1 is int"):
        model.fit_tones(texts[:2], ["rejected", 3])
    with pytest.raises(ValueError, match="tone 0 is empty"):
        model.fit_tones(texts[:2], [" ", "rejected"])


def test_save_tones_leaves_the_model_file_as_it_is(tmp_path, split):
    """Prompt model cards name the response model that bootstrapped their labels by sha256: giving it a
    tone head must not change that file; save() writes the whole model, and never alters the live one."""
    folder = tmp_path / "ngrams"
    shutil.copytree(shipped_path("response-ngrams"), folder)
    (folder / "MODEL_CARD.md").write_text("my notes")
    shipped_sha = _sha(folder / "model.joblib")
    train, _ = split
    model = ResponseClassifier.load(folder)
    model.fit_tones(train["response"].tolist(), train["fine_label"].tolist(), C=1.0)
    model.save_tones(folder, metadata={"note": "refit"})
    assert _sha(folder / "model.joblib") == shipped_sha
    assert (folder / "MODEL_CARD.md").read_text() == "my notes"
    reloaded = ResponseClassifier.load(folder)
    assert reloaded.tone_head_.C == 1.0 and reloaded.metadata["note"] == "refit"
    assert reloaded.metadata["tones"]["dropped_tones"] == {"counseling": 1}
    # Another folder, or one whose model.joblib is not the one this model came from, is refused.
    with pytest.raises(ValueError, match="does not hold the model this one was loaded from"):
        model.save_tones(shipped_path("response"))
    # save() pickles the model as it is now, and leaves the live model whole (threads may use it).
    model.features_.set_params(embedding_weight=0.5)
    model.save(tmp_path / "whole")
    assert hasattr(model, "tone_head_")
    assert ResponseClassifier.load(tmp_path / "whole").features_.embedding_weight == 0.5
    assert b"tone_head_" not in (tmp_path / "whole" / "model.joblib").read_bytes()  # saved beside it


def test_blank_responses_have_one_tone_in_every_model():
    """Nothing to read a tone from: the commonest refusal tone, as the probability is fixed at 1.0."""
    blanks = ["", "   ", "\u200b"]
    for variant in ("default", "ngrams"):
        model = ResponseClassifier.load(variant)
        assert list(model.predict_tone(blanks)) == ["rejected"] * 3
        np.testing.assert_allclose(model.predict_tone_proba(blanks)[:, -1], 1.0)


def test_a_refused_fit_keeps_the_tone_head(toned):
    model = clone(toned).fit(*_few(40)).fit_tones(*_few_tones(40))
    with pytest.raises(ValueError, match="at least 5 examples of each class"):
        model.fit(["No.", "Sure."], ["refusal", "compliance"])
    assert model.predict_tone("I'm sorry, I can't do that.")[0] != "complied"
    texts, tones = _few_tones(40)
    with pytest.raises(ValueError, match=r"40 texts but sample_weight has shape \(41,\)"):
        model.fit_tones(texts, tones, sample_weight=np.ones(41))


def _few(n):
    texts, _ = _few_tones(n)
    return texts, ["refusal" if i % 2 else "compliance" for i in range(n)]


def _few_tones(n):
    texts = [f"I cannot help with request {i}, sorry." if i % 2 else f"Here is answer {i}: yes." for i in range(n)]
    tones = ["complied" if i % 2 == 0 else ("rejected" if i % 4 == 1 else "redirected") for i in range(n)]
    return texts, tones


def test_a_tone_file_of_another_model_or_corrupt_is_a_named_error(toned, tmp_path):
    toned.save(tmp_path / "m")
    folder = tmp_path / "m"
    shutil.copy(shipped_path("response") / "tones.joblib", folder / "tones.joblib")
    manifest = json.loads((folder / "manifest.json").read_text())
    with pytest.raises(ModelFileError, match="tones.joblib"):
        ResponseClassifier.load(folder)  # sha256 mismatch
    manifest["files"]["tones.joblib"] = _sha(folder / "tones.joblib")
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="tones.joblib: fitted on .* it belongs to another model"):
        ResponseClassifier.load(folder)


def test_clone_keeps_the_empty_response_setting_and_variant_names_ignore_case():
    model = ResponseClassifier(use_embeddings=False)
    model.empty_response_probability = None
    assert clone(model).empty_response_probability is None
    assert clone(ResponseClassifier()).empty_response_probability == 1.0
    assert ResponseClassifier.load(" NGRAMS").manifest_["params"]["use_embeddings"] is False


def test_label_responses_adds_the_tone(tmp_path, capsys):
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(json.dumps({"id": i, "response": r}) for i, r in enumerate([
        "I'm sorry, but I cannot help with that request.",
        "Sure! Here are five ideas for a birthday party: a picnic, a treasure hunt, karaoke, a movie night and a bake-off.",
        "It is not appropriate to make assumptions about someone's character. I suggest consulting reliable sources.",
    ])) + "\n")
    out = tmp_path / "out.jsonl"
    assert main(["label-responses", str(log), "-o", str(out), "--model", "ngrams", "--tone", "--no-progress"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["tone"] for r in rows][:2] == ["rejected", "complied"]
    assert all((r["tone"] == "complied") == (r["label"] == "compliance") for r in rows)
    assert rows[2]["tone"] in REFUSAL_TONES
    # --threshold moves the tone with the label
    assert main(["label-responses", str(log), "-o", str(tmp_path / "all.jsonl"), "--model", "ngrams", "--tone",
                 "--tone-field", "how", "--threshold", "0", "--no-progress"]) == 0
    assert all(json.loads(line)["how"] in REFUSAL_TONES for line in (tmp_path / "all.jsonl").read_text().splitlines())
    # the tone field is an output field: one already in the input is refused before scoring
    clash = tmp_path / "clash.jsonl"
    clash.write_text(json.dumps({"response": "No.", "tone": "mine"}) + "\n")
    capsys.readouterr()
    assert main(["label-responses", str(clash), "-o", str(tmp_path / "c.jsonl"), "--model", "ngrams", "--tone"]) == 2
    assert "already has a field 'tone'" in capsys.readouterr().err


def test_label_responses_tone_needs_a_tone_head(toned, tmp_path, capsys):
    log0 = tmp_path / "log0.jsonl"
    log0.write_text('{"response": "No."}\n')
    assert main(["label-responses", str(log0), "-o", str(tmp_path / "o0.jsonl"), "--tone-field", "how"]) == 2
    assert "--tone-field names the field of --tone; add --tone" in capsys.readouterr().err
    assert main(["label-responses", str(log0), "-o", str(tmp_path / "o0.jsonl"), "--label-field", " "]) == 2
    assert "output field names must be non-empty" in capsys.readouterr().err
    folder = tmp_path / "plain"
    ResponseClassifier(use_embeddings=False, validation_curve=False).fit(
        ["No, I cannot.", "Sure, here it is."] * 10, ["refusal", "compliance"] * 10).save(folder)
    log = tmp_path / "log.jsonl"
    log.write_text('{"response": "No."}\n')
    assert main(["label-responses", str(log), "-o", str(tmp_path / "o.jsonl"), "--model", str(folder), "--tone"]) == 2
    assert "no tone head" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()


def test_score_file_checks_what_a_scorer_returns(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text('{"response": "a"}\n{"response": "b"}\n')
    with pytest.raises(ValueError, match=r"returned the fields \['x'\]; expected \['tone'\]"):
        score_file(lambda t: (np.zeros(len(t)), {"x": ["a"] * len(t)}), log, tmp_path / "o.jsonl",
                   text_field="response", extra_fields=("tone",), progress=False)
    with pytest.raises(ValueError, match=r"returned \(1,\) 'tone' values for 2 texts"):
        score_file(lambda t: (np.zeros(len(t)), {"tone": ["a"]}), log, tmp_path / "o.jsonl",
                   text_field="response", extra_fields=("tone",), progress=False)
    assert not (tmp_path / "o.jsonl").exists()


def test_tone_report_names_and_measures_the_model_it_was_given(toned, split):
    """The report named any model "(shipped)"; its row is the model's own tone accuracy."""
    from training.evaluate import SHIPPED, model_name, tone_report

    pool, test = split
    assert model_name(None) == SHIPPED
    rows = tone_report(toned, pool, model_name("my-model"))
    ours = rows[0]
    assert ours["model"] == "refusal-predictor (my-model)"
    truth = test["fine_label"].to_numpy(dtype=object)
    assert ours["accuracy"] == pytest.approx(np.mean(toned.predict_tone(test["response"].tolist()) == truth))
    assert rows[-1]["accuracy"] == pytest.approx(np.mean(truth == "complied"))  # the majority tone


def test_a_fit_that_fails_part_way_leaves_the_model_as_it_was(toned, split):
    """A NaN weight failed the head's fit after the new vocabulary was in place: 80 of 300 labels
    flipped and the tone head was gone, with no word."""
    model = clone(toned).fit(*_few(40)).fit_tones(*_few_tones(40))
    _, test = split
    texts = test["response"].tolist()[:60]
    before, tones_before = model.predict_proba(texts), model.predict_tone(texts)
    train, _ = split
    weights = np.ones(len(train))
    weights[7] = np.nan
    with pytest.raises(ValueError, match="sample_weight must be finite and not negative; row 7 is nan"):
        model.fit(train["response"].tolist(), train["label"].tolist(), sample_weight=weights)
    np.testing.assert_array_equal(model.predict_proba(texts), before)
    assert list(model.predict_tone(texts)) == list(tones_before)
    weights[7] = -1.0
    with pytest.raises(ValueError, match="row 7 is -1.0"):  # fit_tones took it and learned a degenerate head
        model.fit_tones(train["response"].tolist(), train["fine_label"].tolist(), sample_weight=weights)


def test_save_tones_refuses_a_head_of_a_refitted_model_and_follows_save(tmp_path, split):
    train, _ = split
    texts, labels, tones = train["response"].tolist(), train["label"].tolist(), train["fine_label"].tolist()
    folder = tmp_path / "a"
    shutil.copytree(shipped_path("response-ngrams"), folder)
    model = ResponseClassifier.load(folder)
    model.fit(texts[:400], labels[:400]).fit_tones(texts[:400], tones[:400])  # other features, same width
    with pytest.raises(ValueError, match="does not hold the model this one was loaded from"):
        model.save_tones(folder)  # its model.joblib would be left beside a head of other features
    model.save(folder)  # now it is the model in that folder
    model.fit_tones(texts, tones, C=1.0)
    model.save_tones(folder)
    assert ResponseClassifier.load(folder).tone_head_.C == 1.0


def test_a_compliance_tone_the_data_does_not_use_is_refused(toned, split):
    """Compliances named otherwise were learned as a refusal tone: 18 of 115 refusals got 'compliance'."""
    model = clone(toned).fit(*_few(40))
    texts, tones = _few_tones(40)
    renamed = ["compliance" if t == "complied" else t for t in tones]
    with pytest.raises(ValueError, match=r"no row has the compliance tone 'complied'.*compliance_tone='compliance'"):
        model.fit_tones(texts, renamed)
    with pytest.raises(ValueError, match="no row has the compliance tone 'complies'"):
        model.fit_tones(texts, tones, compliance_tone="complies")
    with pytest.raises(ValueError, match="compliance_tone is empty"):
        model.fit_tones(texts, tones, compliance_tone=" ")
    with pytest.raises(TypeError, match="compliance_tone must be a str"):
        model.fit_tones(texts, tones, compliance_tone=None)
    model.fit_tones(texts, renamed, compliance_tone="Compliance")  # named: read as tones are
    assert list(model.tones_)[0] == "compliance"
    refusal_only = [(x, t) for x, t in zip(texts, tones) if t != "complied"]  # refusals alone are fine
    model.fit_tones([x for x, _ in refusal_only], [t for _, t in refusal_only])


def test_tone_probabilities_sum_to_one_and_refitting_on_the_same_features_keeps_their_record(toned, split):
    _, test = split
    texts = test["response"].tolist()[:80]
    proba = toned.predict_tone_proba(texts)
    assert proba.dtype == np.float64 and np.abs(proba.sum(axis=1) - 1).max() < 1e-12  # was float32: 1e-7 off
    np.testing.assert_array_equal(proba[:, 0], toned.predict_proba(texts)[:, 0])
    model = clone(toned).fit(*_few(40)).fit_tones(*_few_tones(40))
    recorded = model.metadata["tones"]
    model.fit(*_few(40), features=model.features_)  # the same features: the head is kept, and its record
    assert model.metadata["tones"] == recorded and hasattr(model, "tone_head_")


def test_a_tone_file_giving_other_tones_than_the_manifest_lists_is_refused_unverified(toned, tmp_path):
    toned.save(tmp_path / "m")
    other = clone(toned).fit(*_few(40))
    other.features_ = toned.features_  # the same width, other tones
    other.fit_tones(*_few_tones(40))
    import joblib

    joblib.dump(other.tone_head_, tmp_path / "m" / "tones.joblib")
    with pytest.raises(ModelFileError, match="tones.joblib: gives the tones .* but manifest.json lists"):
        ResponseClassifier.load(tmp_path / "m", verify=False)


def test_tone_edge_cases_after_the_review(toned, tmp_path):
    model = clone(toned).fit(*_few(40))
    texts, tones = _few_tones(40)
    weights = [1.0 if t == "complied" else 0.0 for t in tones]  # weight only on rows the head never sees
    with pytest.raises(ValueError, match="sample_weight is zero for every refusal row"):
        model.fit_tones(texts, tones, sample_weight=weights)
    renamed = ["compliance" if t == "complied" else t for t in tones]
    with pytest.raises(ValueError, match="train-response --compliance-tone compliance"):
        model.fit_tones(texts, renamed)
    toned.save(tmp_path / "m")
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    manifest["tones"] = ["rejected"]  # not covered by a sha256: a named error, not an AttributeError
    (tmp_path / "m" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="manifest.json: 'tones' must be an object"):
        ResponseClassifier.load(tmp_path / "m")


def test_a_tone_file_the_manifest_does_not_list_is_ignored_with_a_warning(toned, tmp_path):
    """Only a hand copy puts one there; it is not used (no sha256 ties it to the model), and saying
    so beats a model that silently predicts no tones."""
    toned.save(tmp_path / "m")
    plain = clone(toned).fit(*_few(40))  # no tone head
    plain.save(tmp_path / "plain")
    shutil.copy(tmp_path / "m" / "tones.joblib", tmp_path / "plain" / "tones.joblib")
    with pytest.warns(UserWarning, match=r"tones.joblib is not listed in .*manifest.json, so it is ignored"):
        model = ResponseClassifier.load(tmp_path / "plain")
    with pytest.raises(NotFittedError):
        model.predict_tone(["I'm sorry, I can't."])
    plain.save(tmp_path / "plain")  # save() removes the stray file with the manifest it writes
    assert not (tmp_path / "plain" / "tones.joblib").exists()


def _tone_rows(counts, seed=0):
    """Feature rows that tell the tones apart, ``counts`` rows of each tone."""
    rng = np.random.default_rng(seed)
    tones = [t for t, n in counts.items() for _ in range(n)]
    X = rng.normal(size=(len(tones), len(counts)))
    for i, t in enumerate(tones):
        X[i, list(counts).index(t)] += 3.0
    return X, tones


def test_tone_head_needs_as_many_rows_of_a_tone_as_it_has_folds():
    from refusal_predictor.tones import ToneHead

    X, tones = _tone_rows({"rejected": 8, "redirected": 5, "disclaimed": 3})
    head = ToneHead(min_examples=2).fit(X, tones)  # 5 folds: 3 rows cannot be cross-validated
    assert list(head.tones_) == ["redirected", "rejected"] and head.metadata_["dropped_tones"] == {"disclaimed": 3}
    assert head.metadata_["rows"] == {"redirected": 5, "rejected": 8}  # exactly as many rows as folds: kept


def test_a_weighted_tone_head_gives_blank_responses_the_tone_of_most_weight():
    from refusal_predictor.tones import ToneHead

    X, tones = _tone_rows({"rejected": 8, "redirected": 6})
    assert ToneHead().fit(X, tones).default_tone_ == "rejected"
    weights = [1.0] * 8 + [3.0] * 6  # 8 against 18 by weight
    assert ToneHead().fit(X, tones, sample_weight=weights).default_tone_ == "redirected"


def test_a_model_saved_by_another_scikit_learn_loads_quietly_and_says_so_once(toned, tmp_path, monkeypatch, caplog):
    """scikit-learn warns for every pickled estimator of another version; the model says it once
    (its log line) and silences those only for such a model. A tone head saved later beside the
    model (save_tones) records its own version: it was judged by the model's."""
    import logging
    import warnings

    import sklearn
    import sklearn.base

    with monkeypatch.context() as patched:
        for module in (sklearn, sklearn.base):
            patched.setattr(module, "__version__", "1.8.0")
        toned.save(tmp_path / "old")
    manifest = json.loads((tmp_path / "old" / "manifest.json").read_text())
    assert manifest["versions"]["scikit-learn"] == "1.8.0" == manifest["tones"]["versions"]["scikit-learn"]
    before = list(warnings.filters)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module="sklearn")  # the host's own, then
        warnings.simplefilter("error")  # one that overrides it
        hosts = list(warnings.filters)
        with caplog.at_level(logging.WARNING):
            model = ResponseClassifier.load(tmp_path / "old")
        assert warnings.filters == hosts
    assert warnings.filters == before
    assert [r.getMessage() for r in caplog.records if "saved with scikit-learn 1.8.0" in r.getMessage()]
    assert model.predict_tone(["I won't help with that."]).tolist() == toned.predict_tone(["I won't help with that."]).tolist()
    # The tone head alone, saved by 1.8.0 beside a model of this version.
    toned.save(tmp_path / "new")
    model = ResponseClassifier.load(tmp_path / "new")
    with monkeypatch.context() as patched:
        for module in (sklearn, sklearn.base):
            patched.setattr(module, "__version__", "1.8.0")
        model.save_tones(tmp_path / "new")
    manifest = json.loads((tmp_path / "new" / "manifest.json").read_text())
    assert manifest["versions"]["scikit-learn"] == sklearn.__version__ != manifest["tones"]["versions"]["scikit-learn"]
    caplog.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with caplog.at_level(logging.WARNING):
            ResponseClassifier.load(tmp_path / "new")
    assert [r.getMessage() for r in caplog.records if "tones.joblib was saved with scikit-learn 1.8.0" in r.getMessage()]
