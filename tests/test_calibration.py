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
from training import data
from training.recalibrate_response import heldout_responses, recalibrate_on
from training.train_response import training_pool


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_temper_keeps_order_ties_and_the_ends():
    p = np.array([0.0, 1e-20, 0.01, 0.3, 0.3, 0.5, 0.97, 1 - 1e-17, 1.0])
    q = temper(p, 2.0)
    assert np.all(np.diff(q) >= 0) and q[3] == q[4] and q[5] == 0.5 and (q[0], q[-1]) == (0.0, 1.0)
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


@pytest.fixture(scope="module")
def heldout(data_dir):
    return heldout_responses(data_dir, training_pool(data_dir), n=400)


@pytest.fixture(scope="module")
def raw_folder(tmp_path_factory):
    """A copy of the shipped default model's folder as its training left it: the temperature that
    ``python -m training.recalibrate_response --write`` put into the manifest is taken out again
    (model.joblib never held it), with the validation curve's thresholds mapped back."""
    folder = tmp_path_factory.mktemp("raw") / "response"
    shutil.copytree(shipped_path("response"), folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    t = manifest.pop("temperature", 1.0)
    curve = manifest["metadata"]["validation_curve"]
    curve["threshold"] = [float(v) for v in temper(curve["threshold"], 1.0, before=t)]
    manifest["threshold"] = float(temper(manifest["threshold"], 1.0, before=t))
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
    assert len(heldout) == 400 and heldout["response"].is_unique and set(heldout["source"]) == {"gptfuzz"}
    assert not set(heldout["response"]) & set(training_pool(data_dir)["response"])
    assert 0.2 < (heldout["label"] == "refusal").mean() < 0.8


def test_recalibration_keeps_every_label_and_tone_and_mends_the_probabilities(recalibrated, raw):
    _, model = recalibrated
    _, _, test = data.paper_split()
    texts, y = test["response"].tolist(), (test["label"] == "refusal").to_numpy()
    assert model.temperature > 1.5  # measured 2.4 on these 400 rows: the model was over-confident
    assert list(model.predict(texts)) == list(raw.predict(texts))
    assert list(model.predict_tone(texts)) == list(raw.predict_tone(texts))
    before = binary_metrics(y, raw.refusal_probability(texts))
    after = binary_metrics(y, model.refusal_probability(texts))
    assert after["auroc"] == pytest.approx(before["auroc"]) and after["accuracy"] == before["accuracy"]
    # the paper's test responses are held out of the head, the encoder and the 400 fit rows:
    # measured ECE 0.074 -> 0.040, Brier 0.072 -> 0.066
    assert after["ece"] < before["ece"] - 0.02 and after["brier"] < before["brier"], (before, after)
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
    model = ResponseClassifier(use_embeddings=False, validation_curve=False)
    texts, labels = heldout["response"].tolist(), heldout["label"].tolist()
    model.fit(texts[:200], labels[:200]).recalibrate(texts[200:], labels[200:])
    assert model.temperature != 1.0
    assert model.fit(texts[:200], labels[:200]).temperature == 1.0
    refusals = [t for t, label in zip(texts, labels) if label == "refusal"][:30]
    with pytest.raises(ValueError, match=r"found 30 refusals and 2 compliances \(3 blank texts"):
        model.recalibrate(refusals + ["Sure, here it is.", "Here you go.", "", " ", "\n"],
                          ["refusal"] * 30 + ["compliance"] * 2 + ["compliance"] * 3)


def test_a_prompt_model_recalibrates_too():
    train, val, _ = data.paper_split()
    model = PromptClassifier(use_embeddings=False, validation_curve=False).fit(train["prompt"], train["label"])
    before = model.predict(val["prompt"].tolist())
    model.recalibrate(val["prompt"].tolist(), val["label"].tolist(), source="paper validation split")
    assert list(model.predict(val["prompt"].tolist())) == list(before)
    assert model.metadata["recalibration"]["source"] == "paper validation split"


@pytest.mark.parametrize("value", [-1, 0, "2", None, float("inf")])
def test_a_bad_temperature_in_a_manifest_names_the_file(value, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(shipped_path("response-ngrams"), folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["temperature"] = value
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match=r"manifest\.json.*'temperature' must be a positive number"):
        ResponseClassifier.load(folder)
