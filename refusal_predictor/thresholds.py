"""Choosing a decision threshold from a model's stored validation curve.

A pre-filter needs a threshold that means something ("flag 95 % of what will be refused", "block
at most 5 % of traffic"). Training stores, in the model's manifest, precision, recall and the
predicted refusal rate at every threshold, computed on held-out (out-of-fold) predictions; these
helpers read that curve instead of guessing.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import precision_recall_curve


def check_threshold(value: Any, name: str = "threshold") -> float:
    """A decision threshold, or a ValueError: a pre-filter given NaN, 1.5 or "0.5" (say from a
    config file) would otherwise flag nothing, or everything, without a word."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability between 0 and 1, got {value!r}")
    return float(value)


def written_probability(p: float, threshold: float) -> float:
    """``p`` rounded to 6 places for an output file, unless rounding would cross ``threshold``:
    0.4999996 written as 0.5 beside the label "compliance" would contradict the file's own rule."""
    rounded = round(float(p), 6)
    return rounded if (rounded >= threshold) == (p >= threshold) else float(p)


def validation_curve(y_true: Any, refusal_proba: Any, max_points: int = 200) -> dict[str, list[float]]:
    """Precision, recall and predicted refusal rate per threshold (thresholds ascending)."""
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(refusal_proba, dtype=float)
    precision, recall, thresholds = precision_recall_curve(y, p)
    precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
    rate = np.array([(p >= t).mean() for t in thresholds])
    if len(thresholds) > max_points:
        keep = np.unique(np.linspace(0, len(thresholds) - 1, max_points).round().astype(int))
        thresholds, precision, recall, rate = thresholds[keep], precision[keep], recall[keep], rate[keep]
    return {
        # Unrounded: a threshold rounded to 6 places moved past the score it stood for, so
        # recall=1.0 or refusal_rate=0 missed its promise on the very data of the curve.
        "threshold": [float(v) for v in thresholds],
        "precision": [round(float(v), 6) for v in precision],
        "recall": [round(float(v), 6) for v in recall],
        "refusal_rate": [round(float(v), 6) for v in rate],
        "n": int(len(y)),
        "positives": int(y.sum()),
    }


def pick_threshold(
    curve: dict[str, list[float]],
    *,
    precision: float | None = None,
    recall: float | None = None,
    refusal_rate: float | None = None,
) -> float:
    """The threshold meeting exactly one goal on the validation curve.

    - ``precision=p``: the lowest threshold whose precision is >= p (most recall at that precision);
    - ``recall=r``: the highest threshold whose recall is >= r (most precision at that recall);
    - ``refusal_rate=q``: the lowest threshold that flags at most a fraction q of texts; when even
      the highest score on the curve flags more (e.g. ``q=0``), a threshold just above it, which
      flagged nothing on the validation data.
    """
    goals = {k: v for k, v in {"precision": precision, "recall": recall, "refusal_rate": refusal_rate}.items() if v is not None}
    if len(goals) != 1:
        raise ValueError("give exactly one of precision=, recall=, refusal_rate=")
    (name, target), = goals.items()
    if not 0.0 <= target <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {target}")
    t = np.asarray(curve["threshold"], dtype=float)
    values = np.asarray(curve[name], dtype=float)
    if name == "recall":
        ok = np.flatnonzero(values >= target)
        if not len(ok):
            raise ValueError(f"no threshold reaches recall {target} on the validation curve")
        return float(t[ok.max()])
    ok = np.flatnonzero(values >= target) if name == "precision" else np.flatnonzero(values <= target)
    if not len(ok) and name == "refusal_rate":
        return float(np.nextafter(t.max(), np.inf))
    if not len(ok):
        best = values.max() if name == "precision" else values.min()
        raise ValueError(f"no threshold reaches {name} {target} on the validation curve (best: {best:.3f})")
    return float(t[ok.min()])
