"""Text -> feature matrix: TF-IDF n-grams of the whole text beside its sentence embedding.

The two blocks fail differently, which is why both are kept: n-grams see every word of a long
response (the encoder stops at its ``max_seq_length`` tokens), while the embedding generalises to
phrasings never seen in training. Texts longer than the encoder's window are embedded from their
first ``max_seq_length`` tokens; with ``segments=("head", "tail")`` their last ``tail_chars``
characters are embedded too, because a response that opens with a disclaimer is often decided by
how it ends.
"""
from __future__ import annotations

import copy
import logging
import threading
from pathlib import Path
from typing import Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.utils.validation import check_is_fitted

from ._forks import renew_in_child
from .artifacts import PathLike, shipped_path
from .encoder import DEFAULT_ENCODER, OnnxEncoder, check_session_options

logger = logging.getLogger(__name__)
_OPENING = threading.Lock()  # encoder sessions are opened (and dropped) one at a time
renew_in_child(globals(), "_OPENING", threading.Lock)

_SEGMENTS = ("head", "tail")

TOKEN_PATTERN = r"(?u)\b\w[\w']*\b"
"""Words with their contractions ("can't", "won't", "i'm") and one-letter words ("i").

scikit-learn's default pattern drops one-letter tokens and splits at apostrophes, so "I can't"
became the single token "can", the same as in "I can help": short refusals in unseen phrasings
then scored as compliance (the shipped response model gave 0.44 to "I'm sorry, I can't help with
that."; 0.97 with this pattern, at grouped-CV accuracy 0.9217 against 0.9223, i.e. 3 of 5,200 rows;
see ``training.train_response --select``)."""

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\uff07": "'"})


def normalize_text(text: str) -> str:
    """Lower-case, with typographic apostrophes as ASCII ones (LLMs write both "can't" and "can’t")."""
    return text.lower() if text.isascii() else text.lower().translate(_APOSTROPHES)


def resolve_encoder_path(encoder: str | PathLike | None) -> Path:
    """A shipped encoder name (a folder of ``models/encoders``) or a path to an encoder folder."""
    if encoder is None:
        encoder = DEFAULT_ENCODER
    candidate = Path(encoder)
    if candidate.is_dir():
        return candidate
    return shipped_encoder_path(str(encoder), "neither a folder nor a shipped encoder name")


def shipped_encoder_path(name: str, problem: str = "not a shipped encoder name") -> Path:
    """The packaged encoder folder of that name, never a folder of the working directory."""
    shipped = shipped_path("encoders", name)
    if shipped.is_dir():
        return shipped
    raise FileNotFoundError(
        f"encoder {name!r} is {problem}; "
        f"shipped: {sorted(p.name for p in shipped_path('encoders').glob('*') if p.is_dir())}"
    )


