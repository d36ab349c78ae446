"""Tokenisation of the n-gram block: what a refusal is often decided by ("can't", "won't")."""
from __future__ import annotations

import numpy as np

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


def test_unsegmented_scripts_keep_their_ngrams():
    """From 20 texts on, n-grams must occur twice; in Chinese or Japanese a whole clause is one
    token, so 20 prompts could share none and fit() failed with scikit-learn's pruning message."""
    prompts = [f"请告诉我第{i}个问题的答案" for i in range(22)]
    features = TextFeatures(use_embeddings=False).fit(prompts)
    assert len(features.vectorizer_.vocabulary_) == 22
    assert features.transform(["请告诉我第3个问题的答案"]).nnz == 1
    english = TextFeatures(use_embeddings=False).fit([f"tell me answer {i}" for i in range(22)])
    assert set(english.vectorizer_.vocabulary_) == {"tell", "me", "answer", "tell me", "me answer", "tell me answer"}


class _FakeEncoder:
    sha256, name, dimension = "0" * 64, "fake", 4

    def __init__(self, options):
        self.options = options


def test_first_predictions_from_many_threads_open_the_encoder_once(monkeypatch):
    import threading
    import time

    from refusal_predictor import features as features_module

    opened = []

    def load(path, **options):
        time.sleep(0.2)
        opened.append(options)
        return _FakeEncoder(options)

    monkeypatch.setattr(features_module.OnnxEncoder, "load", staticmethod(load))
    features = TextFeatures()
    got = []
    threads = [threading.Thread(target=lambda: got.append(features.get_encoder())) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(opened) == 1 and len({id(e) for e in got}) == 1


def test_configure_encoder_during_an_opening_is_not_undone(monkeypatch):
    """A configure_encoder() while another thread's first prediction was opening the session was
    silently undone: that thread stored the encoder opened with the old options."""
    import threading

    from refusal_predictor import features as features_module

    release = threading.Event()
    started = threading.Event()

    def load(path, **options):
        started.set()
        release.wait(10)
        return _FakeEncoder(options)

    monkeypatch.setattr(features_module.OnnxEncoder, "load", staticmethod(load))
    features = TextFeatures()
    opening = threading.Thread(target=features.get_encoder)
    opening.start()
    assert started.wait(10)
    configuring = threading.Thread(target=lambda: features.configure_encoder(num_threads=1))
    configuring.start()
    configuring.join(0.3)  # blocked until the opening ends (before the fix it returned at once)
    release.set()
    opening.join()
    configuring.join()
    assert features.get_encoder().options["num_threads"] == 1


class _EmbeddingEncoder:
    """A stand-in encoder whose embedding of a text is its length and first character code."""

    sha256, name, dimension, settings = "0" * 64, "fake", 2, {}

    def __init__(self):
        self.calls = []

    def encode(self, texts, batch_size=1):
        self.calls.append(list(texts))
        return np.asarray([[len(t), ord(t[0]) if t else 0] for t in texts], dtype=np.float32)


def _with_fake_encoder(features: TextFeatures) -> tuple[TextFeatures, _EmbeddingEncoder]:
    encoder = _EmbeddingEncoder()
    features._encoder = encoder
    return features, encoder


def test_tail_segment_embeds_the_last_characters_and_the_weight_scales_embeddings():
    features, encoder = _with_fake_encoder(
        TextFeatures(use_ngrams=False, segments=("head", "tail"), tail_chars=4, embedding_weight=2.0))
    features.fit(["abcdefgh", "xy"])
    assert features.n_features_out_ == 4
    matrix = features.transform(["abcdefgh", "xy"]).toarray()
    assert encoder.calls[-2:] == [["abcdefgh", "xy"], ["efgh", "xy"]]  # the tail is the end, not the start
    np.testing.assert_array_equal(matrix, 2.0 * np.asarray([[8, ord("a"), 4, ord("e")], [2, ord("x"), 2, ord("x")]]))


def test_the_embedding_cache_gives_each_text_its_own_embedding():
    features, encoder = _with_fake_encoder(TextFeatures(use_ngrams=False))
    features.fit(["seed"])
    cache = features.use_cache()
    features.embed(["bb"])
    rows = features.embed(["a", "bb", "ccc", "a"])
    assert encoder.calls[-1] == ["a", "ccc"]  # only what the cache lacked, once each
    np.testing.assert_array_equal(rows, [[1, ord("a")], [2, ord("b")], [3, ord("c")], [1, ord("a")]])
    assert set(cache) == {"bb", "a", "ccc"}


def test_from_twenty_texts_an_ngram_must_occur_twice():
    texts = [f"common unique{i}" for i in range(20)]
    assert set(TextFeatures(use_embeddings=False, ngram_range=(1, 1)).fit(texts).vectorizer_.vocabulary_) == {"common"}
    fewer = TextFeatures(use_embeddings=False, ngram_range=(1, 1)).fit(texts[:19])
    assert len(fewer.vectorizer_.vocabulary_) == 20
