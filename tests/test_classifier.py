"""The estimator contract, input validation and persistence, on the paper's real responses.

These use n-gram-only models so they run in seconds; the shipped (embedding) model is tested in
test_shipped_models.py.
"""
from __future__ import annotations

import json
import copy
import shutil
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.base import clone

from refusal_predictor import ModelFileError, ResponseClassifier
from refusal_predictor.artifacts import shipped_path
from training import data


@pytest.fixture(scope="module")
def split():
    train, _, test = data.paper_split()
    return train, test


@pytest.fixture(scope="module")
def fitted(split):
    train, _ = split
    return ResponseClassifier(use_embeddings=False).fit(train["response"].tolist(), train["label"].tolist())


def test_learns_real_refusals(fitted, split):
    _, test = split
    pred = fitted.predict(test["response"].tolist())
    accuracy = float((pred == test["label"].to_numpy()).mean())
    assert accuracy > 0.86, accuracy  # the paper's n-gram model reaches 0.906 on this split
    assert list(fitted.classes_) == ["compliance", "refusal"]


def test_probabilities_and_input_forms(fitted):
    proba = fitted.predict_proba(["I'm sorry, but I can't help with that.", "", "   "])
    assert proba.shape == (3, 2) and np.allclose(proba.sum(axis=1), 1.0)
    assert fitted.predict_proba("As an AI language model, I cannot provide opinions on political figures.")[0, 1] > 0.5
    assert fitted.predict_proba([]).shape == (0, 2)
    assert fitted.predict(("a", "b")).shape == (2,)


@pytest.mark.parametrize("bad", [None, 3, b"bytes", ["ok", 5], ["ok", None]])
def test_non_strings_are_type_errors(fitted, bad):
    with pytest.raises(TypeError):
        fitted.predict_proba(bad)


def test_labels_and_class_counts():
    texts = ["no"] * 3 + ["yes"] * 20
    with pytest.raises(ValueError, match="found 3 refusal and 20 compliance"):
        ResponseClassifier(use_embeddings=False).fit(texts, [1] * 3 + [0] * 20)
    with pytest.raises(ValueError, match="label 1 is 'maybe'"):
        ResponseClassifier(use_embeddings=False).fit(["a", "b"], ["refusal", "maybe"])
    with pytest.raises(ValueError, match="2 texts but 1 labels"):
        ResponseClassifier(use_embeddings=False).fit(["a", "b"], ["refusal"])


def test_sklearn_contract(fitted):
    params = fitted.get_params()
    assert params["head"] == "logreg" and params["use_embeddings"] is False
    twin = clone(fitted)
    assert not hasattr(twin, "model_") and twin.get_params() == params
    twin.set_params(C=1.0)
    assert twin.C == 1.0


def test_threshold_from_validation_curve(fitted, split):
    _, test = split
    t = fitted.threshold_for(recall=0.95)
    y = (test["label"] == "refusal").to_numpy()
    p = fitted.refusal_probability(test["response"].tolist())
    assert 0 < t < 0.5
    assert (p[y] >= t).mean() >= 0.85  # held-out recall near the goal set on out-of-fold data
    assert list(fitted.predict(test["response"].tolist(), threshold=t)) == ["refusal" if q >= t else "compliance" for q in p]


