"""Temperature scaling (``recalibrate``): probabilities that mean what they say, labels unchanged.

The shipped default model is recalibrated on GPTFuzz responses no model trained on and measured
on the paper's held-out test responses; the save / load / fit contract runs on a copy of it.
"""
from __future__ import annotations

import hashlib
import json
import pickle
import shutil

import numpy as np
import pytest
from sklearn.base import clone

from refusal_predictor import ModelFileError, PromptClassifier, ResponseClassifier
from refusal_predictor.artifacts import shipped_path
from refusal_predictor.calibration import fit_temperature, temper
from refusal_predictor.metrics import binary_metrics
from refusal_predictor.thresholds import pick_threshold
from training import data
from training.recalibrate_response import heldout_responses, recalibrate_on
from training.train_response import training_pool


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_temper_keeps_order_ties_and_the_ends():
    p = np.array([0.0, 1e-20, 0.01, 0.3, 0.3, 0.5, 0.97, 1 - 1e-17, 1.0])
    q = temper(p, 2.0)
    assert np.all(np.diff(q) >= 0) and q[3] == q[4] and q[5] == 0.5 and (q[0], q[-1]) == (0.0, 1.0)
    # no score crosses 0.5 by rounding (0.5 - 1 ulp came out as exactly 0.5 at T = 2.151)
    below = np.nextafter(0.5, 0.0)
    for t in (0.5, 2.151026564779933, 7.0):
        assert temper(below, t) < 0.5 <= temper(0.5, t)
    assert q[2] > p[2] and q[6] < p[6]  # T > 1: less sure
    assert np.allclose(temper(temper(p[1:-1], 2.0), 0.5, before=2.0), temper(p[1:-1], 0.5))


def test_fit_temperature_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, 20_000)
    y = (rng.random(z.size) < 1 / (1 + np.exp(-z))).astype(int)
    over_confident = 1 / (1 + np.exp(-3 * z))  # log-odds three times too large
    assert fit_temperature(over_confident, y) == pytest.approx(3.0, rel=0.05)
    with pytest.raises(ValueError, match="both classes"):
        fit_temperature([0.2, 0.9], [1, 1])
    with pytest.raises(ValueError, match="both classes, with weight"):
        fit_temperature([0.2, 0.9, 0.4], [1, 0, 0], sample_weight=[0, 1, 1])
    # texts scored right and near-certainly (a model's own training texts) fit no temperature
    with pytest.raises(ValueError, match=r"outside \[0.5, 20\]: these texts are scored right"):
        fit_temperature([0.001, 0.01, 0.99, 0.999], [0, 0, 1, 1])


@pytest.fixture(scope="module")
def heldout(data_dir):
    return heldout_responses(data_dir, training_pool(data_dir), n=400)


