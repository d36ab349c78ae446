"""Choosing a head by cross-validation on training data only, with embeddings computed once.

Used by ``train-prompt`` (a user's own target) and by the pipelines in ``training/`` that build the
shipped models. Folds may be grouped (e.g. by prompt, so one prompt's responses never straddle a
train and a test fold).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from .classifiers import RefusalClassifier
from .metrics import binary_metrics

logger = logging.getLogger(__name__)


class EmbeddingCache(dict):
    """Embeddings by text, and the open encoder that computed them.

    :func:`fit_with_cache` gives that encoder to every model it fits: model selection fits about
    twenty models on the same texts, and each opened (and hashed) the encoder anew, with
    onnxruntime's default thread pool whatever thread count the first one was given.
    """

    def __init__(self, encoder=None) -> None:
        super().__init__()
        self.encoder = encoder


def embedding_cache(clf: RefusalClassifier, texts: Sequence[str], num_threads: int | None = None) -> EmbeddingCache:
    """The embeddings of ``texts`` by ``clf``'s encoder, computed now, for :func:`fit_with_cache`.

    Computing them up front, once, is where the encoder's thread count is set (``num_threads``,
    e.g. on a machine shared with other jobs); the fits then only read the cache and share its
    encoder. Empty, with no encoder, for a model without embeddings.
    """
    features = clf.make_features(num_threads)
    if not features.use_embeddings:
        return EmbeddingCache()
    cache = EmbeddingCache(features.get_encoder())
    features.use_cache(cache)
    features.embed(list(texts))
    return cache


def fit_with_cache(
    clf: RefusalClassifier, texts: list[str], y, cache: dict | None, sample_weight=None, validation_rows=None
) -> RefusalClassifier:
    """Fit, reusing embeddings already computed for the same texts (model selection, LOMO).

    A plain dict may hold embeddings by another encoder on purpose (the leave-one-model-out
    folds' own encoders); an :class:`EmbeddingCache` also lends its open encoder, which must be
    the one ``clf`` would open.
    """
    features = clf.make_features()
    if cache is not None and features.use_embeddings:
        features.use_cache(cache)
        encoder = getattr(cache, "encoder", None)
        if encoder is not None:
            wanted = features.encoder_folder()
            if Path(encoder.path).resolve() != wanted.resolve():
                raise ValueError(f"the embedding cache was computed by {encoder.path}, but this model's encoder is {wanted}")
            features.set_encoder(encoder)
    features.fit(texts)
    return clf.fit(texts, y, sample_weight=sample_weight, features=features, validation_rows=validation_rows)


def grouped_cv(
    cls: type[RefusalClassifier], recipe: dict[str, Any], texts: list[str], y: np.ndarray,
    groups: Sequence[str] | None, cache: dict, folds: int = 5, seed: int = 0, sample_weight=None,
) -> dict[str, float]:
    """Out-of-fold metrics of one recipe; folds grouped (e.g. by prompt) so no group straddles them.

    ``groups=None`` gives plain stratified folds. Heads are compared uncalibrated (calibration is
    monotone per model and costs five more fits).
    """
    y = np.asarray(y)
    oof = np.zeros(len(texts))
    if groups is None:
        splits = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(texts, y)
    else:
        splits = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed).split(texts, y, groups)
    weights = None if sample_weight is None else np.asarray(sample_weight)
    for train_idx, test_idx in splits:
        clf = cls(**{**recipe, "validation_curve": False, "calibration": None})
        fit_with_cache(clf, [texts[i] for i in train_idx], y[train_idx], cache,
                       sample_weight=None if weights is None else weights[train_idx])
        oof[test_idx] = clf.refusal_probability([texts[i] for i in test_idx])
    return binary_metrics(y, oof)


def select(
    cls: type[RefusalClassifier], candidates: dict[str, dict[str, Any]], texts: list[str], y: np.ndarray,
    groups: Sequence[str] | None, cache: dict, sample_weight=None, folds: int = 5,
) -> tuple[str, list[dict[str, Any]]]:
    """The candidate with the best cross-validated accuracy (ties: F1), and every candidate's row."""
    rows = []
    for name, recipe in candidates.items():
        start = time.perf_counter()
        metrics = grouped_cv(cls, recipe, texts, y, groups, cache, folds=folds, sample_weight=sample_weight)
        rows.append({"recipe": name, **metrics, "seconds": round(time.perf_counter() - start, 1)})
        logger.info("%s: %s", name, metrics)
    best = max(rows, key=lambda r: (r["accuracy"], r["f1"]))["recipe"]
    return best, rows