class TextFeatures(TransformerMixin, BaseEstimator):
    """Sparse TF-IDF n-grams horizontally stacked with (weighted) ONNX sentence embeddings.

    A scikit-learn transformer: ``fit`` learns the n-gram vocabulary, ``transform`` returns a CSR
    matrix of ``n_tfidf + n_segments * dim`` columns. The ONNX session is opened lazily and never
    pickled; a fitted model records the encoder's sha256 so a different encoder is caught on load.

    ``batch_size=1`` (the default) embeds every text on its own: with an int8 encoder a batched
    text's embedding depends slightly on its batch mates, and a score must not change with what
    else was scored in the same call. ``benchmarks/bench_scoring.py`` compares it with batch 64
    on this machine's kind of hardware.
    """

    def __init__(
        self,
        ngram_range: tuple[int, int] = (1, 3),
        min_df: int = 2,
        max_features: int | None = 100_000,
        sublinear_tf: bool = True,
        token_pattern: str = TOKEN_PATTERN,
        use_ngrams: bool = True,
        use_embeddings: bool = True,
        embedding_weight: float = 1.0,
        encoder: str | PathLike | None = None,
        segments: tuple[str, ...] = ("head",),
        tail_chars: int = 600,
        batch_size: int = 1,
    ) -> None:
        self.ngram_range = ngram_range
        self.min_df = min_df
        self.max_features = max_features
        self.sublinear_tf = sublinear_tf
        self.token_pattern = token_pattern
        self.use_ngrams = use_ngrams
        self.use_embeddings = use_embeddings
        self.embedding_weight = embedding_weight
        self.encoder = encoder
        self.segments = segments
        self.tail_chars = tail_chars
        self.batch_size = batch_size

    # -- the encoder is a resource, not a parameter: opened on demand, dropped when pickled --
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for name in ("_encoder", "_cache", "_ngram_names"):  # the shipped-encoder pin is kept: a copy scores alike
            state.pop(name, None)
        vectorizer = state.get("vectorizer_")
        if vectorizer is not None and "_stop_words_id" in vectorizer.__dict__:
            # scikit-learn caches id(stop_words), a memory address that changes with every process,
            # so two identical trainings wrote different model.joblib bytes; it is recomputed on use.
            vectorizer = copy.copy(vectorizer)
            del vectorizer._stop_words_id
            state["vectorizer_"] = vectorizer
        return state

    def get_encoder(self) -> OnnxEncoder:
        encoder = getattr(self, "_encoder", None)
        if encoder is None:
            # One opening at a time: threads making a model's first predictions together would each
            # open (and hash) the encoder, and a configure_encoder() during an opening was undone.
            with _OPENING:
                encoder = getattr(self, "_encoder", None)
                if encoder is None:
                    encoder = OnnxEncoder.shared(self.encoder_folder(), **getattr(self, "_encoder_options", {}))
                    self._check_encoder(encoder)
                    self._encoder = encoder
        return encoder

    def encoder_folder(self) -> Path:
        """The encoder folder this model opens.

        A model whose manifest names a shipped encoder is pinned to the packaged folder by
        :meth:`use_shipped_encoder`: resolved as a plain name, a same-named folder in the working
        directory came first, and an empty one there broke the shipped models.
        """
        pinned = getattr(self, "_shipped_encoder", None)
        if pinned is not None and pinned == self.encoder:
            return shipped_encoder_path(pinned)
        return resolve_encoder_path(self.encoder)

    def use_shipped_encoder(self, name: str) -> None:
        """Open the packaged encoder ``name`` (until ``encoder`` is set to something else)."""
        self.encoder = self._shipped_encoder = name

    def _check_encoder(self, encoder: OnnxEncoder) -> None:
        expected = getattr(self, "encoder_sha256_", None)
        if expected is not None and encoder.sha256 != expected:
            raise ValueError(
                f"encoder {encoder.name!r} ({encoder.path}) has sha256 {encoder.sha256[:12]}..., but this "
                f"model was trained with {expected[:12]}... ({self.encoder}); load the encoder it was trained with"
            )
        # Models saved before the settings were recorded check the weights' sha256 only.
        recorded = getattr(self, "encoder_settings_", None) or {}
        differ = {k: (v, encoder.settings.get(k)) for k, v in recorded.items() if encoder.settings.get(k) != v}
        if differ:
            detail = "; ".join(f"{k} {got!r}, trained with {want!r}" for k, (want, got) in differ.items())
            raise ValueError(f"encoder {encoder.name!r} ({encoder.path}) has the weights this model was trained "
                             f"with but other settings ({detail}); load the encoder it was trained with")

    def set_encoder(self, encoder: OnnxEncoder) -> None:
        """Use an already open encoder: one session shared by models trained with the same encoder.

        The shipped response and prompt models use different encoders, so this checks the sha256
        recorded at fit time: any other encoder would give confidently wrong scores.
        """
        self._check_encoder(encoder)
        with _OPENING:
            self._encoder = encoder

    def configure_encoder(self, *, providers: Sequence[str] | None = None, num_threads: int | None = None,
                          concurrent_runs: int | None = None) -> None:
        """How the encoder session is opened (see :meth:`OnnxEncoder.load`); reopened on next use.

        Checked now, not at the first prediction; kept in pickles (worker processes), dropped by
        the classifier's ``save()``."""
        options = check_session_options(providers, num_threads, concurrent_runs)
        with _OPENING:
            self._encoder_options = options
            self.__dict__.pop("_encoder", None)

    def use_cache(self, cache: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Memoise embeddings by text (in ``cache``, which may be shared between models).

        For model selection, where the same texts are embedded for every fold and candidate.
        """
        self._cache = {} if cache is None else cache
        return self._cache

    def fit(self, texts: Sequence[str], y=None) -> "TextFeatures":
        if not (self.use_ngrams or self.use_embeddings):
            raise ValueError("TextFeatures needs use_ngrams or use_embeddings")
        unknown = set(self.segments) - set(_SEGMENTS)
        if unknown or not self.segments:
            raise ValueError(f"segments must be a non-empty subset of {_SEGMENTS}, got {self.segments}")
        if self.use_ngrams:
            min_df = self.min_df if len(texts) >= 10 * self.min_df else 1
            try:
                self.vectorizer_ = self._vectorizer(min_df).fit(texts)
            except ValueError as exc:
                if "empty vocabulary" in str(exc):
                    # sklearn's "perhaps the documents only contain stop words" named no cause.
                    example = next((t for t in texts if t.strip()), "")[:40]
                    raise ValueError("no text holds a word (a letter or digit), and the n-gram features are built "
                                     f"from words: the texts are only punctuation, symbols or emoji (such as {example!r})") from None
                if min_df == 1 or "no terms remain" not in str(exc):
                    raise
                # Unsegmented scripts (Chinese, Japanese) make each clause one "word": 20 such
                # prompts can share none, and fit() failed on sklearn's pruning message.
                logger.warning("no n-gram occurs in %s or more of the %d texts (as in Chinese or Japanese "
                               "text, which has no spaces between words); keeping every n-gram", min_df, len(texts))
                self.vectorizer_ = self._vectorizer(1).fit(texts)
        if self.use_embeddings:
            encoder = self.get_encoder()
            self.encoder_sha256_ = encoder.sha256
            self.encoder_settings_ = dict(encoder.settings)
            self.encoder_name_ = encoder.name
            self.embedding_dim_ = encoder.dimension
        self.n_features_out_ = self._n_ngrams() + (
            len(self.segments) * self.embedding_dim_ if self.use_embeddings else 0
        )
        return self

    def _vectorizer(self, min_df: int | float) -> TfidfVectorizer:
        return TfidfVectorizer(
            ngram_range=tuple(self.ngram_range),
            min_df=min_df,
            max_features=self.max_features,
            sublinear_tf=self.sublinear_tf,
            token_pattern=self.token_pattern,
            preprocessor=normalize_text,
            dtype=np.float32,
        )

    def _n_ngrams(self) -> int:
        return len(self.vectorizer_.vocabulary_) if self.use_ngrams else 0

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        check_is_fitted(self, "n_features_out_")
        blocks: list[sp.spmatrix] = []
        if self.use_ngrams:
            blocks.append(self.vectorizer_.transform(texts))
        if self.use_embeddings:
            emb = self.embed(texts)
            blocks.append(sp.csr_matrix(emb * np.float32(self.embedding_weight)))
        return sp.hstack(blocks, format="csr", dtype=np.float32)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of each configured segment, concatenated: (n, n_segments * dim)."""
        parts = [self._embed_segment(self._segment(texts, seg)) for seg in self.segments]
        return np.hstack(parts) if len(parts) > 1 else parts[0]

    def _segment(self, texts: Sequence[str], segment: str) -> list[str]:
        if segment == "head":
            return list(texts)
        return [t[-self.tail_chars :] for t in texts]

    def _embed_segment(self, texts: list[str]) -> np.ndarray:
        cache = getattr(self, "_cache", None)
        encoder = self.get_encoder()
        if cache is None:
            return encoder.encode(texts, batch_size=self.batch_size)
        missing = list(dict.fromkeys(t for t in texts if t not in cache))
        if missing:
            for text, vec in zip(missing, encoder.encode(missing, batch_size=self.batch_size)):
                cache[text] = vec
        if not texts:
            return np.zeros((0, encoder.dimension), dtype=np.float32)
        return np.vstack([cache[t] for t in texts])

    def ngram_names(self, columns: Sequence[int] | np.ndarray) -> np.ndarray:
        """The n-grams of the given n-gram columns. The inverted vocabulary is built on first use and
        kept (not pickled): ``explain()`` names a prompt's few n-grams per call, and building all
        48,000 names each time (``get_feature_names_out``) took 6x as long as a prediction."""
        names = getattr(self, "_ngram_names", None)
        if names is None:
            vocabulary = self.vectorizer_.vocabulary_
            names = np.empty(len(vocabulary), dtype=object)
            for term, column in vocabulary.items():
                names[column] = term
            self._ngram_names = names
        return names[np.asarray(columns, dtype=np.intp)]

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        check_is_fitted(self, "n_features_out_")
        names: list[str] = []
        if self.use_ngrams:
            names.extend(self.vectorizer_.get_feature_names_out())
        if self.use_embeddings:
            for seg in self.segments:
                names.extend(f"emb_{seg}_{i}" for i in range(self.embedding_dim_))
        return np.asarray(names, dtype=object)
