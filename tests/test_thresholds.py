"""Thresholds picked from a validation curve meet the goal they were picked for."""
from __future__ import annotations

import numpy as np
import pytest

from refusal_predictor.metrics import binary_metrics
from refusal_predictor.thresholds import pick_threshold, validation_curve


@pytest.fixture()
def scores():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000)
    p = np.clip(0.5 * y + rng.normal(0.25, 0.2, 2000), 0, 1)
    return y, p


def test_curve_goals_hold_on_the_same_data(scores):
    y, p = scores
    curve = validation_curve(y, p)
    for goal in (0.8, 0.9, 0.95):
        t = pick_threshold(curve, precision=goal)
        assert binary_metrics(y, p, t)["precision"] >= goal - 1e-9
        t = pick_threshold(curve, recall=goal)
        assert binary_metrics(y, p, t)["recall"] >= goal - 0.005
    t = pick_threshold(curve, refusal_rate=0.2)
    assert (p >= t).mean() <= 0.2 + 0.005


def test_exactly_one_goal_and_unreachable_goal(scores):
    curve = validation_curve(*scores)
    with pytest.raises(ValueError, match="exactly one"):
        pick_threshold(curve, precision=0.9, recall=0.9)
    with pytest.raises(ValueError, match="between 0 and 1"):
        pick_threshold(curve, recall=1.5)
    y = np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match="no threshold"):
        pick_threshold(validation_curve(y, np.array([0.9, 0.1, 0.8, 0.2])), precision=0.99)


def test_zero_refusal_rate_flags_nothing_on_the_curve(scores):
    y, p = scores
    t = pick_threshold(validation_curve(y, p), refusal_rate=0.0)
    assert (p >= t).sum() == 0 and t > p.max() - 1e-6


CURVE = {
    "threshold": [0.1, 0.3, 0.5, 0.7, 0.9],
    "precision": [0.5, 0.6, 0.8, 0.9, 1.0],
    "recall": [1.0, 0.95, 0.8, 0.5, 0.2],
    "refusal_rate": [0.9, 0.7, 0.5, 0.3, 0.1],
}


def test_pick_threshold_picks_the_best_threshold_meeting_the_goal():
    # Meeting the goal is not enough (an extreme threshold always does): each goal has one best cut.
    assert pick_threshold(CURVE, recall=0.8) == 0.5  # highest threshold with recall >= 0.8
    assert pick_threshold(CURVE, precision=0.8) == 0.5  # lowest threshold with precision >= 0.8
    assert pick_threshold(CURVE, refusal_rate=0.3) == 0.7  # lowest threshold flagging <= 30 %


def test_picked_thresholds_keep_their_promise_on_the_curve_s_own_data():
    """Thresholds stored rounded to 6 places moved past the scores they stood for: recall=1.0
    missed a positive and refusal_rate=0 still flagged a text, on the very data of the curve."""
    y = np.array([1, 0, 1, 0])
    p = np.array([0.1234567, 0.05, 0.9876543, 0.01])
    curve = validation_curve(y, p)
    cut = pick_threshold(curve, recall=1.0)
    assert (p[y == 1] >= cut).all()
    assert not (p >= pick_threshold(curve, refusal_rate=0.0)).any()
