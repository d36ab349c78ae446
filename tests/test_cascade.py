"""The cascade: the n-gram variant's score where it is sure, the full model's everywhere else."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from refusal_predictor import ResponseCascade, ResponseClassifier
from refusal_predictor.cascade import DEFAULT_HIGH, DEFAULT_LOW, in_band, load_response_model, response_model_record
from refusal_predictor.cli import main
from training import cascade_band, data


@pytest.fixture(scope="module")
def fast():
    return ResponseClassifier.load("ngrams")


@pytest.fixture(scope="module")
def cascade(fast, response_model):
    """The shipped cascade, built from the session's default model (loaded once)."""
    return ResponseCascade(fast, response_model)


@pytest.fixture(scope="module")
def test_responses():
    """48 of the paper's held-out test responses (neither model trained on them)."""
    return data.paper_split()[2]["response"].tolist()[:48]


class _Spy:
    """Records which texts reach a model's refusal_probability."""

    def __init__(self, model):
        self.model, self.seen = model, []

    def __getattr__(self, name):
        return getattr(self.model, name)

    def refusal_probability(self, texts):
        self.seen.extend(texts)
        return self.model.refusal_probability(texts)

    def refusal_probability_and_tone(self, texts, threshold=None):
        self.seen.extend(texts)
        return self.model.refusal_probability_and_tone(texts, threshold)


def test_sure_scores_are_kept_and_only_unsure_texts_reach_the_full_model(cascade, fast, response_model,
                                                                          test_responses):
    q = fast.refusal_probability(test_responses)
    unsure = in_band(q, DEFAULT_LOW, DEFAULT_HIGH)
    assert 0 < unsure.sum() < len(test_responses)  # the band splits real responses both ways
    spy = _Spy(response_model)
    spied = ResponseCascade(fast, response_model)
    spied.fast_, spied.full_ = fast, spy  # a spy is not a ResponseClassifier, so it goes in as a fitted stage
    p = spied.refusal_probability(test_responses)
    assert spy.seen == [t for t, u in zip(test_responses, unsure) if u]
    np.testing.assert_array_equal(p[~unsure], q[~unsure])
    np.testing.assert_allclose(p[unsure], response_model.refusal_probability(spy.seen), atol=1e-12)
    np.testing.assert_array_equal(cascade.unsure(test_responses), unsure)


