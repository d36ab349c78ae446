"""Model selection shared by the training scripts: grouped cross-validation with cached embeddings."""
from __future__ import annotations

import logging
import time
from typing import Any, Sequence

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from refusal_predictor.classifiers import RefusalClassifier
from refusal_predictor.metrics import binary_metrics

logger = logging.getLogger(__name__)


def fit_with_cache(
    clf: RefusalClassifier, texts: list[str], y, cache: dict | None, sample_weight=None
) -> RefusalClassifier:
    """Fit, reusing embeddings already computed for the same texts (model selection, LOMO)."""
    features = clf.make_features()
    if cache is not None and features.use_embeddings:
        features.use_cache(cache)
    features.fit(texts)
    return clf.fit(texts, y, sample_weight=sample_weight, features=features)


def grouped_cv(
    cls: type[RefusalClassifier], recipe: dict[str, Any], texts: list[str], y: np.ndarray,
    groups: Sequence[str], cache: dict, folds: int = 5, seed: int = 0,
) -> dict[str, float]:
    """Out-of-fold metrics of one recipe; folds grouped (e.g. by prompt) so no group straddles them.

    Heads are compared uncalibrated (calibration is monotone per model and costs five more fits).
    """
    oof = np.zeros(len(texts))
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train_idx, test_idx in splitter.split(texts, y, groups):
        clf = cls(**{**recipe, "validation_curve": False, "calibration": None})
        fit_with_cache(clf, [texts[i] for i in train_idx], y[train_idx], cache)
        oof[test_idx] = clf.refusal_probability([texts[i] for i in test_idx])
    return binary_metrics(y, oof)


def select(
    cls: type[RefusalClassifier], candidates: dict[str, dict[str, Any]], texts: list[str], y: np.ndarray,
    groups: Sequence[str], cache: dict,
) -> tuple[str, list[dict[str, Any]]]:
    """The candidate with the best grouped-CV accuracy (ties: F1), and every candidate's row."""
    rows = []
    for name, recipe in candidates.items():
        start = time.perf_counter()
        metrics = grouped_cv(cls, recipe, texts, y, groups, cache)
        rows.append({"recipe": name, **metrics, "seconds": round(time.perf_counter() - start, 1)})
        logger.info("%s: %s", name, metrics)
    best = max(rows, key=lambda r: (r["accuracy"], r["f1"]))["recipe"]
    return best, rows
