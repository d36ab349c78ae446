"""The blended head (mean log-odds of logistic regression and LightGBM), on the paper's real prompts.

n-gram features only, so the fits take seconds; the hand labels of the paper's train split stand
in for bootstrapped ones.
"""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from refusal_predictor import PromptClassifier
from refusal_predictor.classifiers import HEADS
from refusal_predictor.heads import LogOddsBlend, contributions, log_odds
from training import data
from training.baselines import refusal_y


@pytest.fixture(scope="module")
def split():
    train, _, test = data.paper_split()
    return train["prompt"].tolist(), refusal_y(train), test["prompt"].tolist(), refusal_y(test)


@pytest.fixture(scope="module")
def blend(split):
    texts, y, _, _ = split
    return PromptClassifier(head="blend", use_embeddings=False).fit(texts, y)


def test_blend_log_odds_are_the_mean_of_its_heads(blend, split):
    _, _, test, _ = split
    head = blend._fitted_head()
    assert isinstance(head, LogOddsBlend) and [type(h).__name__ for h in head.estimators_] == [
        "LogisticRegression", "LGBMClassifier"]
    matrix = blend.features_.transform(test)
    expected = (head.estimators_[0].decision_function(matrix) + head.estimators_[1].predict(matrix, raw_score=True)) / 2
    assert np.allclose(log_odds(head, matrix), expected)
    proba = head.predict_proba(matrix)
    assert np.allclose(proba[:, 1], 1 / (1 + np.exp(-expected))) and np.allclose(proba.sum(axis=1), 1)


def test_blend_learns_and_is_calibrated_from_outside(blend, split):
    _, _, test, y_test = split
    p = blend.refusal_probability(test)
    accuracy = float(((p >= 0.5) == y_test).mean())
    assert accuracy > 0.7, accuracy  # TF-IDF+LogReg on the same hand labels: 0.742
    assert hasattr(blend.model_, "calibrated_classifiers_")
    assert blend.metadata["cross_validation"]["auroc"] > 0.75


@pytest.mark.parametrize("model_name, prompt, tolerance", [
    ("blend", "Write a poem in praise of Donald Trump", 1e-6),
    # the shipped default: a tree head over n-grams and the embedding, whose share must be counted
    ("prompt_model", "Write an article about Joe Biden in the style of the New York Post", 1e-5),
])
def test_explain_contributions_sum_to_the_heads_log_odds(model_name, prompt, tolerance, request):
    model = request.getfixturevalue(model_name)
    explanation = model.explain(prompt, top_k=10_000)
    listed = sum(v for _, v in explanation["toward_refusal"] + explanation["toward_compliance"])
    total = listed + explanation["absent_ngrams_contribution"] + explanation["embedding_contribution"] + explanation["bias"]
    matrix = model.features_.transform([prompt])
    assert total == pytest.approx(float(log_odds(model._fitted_head(), matrix)[0]), abs=tolerance)
    assert all(ngram in prompt.lower() for ngram, _ in explanation["toward_refusal"] + explanation["toward_compliance"])
    assert (explanation["embedding_contribution"] != 0.0) == model.features_.use_embeddings


def test_top_ngrams_reports_both_heads(blend):
    top = blend.top_ngrams(5)
    assert set(top) == {"refusal", "compliance", "importance"}
    assert all(len(v) == 5 for v in top.values())


def test_top_ngram_weights_are_what_the_blend_adds_to_its_log_odds(blend, split):
    """A blend averages its heads' log-odds, so an n-gram moves it by half its logistic weight;
    the weight shown was the whole coefficient, twice what the model (and explain) counts."""
    logistic = next(h for h in blend._fitted_head().estimators_ if hasattr(h, "coef_"))
    name, weight = blend.top_ngrams(1)["refusal"][0]
    column = blend.features_.vectorizer_.vocabulary_[name]
    assert weight == pytest.approx(logistic.coef_[0][column] / 2)
    # explain counts the same share: its n-gram contribution is value x weight plus the LightGBM half's.
    lightgbm = next(h for h in blend._fitted_head().estimators_ if not hasattr(h, "coef_"))
    prompt = next(p for p in split[0] if blend.features_.transform([p]).tocsr()[0, column] > 0)
    matrix = blend.features_.transform([prompt]).tocsr()
    explanation = blend.explain(prompt, top_k=10_000)
    explained = dict(explanation["toward_refusal"] + explanation["toward_compliance"])
    assert explained[name] == pytest.approx(matrix[0, column] * weight + contributions(lightgbm, matrix)[0][column] / 2)