def test_labels_follow_the_full_model_wherever_it_was_asked(cascade, response_model, test_responses):
    labels, full = cascade.predict(test_responses), response_model.predict(test_responses)
    unsure = cascade.unsure(test_responses)
    assert (labels[unsure] == full[unsure]).all()
    proba = cascade.predict_proba(test_responses)
    assert proba.shape == (len(test_responses), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert list(cascade.classes_) == ["compliance", "refusal"] and cascade.threshold == response_model.threshold
    assert cascade.score(test_responses, full) >= 0.9  # it mostly agrees with the full model


def test_the_widest_band_is_the_full_model_and_the_empty_one_the_fast_model(fast, response_model, test_responses):
    everything = ResponseCascade.load(low=0.0, high=1.0)
    nothing_band = ResponseCascade(fast, response_model, low=0.5, high=0.5 + 1e-12)
    np.testing.assert_allclose(everything.refusal_probability(test_responses),
                               response_model.refusal_probability(test_responses), atol=1e-12)
    np.testing.assert_array_equal(nothing_band.predict(test_responses), fast.predict(test_responses))


def test_str_empty_and_wrong_types(cascade):
    assert cascade.predict("I'm sorry, but I can't help with that.").tolist() == ["refusal"]
    assert cascade.refusal_probability(["", "   "]).tolist() == [1.0, 1.0]  # an empty answer, as ResponseClassifier
    assert cascade.predict_proba([]).shape == (0, 2)
    with pytest.raises(TypeError):
        cascade.predict([42])


def test_a_bad_band_is_refused_before_any_scoring(fast, response_model):
    with pytest.raises(ValueError, match="low < high"):
        ResponseCascade.load(low=0.9, high=0.1)
    with pytest.raises(TypeError, match="low must be a probability"):
        ResponseCascade.load(low=True)
    bad = ResponseCascade(fast, response_model, low=0.6, high=0.6)
    with pytest.raises(ValueError, match="low < high"):
        bad.predict(["text"])
    with pytest.raises(NotFittedError):
        ResponseCascade().predict(["text"])


def test_tones_come_from_the_stage_that_kept_the_probability(cascade, fast, response_model, test_responses):
    p, tones = cascade.refusal_probability_and_tone(test_responses)
    np.testing.assert_allclose(p, cascade.refusal_probability(test_responses), atol=1e-12)
    unsure = cascade.unsure(test_responses)
    assert (tones[~unsure] == fast.predict_tone([t for t, u in zip(test_responses, unsure) if not u])).all()
    assert (tones[unsure] == response_model.predict_tone([t for t, u in zip(test_responses, unsure) if u])).all()
    assert ((tones == "complied") == (p < cascade.threshold)).all()
    assert (cascade.predict_tone(test_responses) == tones).all()


def test_tone_probabilities_come_from_the_stage_that_kept_the_probability(cascade, fast, response_model,
                                                                        test_responses):
    table = cascade.predict_tone_proba(test_responses)
    assert table.shape == (len(test_responses), len(cascade.tones_))
    np.testing.assert_allclose(table.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(table[:, 0], 1.0 - cascade.refusal_probability(test_responses))
    unsure = cascade.unsure(test_responses)
    for stage, rows in ((fast, ~unsure), (response_model, unsure)):
        np.testing.assert_array_equal(table[rows], stage.predict_tone_proba([t for t, r in zip(test_responses, rows) if r]))
    assert cascade.predict_tone_proba([]).shape == (0, len(cascade.tones_))


def test_fit_fits_clones_of_both_stages():
    train = data.paper_split()[0]
    fast = ResponseClassifier(use_embeddings=False, validation_curve=False)
    full = ResponseClassifier(use_embeddings=False, validation_curve=False, C=1.0)
    cascade = ResponseCascade(fast, full).fit(train["response"].tolist(), train["label"].tolist())
    assert not hasattr(fast, "model_") and not hasattr(full, "model_")  # the models given are left as they were
    assert cascade.full_.C == 1.0 and cascade.predict(["I cannot help with that request."]).tolist() == ["refusal"]
    assert clone(cascade).get_params()["full"].C == 1.0


def test_names_load_the_cascade_unless_a_folder_has_that_name(tmp_path, monkeypatch, fast):
    assert isinstance(load_response_model("cascade"), ResponseCascade)
    assert isinstance(load_response_model("CASCADE "), ResponseCascade)
    assert isinstance(load_response_model("ngrams"), ResponseClassifier)
    fast.save(tmp_path / "cascade")
    monkeypatch.chdir(tmp_path)
    assert isinstance(load_response_model("cascade"), ResponseClassifier)


def test_the_card_records_both_stages(cascade, response_model):
    record = response_model_record(cascade)
    assert record["response_model_sha256"] == response_model.manifest_["files"]["model.joblib"]
    assert record["response_cascade"] == {"fast_model_sha256": cascade.fast.manifest_["files"]["model.joblib"],
                                          "fast_model_temperature": 1.0, "low": DEFAULT_LOW, "high": DEFAULT_HIGH}
    assert record["response_temperature"] == response_model.temperature > 1  # the full stage's (recalibrated)
    assert response_model_record(response_model) == {
        "response_model_sha256": response_model.manifest_["files"]["model.joblib"], "response_threshold": 0.5,
        "response_temperature": response_model.temperature}


def test_label_responses_with_the_cascade(tmp_path, cascade, test_responses, capsys):
    log = tmp_path / "log.jsonl"
    texts = test_responses[:12]
    log.write_text("".join(json.dumps({"id": i, "response": t}) + "\n" for i, t in enumerate(texts)), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert main(["label-responses", str(log), "-o", str(out), "--model", "cascade", "--tone", "--no-progress"]) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == list(range(12))
    np.testing.assert_allclose([r["refusal_probability"] for r in rows], cascade.refusal_probability(texts), atol=1e-6)
    assert [r["tone"] for r in rows] == cascade.predict_tone(texts).tolist()
    read = int(cascade.unsure(texts).sum())
    assert 0 < read < len(texts)
    assert (f"cascade: the full model read {read} of the 12 responses scored ({read / 12:.1%}); "
            "the n-gram model was sure of the rest") in capsys.readouterr().out


def test_route_says_which_texts_the_full_model_read(cascade, test_responses):
    scores = cascade.route(test_responses, tones=True)
    np.testing.assert_array_equal(scores.unsure, cascade.unsure(test_responses))
    np.testing.assert_allclose(scores.refusal, cascade.refusal_probability(test_responses), atol=1e-12)
    assert scores.tone.tolist() == cascade.predict_tone(test_responses).tolist()
    assert cascade.route(test_responses).tone is None


def test_the_band_rule_picks_the_fewest_to_the_encoder_among_the_agreeing():
    full = np.array([0.9, 0.6, 0.4, 0.1, 0.97, 0.03])
    fast = np.array([0.995, 0.3, 0.7, 0.005, 0.97, 0.03])
    rows = cascade_band.band_table(fast, full, None, fast, full, full >= 0.5, 0.5,
                                   bands=((0.01, 0.99), (0.02, 0.98), (0.05, 0.95)))
    assert [r["to_encoder"] for r in rows] == [4 / 6, 4 / 6, 2 / 6]
    assert [r["agreement_with_full"] for r in rows] == [1.0, 1.0, 1.0]
    assert cascade_band.choose(rows, 0.99)["low"] == 0.05
    rows[2]["agreement_with_full"] = 0.98
    assert cascade_band.choose(rows, 0.99)["low"] == 0.01  # ties on the share: the closer agreement, then order
    with pytest.raises(SystemExit):
        cascade_band.choose(rows, 1.01)


def test_the_shipped_cascade_ignores_a_folder_named_like_its_stages(tmp_path, monkeypatch):
    """load() read the fast stage by the name "ngrams": a user's ./ngrams folder replaced it."""
    (tmp_path / "ngrams").mkdir()
    monkeypatch.chdir(tmp_path)
    cascade = load_response_model("cascade")
    assert cascade.predict(["I'm sorry, but I can't help with that."]).tolist() == ["refusal"]
    with pytest.raises(Exception, match="manifest missing"):
        ResponseCascade.load(fast="ngrams")  # a name the caller gives is looked up as ResponseClassifier.load does


def test_settings_of_a_response_model_work_on_the_cascade(test_responses, cascade, fast, response_model):
    own_scores = ResponseCascade.load()
    own_scores.empty_response_probability = None
    assert (own_scores.refusal_probability(["", " "]) < 1.0).all()
    assert clone(own_scores).empty_response_probability is None
    assert pickle.loads(pickle.dumps(own_scores)).empty_response_probability is None
    assert ResponseCascade().empty_response_probability == 1.0  # settable before fit, as on ResponseClassifier
    shared = ResponseCascade(fast, response_model)
    shared.empty_response_probability = None
    shared.refusal_probability(["", "Sure."])
    assert fast.empty_response_probability == 1.0 and response_model.empty_response_probability == 1.0
    assert cascade.refusal_probability([""]).tolist() == [1.0]  # the models passed in keep their own setting
    cascade = ResponseCascade.load()
    cascade.set_params(threshold=0.7)
    p = cascade.refusal_probability(test_responses)
    np.testing.assert_array_equal(cascade.predict(test_responses), np.where(p >= 0.7, "refusal", "compliance"))
    assert clone(cascade).threshold == 0.7 and ResponseCascade.load().threshold == 0.5
    with pytest.raises(ValueError):
        cascade.threshold = 1.5


def test_wrong_names_list_every_name_and_a_cascade_folder_says_what_it_hides(tmp_path, monkeypatch):
    from refusal_predictor import ModelFileError

    with pytest.raises(ModelFileError, match=r"available names: \['default', 'ngrams', 'cascade'\]"):
        load_response_model("cascad")
    (tmp_path / "cascade").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelFileError, match=r"taken before the shipped cascade.*ResponseCascade.load\(\)"):
        load_response_model("cascade")


def test_the_markdown_card_names_the_cascade_and_its_band():
    from refusal_predictor.prompt import _bootstrap_markdown

    text = _bootstrap_markdown({"response_model": "cascade", "response_model_sha256": "f" * 64, "response_threshold": 0.5,
                                "response_cascade": {"fast_model_sha256": "a" * 64, "low": 0.02, "high": 0.98}})
    assert text.count("cascade") == 2  # "the response model cascade (a cascade: ..."
    assert "aaaaaaaaaaaa... first, then the one with sha256 ffffffffffff..." in text
    assert "strictly between 0.02 and 0.98" in text
    assert "the response model x (sha256 ffffffffffff...)" in _bootstrap_markdown(
        {"response_model": "x", "response_model_sha256": "f" * 64})


def test_evaluate_and_bootstrap_take_the_cascade(tmp_path, cascade, fast, capsys):
    _, _, test = data.paper_split()
    test = test.head(96)
    differ = cascade.predict(test["response"].tolist()) != fast.predict(test["response"].tolist())
    assert differ.sum() >= 2  # rows where scoring with the fast stage alone would fail this test
    rows = test[differ].head(4)
    rows = pd.concat([rows, test[~differ].head(8)])
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps({"prompt": p, "response": r, "label": lab}) + "\n"
                           for p, r, lab in zip(rows["prompt"], rows["response"], rows["label"])), encoding="utf-8")
    assert main(["evaluate", str(log), "--model", "cascade", "--json", "--no-progress", "--threads", "1"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    expected = cascade.predict(rows["response"].tolist()) == np.asarray(rows["label"])
    assert metrics["accuracy"] == pytest.approx(expected.mean())
    out = tmp_path / "labels.jsonl"
    assert main(["bootstrap", str(log), "-o", str(out), "--response-model", "cascade", "--no-progress"]) == 0
    read = int(cascade.unsure(rows["response"].tolist()).sum())
    assert f"cascade: the full model read {read} of the {len(rows)} responses scored" in capsys.readouterr().out
    written = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["label"] for r in written] == cascade.predict(rows["response"].tolist()).tolist()
    np.testing.assert_allclose([r["refusal_probability"] for r in written],
                               cascade.refusal_probability(rows["response"].tolist()), atol=1e-6)


def test_threshold_follows_the_full_model_unless_set(fast, test_responses):
    full = ResponseClassifier.load()
    full.threshold = 0.3
    cascade = ResponseCascade(fast, full)
    assert cascade.threshold == 0.3 and cascade.get_params()["threshold"] is None
    p = cascade.refusal_probability(test_responses)
    np.testing.assert_array_equal(cascade.predict(test_responses), np.where(p >= 0.3, "refusal", "compliance"))
    assert clone(ResponseCascade.load()).set_params(full=full).threshold == 0.3
    assert "threshold" not in repr(ResponseCascade.load())


def test_configure_encoder_reaches_the_full_stage():
    cascade = ResponseCascade.load()
    assert cascade.configure_encoder(num_threads=1) is cascade
    assert cascade._stages()[1].features_._encoder_options["num_threads"] == 1


def test_a_stage_that_is_not_a_response_model_is_a_type_error(fast, prompt_model):
    with pytest.raises(TypeError, match="full stage must be a ResponseClassifier, got PromptClassifier"):
        ResponseCascade(fast, prompt_model).predict(["x"])


def test_routing_count_adds_up_over_calls(cascade, test_responses):
    from refusal_predictor.cascade import RoutingCount

    counted = RoutingCount(cascade)
    first = counted.refusal_probability(test_responses[:20])
    counted.route(test_responses[20:], tones=True)
    np.testing.assert_allclose(first, cascade.refusal_probability(test_responses[:20]), atol=1e-12)
    assert (counted.full, counted.scored) == (int(cascade.unsure(test_responses).sum()), len(test_responses))
    assert counted.threshold == cascade.threshold
    assert RoutingCount(cascade).note() == ("cascade: the full model read 0 of the 0 responses scored; "
                                            "the n-gram model was sure of the rest")


def test_the_band_is_open_at_both_ends():
    p = np.array([0.0, 0.02, np.nextafter(0.02, 1), 0.5, np.nextafter(0.98, 0), 0.98, 1.0])
    assert in_band(p, 0.02, 0.98).tolist() == [False, False, True, True, True, False, False]


def test_a_tone_at_another_threshold_is_read_at_that_threshold_by_either_stage(cascade, test_responses):
    # the full stage was asked for its tone at its own cut (0.5), not the one given: an unsure
    # response it scored 0.4 was a refusal at threshold 0.3 with the tone "complied"
    for threshold in (0.1, 0.3, 0.7, 0.9):
        p, tones = cascade.refusal_probability_and_tone(test_responses, threshold=threshold)
        assert ((tones == "complied") == (p < threshold)).all(), threshold


@pytest.mark.parametrize("value", [1.5, -0.1, float("nan"), "0.5"])
def test_an_empty_response_probability_that_is_not_a_probability_is_refused(value, tmp_path):
    """1.5 scored a blank response [-0.5, 1.5] (and saved and loaded so), NaN scored [nan, nan]
    and predicted compliance, and "0.5" failed inside the arithmetic."""
    model = ResponseClassifier.load("ngrams")
    model.empty_response_probability = value
    with pytest.raises(ValueError, match="empty_response_probability must be a probability"):
        model.predict_proba(["", "fine"])
    with pytest.raises(ValueError, match="empty_response_probability must be a probability"):
        model.save(tmp_path / "m")
    assert not (tmp_path / "m").exists()
    cascade = ResponseCascade(ResponseClassifier.load("ngrams"), ResponseClassifier.load("ngrams"))
    cascade.empty_response_probability = value
    with pytest.raises(ValueError, match="empty_response_probability must be a probability"):
        cascade.predict([""])


def test_warm_up_opens_the_full_models_encoder_that_a_sure_response_never_reaches():
    """A service warming the cascade with a clear refusal opened nothing: its first unsure request
    then waited for the full model's encoder to open."""
    sure = "I'm sorry, but I can't help with that."
    cold = ResponseCascade.load()
    assert not cold.unsure([sure])[0]
    cold.predict_proba([sure])
    assert "_encoder" not in cold.full.features_.__dict__  # still closed
    warm = ResponseCascade.load()
    assert warm.warm_up() is warm
    assert "_encoder" in warm.full.features_.__dict__
    model = ResponseClassifier.load()
    assert model.warm_up() is model and "_encoder" in model.features_.__dict__
    encoder = model.features_.get_encoder()
    if encoder.concurrent_runs > 1:  # a request of several texts runs them on a second session: opened too
        assert encoder._single_thread_session is not None
    with pytest.raises(NotFittedError):
        ResponseClassifier().warm_up()
