"""The metrics every report prints, checked against scikit-learn and hand computations."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss

from refusal_predictor.metrics import binary_metrics, expected_calibration_error


def test_brier_is_scikit_learns_and_does_not_depend_on_the_threshold():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p = rng.random(200)
    at_half, at_low = binary_metrics(y, p), binary_metrics(y, p, threshold=0.1)
    assert at_half["brier"] == pytest.approx(brier_score_loss(y, p))
    assert (at_half["brier"], at_half["ece"]) == (at_low["brier"], at_low["ece"])
    assert at_half["accuracy"] != at_low["accuracy"]


def test_ece_by_hand():
    # bins [0.1, 0.2), [0.9, 1.0], [0.6, 0.7), [0.4, 0.5): gaps 0.1, 0.1, 0.4, 0.4, one text each
    assert expected_calibration_error([0, 1, 1, 0], [0.1, 0.9, 0.6, 0.4]) == pytest.approx(0.25)
    # one bin holding 0.21-0.29 whose refusal rate (1 in 4) is its mean probability: calibrated
    assert expected_calibration_error([1, 0, 0, 0], [0.21, 0.25, 0.25, 0.29]) == pytest.approx(0.0)
    # a probability of exactly 1 belongs to the top bin, beside 0.95
    assert expected_calibration_error([1, 0], [1.0, 0.95]) == pytest.approx(abs(0.5 - 0.975))
    assert np.isnan(expected_calibration_error([], []))


def test_an_over_confident_model_has_a_larger_ece_at_the_same_accuracy():
    y = np.array([1] * 9 + [0] + [0] * 9 + [1])  # 90 % right either way
    honest = np.where(np.arange(20) < 10, 0.9, 0.1)
    sure = np.where(np.arange(20) < 10, 0.999, 0.001)
    a, b = binary_metrics(y, honest), binary_metrics(y, sure)
    assert a["accuracy"] == b["accuracy"] == 0.9 and a["auroc"] == b["auroc"]
    assert a["ece"] == pytest.approx(0.0) and b["ece"] == pytest.approx(0.099)
    assert a["brier"] < b["brier"]


def test_ece_weights_each_bin_by_its_share_of_texts():
    # bin [0.9, 1]: one text, gap 0.1; bin [0.1, 0.2): three texts, gap |1/3 - 0.1|; a plain mean
    # over the bins (0.167) would let one text count as much as three
    assert expected_calibration_error([1, 0, 0, 1], [0.9, 0.1, 0.1, 0.1]) == pytest.approx((0.1 + 3 * (0.7 / 3)) / 4)


def test_a_probability_at_the_threshold_is_a_refusal():
    # predict flags p >= threshold; the metrics must count the same texts as refusals
    metrics = binary_metrics([1, 0, 0], [0.5, 0.2, 0.3], threshold=0.5)
    assert metrics["accuracy"] == 1.0 and metrics["recall"] == 1.0
    assert binary_metrics([1, 0, 1], [0.3, 0.2, 0.9], threshold=0.3)["recall"] == 1.0