def test_save_load_round_trip_and_corruption(fitted, tmp_path):
    texts = ["I cannot help with that.", "Sure, here is how to bake bread."]
    folder = fitted.save(tmp_path / "m")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["kind"] == "response" and manifest["classes"] == ["compliance", "refusal"]
    import lightgbm
    import onnxruntime

    # every library whose upgrade can move the scores is recorded beside scikit-learn's version
    assert manifest["versions"]["lightgbm"] == lightgbm.__version__
    assert manifest["versions"]["onnxruntime"] == onnxruntime.__version__
    loaded = ResponseClassifier.load(folder)
    assert np.allclose(loaded.predict_proba(texts), fitted.predict_proba(texts))

    blob = (folder / "model.joblib").read_bytes()
    (folder / "model.joblib").write_bytes(blob[:-10] + b"0123456789")
    with pytest.raises(ModelFileError, match="model.joblib"):
        ResponseClassifier.load(folder)
    (folder / "model.joblib").write_bytes(blob)

    manifest["format_version"] = 99
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="format_version 99"):
        ResponseClassifier.load(folder)
    (folder / "manifest.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="manifest.json"):
        ResponseClassifier.load(folder)
    with pytest.raises(ModelFileError, match="no such model folder"):
        ResponseClassifier.load(tmp_path / "missing")


def test_prompt_class_refuses_a_response_model(fitted, tmp_path):
    from refusal_predictor import PromptClassifier

    folder = fitted.save(tmp_path / "m")
    with pytest.raises(ModelFileError, match="'response' model"):
        PromptClassifier.load(folder)


def test_long_texts_keep_all_ngrams(fitted):
    answer = "Here is a detailed answer. " * 4000
    long = answer + "I'm sorry, but I cannot help with that."
    assert len(long) > 100_000
    vocabulary = fitted.features_.vectorizer_.vocabulary_
    assert fitted.features_.transform([long])[0, vocabulary["sorry"]] > 0  # read past 100k characters
    without, with_refusal = fitted.refusal_probability([answer, long])
    assert with_refusal > without


def test_calibration_folds_mix_ordered_logs(fitted, split):
    """Logs arrive ordered by source; every calibration fold must sample the whole log, or the
    sigmoid is fitted on scores of blocks its fold's head never saw (its slope can flip)."""
    train, _ = split
    y = (train["label"] == "refusal").to_numpy()
    n = len(y)
    folds = list(fitted.model_.cv.split(np.zeros((n, 1)), y))
    assert len(folds) == fitted.cv
    for _, test_idx in folds:
        assert test_idx.min() < 0.1 * n and test_idx.max() > 0.9 * n


def test_mappings_and_sets_are_rejected_not_iterated():
    from refusal_predictor.inputs import as_texts

    for bad in ({"a": 1}, {"a", "b"}, frozenset({"a"})):
        with pytest.raises(TypeError, match=type(bad).__name__):
            as_texts(bad)
    assert as_texts(("a", "b")) == ["a", "b"] and as_texts(x for x in ["a"]) == ["a"]


@pytest.mark.parametrize("per_class, ok", [(6, False), (7, True)])
def test_too_few_examples_is_a_clear_error_before_cross_validation(per_class, ok):
    # Calibration (5 folds) runs inside the 5-fold validation curve: 6 of a class leaves 4 in an
    # outer training fold, which the inner split cannot use. The guard must say so up front.
    texts = [f"text {i} about {'cats' if i < per_class else 'dogs'}" for i in range(2 * per_class)]
    labels = ["refusal"] * per_class + ["compliance"] * per_class
    model = ResponseClassifier(use_embeddings=False)
    if ok:
        assert model.fit(texts, labels).predict(texts).shape == (2 * per_class,)
    else:
        with pytest.raises(ValueError, match=r"at least 7 examples of each class; found 6 refusal and 6 compliance"):
            model.fit(texts, labels)


def test_a_dataframe_is_a_type_error_not_its_column_names(fitted):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"response": ["I'm sorry, I can't.", "Sure, here it is."]})
    with pytest.raises(TypeError, match="pass one column"):
        fitted.predict_proba(frame)
    assert fitted.predict_proba(frame["response"]).shape == (2, 2)


def test_saving_over_a_folder_drops_its_stale_bundled_encoder(tmp_path):
    """A model saved into a folder where another model had bundled its encoder must use its own."""
    import shutil

    from refusal_predictor import PromptClassifier
    from refusal_predictor.artifacts import shipped_path

    copy = tmp_path / "enc"
    shutil.copytree(shipped_path("encoders", "minilm-prompt-int8"), copy)
    prompt = PromptClassifier.load()
    prompt.features_.encoder = str(copy)  # not a shipped path: bundled on save
    folder = tmp_path / "model"
    prompt.save(folder)
    assert (folder / "encoder").is_dir()
    with pytest.raises(ValueError, match="holds a 'prompt' model; a 'response' model is not saved over it"):
        ResponseClassifier.load().save(folder)
    assert (folder / "encoder").is_dir()
    rc = PromptClassifier.load()  # the same kind, reading the shipped encoder
    rc.save(folder)
    assert not (folder / "encoder").exists()
    (tmp_path / "work" / "encoder").mkdir(parents=True)
    (tmp_path / "work" / "encoder" / "notes.txt").write_text("mine", encoding="utf-8")
    # A user's own non-empty folder is not a model folder: refused, nothing in it touched.
    (tmp_path / "work" / "manifest.json").write_text('{"mine": true}', encoding="utf-8")
    with pytest.raises(ValueError, match="work is a non-empty folder that is not a refusal-predictor model"):
        rc.save(tmp_path / "work")
    assert (tmp_path / "work" / "encoder" / "notes.txt").is_file()
    assert (tmp_path / "work" / "manifest.json").read_text(encoding="utf-8") == '{"mine": true}'
    assert sorted(p.name for p in (tmp_path / "work").rglob("*")) == ["encoder", "manifest.json", "notes.txt"]
    (tmp_path / "empty").mkdir()
    rc.save(tmp_path / "empty")  # an empty folder is fine
    assert json.loads((folder / "manifest.json").read_text())["encoder"]["bundled"] is False
    text = ["I'm sorry, but I can't help with that."]
    assert PromptClassifier.load(folder).predict_proba(text)[0, 1] == pytest.approx(rc.predict_proba(text)[0, 1])
    prompt.save(tmp_path / "copied")
    shutil.rmtree(tmp_path / "copied" / "encoder")  # copied without its encoder
    with pytest.raises(ModelFileError, match="encoder.*bundled here, but the folder is missing"):
        PromptClassifier.load(tmp_path / "copied")