@pytest.fixture(scope="module")
def raw_folder(tmp_path_factory):
    """A copy of the shipped default model's folder as its training left it: the temperature that
    ``python -m training.recalibrate_response --write`` put into the manifest is taken out again
    (model.joblib never held it, and the stored curve stays on the head's scale)."""
    folder = tmp_path_factory.mktemp("raw") / "response"
    shutil.copytree(shipped_path("response"), folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.pop("temperature", None)
    manifest["metadata"].pop("recalibration", None)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


@pytest.fixture(scope="module")
def raw(raw_folder):
    return ResponseClassifier.load(raw_folder)


@pytest.fixture(scope="module")
def recalibrated(heldout, raw_folder, tmp_path_factory):
    """The raw model recalibrated on 400 held-out responses, in a folder of its own."""
    folder = tmp_path_factory.mktemp("calibrated") / "response"
    shutil.copytree(raw_folder, folder)
    return folder, recalibrate_on(ResponseClassifier.load(folder), heldout)


def test_heldout_responses_are_no_training_rows(heldout, data_dir):
    from refusal_predictor.text import text_key
    from training.train_response import training_rows

    assert len(heldout) == 400 and heldout["response"].is_unique and set(heldout["source"]) == {"gptfuzz"}
    # not the pool's responses, nor their openings the head trained on, up to whitespace and case
    # (8 such rows came in before: "I'm sorry, but I cannot fulfill your request." is an opening)
    trained = {text_key(t) for t in training_rows(training_pool(data_dir))[0]}
    assert not {text_key(t) for t in heldout["response"]} & trained
    assert 0.2 < (heldout["label"] == "refusal").mean() < 0.8


def test_recalibration_keeps_every_label_and_tone_and_mends_the_probabilities(recalibrated, raw):
    _, model = recalibrated
    _, _, test = data.paper_split()
    texts, y = test["response"].tolist(), (test["label"] == "refusal").to_numpy()
    assert model.temperature > 1.5  # the model was over-confident
    assert list(model.predict(texts)) == list(raw.predict(texts))
    assert list(model.predict_tone(texts)) == list(raw.predict_tone(texts))
    before = binary_metrics(y, raw.refusal_probability(texts))
    after = binary_metrics(y, model.refusal_probability(texts))
    assert after["auroc"] == pytest.approx(before["auroc"]) and after["accuracy"] == before["accuracy"]
    # the paper's test responses are held out of the head, the encoder and the 400 fit rows:
    # measured ECE 0.074 -> 0.060, Brier 0.072 -> 0.067 (T=1.8 from these 400 rows; 2.15 from all 2,827)
    assert after["ece"] < before["ece"] - 0.01 and after["brier"] < before["brier"], (before, after)
    record = model.metadata["recalibration"]
    assert record["rows"] == 400
    assert record["with_temperature"]["log_loss"] < record["without_temperature"]["log_loss"]
    tone = model.predict_tone_proba(texts[:20])
    assert np.allclose(tone[:, 0], 1 - model.refusal_probability(texts[:20])) and np.allclose(tone.sum(axis=1), 1)


def test_thresholds_move_with_the_probabilities(recalibrated, raw):
    _, model = recalibrated
    _, _, test = data.paper_split()
    texts = test["response"].tolist()
    with pytest.warns(UserWarning, match="optimistic"):
        old, new = raw.threshold_for(recall=0.9), model.threshold_for(recall=0.9)
    assert new < old  # the same curve point, on the less sure scale
    assert np.array_equal(raw.refusal_probability(texts) >= old, model.refusal_probability(texts) >= new)
    assert model.threshold == 0.5 and model.refusal_probability([""])[0] == 1.0  # fixed, not tempered
    # the stored curve stays on the head's scale: recalibrating again maps from it, never drifts
    curve = model.metadata["validation_curve"]
    assert curve == raw.metadata["validation_curve"]
    # a cut above every curve score stays above it once mapped; at temperature 1 nothing is mapped
    with pytest.warns(UserWarning, match="optimistic"):
        above = model.threshold_for(refusal_rate=0)
        assert raw.threshold_for(recall=0.9) == pick_threshold(curve, recall=0.9)
    assert above > temper(max(curve["threshold"]), model.temperature)


def test_a_labels_cache_names_the_temperature_too(response_model):
    from training.train_prompt import labels_model_key

    sha = response_model.manifest_["files"]["model.joblib"]
    assert labels_model_key(response_model) == f"{sha}+temperature={response_model.temperature!r}"
    ngrams = ResponseClassifier.load("ngrams")
    assert labels_model_key(ngrams) == ngrams.manifest_["files"]["model.joblib"]  # earlier caches still match


def test_save_calibration_leaves_model_joblib_byte_for_byte(recalibrated, tmp_path):
    folder, model = recalibrated
    sha_before = _sha(folder / "model.joblib")
    tones_before = _sha(folder / "tones.joblib")
    model.save_calibration(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["temperature"] == model.temperature and "recalibration" in manifest["metadata"]
    assert _sha(folder / "model.joblib") == sha_before == manifest["files"]["model.joblib"]
    assert _sha(folder / "tones.joblib") == tones_before
    texts = ["I'm sorry, I can't.", "Sure, here is a poem about spring.", "As an AI, I cannot say."]
    again = ResponseClassifier.load(folder)
    assert again.temperature == model.temperature
    assert np.array_equal(again.refusal_probability(texts), model.refusal_probability(texts))
    # a whole save() and pickling keep it; a clone is unfitted, and fit drops it
    saved = ResponseClassifier.load(model.save(tmp_path / "whole"))
    assert saved.temperature == model.temperature
    assert np.allclose(saved.refusal_probability(texts), model.refusal_probability(texts))
    assert pickle.loads(pickle.dumps(model)).temperature == model.temperature
    assert clone(model).temperature == 1.0
    other = ResponseClassifier.load("ngrams")
    with pytest.raises(ValueError, match="does not hold the model this one was loaded from"):
        other.save_calibration(folder)


def test_fit_drops_the_temperature_and_recalibrate_refuses_one_class(heldout):
    model = ResponseClassifier(use_embeddings=False, validation_curve=False, threshold=0.3)
    texts, labels = heldout["response"].tolist(), heldout["label"].tolist()
    model.fit(texts[:200], labels[:200]).recalibrate(texts[200:], labels[200:])
    assert model.temperature != 1.0
    # the threshold is a parameter, a probability cut: recalibrate leaves it, so clone and refit keep it
    assert model.threshold == clone(model).threshold == 0.3 and model.get_params()["threshold"] == 0.3
    assert model.fit(texts[:200], labels[:200]).temperature == 1.0 and model.threshold == 0.3
    # its own training texts, scored right and sure: no temperature fits them
    with pytest.raises(ValueError, match="did not train on"):
        model.recalibrate(texts[:200], labels[:200])
    with pytest.raises(ValueError, match=r"found 0 refusals .* \(\d+ of weight 0, left out\)"):
        model.recalibrate(texts[200:], labels[200:], sample_weight=[label != "refusal" for label in labels[200:]])
    refusals = [t for t, label in zip(texts, labels) if label == "refusal"][:30]
    with pytest.raises(ValueError, match=r"found 30 refusals and 2 compliances \(3 blank texts"):
        model.recalibrate(refusals + ["Sure, here it is.", "Here you go.", "", " ", "\n"],
                          ["refusal"] * 30 + ["compliance"] * 2 + ["compliance"] * 3)


def test_a_prompt_model_recalibrates_too(tmp_path):
    train, val, _ = data.paper_split()
    card = {"target": "paper-llm", "summary": "a test model", "training": {"rows": len(train)}}
    folder = PromptClassifier(use_embeddings=False, validation_curve=False).fit(
        train["prompt"], train["label"]).save(tmp_path / "m", metadata=card)
    model = PromptClassifier.load(folder)
    before = model.predict(val["prompt"].tolist())
    model.recalibrate(val["prompt"].tolist(), val["label"].tolist(), source="paper validation split")
    assert model.temperature != 1.0 and list(model.predict(val["prompt"].tolist())) == list(before)
    prompt = val["prompt"].tolist()[0]
    assert model.explain(prompt)["refusal_probability"] == pytest.approx(model.refusal_probability([prompt])[0])
    model.save_calibration(folder)
    # the card is the manifest's metadata, so it says so too
    assert json.loads((folder / "model_card.json").read_text())["recalibration"]["source"] == "paper validation split"
    assert "Probabilities recalibrated: temperature" in (folder / "MODEL_CARD.md").read_text()
    assert PromptClassifier.load(folder).temperature == model.temperature


def test_a_partial_save_keeps_the_live_model_s_unsaved_parts(recalibrated, heldout, tmp_path):
    folder, _ = recalibrated
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    model = ResponseClassifier.load(copy)
    model.recalibrate(heldout["response"].tolist()[:200], heldout["label"].tolist()[:200])
    unsaved = model.temperature
    train, val, _ = data.paper_split()
    model.fit_tones(train["response"].tolist(), train["fine_label"].tolist()).save_tones(copy)
    assert model.temperature == unsaved and model.metadata["recalibration"]["rows"] == 200


@pytest.mark.parametrize("value", [-1, 0, "2", None, float("inf"), 1e300, 1e-300, 0.2, 25])
def test_a_bad_temperature_in_a_manifest_names_the_file(value, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(shipped_path("response-ngrams"), folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["temperature"] = value
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match=r"manifest\.json.*'temperature' must be a positive number from 0.5 to 20"):
        ResponseClassifier.load(folder)


def test_card_check_refuses_labels_of_the_same_head_at_another_temperature(response_model, tmp_path):
    """A card that records the temperature its labels were made at is checked on it too: the same
    model.joblib at another temperature decides merged prompts' ties otherwise."""
    from training.evaluate_prompt import check_cards_labelled_by

    folder = tmp_path / "gpt-4"
    shutil.copytree(shipped_path("prompt") / "gpt-4", folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    training = manifest["metadata"]["training"]
    assert training["response_model_sha256"] == response_model.manifest_["files"]["model.joblib"]
    check_cards_labelled_by(response_model, tmp_path)  # no temperature recorded: the sha256 alone is checked

    for recorded, agrees in ((response_model.temperature, True), (1.0, False)):
        training["response_temperature"] = recorded
        (folder / "manifest.json").write_text(json.dumps(manifest))
        if agrees:
            check_cards_labelled_by(response_model, tmp_path)
        else:
            with pytest.raises(ValueError, match=r"gpt-4: .*at temperature 1\.0, not at this run's labels model's 2\.15"):
                check_cards_labelled_by(response_model, tmp_path)


def test_fit_temperature_refuses_scores_no_better_than_chance():
    rng = np.random.default_rng(1)
    with pytest.raises(ValueError, match=r"outside \[0.5, 20\]: these texts are scored no better than chance"):
        fit_temperature(rng.random(500), rng.integers(0, 2, 500))


def test_fit_temperature_weights_count_as_repeated_rows_and_scores_of_0_and_1_are_clipped():
    from refusal_predictor.calibration import log_loss

    rng = np.random.default_rng(1)
    z = rng.normal(0, 3, 2000)
    y = (rng.random(z.size) < 1 / (1 + np.exp(-z))).astype(int)
    p = 1 / (1 + np.exp(-2 * z))
    w = np.where(y == 1, 3, 1)
    assert fit_temperature(p, y, w) == pytest.approx(fit_temperature(np.repeat(p, w), np.repeat(y, w)), rel=1e-6)
    assert fit_temperature(p, y, w) != pytest.approx(fit_temperature(p, y), rel=1e-3)
    assert log_loss(y, p, w) == pytest.approx(log_loss(np.repeat(y, w), np.repeat(p, w)))
    # a head may say exactly 0 or 1 (and be wrong): the log-odds are clipped, not infinite
    q = p.copy()
    q[:5], q[5:10] = 0.0, 1.0
    assert fit_temperature(q, y) == pytest.approx(fit_temperature(np.clip(q, 1e-15, 1 - 1e-15), y))


def test_recalibrating_again_starts_from_the_head_and_reads_weights_and_blanks(heldout):
    texts, labels = heldout["response"].tolist(), heldout["label"].tolist()
    model = ResponseClassifier(use_embeddings=False, validation_curve=False).fit(texts[:200], labels[:200])
    first = model.recalibrate(texts[200:], labels[200:]).temperature
    record = model.metadata["recalibration"]
    # the temperature is relative to the head: fitting it again on the same texts finds the same one
    again = model.recalibrate(texts[200:], labels[200:]).metadata["recalibration"]
    assert model.temperature == pytest.approx(first, rel=1e-6)
    assert again["without_temperature"] == pytest.approx(record["without_temperature"])
    # a weight counts as that many copies of the row
    weights = [3.0 if label == "refusal" else 1.0 for label in labels[200:]]
    weighted = model.recalibrate(texts[200:], labels[200:], sample_weight=weights).temperature
    repeated = [(t, label) for t, label, w in zip(texts[200:], labels[200:], weights) for _ in range(int(w))]
    assert weighted != pytest.approx(first, rel=1e-3)
    assert model.recalibrate([t for t, _ in repeated], [label for _, label in repeated]).temperature == \
        pytest.approx(weighted, rel=1e-5)
    # blank responses have a fixed probability: left out of the fit and of the rows it counts
    model.recalibrate(texts[200:] + ["", "  "], labels[200:] + ["compliance", "compliance"])
    record = model.metadata["recalibration"]
    assert (record["rows"], record["left_out_fixed_rows"]) == (200, 2)
    assert model.temperature == pytest.approx(first, rel=1e-6)


def test_a_cut_above_every_curve_score_flags_none_of_them_once_mapped(tmp_path):
    # At T = 3 the score 0.7 and the float just above it map to one probability: the cut just
    # above the curve's top score (refusal_rate=0) must still end up above that score's image.
    folder = tmp_path / "m"
    shutil.copytree(shipped_path("response-ngrams"), folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["temperature"] = 3.0
    manifest["metadata"]["validation_curve"] = {
        "threshold": [0.1, 0.3, 0.5, 0.7], "precision": [0.5, 0.6, 0.8, 0.9], "recall": [1.0, 0.9, 0.7, 0.4],
        "refusal_rate": [0.8, 0.6, 0.4, 0.2], "n": 10, "positives": 5}
    manifest["metadata"].pop("validation_curve_caveat", None)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    model = ResponseClassifier.load(folder)
    assert model.threshold_for(refusal_rate=0.0) > temper(0.7, 3.0)
    assert model.threshold_for(refusal_rate=0.2) == temper(0.7, 3.0)
