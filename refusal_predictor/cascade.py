"""A two-stage response classifier: n-grams first, the encoder only where the n-grams are unsure.

The encoder is almost all of the cost of the shipped response model (README, Speed: about 50
responses/s on 2 CPU cores against about 2,600 for the n-gram variant), yet most responses of
a real log are plain answers or plain refusals that the n-gram variant already scores near 0 or
near 1. :class:`ResponseCascade` scores every response with a fast model and sends only those
whose probability falls strictly inside a band ``(low, high)`` to the full model; the rest keep
the fast model's probability. The shipped band was chosen by ``python -m training.cascade_band``
from agreement with the full model on unlabelled logs, not from any test split.

Thresholds inside the band decide exactly as the full model does on the responses it reads; a
threshold outside the band is applied to the fast model's probabilities where they were kept.
"""
from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any, Iterable, NamedTuple, Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.exceptions import NotFittedError

from .artifacts import ModelFileError, PathLike, shipped_name_key, shipped_path
from .classifiers import MANIFEST, ResponseClassifier
from .inputs import CLASSES, as_labels, as_texts, label_accuracy
from .thresholds import check_threshold

logger = logging.getLogger(__name__)

#: The name that loads the shipped cascade wherever a response model is chosen by name
#: (``label-responses --model cascade``, ``--response-model cascade``).
CASCADE_NAME = "cascade"

#: The shipped band, chosen by ``python -m training.cascade_band --data-dir DATA`` (the band
#: sending the fewest responses to the encoder while keeping the full model's label on 99 % of
#: 4,000 unlabelled logged responses): it kept it on 99.3 % and sent 24.7 % through the encoder.
#: The README ("How good is it?") has the table, with what each band did on held-out labels.
DEFAULT_LOW = 0.02
DEFAULT_HIGH = 0.98


def in_band(fast_proba: np.ndarray, low: float, high: float) -> np.ndarray:
    """Where the fast model is unsure, so the full model decides: strictly inside ``(low, high)``."""
    return (fast_proba > low) & (fast_proba < high)


class CascadeScores(NamedTuple):
    """What :meth:`ResponseCascade.route` returns: the scores and where they came from."""

    refusal: np.ndarray  #: P(refusal) per text
    tone: np.ndarray | None  #: the tone per text (with ``tones=True``), else None
    unsure: np.ndarray  #: True where the full model read the text (the fast model was unsure)