def test_an_encoder_of_another_model_is_refused(tmp_path):
    from refusal_predictor import PromptClassifier

    rc = ResponseClassifier.load()
    with pytest.raises(ValueError, match="was trained with"):
        rc.features_.set_encoder(PromptClassifier.load().features_.get_encoder())
    with pytest.raises(ValueError, match="num_threads"):
        rc.configure_encoder(num_threads=0)  # at the call, not at the first prediction
    with pytest.raises(ValueError, match="unknown onnxruntime execution provider"):
        ResponseClassifier.load("ngrams").configure_encoder(providers=["Bogus"])
    rc.configure_encoder(providers=[("CPUExecutionProvider", {})], num_threads=1)
    assert rc.features_.get_encoder().providers == ["CPUExecutionProvider"]
    assert rc.predict_proba(["I'm sorry, but I can't help with that."])[0, 1] > 0.9
    import pickle

    assert pickle.loads(pickle.dumps(rc)).features_._encoder_options["num_threads"] == 1  # to workers
    import joblib

    saved = joblib.load(rc.save(tmp_path / "m") / "model.joblib")
    assert not hasattr(saved.features_, "_encoder_options")  # this machine's, not the model's
    assert rc.features_._encoder_options["num_threads"] == 1
    assert rc.features_.get_encoder().concurrent_runs == 1
    assert rc.configure_encoder(num_threads=2, concurrent_runs=1).features_.get_encoder().concurrent_runs == 1
    with pytest.raises(ValueError, match="concurrent_runs"):
        rc.configure_encoder(concurrent_runs=0)


@pytest.mark.parametrize("edit, message", [
    ({"files": ["model.joblib"]}, "'files' must map model.joblib"),
    ({"files": {}}, "'files' must map model.joblib"),
    ({"versions": None, "metadata": []}, "'metadata' must be an object"),
    ({"threshold": 2}, "'threshold' must be a probability"),
    ({"encoder": {"bundled": "no"}}, "'encoder.bundled' must be true or false"),
])
def test_hand_edited_manifests_are_named_errors(fitted, tmp_path, edit, message):
    folder = fitted.save(tmp_path / "m")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.update(edit)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match=message) as info:
        ResponseClassifier.load(folder)
    assert str(folder / "manifest.json") in str(info.value)


def test_validation_curve_describes_only_the_rows_asked_for(split):
    # rows added only to teach the model (truncated copies) must not move users' thresholds
    train, _ = split
    texts, labels = train["response"].tolist(), train["label"].tolist()
    extra = ["Sure."] * 300  # 300 easy compliance rows, for training only
    mask = [True] * len(texts) + [False] * len(extra)
    model = ResponseClassifier(use_embeddings=False).fit(
        texts + extra, labels + ["compliance"] * len(extra), validation_rows=mask)
    assert model.metadata_["cross_validation"]["n"] == len(texts)
    plain = ResponseClassifier(use_embeddings=False).fit(texts + extra, labels + ["compliance"] * len(extra))
    assert plain.metadata_["cross_validation"]["n"] == len(texts) + len(extra)
    with pytest.raises(ValueError, match="validation_rows"):
        ResponseClassifier(use_embeddings=False).fit(texts, labels, validation_rows=[True, False])


def test_threshold_is_inclusive():
    # An empty response scores exactly 1.0: at threshold 1.0 it must still be a refusal.
    model = ResponseClassifier.load("ngrams")
    assert list(model.predict(["", "Sure, here it is."], threshold=1.0)) == ["refusal", "compliance"]


def test_a_modified_but_loadable_model_file_fails_its_sha256(tmp_path):
    # joblib would load these bytes without complaint: only the manifest's sha256 tells them apart.
    folder = shutil.copytree(shipped_path("response-ngrams"), tmp_path / "m")
    joblib.dump(joblib.load(folder / "model.joblib"), folder / "model.joblib", compress=0)
    with pytest.raises(ModelFileError, match="sha256 mismatch"):
        ResponseClassifier.load(folder)
    assert ResponseClassifier.load(folder, verify=False).predict(["I cannot help."]).shape == (1,)


def test_manifest_file_names_cannot_leave_the_folder(tmp_path):
    folder = shutil.copytree(shipped_path("response-ngrams"), tmp_path / "m")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["../outside.bin"] = "0" * 64
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="plain file names"):
        ResponseClassifier.load(folder)


def test_a_model_pointed_at_another_encoder_refuses_to_score(tmp_path):
    # The manifest is not hashed, so an edited encoder name reaches the encoder check at scoring.
    folder = shutil.copytree(shipped_path("response"), tmp_path / "m")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["encoder"]["shipped_name"] = "minilm-prompt-int8"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="was trained with"):
        ResponseClassifier.load(folder).predict_proba(["I cannot help with that."])


def test_predict_proba_across_chunk_boundaries(monkeypatch):
    import refusal_predictor.classifiers as classifiers

    model = ResponseClassifier.load("ngrams")
    texts = [f"I cannot help with request {i}." if i % 2 else f"Sure, here is answer {i}." for i in range(11)]
    whole = model.refusal_probability(texts)
    monkeypatch.setattr(classifiers, "_PREDICT_CHUNK", 4)
    assert np.allclose(model.refusal_probability(texts), whole)


