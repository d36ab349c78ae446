"""Metrics reported everywhere (CLI, evaluation report, model cards), computed one way."""
from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

CALIBRATION_BINS = 10


def expected_calibration_error(y_true: Any, refusal_proba: Any, bins: int = CALIBRATION_BINS) -> float:
    """How far the probabilities are from the refusal rates they claim, averaged over all texts.

    The probabilities are cut into ``bins`` equal-width bins of P(refusal) (``[0, 0.1)``, ...,
    ``[0.9, 1]``); in each, the gap between the mean probability and the share of refusals is
    weighted by the bin's share of texts (Guo et al., 2017, for the refusal class). 0 is perfect;
    a model that says 0.99 where 93 % are refusals adds 0.06 for those texts. Accuracy and AUROC
    cannot show this, and a cut taken from the probabilities (``threshold_for``, a pre-filter's
    fixed threshold) holds only as far as they are calibrated. NaN for no texts.
    """
    y = np.asarray(y_true, dtype=float)
    p = np.asarray(refusal_proba, dtype=float)
    if len(y) == 0:
        return float("nan")
    which = np.clip((p * bins).astype(int), 0, bins - 1)
    total = 0.0
    for b in np.unique(which):
        in_bin = which == b
        total += in_bin.sum() * abs(y[in_bin].mean() - p[in_bin].mean())
    return float(total / len(y))


def binary_metrics(y_true: Any, refusal_proba: Any, threshold: float = 0.5) -> dict[str, float]:
    """Accuracy, refusal F1/precision/recall, AUROC, the majority-class rate, and calibration.

    ``y_true`` is 0/1 (1 = refusal); AUROC is NaN when only one class is present. Calibration:
    ``brier`` (mean squared error of P(refusal); 0.25 for a constant 0.5) and ``ece``
    (:func:`expected_calibration_error`), both lower-is-better and independent of ``threshold``.
    """
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(refusal_proba, dtype=float)
    pred = (p >= threshold).astype(int)
    refusal_rate = float(y.mean()) if len(y) else float("nan")
    both = len(np.unique(y)) == 2
    return {
        "n": int(len(y)),
        "accuracy": float(accuracy_score(y, pred)) if len(y) else float("nan"),
        "f1": float(f1_score(y, pred, zero_division=0)),
        "precision": float(precision_score(y, pred, zero_division=0)),
        "recall": float(recall_score(y, pred, zero_division=0)),
        "auroc": float(roc_auc_score(y, p)) if both else float("nan"),
        "refusal_rate": refusal_rate,
        "majority_rate": max(refusal_rate, 1 - refusal_rate) if len(y) else float("nan"),
        "brier": float(np.mean((p - y) ** 2)) if len(y) else float("nan"),
        "ece": expected_calibration_error(y, p),
    }


def format_table(rows: list[dict[str, Any]], columns: list[str], title: str | None = None) -> str:
    """A plain-text table; floats in [0, 1] print as percentages-free fixed decimals."""
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "nan" if np.isnan(v) else f"{v:.4f}"
        return str(v)

    body = [[cell(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(b[i]) for b in body)) if body else len(c) for i, c in enumerate(columns)]
    lines = []
    if title:
        lines.append(title)
    lines.append("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(v.ljust(w) for v, w in zip(b, widths)) for b in body)
    return "\n".join(lines)