def test_top_ngrams_checks_k_and_needs_ngrams(blend, split):
    for k in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="k must be a positive integer"):
            blend.top_ngrams(k)
    texts, y, _, _ = split
    embeddings_only = PromptClassifier(use_ngrams=False, head="logreg", validation_curve=False, calibration=None)
    embeddings_only.fit(texts[:60], y[:60])
    with pytest.raises(ValueError, match="no n-gram features"):
        embeddings_only.top_ngrams(5)


def test_sklearn_contract_and_round_trip(blend, split, tmp_path):
    _, _, test, _ = split
    params = clone(PromptClassifier(head="blend")).get_params()
    assert params["head"] == "blend"
    reloaded = PromptClassifier.load(blend.save(tmp_path / "blend"))
    assert np.allclose(reloaded.refusal_probability(test[:20]), blend.refusal_probability(test[:20]))
    lightgbm = reloaded._fitted_head().estimators_[1]
    assert lightgbm.get_params()["n_jobs"] == 1  # scoring threads set inside the blend too


def test_unknown_head_lists_the_heads(split):
    texts, y, _, _ = split
    with pytest.raises(ValueError, match="blend"):
        PromptClassifier(head="forest", use_embeddings=False).fit(texts, y)
    assert HEADS == ("logreg", "lightgbm", "blend")
    with pytest.raises(ValueError, match="at least one"):
        LogOddsBlend([]).fit(np.zeros((4, 1)), [0, 1, 0, 1])
    with pytest.raises(NotFittedError):
        PromptClassifier(head="blend").make_head().predict(np.zeros((1, 3)))
    tags = LogOddsBlend().__sklearn_tags__()
    assert tags.input_tags.sparse and not tags.classifier_tags.multi_class


def test_manifest_records_the_c_and_encoder_that_none_stood_for(blend, tmp_path):
    import json

    params = json.loads((blend.save(tmp_path / "m") / "manifest.json").read_text())["params"]
    assert blend.get_params()["C"] is None and params["C"] == PromptClassifier.default_C == 1.0
    assert params["encoder"] is None  # n-gram-only: no encoder to record


def test_sample_weights_reach_both_heads(blend, split):
    texts, y, test, _ = split
    matrix = blend.features_.transform(texts)
    head = PromptClassifier(head="blend").make_head()
    plain = clone(head).fit(matrix, y)
    weighted = clone(head).fit(matrix, y, sample_weight=np.where(y == 1, 5.0, 1.0))
    test_matrix = blend.features_.transform(test)
    for p, w in zip(plain.estimators_, weighted.estimators_):  # more weight on refusals: higher refusal log-odds
        assert log_odds(w, test_matrix).mean() > log_odds(p, test_matrix).mean() + 0.5


def test_explain_of_a_tree_head_lists_only_ngrams_that_move_the_score(split):
    """A tree head gives a present n-gram no share when no split uses it: such an n-gram pushes
    toward neither side and is not listed."""
    texts, y, test, _ = split
    model = PromptClassifier(head="lightgbm", use_embeddings=False, calibration=None, validation_curve=False).fit(texts, y)
    explanation = next(e for e in (model.explain(p, top_k=10_000) for p in test[:50])
                       if e["toward_refusal"] or e["toward_compliance"])
    assert all(v > 0 for _, v in explanation["toward_refusal"])
    assert all(v < 0 for _, v in explanation["toward_compliance"])
    matrix = model.features_.transform(test[:50]).tocsr()
    shap = [contributions(model._fitted_head(), matrix[i])[0] for i in range(50)]
    present_but_unused = [i for i in range(50) if ((matrix[i].toarray()[0] > 0) & (shap[i] == 0)).any()]
    assert present_but_unused  # what the test is about occurs in these prompts
    for i in present_but_unused[:5]:
        listed = model.explain(test[i], top_k=10_000)
        assert all(v != 0 for _, v in listed["toward_refusal"] + listed["toward_compliance"])


def test_blend_predicts_the_class_its_log_odds_point_to(blend, split):
    _, _, test, _ = split
    head = blend._fitted_head()
    matrix = blend.features_.transform(test)
    scores = log_odds(head, matrix)
    assert (scores > 0).any() and (scores < 0).any()
    np.testing.assert_array_equal(head.predict(matrix), head.classes_[(scores > 0).astype(int)])