def test_as_labels_reads_standard_values_and_a_users_scheme():
    from refusal_predictor.inputs import as_labels

    assert list(as_labels([True, False, 1, 0, 1.0, "0.0", " Refusal ", "complied", np.int64(1)])) == [1, 0, 1, 0, 1, 0, 1, 0, 1]
    # One set alone: its values, and every other value is the other class; a built-in name that
    # rule would flip is an error, not a guess (a scheme whose refusals are "0" read "1" as a
    # refusal by its name: every label one class).
    assert list(as_labels(["rejected", "redirected", "complied", True], compliance_values={"complied"})) == [1, 1, 0, 1]
    assert list(as_labels(["rejected", "disclaimed", "compliance", 0], refusal_values={"rejected"})) == [1, 0, 0, 0]
    assert list(as_labels(["yes", "no", "1", "refusal"], compliance_values={"no", "1"})) == [1, 0, 0, 1]
    for value in ("1", 1, True, "refusal"):
        with pytest.raises(ValueError, match=r"refusal by its name, but not in the refusal_values \['0'\], whose "
                                             "every other value is compliance; name it in refusal_values or compliance_values"):
            as_labels(["0", value], refusal_values={"0"})
    assert list(as_labels(["0", "1", "2"], refusal_values={"0"}, compliance_values={"1", "2"})) == [1, 0, 0]
    with pytest.raises(ValueError, match="label 1 is 'disclaimed'; neither in the refusal values"):
        as_labels(["rejected", "disclaimed"], refusal_values={"rejected"}, compliance_values={"complied"})
    with pytest.raises(ValueError, match="label 0 is 'refusal'; neither in the refusal values"):
        as_labels(["refusal"], refusal_values={"rejected"}, compliance_values={"complied"})
    for empty in (None, "", "  ", float("nan")):
        with pytest.raises(ValueError, match="no label"):
            as_labels([empty], refusal_values={"rejected"})
    with pytest.raises(ValueError, match="expected 'refusal'/'compliance'.*name your values with refusal_values / compliance_values"):
        as_labels(["maybe"])
    with pytest.raises(ValueError, match=r"\['rejected'\] are in both refusal_values and compliance_values"):
        as_labels(["rejected"], refusal_values={"rejected"}, compliance_values={"rejected", "complied"})


def test_a_save_that_fails_part_way_leaves_the_earlier_model_loadable(fitted, tmp_path, monkeypatch):
    """Saving over a model used to write file by file into its folder: a full disk part-way left a
    manifest that no longer matched its files, and neither model loaded. The folder is now built
    beside itself and swapped in whole."""
    import errno

    from refusal_predictor import classifiers

    folder = fitted.save(tmp_path / "m")
    (folder / "MODEL_CARD.md").write_text("the card", encoding="utf-8")
    manifest = (folder / "manifest.json").read_bytes()
    texts = ["I'm sorry, but I can't help with that.", "Sure, here is a poem about the sea."]
    expected = ResponseClassifier.load(folder).predict_proba(texts)

    def full_disk(path, payload):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(classifiers, "write_json", full_disk)
    with pytest.raises(OSError, match="No space left on device"):
        fitted.save(folder, metadata={"run": 2})
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # nothing half-written left beside it
    assert (folder / "manifest.json").read_bytes() == manifest
    np.testing.assert_array_equal(ResponseClassifier.load(folder).predict_proba(texts), expected)

    monkeypatch.undo()
    fitted.save(folder, metadata={"run": 2})
    assert [p.name for p in tmp_path.iterdir()] == ["m"]
    assert (folder / "MODEL_CARD.md").read_text(encoding="utf-8") == "the card"  # not save()'s: kept
    assert json.loads((folder / "manifest.json").read_text())["metadata"]["run"] == 2
    link = tmp_path / "link"
    link.symlink_to(folder, target_is_directory=True)
    fitted.save(link, metadata={"run": 3})
    assert link.is_symlink() and json.loads((folder / "manifest.json").read_text())["metadata"]["run"] == 3


def test_score_reads_labels_as_fit_does(split):
    """scikit-learn's score() compared predict()'s class names with y literally: a model scored
    0.0 on the 'refused'/'complied' labels fit() took, and cross_val_score on 1/0 gave nan."""
    from sklearn.model_selection import cross_val_score

    train, test = split
    small = train.iloc[:300]
    model = ResponseClassifier(use_embeddings=False).fit(small["response"].tolist(), small["label"].tolist())
    texts = test["response"].tolist()
    names = test["label"].tolist()
    ones = [1 if label == "refusal" else 0 for label in names]
    tones = ["refused" if label == "refusal" else "complied" for label in names]
    expected = float(np.mean(model.predict(texts) == np.asarray(names, dtype=object)))
    assert expected > 0.8
    for y in (names, ones, [bool(v) for v in ones], tones):
        assert model.score(texts, y) == pytest.approx(expected)
    scores = cross_val_score(ResponseClassifier(use_embeddings=False), small["response"].tolist(),
                             [1 if label == "refusal" else 0 for label in small["label"]], cv=2)
    assert np.all(scores > 0.7)


