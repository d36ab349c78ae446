"""Refusal classifiers: scikit-learn estimators over :class:`TextFeatures` with a calibrated head.

``ResponseClassifier`` reads an LLM response and says whether it is a refusal; ``PromptClassifier``
(see :mod:`refusal_predictor.prompt`) reads only the prompt. Both share this base so that training,
calibration, saving and loading behave the same way.
"""
from __future__ import annotations

import contextlib
import copy
import json
import logging
import shutil
import warnings
from pathlib import Path
from collections.abc import Mapping
from typing import Any, Iterable, Sequence

import joblib
import numpy as np
import sklearn
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, cross_val_predict
from sklearn.exceptions import InconsistentVersionWarning, NotFittedError
from sklearn.utils.validation import check_is_fitted

from ._version import __version__
from .artifacts import (
    ModelFileError,
    carry_over,
    files_field_problem,
    PathLike,
    read_manifest,
    sha256_file,
    shipped_name_key,
    shipped_path,
    staged_folder,
    verify_files,
    write_json,
)
from .calibration import check_temperature, fit_temperature, log_loss, temper
from .choices import HEADS
from .encoder import DEFAULT_ENCODER
from .features import TextFeatures, shipped_encoder_path
from .heads import LogOddsBlend, leaf_heads
from .inputs import CLASSES, as_labels, as_texts, checked_weights, label_accuracy
from .metrics import binary_metrics
from .paths import check_replaceable_folder
from .text import is_blank, text_key
from .thresholds import check_threshold, pick_threshold
from .thresholds import validation_curve as compute_validation_curve
from .tones import COMPLIANCE_TONE, ToneHead
from .warning_filters import ignoring

logger = logging.getLogger(__name__)

MODEL_FORMAT = "refusal-predictor-classifier"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_MODEL_FILE = "model.joblib"
TONES_FILE = "tones.joblib"
_PREDICT_CHUNK = 2048
# Fewest labelled texts of each class that recalibrate() fits a temperature on.
MIN_RECALIBRATION_EXAMPLES = 10

def check_save_folder(path: PathLike, kind: str | None = None) -> Path:
    """Where ``save()`` may write: a new or empty folder, or a model folder (saved over).

    ``save()`` replaces ``manifest.json``, ``model.joblib`` and a bundled ``encoder/`` (the folder
    is swapped whole, other files carried over). A model of another ``kind`` is not saved over:
    ``train-prompt --response-model DIR -o DIR`` replaced the response model it had just used.
    """
    folder, earlier = check_replaceable_folder(path, MANIFEST, MODEL_FORMAT, "model folder")
    if kind is not None and earlier is not None and earlier.get("kind") != kind:
        raise ValueError(f"{folder} holds a {earlier.get('kind')!r} model; a {kind!r} model is not saved over it: "
                         "choose another folder (or remove that one)")
    return folder


def _installed_version(module: str) -> str | None:
    """A library's version, or ``None`` when it is not installed (or broken)."""
    import importlib

    try:
        return str(importlib.import_module(module).__version__)
    except Exception:  # noqa: BLE001 - not installed or broken: nothing to record or compare
        return None


def _runtime_versions() -> dict[str, str]:
    """Versions of the other libraries a saved model's scores depend on (the LightGBM head, the
    ONNX encoder), for telling apart a model that scores differently after an upgrade."""
    found = {module: _installed_version(module) for module in ("lightgbm", "onnxruntime")}
    return {module: version for module, version in found.items() if version is not None}


def _warn_on_other_versions(folder: Path, saved_with: Mapping[str, Any], name: str, running: str | None) -> None:
    """Say when a library that computes a model's scores (``name``, running at ``running``)
    differs (major.minor) from the one it was saved with: a pickled estimator may then score
    differently, and a LightGBM head under calibration did (every prompt near 0.5 with lightgbm
    before 4.7, which setup.cfg now rules out; other differences are worth knowing too)."""
    trained_with = str(saved_with.get(name, ""))
    if not trained_with or running is None:
        return  # not recorded (a model saved before it was), or not installed (unpickling says so)
    if trained_with.split(".")[:2] != running.split(".")[:2]:
        logger.warning("%s was saved with %s %s; this is %s. Predictions may differ.", folder, name, trained_with, running)


