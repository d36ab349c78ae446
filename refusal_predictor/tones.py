"""The finer tone of a refusal: *how* an LLM refused, once the response model says it did.

The paper's annotators gave every response a tone: ``complied``, or one of the ways of not
complying (``rejected``: a plain no; ``redirected``: points elsewhere, e.g. "consult a doctor";
``contradicted``: disputes the premise; ``disclaimed``: answers behind a disclaimer;
``counseling``). :class:`ToneHead` learns P(tone | refusal) over the response model's own features,
so the tone refines the binary label and never disagrees with it: a response the model calls a
compliance has the compliance tone, and a refusal gets its likeliest refusal tone. Joint tone
probabilities are P(compliance tone) = 1 - P(refusal) and P(tone) = P(refusal) x P(tone | refusal).

Why conditional rather than one multi-class model over every tone: the binary head is trained on
about ten times the rows (every labelled set says refusal or compliance; only the paper says how),
so it decides *whether*; the few hundred toned refusals only have to decide *how*.
"""
from __future__ import annotations

import logging
from collections import Counter
from typing import Any, Sequence

import numpy as np
import sklearn
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.utils.validation import check_is_fitted

logger = logging.getLogger(__name__)

COMPLIANCE_TONE = "complied"  # the paper's name for the tone of every compliance


class ToneHead(ClassifierMixin, BaseEstimator):
    """P(tone | refusal) from a fitted response model's feature rows (multinomial logistic regression).

    ``fit`` takes the feature rows of refusals and their tone names; ``compliance_tone`` names the
    tone of everything else (it is not among ``tones_``, which are refusal tones only). A tone with fewer than
    ``min_examples`` rows cannot be learned or cross-validated, so it is left out of ``tones_``
    with a warning naming it and its count, and recorded in ``metadata_["dropped_tones"]``.
    ``metadata_`` also holds out-of-fold accuracy and macro-F1 over the kept tones, so a
    model card can say how well *how* is told apart.
    """

    def __init__(self, C: float = 10.0, compliance_tone: str = COMPLIANCE_TONE, min_examples: int = 5, cv: int = 5,
                 random_state: int = 0) -> None:
        self.C = C
        self.compliance_tone = compliance_tone
        self.min_examples = min_examples
        self.cv = cv
        self.random_state = random_state

    def _make_model(self) -> LogisticRegression:
        return LogisticRegression(C=self.C, max_iter=5000)

    def fit(self, X, tones: Sequence[str], sample_weight: Any = None) -> "ToneHead":
        tones = np.asarray([str(t) for t in tones], dtype=object)
        if self.compliance_tone in set(tones.tolist()):
            raise ValueError(f"{self.compliance_tone!r} is the compliance tone; fit the tone head on refusals only")
        if X.shape[0] != len(tones):
            raise ValueError(f"{X.shape[0]} feature rows but {len(tones)} tones")
        counts = Counter(tones.tolist())
        needed = max(self.min_examples, self.cv)
        dropped = {t: n for t, n in sorted(counts.items()) if n < needed}
        kept = sorted(t for t in counts if t not in dropped)
        if len(kept) < 2:
            raise ValueError(
                f"a tone head needs at least two refusal tones with {needed} or more examples each; found "
                + (", ".join(f"{t}: {n}" for t, n in sorted(counts.items())) or "none")
            )
        if dropped:
            logger.warning("tones left out, too few examples to learn (fewer than %d): %s", needed,
                           ", ".join(f"{t} ({n})" for t, n in dropped.items()))
        rows = np.isin(tones, kept)
        X, y = X[rows], tones[rows]
        weights = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)[rows]
        params = {} if weights is None else {"sample_weight": weights}
        folds = StratifiedKFold(n_splits=self.cv, shuffle=True, random_state=self.random_state)
        # Routing off inside, as in RefusalClassifier.fit: cross_val_predict passes the weights.
        with sklearn.config_context(enable_metadata_routing=False):
            oof = cross_val_predict(self._make_model(), X, y, cv=folds, params=params)
            self.model_ = self._make_model().fit(X, y, **params)
        self.tones_ = np.asarray(self.model_.classes_, dtype=object)
        # The commonest refusal tone (by weight, when weighted): what a blank response (nothing to
        # read a tone from) is given.
        mass = Counter(y.tolist()) if weights is None else Counter(
            {t: float(weights[y == t].sum()) for t in kept})
        self.default_tone_ = max(kept, key=lambda t: (mass[t], t))
        self.n_features_in_ = X.shape[1]
        self.metadata_ = {
            "rows": {t: int(counts[t]) for t in kept},
            "dropped_tones": dropped,
            "cross_validation": {
                "n": int(len(y)),
                "accuracy": float(accuracy_score(y, oof)),
                "macro_f1": float(f1_score(y, oof, average="macro")),
                "majority_rate": float(max(Counter(y.tolist()).values()) / len(y)),
            },
        }
        return self

    @property
    def classes_(self) -> np.ndarray:
        check_is_fitted(self, "model_")
        return self.tones_

    def predict_proba(self, X) -> np.ndarray:
        """P(tone | refusal), columns in ``tones_`` order."""
        check_is_fitted(self, "model_")
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"feature rows have {X.shape[1]} columns; this tone head was fitted on {self.n_features_in_}")
        return self.model_.predict_proba(X)

    def predict(self, X) -> np.ndarray:
        return self.tones_[np.argmax(self.predict_proba(X), axis=1)]