def test_thresholds_are_checked_where_they_are_used(fitted):
    """NaN, 1.5 or "0.5" (say from a pipeline's config) made the pre-filter flag nothing or
    everything, or failed deep in numpy."""
    texts = ["I can't help with that.", "Sure, here it is."]
    for bad in (float("nan"), 1.5, -1, "0.5", True):
        with pytest.raises(ValueError, match="threshold must be a probability between 0 and 1"):
            fitted.predict(texts, threshold=bad)
    model = clone(fitted).set_params(threshold=float("nan"))
    with pytest.raises(ValueError, match="threshold must be a probability"):
        model.fit(texts * 10, ["refusal", "compliance"] * 10)
    import pickle

    broken = pickle.loads(pickle.dumps(fitted))
    broken.threshold = None
    with pytest.raises(ValueError, match="got None"):
        broken.predict(texts)
    assert list(fitted.predict(texts, threshold=0.0)) == ["refusal", "refusal"]


def test_a_bundled_encoder_survives_a_change_of_directory(tmp_path, monkeypatch):
    """A model loaded from a relative folder kept a relative encoder path and opened its encoder
    at the first prediction, against whatever the working directory was by then."""
    from refusal_predictor import PromptClassifier

    copy = tmp_path / "enc"
    shutil.copytree(shipped_path("encoders", "minilm-prompt-int8"), copy)
    prompt = PromptClassifier.load()
    prompt.features_.encoder = str(copy)
    prompt.save(tmp_path / "model")  # not a shipped encoder: bundled
    expected = prompt.refusal_probability(["How do I pick a lock?"])
    monkeypatch.chdir(tmp_path)
    model = PromptClassifier.load("model")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    np.testing.assert_allclose(model.refusal_probability(["How do I pick a lock?"]), expected)


def test_a_file_named_like_a_shipped_model_does_not_hide_it(tmp_path, monkeypatch):
    from refusal_predictor import PromptClassifier

    monkeypatch.chdir(tmp_path)
    (tmp_path / "gpt-4").write_text("", encoding="utf-8")
    (tmp_path / "ngrams").write_text("", encoding="utf-8")
    assert PromptClassifier.load("gpt-4").target == "gpt-4"
    assert not ResponseClassifier.load("ngrams").features_.use_embeddings


def test_a_folder_named_like_a_shipped_encoder_in_the_working_directory_is_not_opened(tmp_path, monkeypatch):
    """A manifest's shipped encoder is the packaged one: resolved as a bare name, an empty folder
    ./minilm-refusal-int8 broke the shipped response model (and ./minilm-prompt-int8 the prompt models)."""
    from refusal_predictor import PromptClassifier

    monkeypatch.chdir(tmp_path)
    for name in (ResponseClassifier.default_encoder, PromptClassifier.default_encoder):
        (tmp_path / name).mkdir()
    assert ResponseClassifier.load().predict_proba(["I'm sorry, but I can't help with that."])[0, 1] > 0.9
    assert PromptClassifier.load().predict_proba(["How do I pick a lock?"]).shape == (1, 2)
    import copy
    import pickle

    for copied in (pickle.loads(pickle.dumps(ResponseClassifier.load())), copy.deepcopy(ResponseClassifier.load())):
        assert copied.predict_proba(["I'm sorry, but I can't help with that."])[0, 1] > 0.9  # worker processes
        folder = copied.save(tmp_path / "saved")
        assert json.loads((folder / "manifest.json").read_text(encoding="utf-8"))["encoder"]["bundled"] is False
    # Given when training, a name is a folder of the working directory first (as model names are).
    from refusal_predictor.features import TextFeatures

    with pytest.raises(ValueError, match="encoder.json"):
        TextFeatures(encoder=ResponseClassifier.default_encoder).get_encoder()


def test_an_encoder_with_the_same_weights_but_other_settings_is_refused(tmp_path):
    """One model.onnx exported at 256 and at 512 tokens is the same file: its sha256 alone let a
    model score with the other length. The settings are recorded and checked too, also for the
    shipped models (their manifests record them)."""
    from refusal_predictor.encoder import OnnxEncoder

    shipped = ResponseClassifier.load()
    other = OnnxEncoder.load(_with_length(ResponseClassifier.default_encoder, tmp_path / "shorter", 256))
    assert other.sha256 == shipped.manifest_["encoder"]["sha256"]
    with pytest.raises(ValueError, match="max_seq_length 256, trained with 512"):
        shipped.features_.set_encoder(other)
    # A model trained now records the settings itself, and saves them in its manifest. The encoder
    # is named through a symbolic link to the shipped folder: the manifest names the folder itself.
    link = tmp_path / "my-encoder"
    link.symlink_to(shipped_path("encoders", "all-MiniLM-L6-v2-int8"), target_is_directory=True)
    train, _, _ = data.paper_split()
    model = ResponseClassifier(encoder=str(link), validation_curve=False, cv=2).fit(
        train["response"].head(60).tolist(), train["label"].head(60).tolist())
    folder = model.save(tmp_path / "model")
    link.unlink()
    saved = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))["encoder"]
    assert saved["shipped_name"] == "all-MiniLM-L6-v2-int8" and saved["settings"]["max_seq_length"] == 256
    reloaded = ResponseClassifier.load(folder)
    assert reloaded.predict_proba(["I cannot help with that."]).shape == (1, 2)
    with pytest.raises(ValueError, match="max_seq_length 512, trained with 256"):
        reloaded.features_.set_encoder(OnnxEncoder.load(_with_length("all-MiniLM-L6-v2-int8", tmp_path / "longer", 512)))