class RefusalClassifier(ClassifierMixin, BaseEstimator):
    """Binary refusal classifier over n-grams + sentence embeddings, with calibrated probabilities.

    ``predict_proba`` columns follow ``classes_ == ["compliance", "refusal"]``; ``predict`` compares
    the refusal probability with ``threshold``. Probabilities are calibrated with
    :class:`~sklearn.calibration.CalibratedClassifierCV` (cross-validated on the training data), so
    a threshold means what it says.
    """

    kind = "refusal"
    default_subdir: tuple[str, ...] = ()
    # What ``encoder=None`` and ``C=None`` mean. The encoder is the one the shipped models of this
    # kind read (fine-tuned for the task); C is the one their recipe's LogReg candidate used. So a
    # model a user fits on their own data starts from what was measured best. (Before 0.2,
    # ``encoder=None`` meant the base all-MiniLM-L6-v2-int8; saved models keep what they used.)
    default_encoder: str | None = None
    default_C: float = 10.0

    def __init__(
        self,
        head: str = "logreg",
        C: float | None = None,
        n_estimators: int = 300,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        ngram_range: tuple[int, int] = (1, 3),
        max_features: int | None = 100_000,
        use_ngrams: bool = True,
        use_embeddings: bool = True,
        embedding_weight: float = 1.0,
        encoder: str | PathLike | None = None,
        segments: tuple[str, ...] = ("head",),
        calibration: str | None = "sigmoid",
        cv: int = 5,
        threshold: float = 0.5,
        validation_curve: bool = True,
        random_state: int = 0,
        n_jobs: int | None = None,
    ) -> None:
        self.head = head
        self.C = C
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.ngram_range = ngram_range
        self.max_features = max_features
        self.use_ngrams = use_ngrams
        self.use_embeddings = use_embeddings
        self.embedding_weight = embedding_weight
        self.encoder = encoder
        self.segments = segments
        self.calibration = calibration
        self.cv = cv
        self.threshold = threshold
        self.validation_curve = validation_curve
        self.random_state = random_state
        self.n_jobs = n_jobs

    # ------------------------------------------------------------------ building blocks
    def make_features(self, num_threads: int | None = None) -> TextFeatures:
        """Unfitted features of this recipe; ``num_threads`` sets their encoder's thread count now,
        so that a bad value fails before any file is read or any text embedded."""
        features = TextFeatures(
            ngram_range=self.ngram_range,
            max_features=self.max_features,
            use_ngrams=self.use_ngrams,
            use_embeddings=self.use_embeddings,
            embedding_weight=self.embedding_weight,
            encoder=self.encoder if self.encoder is not None else self.default_encoder,
            segments=tuple(self.segments),
        )
        if num_threads is not None:
            features.configure_encoder(num_threads=num_threads)  # checked even without embeddings
        return features

    def make_head(self) -> BaseEstimator:
        if self.head == "logreg":
            return self._make_logreg()
        if self.head == "lightgbm":
            return self._make_lightgbm()
        if self.head == "blend":
            return LogOddsBlend([("logreg", self._make_logreg()), ("lightgbm", self._make_lightgbm())])
        raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")

    def _make_logreg(self) -> BaseEstimator:
        return LogisticRegression(C=self.C if self.C is not None else self.default_C, max_iter=5000, solver="liblinear")

    def _make_lightgbm(self) -> BaseEstimator:
        from lightgbm import LGBMClassifier

        return LGBMClassifier(
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            colsample_bytree=0.3,
            subsample=0.8,
            subsample_freq=1,
            min_child_samples=5,
            random_state=self.random_state,
            n_jobs=self._lightgbm_threads(),
            verbose=-1,
        )

    def _make_model(self) -> BaseEstimator:
        head = self.make_head()
        if not self.calibration:
            return head
        # Shuffled folds: logs arrive ordered (by source, by time), and unshuffled folds then fit
        # the sigmoid on out-of-fold scores of blocks the fold's head never saw, which can flip
        # its slope (seen: AUROC 0.86 -> 0.14 after appending a block of prompt-list rows).
        folds = StratifiedKFold(n_splits=self.cv, shuffle=True, random_state=self.random_state)
        return CalibratedClassifierCV(head, method=self.calibration, cv=folds, ensemble=False)

    def min_examples_per_class(self) -> int:
        """The fewest examples of each class that ``fit`` can work with.

        Calibration cross-validates the head in ``cv`` folds, so it needs ``cv`` examples of each
        class; the validation curve runs that calibrated fit inside another ``cv``-fold split,
        whose training folds lose up to ``ceil(n / cv)`` examples of each class.
        """
        inner = max(2, self.cv) if self.calibration else 2
        if not self.validation_curve:
            return inner
        n = inner
        while n - -(-n // self.cv) < inner:
            n += 1
        return max(n, self.cv)

    def check_class_counts(self, labels: Iterable[Any]) -> tuple[int, int]:
        """(refusals, compliances) of 0/1 labels, or a ValueError when ``fit`` could not use them."""
        labels = np.asarray(list(labels), dtype=np.int64)
        n_ref = int(labels.sum())
        n_comp = len(labels) - n_ref
        needed = self.min_examples_per_class()
        if min(n_ref, n_comp) < needed:
            raise ValueError(
                f"training needs at least {needed} examples of each class; found {n_ref} refusal "
                f"and {n_comp} compliance"
            )
        return n_ref, n_comp

    # ------------------------------------------------------------------ scikit-learn API
    def fit(self, X: str | Iterable[str], y: Iterable[Any], sample_weight=None, features=None,
            validation_rows=None):
        """Fit on texts and labels ('refusal'/'compliance', 1/0 or bools).

        ``features`` may pass an already fitted :class:`TextFeatures` (e.g. one with a warm
        embedding cache) to skip refitting the vocabulary during model selection.
        ``validation_rows`` (boolean mask, default all) picks the rows the stored validation
        curve and cross-validation metrics describe: rows added only to teach the model (such
        as truncated copies of responses) would otherwise move the thresholds users pick.
        """
        check_threshold(self.threshold)
        texts = as_texts(X)
        labels = as_labels(y)
        if len(texts) != len(labels):
            raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
        n_ref, n_comp = self.check_class_counts(labels)
        fit_kwargs = {} if sample_weight is None else {"sample_weight": checked_weights(sample_weight, len(labels))}
        rows = np.ones(len(labels), bool) if validation_rows is None else np.asarray(validation_rows, bool)
        if rows.shape != (len(labels),):
            raise ValueError(f"validation_rows has shape {rows.shape}, expected ({len(labels)},)")
        # Built apart and set together at the end: a fit that fails part-way (a bad weight, an
        # interrupt) must leave the model as it was, not new features beside the old head.
        fitted_features = features if features is not None else self.make_features().fit(texts)
        matrix = fitted_features.transform(texts)
        metadata: dict[str, Any] = {}
        # Routing off inside: the calibrator and cross_val_predict built here pass sample_weight
        # the classic way; under a user's global enable_metadata_routing=True they would refuse it
        # (their heads request nothing). Routing into this estimator works as for any other.
        with sklearn.config_context(enable_metadata_routing=False):
            model = self._make_model().fit(matrix, labels, **fit_kwargs)
            if self.validation_curve:
                # Out-of-fold probabilities: what thresholds are picked from (see thresholds.py).
                folds, ungrouped = self._validation_folds(texts, labels)
                if ungrouped:  # pointed at the caller of fit, through ResponseClassifier.fit's wrapper
                    warnings.warn(ungrouped, UserWarning, stacklevel=2 + (type(self).fit is not RefusalClassifier.fit))
                oof = cross_val_predict(
                    self._make_model(), matrix, labels, cv=folds, method="predict_proba", params=fit_kwargs
                )[:, 1]
                metadata["validation_curve"] = compute_validation_curve(labels[rows], oof[rows])
                metadata["cross_validation"] = binary_metrics(labels[rows], oof[rows])
        self.features_, self.model_, self.metadata_ = fitted_features, model, metadata
        self.__dict__.pop("temperature_", None)  # fitted for the previous head's scale
        self.__dict__.pop("manifest_", None)  # no longer the model that was loaded (save_tones checks it)
        self.__dict__.pop("_folder", None)
        self.classes_ = np.asarray(CLASSES, dtype=object)
        self.n_features_in_ = 1
        logger.info(
            "fitted %s on %d texts (%d refusal, %d compliance), %d features",
            type(self).__name__, len(texts), n_ref, n_comp, matrix.shape[1],
        )
        return self

    def _validation_folds(self, texts: list[str], labels: np.ndarray) -> tuple[Any, str | None]:
        """The folds of the out-of-fold scores behind the validation curve, and why they are not
        grouped when they could not be: copies of one text (equal up to whitespace and case,
        :func:`~refusal_predictor.text.text_key`) share a fold.

        A log repeats canned refusals (the response pool holds one 182 times): split apart, each
        copy was scored by a model that had trained on its twin. 400 responses written twice gave
        a stored AUROC of 0.998 and a threshold for recall 0.95 that reached 0.75 on held-out
        responses (0.962 and 0.95 when written once). Without copies the folds are as before.
        Grouped folds are used only when every training fold keeps what the model's own
        calibration needs of each class (a log of one canned refusal and a few others would fail).
        """
        plain = StratifiedKFold(n_splits=self.cv, shuffle=True, random_state=self.random_state)
        keys = [text_key(t) for t in texts]
        if len(set(keys)) == len(keys):
            return plain, None
        _, groups = np.unique(keys, return_inverse=True)
        inner = max(2, self.cv) if self.calibration else 2
        try:
            splits = list(StratifiedGroupKFold(n_splits=self.cv, shuffle=True, random_state=self.random_state)
                          .split(texts, labels, groups))
        except ValueError:  # fewer distinct texts than folds
            splits = []
        if splits and all(np.bincount(labels[train], minlength=2).min() >= inner for train, _ in splits):
            return splits, None
        distinct = min(len({k for k, y in zip(keys, labels) if y == c}) for c in (0, 1))
        return plain, (f"the validation curve's {self.cv} folds split copies of one text (a class has "
                       f"{distinct} distinct texts, too few for {self.cv} folds that keep copies together), so "
                       "the curve and cross_validation are optimistic")

    def _lightgbm_threads(self) -> int:
        """One LightGBM thread unless ``n_jobs`` says otherwise, to train and to score.

        OpenMP threads spin-wait for each other: on a busy 2-core machine a fit on 38 prompts
        took 0.25 s with one thread and 21.5 s with all, and one thread scored 1.2x faster than
        all on a quiet machine, 2x beside two busy processes (benchmarks/bench_threads.py).
        """
        return self.n_jobs if self.n_jobs is not None else 1

    def _set_prediction_threads(self) -> None:
        """Give a loaded model's LightGBM heads :meth:`_lightgbm_threads`: models trained before
        ``n_jobs`` defaulted to one thread carry another count in their pickled heads."""
        threads = self._lightgbm_threads()
        model = getattr(self, "model_", None)
        heads = [c.estimator for c in getattr(model, "calibrated_classifiers_", [])] or [model]
        for head in (leaf for h in heads if h is not None for leaf in leaf_heads(h)):
            if "n_jobs" in head.get_params() and type(head).__module__.startswith("lightgbm"):
                head.set_params(n_jobs=threads)

    def predict_proba(self, X: str | Iterable[str]) -> np.ndarray:
        """Calibrated probabilities, shape (n, 2), columns in ``classes_`` order."""
        check_is_fitted(self, "model_")
        texts = as_texts(X)
        if not texts:
            return np.zeros((0, 2), dtype=np.float64)
        return self._heads_proba(texts, self.model_)[0]

    def _heads_proba(self, texts: list[str], *heads: BaseEstimator, tempered: bool = True) -> list[np.ndarray]:
        """Each head's ``predict_proba`` over the texts' feature rows, built once per chunk for all
        heads: the encoder is most of the cost, so a second head (tones) must not embed again.
        The binary head's probabilities pass through the model's temperature (see
        :meth:`recalibrate`) unless ``tempered`` is false."""
        chunks: list[list[np.ndarray]] = [[] for _ in heads]
        for start in range(0, len(texts), _PREDICT_CHUNK):
            matrix = self.features_.transform(texts[start : start + _PREDICT_CHUNK])
            for out, head in zip(chunks, heads):
                out.append(head.predict_proba(matrix))
        result = [np.vstack(out) for out in chunks]
        if tempered and self.temperature != 1.0:  # skips a copy: temper is the identity at 1
            for i, head in enumerate(heads):
                if head is self.model_:
                    refusal = temper(result[i][:, 1], self.temperature)
                    result[i] = np.column_stack([1.0 - refusal, refusal])
        return result

    @property
    def temperature(self) -> float:
        """The temperature the binary head's log-odds are divided by (1.0 until :meth:`recalibrate`)."""
        return getattr(self, "temperature_", 1.0)

    def _fixed_rows(self, texts: list[str]) -> np.ndarray | None:
        """Texts whose probability the model fixes rather than scores (none here; blank responses
        in a ResponseClassifier): a temperature is not fitted on them."""
        return None

    def recalibrate(self, X: str | Iterable[str], y: Iterable[Any], sample_weight: Any = None, *,
                    source: str | None = None):
        """Fit a temperature on labelled texts this model has not learned from.

        ``fit`` calibrates by cross-validation on the training texts, which is only as honest as
        the features are new to each held-out fold; where they are not (an encoder fine-tuned on
        the same texts), the probabilities come out over-confident on new text. This fits one
        temperature ``T`` on held-out labelled texts by (weighted) log loss and divides the
        binary head's log-odds by it from now on: ``p -> sigmoid(logit(p) / T)``
        (:mod:`refusal_predictor.calibration`); ``T > 1`` makes the model less sure. The ranking
        is kept, and 0.5 stays 0.5, so at threshold 0.5 (every shipped model's) each label and
        tone stays as it was. A threshold elsewhere is a probability cut, and the probabilities
        it cuts have changed: it now flags what the recalibrated model puts at or above it (the
        parameter itself is not changed). ``threshold_for`` reads the stored validation curve,
        which stays on the head's scale, and maps the threshold it picks through ``T``, so it
        picks the same texts as before. Refitting on other texts replaces ``T`` (it is always
        relative to the head); ``fit`` drops it. ``save()`` writes it into the manifest
        (``"temperature"``), and :meth:`save_calibration` writes only it into the folder the
        model was loaded from.

        ``source`` (optional) says where the texts came from, for the model card
        (``metadata["recalibration"]``, which also records the log loss and calibration error
        of the head alone and with ``T``). Needs at least ``MIN_RECALIBRATION_EXAMPLES`` texts
        of each class, with weight, among those the model scores (a ResponseClassifier's blank
        responses have a fixed probability and are left out); texts it already scores right and
        near-certainly (its own training texts) fit no temperature and are refused. Returns the
        model.
        """
        check_is_fitted(self, "model_")
        texts = as_texts(X)
        labels = as_labels(y)
        if len(texts) != len(labels):
            raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
        weights = np.ones(len(labels)) if sample_weight is None else checked_weights(sample_weight, len(labels))
        fixed = self._fixed_rows(texts)
        used = np.ones(len(texts), bool) if fixed is None else ~fixed
        weighted = used & (weights > 0)  # the rows the fit reads
        n_ref, n_comp = int(labels[weighted].sum()), int((1 - labels[weighted]).sum())
        if min(n_ref, n_comp) < MIN_RECALIBRATION_EXAMPLES:
            left_out = [f"{int((~used).sum())} blank texts, whose probability is fixed"] if (~used).any() else []
            left_out += [f"{int((used & ~weighted).sum())} of weight 0"] if (used & ~weighted).any() else []
            raise ValueError(f"recalibrate needs at least {MIN_RECALIBRATION_EXAMPLES} refusals and "
                             f"{MIN_RECALIBRATION_EXAMPLES} compliances; found {n_ref} refusals and {n_comp} "
                             f"compliances" + (f" ({' and '.join(left_out)}, left out)" if left_out else ""))
        kept = [t for t, u in zip(texts, weighted) if u]
        raw = self._heads_proba(kept, self.model_, tempered=False)[0][:, 1].astype(np.float64)
        y_used, w_used = labels[weighted], weights[weighted]
        new = check_temperature(fit_temperature(raw, y_used, w_used))
        old = self.temperature

        def fit_quality(p: np.ndarray) -> dict[str, float]:  # unweighted, as the report's tables are
            metrics = binary_metrics(y_used, p)
            return {"log_loss": log_loss(y_used, p), "brier": metrics["brier"], "ece": metrics["ece"]}

        # measured against the head alone (temperature 1), whatever temperature came before
        self.metadata_ = {**self.metadata, "recalibration": {
            "temperature": new, "rows": int(weighted.sum()), "refusals": n_ref, "compliances": n_comp,
            "left_out_fixed_rows": int((~used).sum()), "left_out_zero_weight_rows": int((used & ~weighted).sum()),
            "sample_weight": sample_weight is not None, "source": source,
            "without_temperature": fit_quality(raw), "with_temperature": fit_quality(temper(raw, new)),
        }}
        self.temperature_ = new
        record = self.metadata_["recalibration"]
        logger.info("recalibrated on %d texts: temperature %.4f (was %.4f), log loss %.4f -> %.4f",
                    record["rows"], new, old, record["without_temperature"]["log_loss"],
                    record["with_temperature"]["log_loss"])
        return self

    def refusal_probability(self, X: str | Iterable[str]) -> np.ndarray:
        return self.predict_proba(X)[:, 1]

    def predict(self, X: str | Iterable[str], threshold: float | None = None) -> np.ndarray:
        """'refusal' where the refusal probability is >= ``threshold`` (default: self.threshold)."""
        cut = check_threshold(self.threshold if threshold is None else threshold)
        proba = self.refusal_probability(X)
        return np.where(proba >= cut, CLASSES[1], CLASSES[0]).astype(object)

    def score(self, X: str | Iterable[str], y: Iterable[Any], sample_weight: Any = None) -> float:
        """Accuracy at ``threshold``, reading ``y`` as ``fit`` does (1/0, booleans, "refused", ...).

        scikit-learn's own ``score`` compared ``predict``'s class names with ``y`` literally: a
        perfect model scored 0.0 on the labels ``fit`` took, and ``cross_val_score`` or
        ``GridSearchCV`` over 1/0 labels gave nan.
        """
        return label_accuracy(self.predict(X), y, sample_weight)

    def _more_tags(self) -> dict:  # scikit-learn < 1.6
        return {"X_types": ["string"]}

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.two_d_array = False
        return tags

    # ------------------------------------------------------------------ persistence
    def _resolved_params(self) -> dict[str, Any]:
        """``get_params()`` with the class defaults that ``None`` stood for filled in, so a
        manifest says which encoder and C a model was trained with even after the defaults move."""
        params = self.get_params()
        if params["C"] is None:
            params["C"] = self.default_C
        if params["encoder"] is None and self.features_.use_embeddings:
            params["encoder"] = str(self.features_.encoder or DEFAULT_ENCODER)
        return params

    def save(self, path: PathLike, metadata: dict[str, Any] | None = None, bundle_encoder: bool | None = None) -> Path:
        """Write a self-describing model folder (manifest + joblib + optional encoder copy).

        The encoder is copied into the folder unless it is one shipped with the package
        (``bundle_encoder=None``), so a saved model always loads on another machine. The folder is
        written beside itself and swapped in whole, so a save that fails part-way (a full disk)
        leaves an earlier model in it loadable.
        """
        check_is_fitted(self, "model_")
        check_threshold(self.threshold)  # load() would refuse the folder; the earlier model must stay
        if getattr(self, "empty_response_probability", None) is not None:
            check_threshold(self.empty_response_probability, "empty_response_probability")
        folder = check_save_folder(path, self.kind)
        with staged_folder(folder) as staging:
            manifest = self._write_folder(staging, folder, metadata, bundle_encoder)
        self.metadata_, self.manifest_ = manifest["metadata"], manifest  # now the model in that folder
        self._folder = folder.resolve()
        return folder

    def _write_folder(self, staging: Path, folder: Path, metadata: dict[str, Any] | None,
                      bundle_encoder: bool | None) -> dict[str, Any]:
        """Write the model into ``staging``, the folder that replaces ``folder`` once complete.

        Files of ``folder`` that ``save()`` does not own (a model card, a user's notes) are carried
        over; an encoder bundled there by an earlier save is not, unless this model reads it. A
        prompt model's card is then brought in line with the model (see ``_write_card``).
        """
        carry_over(folder, staging, {MANIFEST, _MODEL_FILE, "encoder", TONES_FILE})
        joblib.dump(self._saved_copy(), staging / _MODEL_FILE, compress=3)
        files = {_MODEL_FILE: sha256_file(staging / _MODEL_FILE)}
        extras = self._write_extras(staging)
        files.update(extras.pop("files", {}))
        encoder_info = None
        bundled = folder / "encoder"
        if self.features_.use_embeddings:
            enc_path = self.features_.encoder_folder()
            shipped = enc_path.resolve().parent == shipped_path("encoders").resolve()
            # A model loaded from this folder and saved back into it reads the bundled copy.
            in_place = bundled.is_dir() and bundled.resolve() == enc_path.resolve()
            keep_bundled = in_place or bool(bundle_encoder) or (bundle_encoder is None and not shipped)
            if keep_bundled:
                shutil.copytree(enc_path, staging / "encoder")
            encoder_info = {
                "name": self.features_.encoder_name_,
                # The folder's own name: a symbolic link to a shipped encoder has another.
                "shipped_name": enc_path.resolve().name if shipped else None,
                "sha256": self.features_.encoder_sha256_,
                "settings": getattr(self.features_, "encoder_settings_", None),
                "bundled": keep_bundled,
            }
        if (bundled / "encoder.json").is_file() and not (staging / "encoder").exists():
            logger.info("dropped %s, an encoder bundled by an earlier save that this model does not use", bundled)
        merged = dict(getattr(self, "metadata_", {}) or {})
        merged.update(metadata or {})
        manifest = {
            "format": MODEL_FORMAT,
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "classes": list(CLASSES),
            "threshold": check_threshold(self.threshold),  # a float: np.float32 is not JSON
            **self._temperature_field(),
            "params": {k: _jsonable(v) for k, v in self._resolved_params().items()},
            "encoder": encoder_info,
            "versions": {
                "refusal_predictor": __version__,
                "scikit-learn": sklearn.__version__,
                "numpy": np.__version__,
                **_runtime_versions(),
            },
            "files": files,
            "metadata": merged,
            **extras,
        }
        write_json(staging / MANIFEST, manifest)
        self._write_card(staging, merged, folder)
        return manifest

    def _write_extras(self, staging: Path) -> dict[str, Any]:
        """Write the parts saved beside model.joblib; returns manifest fields (``files``: their sums)."""
        return {}

    def _write_card(self, staging: Path, metadata: dict[str, Any], folder: Path) -> None:
        """Bring a model card carried over from ``folder`` in line with the model saved (no card here)."""

    def _fitted_since_load(self) -> bool:
        """Whether this model was fitted after it was loaded or last saved (``fit`` forgets the manifest)."""
        return "manifest_" not in self.__dict__

    def _folder_of_record(self) -> Path | None:
        """The folder this model was loaded from or last saved to (resolved), if any."""
        return self.__dict__.get("_folder")

    def _saved_copy(self) -> "RefusalClassifier":
        """What model.joblib holds: a shallow copy without the parts saved beside it and without this
        machine's encoder options. A copy, so that a save never changes the live model (other
        threads may be predicting with it)."""
        state = copy.copy(self)
        state.__dict__.pop("manifest_", None)  # written beside it; set again by load()
        state.__dict__.pop("_folder", None)  # this machine's path; set again by load()
        # In the manifest, set again by load(): model.joblib stays the fitted head, whose sha256
        # the prompt models' cards record, whether or not it was recalibrated since.
        state.__dict__.pop("temperature_", None)
        state.features_ = copy.copy(self.features_)
        state.features_.__dict__.pop("_encoder_options", None)
        return state

    def _temperature_field(self) -> dict[str, float]:
        """The manifest's ``temperature`` field: present only for a recalibrated model."""
        return {"temperature": self.temperature} if self.temperature != 1.0 else {}

    def _manifest_of_record(self, folder: Path) -> dict[str, Any]:
        """The manifest of ``folder``, which must hold the model.joblib this model was loaded from
        (checked by its sha256), for the saves that write only what lies beside that file."""
        manifest = read_manifest(folder, MANIFEST, MODEL_FORMAT, (FORMAT_VERSION,))
        loaded = (getattr(self, "manifest_", None) or {}).get("files", {}).get(_MODEL_FILE)
        if manifest.get("kind") != self.kind or not loaded or (manifest.get("files") or {}).get(_MODEL_FILE) != loaded:
            raise ValueError(f"{folder} does not hold the model this one was loaded from (its {_MODEL_FILE} "
                             "differs); save() writes the whole model")
        verify_files(folder, {_MODEL_FILE: loaded})
        return manifest

    def save_calibration(self, path: PathLike) -> Path:
        """Write only the temperature of :meth:`recalibrate` into ``path``, the model folder this
        model was loaded from, with the ``recalibration`` record (and a prompt model's card,
        rewritten to match); model.joblib (and a tone head) stay byte for byte. Why: that file's
        sha256 may be recorded elsewhere (the prompt models' cards name the response model that
        bootstrapped their labels), and at threshold 0.5 a temperature changes none of its
        labels. ``save()`` writes the whole model instead.
        """
        check_is_fitted(self, "model_")
        folder = Path(path)
        manifest = self._manifest_of_record(folder)
        metadata = {**(manifest.get("metadata") or {})}
        for key in ("recalibration", "validation_curve_caveat"):
            if key in self.metadata:
                metadata[key] = self.metadata[key]
            else:
                metadata.pop(key, None)
        manifest = {k: v for k, v in manifest.items() if k != "temperature"}
        manifest.update(metadata=metadata, **self._temperature_field())
        with staged_folder(folder) as staging:
            carry_over(folder, staging, {MANIFEST})
            write_json(staging / MANIFEST, manifest)
            self._write_card(staging, metadata, folder)
        # the live metadata keeps what was not saved here (an unsaved tone head's record, say)
        self.manifest_ = manifest
        self._folder = folder.resolve()
        return folder

    @classmethod
    def default_path(cls) -> Path:
        return shipped_path(*cls.default_subdir)

    @classmethod
    def load(cls, path: PathLike | None = None, *, verify: bool = True):
        """Load a model folder; ``None`` loads the shipped default. Works offline."""
        folder = Path(path) if path is not None else cls.default_path()
        manifest = read_manifest(folder, MANIFEST, MODEL_FORMAT, (FORMAT_VERSION,))
        if manifest.get("kind") != cls.kind:
            raise ModelFileError(
                f"{folder / MANIFEST}: this is a {manifest.get('kind')!r} model, not a {cls.kind!r} "
                f"model; load it with the matching class (PromptClassifier / ResponseClassifier; on the "
                f"command line, score-prompts --model for a prompt model, label-responses --model for a "
                f"response model)"
            )
        _check_manifest_fields(folder / MANIFEST, manifest)
        if verify:
            verify_files(folder, manifest["files"])
        versions = manifest.get("versions") or {}
        _warn_on_other_versions(folder, versions, "scikit-learn", sklearn.__version__)  # before: unpickling may fail
        model = _load_joblib(folder / _MODEL_FILE, cls, versions)
        if getattr(model, "head", None) in ("lightgbm", "blend"):  # every model records it; only these use it
            _warn_on_other_versions(folder, versions, "lightgbm", _installed_version("lightgbm"))
        info = manifest.get("encoder")
        if info:
            if info.get("bundled"):
                if not (folder / "encoder").is_dir():
                    raise ModelFileError(
                        f"{folder / 'encoder'}: {MANIFEST} says this model's encoder is bundled here, but the "
                        "folder is missing; copy the model folder whole"
                    )
                # Absolute: the session opens at the first prediction, maybe after a chdir.
                model.features_.encoder = str((folder / "encoder").resolve())
                if model.encoder is not None and not _is_shipped_encoder_name(model.encoder):
                    # clone() and a refit read the parameter, not features_: a training machine's
                    # folder (gone, or holding another encoder by now) becomes the bundled copy; a
                    # shipped encoder's name stays a name.
                    model.encoder = model.features_.encoder
            elif info.get("shipped_name"):
                model.features_.use_shipped_encoder(info["shipped_name"])
            if info.get("settings") and not getattr(model.features_, "encoder_settings_", None):
                model.features_.encoder_settings_ = info["settings"]  # a model pickled before they were
            # get_encoder() checks the sha256 and settings recorded at fit time when the session opens.
        model.metadata_ = manifest.get("metadata") or {}
        model.manifest_ = manifest
        model._folder = folder.resolve()
        model._set_prediction_threads()
        model.threshold = manifest.get("threshold", model.threshold)
        model.__dict__.pop("temperature_", None)
        if "temperature" in manifest:
            model.temperature_ = float(manifest["temperature"])
        return model

    def configure_encoder(self, *, providers: Sequence[str] | None = None, num_threads: int | None = None,
                          concurrent_runs: int | None = None):
        """Open the encoder with these onnxruntime providers / threads (see ``OnnxEncoder.load``).

        E.g. ``num_threads=1`` for one scoring process per core, ``concurrent_runs=1`` when the
        caller already scores from several threads, or ``providers=["CPUExecutionProvider"]`` to
        keep a GPU free. Kept when the model is pickled to worker processes, not written by
        ``save()``: it describes this machine. Returns the model, so it chains after ``load()``.
        A model without embeddings checks and ignores it.
        """
        check_is_fitted(self, "model_")
        self.features_.configure_encoder(providers=providers, num_threads=num_threads,
                                         concurrent_runs=concurrent_runs)
        return self

    def warm_up(self) -> "RefusalClassifier":
        """Open the encoder and run one inference now, so that a service's first request does not.

        The encoder is opened on first use (its weights hashed, its session built), which a
        first request, and the first after each ``configure_encoder``, would otherwise wait for.
        Returns the model, so it chains after ``load()``."""
        check_is_fitted(self, "model_")
        # Two texts: a list of several opens the encoder's second, one-thread-per-run session too.
        self.predict_proba(["Warming up: is this a refusal?", "Sure, here it is."])
        return self

    def threshold_for(
        self, *, precision: float | None = None, recall: float | None = None, refusal_rate: float | None = None
    ) -> float:
        """The threshold reaching a wanted precision, recall or refusal rate on held-out data.

        Read from the validation curve stored at training time (out-of-fold predictions), e.g.
        ``model.predict(texts, threshold=model.threshold_for(recall=0.95))``.
        """
        curve = self.metadata.get("validation_curve")
        if not curve:
            raise ValueError("this model has no stored validation curve; train it with validation_curve=True")
        threshold = pick_threshold(curve, precision=precision, recall=recall, refusal_rate=refusal_rate)
        # The curve is on the head's scale (before any temperature): mapped once, as scores are.
        # A cut above every curve score (refusal_rate=0) must stay above the mapped top score.
        top = max(curve["threshold"])
        mapped = float(temper(threshold, self.temperature))
        if threshold > top:
            mapped = max(mapped, float(np.nextafter(temper(top, self.temperature), 1.0)))
        threshold = mapped
        caveat = self.metadata.get("validation_curve_caveat")
        if caveat:
            # Training knows when its curve is not held out (an encoder fine-tuned on the same
            # rows); a pre-filter trusting the goal it asked for must hear it where it asks.
            warnings.warn(f"this model's validation curve is {caveat}", UserWarning, stacklevel=2)
        return threshold

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(getattr(self, "metadata_", {}) or {})


def _load_joblib(path: Path, expected: type, saved_with: Mapping[str, Any]) -> Any:
    """Unpickle a model folder's file (its sha256 already checked) or raise an error naming it.

    scikit-learn warns once per pickled estimator when it runs another version than the one that
    saved it (``saved_with``, as the manifest records it). Those warnings are silenced, and only
    then, since silencing touches the process's warning filters, which other threads share;
    ``_warn_on_other_versions`` logs one line instead where major.minor differ."""
    other_version = str(saved_with.get("scikit-learn", "")) != sklearn.__version__
    try:
        with ignoring(category=InconsistentVersionWarning) if other_version else contextlib.nullcontext():
            obj = joblib.load(path)
    except Exception as exc:  # unpickling errors come in many types
        raise ModelFileError(f"{path}: cannot be loaded ({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, expected):
        raise ModelFileError(f"{path}: holds a {type(obj).__name__}, not a {expected.__name__}")
    return obj


def _check_manifest_fields(path: Path, manifest: dict[str, Any]) -> None:
    """The fields load() reads have the types it expects: a hand-edited manifest fails here, by name."""
    problems = []
    files_problem = files_field_problem(manifest.get("files"), (_MODEL_FILE,))
    if files_problem:
        problems.append(files_problem)
    for key in ("versions", "encoder", "metadata"):
        if manifest.get(key) is not None and not isinstance(manifest[key], dict):
            problems.append(f"{key!r} must be an object or null, got {type(manifest[key]).__name__}")
    encoder = manifest.get("encoder")
    if isinstance(encoder, dict):
        if not isinstance(encoder.get("bundled", False), bool):
            problems.append(f"'encoder.bundled' must be true or false, got {encoder['bundled']!r}")
        if not isinstance(encoder.get("shipped_name") or "", str):
            problems.append(f"'encoder.shipped_name' must be a name or null, got {encoder['shipped_name']!r}")
        if not isinstance(encoder.get("settings") or {}, dict):
            problems.append(f"'encoder.settings' must be an object or null, got {encoder['settings']!r}")
    try:
        check_threshold(manifest.get("threshold", 0.5), "'threshold'")
    except ValueError as exc:
        problems.append(str(exc))
    try:
        check_temperature(manifest.get("temperature", 1.0), "'temperature'")
    except ValueError as exc:
        problems.append(str(exc))
    if problems:
        raise ModelFileError(f"{path}: " + "; ".join(problems))


def _is_shipped_encoder_name(encoder: Any) -> bool:
    """Whether an ``encoder`` parameter is the name of an encoder shipped with the package (a
    plain name: a path, absolute or relative, is a folder of the user's)."""
    name = str(encoder)
    if Path(name).name != name or name in ("", ".", ".."):
        return False
    try:
        shipped_encoder_path(name)
    except (FileNotFoundError, ValueError):
        return False
    return True


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except TypeError:
        return str(value)


class ResponseClassifier(RefusalClassifier):
    """Is this LLM response a refusal, and in what tone? Trained on human-labelled responses of several LLMs.

    >>> rc = ResponseClassifier.load()
    >>> rc.predict(["I'm sorry, but I can't help with that."])
    array(['refusal'], dtype=object)
    >>> rc.predict_tone(["I'm sorry, but I can't help with that."])
    array(['rejected'], dtype=object)

    The tone (:mod:`refusal_predictor.tones`) refines the label: ``predict_tone`` gives the
    compliance tone (``"complied"``) wherever ``predict`` says compliance, and otherwise the
    likeliest refusal tone. A model gets a tone head from :meth:`fit_tones`; the shipped default
    has one, learned from the paper's hand-labelled tones.
    """

    kind = "response"
    default_subdir = ("response",)
    default_encoder = "minilm-refusal-int8"  # MiniLM fine-tuned on labelled responses (training/recipes.py)
    # Shipped variants by name. "ngrams" reads no embedding: about 50x faster on CPU (README, Speed), for labelling
    # large logs where that matters more than the last points of cross-LLM F1.
    VARIANTS = {"default": ("response",), "ngrams": ("response-ngrams",)}

    @classmethod
    def available_variants(cls) -> list[str]:
        return [name for name, sub in cls.VARIANTS.items() if (shipped_path(*sub) / MANIFEST).is_file()]

    @classmethod
    def load(cls, path: PathLike | None = None, *, verify: bool = True) -> "ResponseClassifier":
        """Load a model folder, a shipped variant by name ("default", "ngrams"), or (``None``) the default.

        A folder that exists wins over a variant of the same name (a file of that name does not).
        Variant names are read case-insensitively, as prompt target names are.
        """
        if path is not None and not str(path).strip():
            raise ValueError(f"empty model path; available variants: {cls.available_variants()}")
        name = shipped_name_key(str(path)) if path is not None else None
        if path is not None and not Path(path).is_dir():
            if name in cls.VARIANTS:
                path = shipped_path(*cls.VARIANTS[name])
            else:
                raise ModelFileError(f"{path}: no such model folder, nor a shipped variant; available variants: "
                                     f"{cls.available_variants()}")
        elif name in cls.VARIANTS and not (Path(path) / MANIFEST).is_file():
            # A folder of outputs named like a variant would otherwise hide it behind "manifest missing".
            raise ModelFileError(f"{Path(path) / MANIFEST}: manifest missing; the folder {str(path)!r} is taken "
                                 f"before the shipped variant of that name, which loads by its path: "
                                 f"ResponseClassifier.load({str(shipped_path(*cls.VARIANTS[name]))!r})")
        model = super().load(path, verify=verify)
        folder = Path(path) if path is not None else cls.default_path()
        if TONES_FILE in model.manifest_["files"]:
            model.tone_head_ = _load_tone_head(folder, model)
        elif (folder / TONES_FILE).exists():
            # Only a hand copy puts it there (save() writes or removes it with the manifest); no
            # sha256 ties it to this model, so it is not used, but the user is told why.
            warnings.warn(f"{folder / TONES_FILE} is not listed in {folder / MANIFEST}, so it is ignored: this "
                          "model predicts no tones; save_tones() adds a tone head to a model folder",
                          UserWarning, stacklevel=2)
        return model

    #: Refusal probability given to an empty or whitespace-only response, whatever the model.
    #: The LLM answered nothing, so nothing was complied with; content filters (e.g. a blocked
    #: generation) produce exactly this. No training set holds empty responses, so a model's own
    #: score for them is arbitrary and differed between shipped variants (0.88 against 0.11).
    #: Set it to ``None`` on an instance to get the model's score instead (kept by ``clone``,
    #: pickling and ``save``).
    empty_response_probability: float | None = 1.0

    def __sklearn_clone__(self):
        # Not a constructor parameter (the shipped models were pickled before it existed), so
        # scikit-learn's clone would not carry a value set on the instance: carried here.
        new = super().__sklearn_clone__()
        if "empty_response_probability" in vars(self):
            new.empty_response_probability = self.empty_response_probability
        return new

    def fit(self, X, y, sample_weight=None, features=None, validation_rows=None):
        # A tone head reads the feature rows of the model it was fitted on: new features void it,
        # but a fit refused for its input (too few examples) leaves the model, and its head, as they were.
        features_before = getattr(self, "features_", None)
        tones_metadata = self.metadata.get("tones")
        super().fit(X, y, sample_weight=sample_weight, features=features, validation_rows=validation_rows)
        if self.features_ is not features_before:
            self.__dict__.pop("tone_head_", None)
        elif getattr(self, "tone_head_", None) is not None and tones_metadata is not None:
            self.metadata_["tones"] = tones_metadata  # the head is kept, so is what was measured of it
        return self

    def _saved_copy(self) -> "ResponseClassifier":
        state = super()._saved_copy()
        state.__dict__.pop("tone_head_", None)  # saved beside it, as tones.joblib
        return state

    def predict_proba(self, X: str | Iterable[str]) -> np.ndarray:
        texts = as_texts(X)
        return self._empty_rows(texts, super().predict_proba(texts))

    def _fixed_rows(self, texts: list[str]) -> np.ndarray | None:
        return self._blank_rows(texts)

    def _blank_rows(self, texts: list[str]) -> np.ndarray | None:
        """Which texts get ``empty_response_probability`` (None when it is switched off)."""
        if self.empty_response_probability is None or not texts:
            return None
        # 1.5 or NaN (set by hand, or from a config) wrote -0.5 / NaN probabilities without a word.
        check_threshold(self.empty_response_probability, "empty_response_probability")
        return np.fromiter((is_blank(t) for t in texts), dtype=bool, count=len(texts))

    def _empty_rows(self, texts: list[str], proba: np.ndarray, blank: np.ndarray | None = None) -> np.ndarray:
        blank = self._blank_rows(texts) if blank is None else blank
        if blank is not None:
            proba[blank] = (1.0 - self.empty_response_probability, self.empty_response_probability)
        return proba

    # ------------------------------------------------------------------ tones
    def fit_tones(self, X: str | Iterable[str], tones: Iterable[str], sample_weight: Any = None, *,
                  compliance_tone: str = COMPLIANCE_TONE, C: float = 10.0) -> "ResponseClassifier":
        """Learn the tone of refusals (e.g. the paper's rejected / redirected / contradicted / disclaimed)
        over this fitted model's features; rows whose tone is ``compliance_tone`` are left out, since
        the binary head already decides *whether*. Tone names are read stripped and lower-case.

        Call it after ``fit`` (a later ``fit`` drops the tone head); ``save`` keeps it. Cross-validated
        accuracy of the tone head goes to ``metadata_["tones"]``.
        """
        check_is_fitted(self, "model_")
        texts = as_texts(X)
        names = []
        for i, tone in enumerate(tones):
            if not isinstance(tone, str):
                raise TypeError(f"tone {i} is {type(tone).__name__}, expected str")
            if not tone.strip():
                raise ValueError(f"tone {i} is empty")
            names.append(tone.strip().lower())
        if len(names) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(names)} tones")
        compliance_tone = _checked_compliance_tone(compliance_tone, names)
        rows = [i for i, t in enumerate(names) if t != compliance_tone]
        weights = None if sample_weight is None else checked_weights(sample_weight, len(texts))[rows]
        if not rows:
            raise ValueError(f"no refusal tones to learn: all {len(names)} tones are {compliance_tone!r}")
        if weights is not None and not (weights > 0).any():
            raise ValueError("sample_weight is zero for every refusal row: no tone to learn from")
        matrix = self.features_.transform([texts[i] for i in rows])
        head = ToneHead(C=C, compliance_tone=compliance_tone).fit(matrix, [names[i] for i in rows], weights)
        self.tone_head_ = head
        self.metadata_ = {**self.metadata, "tones": {"compliance_tone": compliance_tone, **head.metadata_}}
        logger.info("fitted a tone head on %d refusals: %s", head.metadata_["cross_validation"]["n"],
                    ", ".join(map(str, head.tones_)))
        return self

    def _tone_head(self) -> ToneHead:
        check_is_fitted(self, "model_")
        head = getattr(self, "tone_head_", None)
        if head is None:
            raise NotFittedError(
                "this response model has no tone head; fit one with fit_tones(texts, tones) (on the command "
                "line, train-response --tone-field FIELD), or use the shipped default model, which has one"
            )
        return head

    @property
    def tones_(self) -> np.ndarray:
        """The tones ``predict_tone`` can return: the compliance tone first, then the refusal tones."""
        head = self._tone_head()
        return np.asarray([head.compliance_tone, *head.tones_], dtype=object)

    def _refusal_and_tone_proba(self, X: str | Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
        head = self._tone_head()
        texts = as_texts(X)
        if not texts:
            return np.zeros(0), np.zeros((0, len(head.tones_)))
        proba, conditional = self._heads_proba(texts, self.model_, head)
        # float64, rows summing to 1: the head gives float32 over float32 features (off by 1e-7)
        conditional = conditional.astype(np.float64)
        conditional /= conditional.sum(axis=1, keepdims=True)
        blank = self._blank_rows(texts)
        if blank is not None:
            # Nothing to read a tone from: the commonest refusal tone (the paper's "rejected"), the
            # same in every model, as the probability is; the model's own guess differed by model.
            conditional[blank] = head.tones_ == head.default_tone_
        return self._empty_rows(texts, proba, blank)[:, 1], conditional

    def predict_tone_proba(self, X: str | Iterable[str]) -> np.ndarray:
        """Joint tone probabilities, shape (n, len(tones_)), columns in ``tones_`` order; rows sum to 1.

        The first column is 1 - P(refusal), exactly ``predict_proba(X)[:, 0]``; the others split
        P(refusal) by the tone head's P(tone | refusal). ``predict_tone`` is not this table's argmax:
        it decides the label first (at the threshold), then the tone, so a response at P(refusal)
        0.58 split over four tones is a refusal in its likeliest tone, not "complied".
        """
        refusal, conditional = self._refusal_and_tone_proba(X)
        return np.column_stack([1.0 - refusal, refusal[:, None] * conditional])

    def predict_tone(self, X: str | Iterable[str], threshold: float | None = None) -> np.ndarray:
        """The compliance tone where ``predict`` says compliance, else the likeliest refusal tone."""
        return self.refusal_probability_and_tone(X, threshold)[1]

    def refusal_probability_and_tone(self, X: str | Iterable[str],
                                     threshold: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """P(refusal) and the tone, from one pass of the encoder (what batch scoring calls)."""
        cut = check_threshold(self.threshold if threshold is None else threshold)
        refusal, conditional = self._refusal_and_tone_proba(X)
        head = self._tone_head()
        likeliest = head.tones_[np.argmax(conditional, axis=1)] if len(refusal) else np.zeros(0, dtype=object)
        return refusal, np.where(refusal >= cut, likeliest, head.compliance_tone).astype(object)

    def save_tones(self, path: PathLike, metadata: dict[str, Any] | None = None) -> Path:
        """Write only the tone head into ``path``, the model folder this model was loaded from, and
        leave its model.joblib as it is: that file's sha256 may be recorded elsewhere (the prompt
        models' cards name the response model that bootstrapped their labels), and a tone head
        changes nothing the binary head says. ``save()`` writes the whole model instead.
        """
        head = self._tone_head()
        folder = Path(path)
        manifest = self._manifest_of_record(folder)
        if getattr(head, "n_features_in_", None) != self.features_.n_features_out_:
            raise ValueError("the tone head was fitted on other features than this model's")
        with staged_folder(folder) as staging:
            carry_over(folder, staging, {MANIFEST, TONES_FILE})
            extras = self._write_extras(staging)
            files = {k: v for k, v in manifest["files"].items() if k != TONES_FILE}
            manifest = {**manifest, **extras, "files": {**files, **extras["files"]},
                        "metadata": {**(manifest.get("metadata") or {}), "tones": self.metadata.get("tones"),
                                     **(metadata or {})}}
            write_json(staging / MANIFEST, manifest)
        # the live metadata keeps what was not saved here (an unsaved recalibration's record, say)
        self.manifest_, self.metadata_ = manifest, {**self.metadata, "tones": manifest["metadata"].get("tones"),
                                                    **(metadata or {})}
        self._folder = folder.resolve()
        return folder

    def _write_extras(self, staging: Path) -> dict[str, Any]:
        head = getattr(self, "tone_head_", None)
        if head is None:
            return {}
        joblib.dump(head, staging / TONES_FILE, compress=3)
        return {"files": {TONES_FILE: sha256_file(staging / TONES_FILE)},
                "tones": {"compliance": head.compliance_tone, "refusal": [str(t) for t in head.tones_],
                          "versions": {"scikit-learn": sklearn.__version__}}}


def _checked_compliance_tone(compliance_tone: Any, names: Sequence[str]) -> str:
    """The compliance tone, read as tones are, and checked against the data: a compliance tone no
    row carries while a row carries a compliance name ("complied", "compliance") would have those
    compliances learned as a refusal tone, and predict_tone would then give it to refusals."""
    if not isinstance(compliance_tone, str):
        raise TypeError(f"compliance_tone must be a str, got {type(compliance_tone).__name__}")
    tone = compliance_tone.strip().lower()
    if not tone:
        raise ValueError("compliance_tone is empty; name the tone your data gives compliances (e.g. 'complied')")
    found = set(names)
    if tone not in found:
        clash = sorted(found & {COMPLIANCE_TONE, CLASSES[0]})
        if clash:
            raise ValueError(f"no row has the compliance tone {tone!r}, but {len(clash)} tone(s) name compliance: "
                             f"{clash}; pass compliance_tone={clash[0]!r} (train-response --compliance-tone "
                             f"{clash[0]}), or those rows are learned as a refusal tone")
    return tone


def _load_tone_head(folder: Path, model: ResponseClassifier) -> ToneHead:
    """The tone head saved beside model.joblib (its sha256 already checked), or an error naming it."""
    path = folder / TONES_FILE
    listed = model.manifest_.get("tones") or {}
    saved_with = model.manifest_.get("versions") or {}  # said by load() where it differs
    tone_versions = listed.get("versions") if isinstance(listed, dict) else None
    if isinstance(tone_versions, dict) and tone_versions != saved_with:
        # save_tones() wrote this head beside a model saved earlier, maybe by another scikit-learn.
        _warn_on_other_versions(path, tone_versions, "scikit-learn", sklearn.__version__)
        saved_with = tone_versions
    head = _load_joblib(path, ToneHead, saved_with)
    if getattr(head, "n_features_in_", None) != model.features_.n_features_out_:
        raise ModelFileError(f"{path}: fitted on {getattr(head, 'n_features_in_', None)} features, but this "
                             f"model makes {model.features_.n_features_out_}; it belongs to another model")
    # With verify=False no sha256 ties the file to this folder: the tones it gives must at least
    # be those the manifest lists (a head copied from another model had the same width).
    if not isinstance(listed, dict):
        raise ModelFileError(f"{folder / MANIFEST}: 'tones' must be an object (compliance, refusal), got "
                             f"{type(listed).__name__}")
    saved = {"compliance": head.compliance_tone, "refusal": [str(t) for t in head.tones_]}
    if listed and {key: listed.get(key) for key in saved} != saved:
        raise ModelFileError(f"{path}: gives the tones {saved}, but {MANIFEST} lists {listed}; it belongs to "
                             "another model")
    return head
