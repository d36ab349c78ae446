"""Tokenisation of the n-gram block: what a refusal is often decided by ("can't", "won't")."""
from __future__ import annotations

from refusal_predictor.features import TextFeatures, normalize_text


def test_contractions_are_tokens_and_apostrophes_are_normalised():
    features = TextFeatures(use_embeddings=False, ngram_range=(1, 2), min_df=1).fit(
        ["I can't do that.", "I can help with that.", "I won\u2019t write that."]
    )
    vocabulary = features.vectorizer_.vocabulary_
    assert {"can't", "won't", "i can't", "i"} <= set(vocabulary)
    assert "can" in vocabulary and "t" not in vocabulary  # "can't" is no longer "can" + a dropped "t"
    curly, ascii_ = features.transform(["I CAN\u2019T"]), features.transform(["i can't"])
    assert (curly != ascii_).nnz == 0 and curly.nnz > 0
    assert normalize_text("Don\u2018t \u02bcQuote\u02bc") == "don't 'quote'"