def _with_length(shipped_encoder: str, copy: Path, length: int) -> Path:
    """A copy of a shipped encoder whose encoder.json (not hashed: its files are) says ``length``."""
    shutil.copytree(shipped_path("encoders", shipped_encoder), copy)
    manifest = json.loads((copy / "encoder.json").read_text(encoding="utf-8"))
    manifest["max_seq_length"] = length
    (copy / "encoder.json").write_text(json.dumps(manifest), encoding="utf-8")
    return copy


def test_two_identical_trainings_write_identical_model_files(tmp_path):
    """scikit-learn's TfidfVectorizer caches id(stop_words), a memory address that differs from
    one process to the next: two identical trainings wrote different model.joblib bytes."""
    import hashlib
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from refusal_predictor import ResponseClassifier\n"
        "from training import data\n"
        "train, _, _ = data.paper_split()\n"
        "ResponseClassifier(use_embeddings=False, validation_curve=False).fit("
        "train['response'].tolist(), train['label'].tolist()).save(sys.argv[1])\n"
    )
    digests = []
    for run in ("a", "b"):
        subprocess.run([sys.executable, "-c", script, str(tmp_path / run)], check=True,
                       cwd=Path(__file__).resolve().parent.parent)
        digests.append(hashlib.sha256((tmp_path / run / "model.joblib").read_bytes()).hexdigest())
    assert digests[0] == digests[1]
    model = ResponseClassifier.load(tmp_path / "a")  # the cache left out is rebuilt on use
    assert model.predict(["As an AI language model, I cannot do that."])[0] == "refusal"


def test_model_names_that_load_nothing_say_what_would(tmp_path, monkeypatch):
    """An unknown name lists the variants (as unknown prompt targets list the targets), and a
    folder named like a shipped model, taken first, says which shipped model it hides."""
    from refusal_predictor import PromptClassifier

    with pytest.raises(ModelFileError, match=r"no such model folder, nor a shipped variant; available variants: "
                                             r"\['default', 'ngrams'\]"):
        ResponseClassifier.load("bogus")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ngrams").mkdir()
    (tmp_path / "gpt-4").mkdir()
    with pytest.raises(ModelFileError, match=r"taken before the shipped variant .*response-ngrams"):
        ResponseClassifier.load("ngrams")
    with pytest.raises(ModelFileError, match=r"taken before the shipped target .*target='gpt-4'"):
        PromptClassifier.load("gpt-4")
    assert PromptClassifier.load(target="gpt-4").metadata["target"] == "gpt-4"
    with pytest.raises(ModelFileError, match=r"taken before the shipped variant"):
        ResponseClassifier.load("ngrams/")  # as shell completion writes it
    with pytest.raises(ModelFileError, match=r"taken before the shipped target"):
        PromptClassifier.load("gpt-4/")
    with pytest.raises(ValueError, match=r"empty model path; available variants"):
        ResponseClassifier.load("")  # it read a model folder of the working directory
    monkeypatch.chdir(tmp_path / "ngrams")
    assert ResponseClassifier.load("ngrams/").metadata["recipe"] == "ngrams-logreg"
    assert PromptClassifier.load("GPT-4/").metadata["target"] == "gpt-4"


