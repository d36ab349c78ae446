"""Heads: the estimators that turn a feature row into a refusal score (before calibration).

Logistic regression and LightGBM are the two heads; :class:`LogOddsBlend` averages their
log-odds. Why a blend: on the few hundred prompts a user's own log often holds, neither head is
reliably the better one (XSTest v2, five LLMs, 360 training prompts each: LightGBM had the higher
AUROC for three, logistic regression for two), and the blend's mean AUROC over the five was the
highest (0.836 vs 0.832 and 0.830; ``python -m training.evaluate --part prompt-heads``).
Averaging in log-odds, not in probability, keeps :meth:`PromptClassifier.explain` exact: the
blend's log-odds are the mean of its heads', so its per-n-gram contributions are the mean of theirs.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.validation import check_is_fitted


def log_odds(head: BaseEstimator, X) -> np.ndarray:
    """A fitted binary head's raw score in log-odds of the positive class."""
    if hasattr(head, "booster_"):  # LightGBM: its raw score is the log-odds
        return np.asarray(head.predict(X, raw_score=True), dtype=np.float64)
    return np.asarray(head.decision_function(X), dtype=np.float64)


def contributions(head: BaseEstimator, row) -> tuple[np.ndarray, float]:
    """Per-feature log-odds contributions of one (sparse) feature row, and the bias.

    Logistic regression: weight x value; LightGBM: SHAP values; a blend: the mean of its heads'.
    The contributions plus the bias sum to the head's log-odds for that row.
    """
    if isinstance(head, LogOddsBlend):
        parts = [contributions(h, row) for h in head.estimators_]
        return np.mean([c for c, _ in parts], axis=0), float(np.mean([b for _, b in parts]))
    if hasattr(head, "coef_"):
        return row.multiply(head.coef_[0]).toarray()[0], float(head.intercept_[0])
    # Through the estimator, not its Booster: only the estimator passes on n_jobs (one thread).
    shap = head.predict(row, pred_contrib=True)
    # Sparse input gives sparse contributions (LightGBM >= 4); one row either way.
    shap = np.asarray(shap.toarray() if hasattr(shap, "toarray") else shap, dtype=np.float64)[0]
    return shap[:-1], float(shap[-1])


def leaf_heads(head: BaseEstimator) -> list[BaseEstimator]:
    """The single heads inside ``head`` (itself, or a blend's fitted heads)."""
    return list(getattr(head, "estimators_", [head]))


class LogOddsBlend(ClassifierMixin, BaseEstimator):
    """Averages the log-odds of binary heads (scikit-learn estimator; calibrate it from outside).

    ``estimators`` is a list of ``(name, estimator)`` pairs; each is cloned and fitted on the same
    rows and sample weights. Binary only; accepts sparse feature matrices.
    """

    def __init__(self, estimators: Sequence[tuple[str, BaseEstimator]] = ()) -> None:
        self.estimators = estimators

    def fit(self, X, y, sample_weight=None) -> "LogOddsBlend":
        if not self.estimators:
            raise ValueError("LogOddsBlend needs at least one (name, estimator) pair")
        kwargs: dict[str, Any] = {} if sample_weight is None else {"sample_weight": sample_weight}
        self.estimators_ = [clone(est).fit(X, y, **kwargs) for _, est in self.estimators]
        self.classes_ = self.estimators_[0].classes_
        if len(self.classes_) != 2:
            raise ValueError(f"LogOddsBlend is binary; got classes {list(self.classes_)}")
        return self

    def decision_function(self, X) -> np.ndarray:
        check_is_fitted(self, "estimators_")
        return np.mean([log_odds(est, X) for est in self.estimators_], axis=0)

    def predict_proba(self, X) -> np.ndarray:
        positive = expit(self.decision_function(X))
        return np.column_stack([1.0 - positive, positive])

    def predict(self, X) -> np.ndarray:
        scores = self.decision_function(X)  # raises NotFittedError before fit
        return self.classes_[(scores > 0).astype(int)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.classifier_tags.multi_class = False
        return tags
