"""The paper's baseline, re-trained in every report run so ratios compare like with like."""
from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression


def refusal_y(frame: pd.DataFrame) -> np.ndarray:
    """0/1 targets (1 = refusal) of a canonical-schema frame."""
    return (frame["label"] == "refusal").astype(int).to_numpy()


def paper_tfidf_logreg(train_texts: list[str], train_y: np.ndarray) -> Callable[[list[str]], np.ndarray]:
    """The paper's classifier as published: TF-IDF 1-3-grams + LogisticRegression(C=10).

    Returns a function from texts to refusal probabilities.
    """
    vectorizer = TfidfVectorizer(ngram_range=(1, 3))
    head = LogisticRegression(C=10, max_iter=1000).fit(vectorizer.fit_transform(train_texts), train_y)
    return lambda texts: head.predict_proba(vectorizer.transform(texts))[:, 1]


def paper_tfidf_logreg_tones(train_texts: list[str], train_tones: list[str],
                             compliance_tone: str = "complied") -> Callable[[list[str]], tuple[np.ndarray, np.ndarray]]:
    """The paper's classifier applied to the tones: the same features and head, one class per tone.

    Returns a function from texts to (the likeliest tone, the likeliest tone other than
    ``compliance_tone``): the second is its answer to "how did this refusal refuse".
    """
    vectorizer = TfidfVectorizer(ngram_range=(1, 3))
    head = LogisticRegression(C=10, max_iter=1000).fit(vectorizer.fit_transform(train_texts), train_tones)
    classes = np.asarray(head.classes_, dtype=object)
    refusal_columns = np.flatnonzero(classes != compliance_tone)

    def predict(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        proba = head.predict_proba(vectorizer.transform(texts))
        return classes[proba.argmax(axis=1)], classes[refusal_columns[proba[:, refusal_columns].argmax(axis=1)]]

    return predict