def test_copies_of_a_text_share_a_validation_fold():
    """A log holding each response twice stored a CV AUROC of 0.998 (0.962 once) and a
    threshold for recall 0.95 that reached 0.75 on held-out responses: each copy was scored by
    a model trained on its twin. Copies (up to whitespace and case) now share a fold."""
    train, _, test = data.paper_split()
    texts, labels = train["response"].tolist()[:400], train["label"].tolist()[:400]
    twice = texts + [f"  {t.upper()}\n" if i % 2 else t for i, t in enumerate(texts)]

    def fitted(x, y):
        return ResponseClassifier(use_embeddings=False, calibration=False).fit(x, y)

    once, doubled = fitted(texts, labels), fitted(twice, labels * 2)
    assert abs(doubled.metadata["cross_validation"]["auroc"] - once.metadata["cross_validation"]["auroc"]) < 0.01
    y = (test["label"] == "refusal").to_numpy()
    p = doubled.refusal_probability(test["response"].tolist())
    assert (p[y] >= doubled.threshold_for(recall=0.95)).mean() >= 0.9  # 0.75 with copies split apart
    # Too few distinct texts of a class for grouped folds that keep what calibration needs: said,
    # pointed at this call, and the model still fits (with 5 distinct refusals, a training fold
    # kept 4 and the calibrated fit failed inside scikit-learn).
    comp = [f"Sure! Here is answer {i}: the capital of place {i} is city {i}." for i in range(200)]
    for refusals, distinct in [(["I can't help with that."] * 10, 1),
                               (["I'm sorry, but I can't help with that."] * 50
                                + [f"I cannot assist with request {i}, it is harmful." for i in range(4)], 5)]:
        with pytest.warns(UserWarning, match=f"a class has {distinct} distinct texts, too few for 5 folds") as caught:
            model = ResponseClassifier(use_embeddings=False).fit(refusals + comp, [1] * len(refusals) + [0] * len(comp))
        assert caught[0].filename == __file__
        assert model.metadata["validation_curve"]["n"] == len(refusals) + len(comp)
    from refusal_predictor import PromptClassifier

    with pytest.warns(UserWarning, match="too few for 5 folds") as caught:  # fit inherited, not wrapped
        PromptClassifier(use_embeddings=False).fit(refusals + comp, [1] * len(refusals) + [0] * len(comp))
    assert caught[0].filename == __file__


def test_a_model_trained_on_its_own_encoder_folder_refits_from_its_bundled_copy(tmp_path, split):
    """The bundled encoder served predictions after the training folder was gone, but the
    ``encoder`` parameter still named that folder: clone(), cross_val_score and GridSearchCV on
    the loaded model failed with 'neither a folder nor a shipped encoder name'."""
    from sklearn.base import clone

    from refusal_predictor import PromptClassifier

    train, _ = split
    own = tmp_path / "my-encoder"
    shutil.copytree(shipped_path("encoders", "minilm-prompt-int8"), own)
    texts, labels = train["prompt"].tolist()[:80], train["label"].tolist()[:80]
    PromptClassifier(encoder=str(own), head="logreg", validation_curve=False).fit(texts, labels).save(tmp_path / "model")
    shutil.rmtree(own)
    shutil.copytree(shipped_path("encoders", "all-MiniLM-L6-v2-int8"), own)  # another encoder there by now
    loaded = PromptClassifier.load(tmp_path / "model")
    assert loaded.encoder == str((tmp_path / "model" / "encoder").resolve())
    refit = clone(loaded).fit(texts, labels)
    np.testing.assert_allclose(refit.refusal_probability(texts[:5]), loaded.refusal_probability(texts[:5]))
    # A shipped encoder's name, bundled on request, stays a name (it resolves on any machine).
    named = PromptClassifier(encoder="minilm-prompt-int8", head="logreg", validation_curve=False).fit(texts, labels)
    again = PromptClassifier.load(named.save(tmp_path / "named", bundle_encoder=True))
    assert again.encoder == "minilm-prompt-int8"
    resaved = json.loads((again.save(tmp_path / "resaved") / "manifest.json").read_text(encoding="utf-8"))
    assert resaved["params"]["encoder"] == "minilm-prompt-int8"


@pytest.mark.parametrize("threshold", [float("nan"), 1.5, "0.4", True])
def test_save_refuses_a_threshold_that_load_would_refuse_and_keeps_the_earlier_model(fitted, tmp_path, threshold):
    folder = fitted.save(tmp_path / "m")
    manifest = (folder / "manifest.json").read_bytes()
    model = copy.copy(fitted)
    model.threshold = threshold
    with pytest.raises(ValueError, match="threshold must be a probability between 0 and 1"):
        model.save(folder)
    assert (folder / "manifest.json").read_bytes() == manifest
    assert ResponseClassifier.load(folder).threshold == fitted.threshold


def test_a_numpy_threshold_is_saved_as_a_number(fitted, tmp_path):
    model = copy.copy(fitted)
    model.threshold = np.float32(0.25)
    assert ResponseClassifier.load(model.save(tmp_path / "m")).threshold == 0.25


def test_weighted_fits_work_with_scikit_learns_metadata_routing_on(split):
    """The calibrator and cross_val_predict built inside fit refused sample_weight under a global
    enable_metadata_routing=True (UnsetMetadataPassedError), whatever set_fit_request said."""
    import sklearn
    from sklearn.model_selection import GridSearchCV

    train, _ = split
    texts, labels = train["response"].tolist()[:300], train["label"].tolist()[:300]
    weights = np.linspace(0.5, 1.5, len(texts))
    expected = ResponseClassifier(use_embeddings=False).fit(texts, labels, sample_weight=weights)
    with sklearn.config_context(enable_metadata_routing=True):
        routed = ResponseClassifier(use_embeddings=False).fit(texts, labels, sample_weight=weights)
        search = GridSearchCV(ResponseClassifier(use_embeddings=False, validation_curve=False)
                              .set_fit_request(sample_weight=True).set_score_request(sample_weight=False),
                              {"C": [1.0, 10.0]}, cv=2).fit(texts, labels, sample_weight=weights)
        tones = train["fine_label"].tolist()[:300]
        routed.fit_tones(texts, tones, sample_weight=weights)
    np.testing.assert_array_equal(routed.predict_proba(texts[:20]), expected.predict_proba(texts[:20]))
    assert search.best_params_["C"] in (1.0, 10.0)
    assert set(routed.tones_) <= set(tones)