class ResponseCascade(ClassifierMixin, BaseEstimator):
    """Score with ``fast``; re-score with ``full`` where ``low < P(refusal) < high``.

    >>> cascade = ResponseCascade.load()          # shipped: the "ngrams" variant, then the default model
    >>> cascade.predict(["I'm sorry, but I can't help with that.", "Paris is the capital of France."])
    array(['refusal', 'compliance'], dtype=object)

    ``fast`` and ``full`` are response classifiers. Fitted ones (your own, loaded) are used as
    they are, with no ``fit``: ``ResponseCascade(ResponseClassifier.load("mine-fast"),
    ResponseClassifier.load("mine"), low=0.05, high=0.95)``. ``fit`` fits clones of both on the
    same rows (unfitted ones, or ``None``: the shipped recipes), as scikit-learn's meta-estimators
    do, and leaves the models passed in as they were. ``threshold`` defaults to the full model's;
    ``classes_`` are the full model's. ``threshold`` and ``empty_response_probability`` are the
    cascade's own and leave the models passed in as they were; ``configure_encoder`` configures
    those models' encoders (how this machine runs them, as on each model). The band reads the
    fast stage's probabilities as it gives them: recalibrating that stage (``recalibrate``) moves
    which responses fall inside the band.
    """

    #: P(refusal) of an empty or whitespace-only response, as ``ResponseClassifier``'s (``None``:
    #: each stage's own score). The cascade's own setting: its stages are scored with it, while
    #: the models passed in keep theirs. Kept by ``clone`` and pickling.
    empty_response_probability: float | None = 1.0

    def __init__(self, fast: ResponseClassifier | None = None, full: ResponseClassifier | None = None,
                 low: float = DEFAULT_LOW, high: float = DEFAULT_HIGH, threshold: float | None = None):
        self.fast = fast
        self.full = full
        self.low = low
        self.high = high
        self.threshold = threshold

    # ------------------------------------------------------------------ building
    @classmethod
    def load(cls, fast: PathLike | None = None, full: PathLike | None = None, *,
             low: float = DEFAULT_LOW, high: float = DEFAULT_HIGH, verify: bool = True) -> "ResponseCascade":
        """Two response models by folder or shipped variant name.

        ``None`` is the shipped stage itself (the "ngrams" variant, the default model), read from
        the package whatever folders the working directory holds; a name is looked up as
        :meth:`ResponseClassifier.load` looks it up (a folder of that name first).
        """
        fast_path = shipped_path(*ResponseClassifier.VARIANTS["ngrams"]) if fast is None else fast
        cascade = cls(ResponseClassifier.load(fast_path, verify=verify), ResponseClassifier.load(full, verify=verify),
                      low=low, high=high)
        cascade._check_band()
        return cascade

    def fit(self, X: str | Iterable[str], y: Iterable[Any], sample_weight: Any = None) -> "ResponseCascade":
        """Fit clones of both stages on the same rows; the models passed in are left as they were."""
        self._check_band()
        fast = ResponseClassifier(use_embeddings=False) if self.fast is None else self.fast
        full = ResponseClassifier() if self.full is None else self.full
        texts, labels = as_texts(X), as_labels(y)
        self.fast_ = clone(fast).fit(texts, labels, sample_weight=sample_weight)
        self.full_ = clone(full).fit(texts, labels, sample_weight=sample_weight)
        return self

    def _stages(self) -> tuple[ResponseClassifier, ResponseClassifier]:
        """The fitted (fast, full) pair: from ``fit``, else the fitted models given."""
        if "full_" in vars(self):
            return self.fast_, self.full_
        given = (self.fast, self.full)
        for name, model in zip(("fast", "full"), given):
            if model is not None and not isinstance(model, ResponseClassifier):
                raise TypeError(f"the cascade's {name} stage must be a ResponseClassifier, got {type(model).__name__}")
        if all(m is not None and hasattr(m, "model_") for m in given):
            return given
        raise NotFittedError("this ResponseCascade has no fitted stages: give it two fitted response models "
                             "(e.g. ResponseClassifier.load(...)), use ResponseCascade.load(), or call fit")

    def _scoring_stages(self) -> tuple[ResponseClassifier, ResponseClassifier]:
        """The stages with the cascade's ``empty_response_probability``: shallow copies where a
        stage's own differs (they share its features and head), so the models given keep theirs."""
        value = self.empty_response_probability
        stages = []
        for model in self._stages():
            if model.empty_response_probability != value:
                model = copy.copy(model)
                model.empty_response_probability = value
            stages.append(model)
        return stages[0], stages[1]

    def __sklearn_clone__(self):
        new = super().__sklearn_clone__()
        if "empty_response_probability" in vars(self):
            new.empty_response_probability = self.empty_response_probability
        return new

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        # The threshold as given (None: follow the full model), not the cut it resolves to, so a
        # clone given another full model follows that model's threshold.
        params = super().get_params(deep=deep)
        params["threshold"] = self._threshold
        return params

    def __sklearn_is_fitted__(self) -> bool:
        try:
            self._stages()
        except NotFittedError:
            return False
        return True

    def _check_band(self) -> None:
        for name in ("low", "high"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise TypeError(f"{name} must be a probability, got {value!r}")
        if not 0.0 <= self.low < self.high <= 1.0:
            raise ValueError(f"the band needs 0 <= low < high <= 1, got low={self.low!r}, high={self.high!r}")

    def configure_encoder(self, *, providers: Sequence[str] | None = None, num_threads: int | None = None,
                          concurrent_runs: int | None = None) -> "ResponseCascade":
        """Configure both stages' encoders (see ``ResponseClassifier.configure_encoder``)."""
        for model in self._stages():
            model.configure_encoder(providers=providers, num_threads=num_threads, concurrent_runs=concurrent_runs)
        return self

    def warm_up(self) -> "ResponseCascade":
        """Open both stages' encoders and run each once now: the full model's otherwise opens on
        the first response the n-grams are unsure of, which may be a long way into a service's life."""
        for model in self._stages():
            model.warm_up()
        return self

    # ------------------------------------------------------------------ the estimator's view
    @property
    def classes_(self) -> np.ndarray:
        return self._stages()[1].classes_

    @property
    def threshold(self) -> float:
        """The cut ``predict`` uses: the one set, else the full model's (0.5 for an unset recipe)."""
        if self._threshold is not None:
            return self._threshold
        try:
            return self._stages()[1].threshold
        except NotFittedError:
            return self.full.threshold if self.full is not None else 0.5

    @threshold.setter
    def threshold(self, value: float | None) -> None:
        if value is not None:
            check_threshold(value)
        self._threshold = value  # as given: scikit-learn's clone checks the parameter is the object it passed

    # ------------------------------------------------------------------ scoring
    def unsure(self, X: str | Iterable[str]) -> np.ndarray:
        """Which texts the full model reads: the fast model's P(refusal) strictly inside the band."""
        fast, _ = self._scoring_stages()
        self._check_band()
        return in_band(fast.refusal_probability(as_texts(X)), self.low, self.high)

    def route(self, X: str | Iterable[str], *, tones: bool = False, threshold: float | None = None) -> CascadeScores:
        """P(refusal) (and with ``tones`` the tone at ``threshold``), with which texts the full model read.

        What the other scoring methods return parts of; batch scoring reports the routed share.
        """
        cut = check_threshold(self.threshold if threshold is None else threshold)
        if tones:
            self.tones_  # noqa: B018  (both stages have a tone head, and the same tones)
        fast, full = self._scoring_stages()
        self._check_band()
        texts = as_texts(X)
        proba, tone = fast.refusal_probability_and_tone(texts, cut) if tones else (fast.refusal_probability(texts), None)
        unsure = in_band(proba, self.low, self.high)
        if unsure.any():
            picked = [t for t, u in zip(texts, unsure) if u]
            if tones:
                proba[unsure], tone[unsure] = full.refusal_probability_and_tone(picked, cut)
            else:
                proba[unsure] = full.refusal_probability(picked)
        logger.debug("cascade: %d of %d texts read by the full model", int(unsure.sum()), len(texts))
        return CascadeScores(proba, tone, unsure)

    def refusal_probability(self, X: str | Iterable[str]) -> np.ndarray:
        return self.route(X).refusal

    def predict_proba(self, X: str | Iterable[str]) -> np.ndarray:
        """Probabilities, shape (n, 2), columns in ``classes_`` order."""
        refusal = self.refusal_probability(X)
        return np.column_stack([1.0 - refusal, refusal])

    def predict(self, X: str | Iterable[str], threshold: float | None = None) -> np.ndarray:
        """'refusal' where the refusal probability is >= ``threshold`` (default: ``self.threshold``)."""
        cut = check_threshold(self.threshold if threshold is None else threshold)
        return np.where(self.refusal_probability(X) >= cut, CLASSES[1], CLASSES[0]).astype(object)

    def score(self, X: str | Iterable[str], y: Iterable[Any], sample_weight: Any = None) -> float:
        """Accuracy at ``threshold``, reading ``y`` as ``fit`` does (1/0, booleans, "refused", ...)."""
        return label_accuracy(self.predict(X), y, sample_weight)

    # ------------------------------------------------------------------ tones
    @property
    def tones_(self) -> np.ndarray:
        """The full model's tones; the fast model must know the same ones (checked here)."""
        fast, full = self._stages()
        if list(fast.tones_) != list(full.tones_):
            raise ValueError(f"the cascade's models know different tones (fast: {list(fast.tones_)}, "
                             f"full: {list(full.tones_)}), so a tone cannot be read from either")
        return full.tones_

    def refusal_probability_and_tone(self, X: str | Iterable[str],
                                     threshold: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """P(refusal) and the tone, each from the stage that kept the probability."""
        scores = self.route(X, tones=True, threshold=threshold)
        return scores.refusal, scores.tone

    def predict_tone(self, X: str | Iterable[str], threshold: float | None = None) -> np.ndarray:
        """'complied' where ``predict`` says compliance, else the likeliest refusal tone."""
        return self.refusal_probability_and_tone(X, threshold)[1]

    def predict_tone_proba(self, X: str | Iterable[str]) -> np.ndarray:
        """Joint tone probabilities, shape (n, len(tones_)), as a response model's
        (:meth:`ResponseClassifier.predict_tone_proba`), each row from the stage that kept the
        text's P(refusal): the first column is exactly ``1 - refusal_probability(X)``."""
        self.tones_  # noqa: B018  (both stages have a tone head, and the same tones)
        fast, full = self._scoring_stages()
        self._check_band()
        texts = as_texts(X)
        refusal, conditional = fast._refusal_and_tone_proba(texts)
        unsure = in_band(refusal, self.low, self.high)
        if unsure.any():
            refusal[unsure], conditional[unsure] = full._refusal_and_tone_proba([t for t, u in zip(texts, unsure) if u])
        return np.column_stack([1.0 - refusal, refusal[:, None] * conditional])


class RoutingCount:
    """A cascade's scoring methods that batch commands call, counting what the full model read.

    The commands end with :meth:`note`, so a user labelling a large log sees the share that set
    its speed. Not thread-safe: one per command run.
    """

    def __init__(self, cascade: ResponseCascade):
        self.cascade = cascade
        self.full = 0
        self.scored = 0

    @property
    def threshold(self) -> float:
        return self.cascade.threshold

    def route(self, X: str | Iterable[str], *, tones: bool = False, threshold: float | None = None) -> CascadeScores:
        scores = self.cascade.route(X, tones=tones, threshold=threshold)
        self.full += int(scores.unsure.sum())
        self.scored += len(scores.unsure)
        return scores

    def refusal_probability(self, X: str | Iterable[str]) -> np.ndarray:
        return self.route(X).refusal

    def refusal_probability_and_tone(self, X: str | Iterable[str],
                                     threshold: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        scores = self.route(X, tones=True, threshold=threshold)
        return scores.refusal, scores.tone

    def note(self) -> str:
        share = f" ({self.full / self.scored:.1%})" if self.scored else ""
        return (f"cascade: the full model read {self.full} of the {self.scored} responses scored{share}; "
                f"the n-gram model was sure of the rest")


def response_model_names() -> list[str]:
    """The names a command's ``--model`` / ``--response-model`` takes besides a folder."""
    return ResponseClassifier.available_variants() + [CASCADE_NAME]


def load_response_model(path: PathLike | None = None, *, verify: bool = True) -> ResponseClassifier | ResponseCascade:
    """What a command's ``--model`` / ``--response-model`` names: a folder, a shipped variant, or the cascade.

    A folder that exists wins over the name ``cascade``, as it does over the variants' names.
    """
    if path is None:
        return ResponseClassifier.load(verify=verify)
    if not str(path).strip():
        raise ValueError(f"empty model path; available names: {response_model_names()}")
    name, folder = shipped_name_key(str(path)), Path(path)
    if name == CASCADE_NAME:
        if not folder.is_dir():
            return ResponseCascade.load(verify=verify)
        if not (folder / MANIFEST).is_file():
            raise ModelFileError(f"{folder / MANIFEST}: manifest missing; the folder {str(path)!r} is taken before "
                                 f"the shipped cascade of that name: rename the folder or run from another "
                                 f"directory (in Python: ResponseCascade.load())")
    elif not folder.is_dir() and name not in ResponseClassifier.VARIANTS:
        raise ModelFileError(f"{path}: no such model folder, nor a shipped name; available names: "
                             f"{response_model_names()}")
    return ResponseClassifier.load(path, verify=verify)


def response_model_record(model: ResponseClassifier | ResponseCascade) -> dict[str, Any]:
    """What a prompt model's card records of the response model that bootstrapped its labels."""
    if isinstance(model, ResponseCascade):
        fast, full = model._stages()
        return {"response_model_sha256": full.manifest_["files"]["model.joblib"],
                "response_threshold": model.threshold, "response_temperature": full.temperature,
                "response_cascade": {"fast_model_sha256": fast.manifest_["files"]["model.joblib"],
                                     "fast_model_temperature": fast.temperature,
                                     "low": model.low, "high": model.high}}
    # The temperature beside the sha256: model.joblib does not hold it, and a merged prompt whose
    # answers tie is labelled by their mean probability, which the temperature moves.
    return {"response_model_sha256": model.manifest_["files"]["model.joblib"], "response_threshold": model.threshold,
            "response_temperature": model.temperature}