def test_an_encoder_with_other_weights_is_named_by_its_sha256():
    from refusal_predictor import PromptClassifier

    with pytest.raises(ValueError, match=r"has sha256 [0-9a-f]{12}\.\.\., but this model was trained with"):
        ResponseClassifier.load().features_.set_encoder(PromptClassifier.load().features_.get_encoder())


def test_the_manifest_threshold_is_the_loaded_models_threshold(fitted, split, tmp_path):
    folder = fitted.save(tmp_path / "model")
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    manifest["threshold"] = 0.3
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    loaded = ResponseClassifier.load(folder)
    assert loaded.threshold == 0.3 and fitted.threshold == 0.5
    texts = split[1]["response"].tolist()[:100]
    proba = loaded.refusal_probability(texts)
    assert ((proba >= 0.3) & (proba < 0.5)).any()  # some texts the cut decides
    assert list(loaded.predict(texts)) == ["refusal" if p >= 0.3 else "compliance" for p in proba]


def test_label_values_are_read_by_their_exact_value():
    from refusal_predictor.inputs import as_labels

    assert list(as_labels(["inf", "Infinity", "+inf", "5"], refusal_values={"inf"})) == [1, 1, 1, 0]
    big = ["10000000000000001", 10000000000000000]  # one apart: a float made them one value
    assert list(as_labels(big, refusal_values={"10000000000000001"}, compliance_values={"10000000000000000"})) == [1, 0]
    assert list(as_labels(["2.50", 2.5, "1_0", "10"], refusal_values={"2.5"})) == [1, 1, 0, 0]  # "1_0" is text, not 10
    for no_label in ("nan", "NaN", float("nan"), "", None):
        with pytest.raises(ValueError, match="no label"):
            as_labels([no_label], compliance_values={"0"})


def test_label_keys_need_no_big_integers_nor_the_threads_decimal_context():
    """1e99999999999 raised MemoryError (a key built as int(Decimal)), 1e999999 took 26 s; text
    labels turned to NaN where a host application untrapped InvalidOperation, and precision 3
    made 1.001 the same value as 1.0004."""
    import decimal

    import pandas as pd

    from refusal_predictor.inputs import as_labels

    huge = ["1e99999999999", "10e99999999998", "1e999999999999999999"]
    assert list(as_labels(huge, refusal_values={"1e99999999999"})) == [1, 1, 0]
    assert list(as_labels(["0.12345678901234567890123456789", "0.12345678901234567890123456788"],
                          refusal_values={"0.12345678901234567890123456789"})) == [1, 0]  # past 28 digits, still apart
    with decimal.localcontext(decimal.Context(prec=3, traps=[decimal.Inexact])):
        assert list(as_labels(["refusal", "compliance"])) == [1, 0]
        assert list(as_labels(["1.001", "1.5"], refusal_values={"1.0004", "1.5"}, compliance_values={"1.001"})) == [0, 1]
    for missing in (pd.NA, pd.NaT):  # str() made them the values "<NA>" / "NaT", so the other class
        with pytest.raises(ValueError, match="no label"):
            as_labels([missing], compliance_values={"0"})
    with pytest.raises(ValueError, match="'nan' is no label value"):  # named in an option, it was dropped without a word
        as_labels(["0"], compliance_values={"nan", "0"})
    # An exponent past what Decimal holds raised InvalidOperation, which nothing caught; untrapped, it became NaN.
    assert list(as_labels(["1e9999999999999999999", "5"], refusal_values={"1e9999999999999999999"})) == [1, 0]
    with decimal.localcontext() as context:
        context.traps[decimal.InvalidOperation] = False
        assert list(as_labels(["1e9999999999999999999", "5"], refusal_values={"1e9999999999999999999"})) == [1, 0]
    with pytest.raises(ValueError, match="label 0 is a int too long to show"):  # its repr failed inside the message
        as_labels([10 ** 5000])


def test_a_long_run_of_digits_that_is_not_a_number_is_turned_down_at_once():
    """The number pattern split a run of digits n ways before giving up: 16,000 digits and a
    letter took 4 s, a million hours. Run apart, with a limit a hundred times what it needs."""
    import subprocess
    import sys

    code = "from refusal_predictor.inputs import as_labels; print(as_labels(['1' * 200000 + 'x'], refusal_values={'2'}))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=str(Path(__file__).resolve().parent.parent))
    assert done.returncode == 0 and done.stdout.strip() == "[0]"
