"""Scoring tables: a pandas DataFrame in this process, a Dask DataFrame across a cluster's workers.

The command line scores files; a pipeline that already holds its log as a table (or as thousands of
Parquet files on a cluster) wants the two columns added to the table itself, every row kept in
place. :func:`score_frame` does that for a pandas DataFrame, and :func:`score_dask` runs it on
every partition of a Dask DataFrame (Dask's ``map_partitions``: on a 2-core machine it added about
3 % to a plain pandas loop over 1,000,000 rows, where Ray and Spark took 2.5-3x as long).

Models travel to the workers as what :func:`load_scorer` loads them by (a shipped name or a folder
path), never pickled into the task graph: each worker process loads a model once
(:func:`load_scorer` caches it) and keeps it for every partition it scores, so a folder path must
be readable at the same path on every worker.

A row whose text is missing, not a string or holds half a character (a lone UTF-16 surrogate)
cannot be scored. ``errors="raise"`` (the default) stops with an error naming the field, the
row's index label and, under Dask, its partition; ``errors="mark"`` keeps the row with a missing
probability and label, so nothing the table held is dropped either way.
"""
from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .text import lone_surrogate_at
from .thresholds import check_threshold

if TYPE_CHECKING:  # pandas and dask are optional: the [parquet] and [dask] extras
    import dask.dataframe as dd
    import pandas as pd

logger = logging.getLogger(__name__)

Kind = Literal["response", "prompt"]
KINDS = ("response", "prompt")
# The text column each kind reads unless told (the command line's --text-field defaults).
DEFAULT_TEXT_FIELD = {"response": "response", "prompt": "prompt"}
CHUNK_SIZE = 1024  # texts scored together: a million-row partition is not one million-text call


def load_scorer(kind: Kind = "response", model: str | None = None, num_threads: int | None = None) -> Any:
    """The model a name or folder names, loaded once per process.

    ``kind="response"``: what ``label-responses --model`` takes (None: the shipped default;
    ``"ngrams"``, ``"cascade"`` or a folder). ``kind="prompt"``: what ``score-prompts`` takes (None:
    the shipped gpt-3.5-turbo target; another target's name, e.g. ``"gpt-4"``, or a folder).
    ``num_threads``: the encoder's threads per inference (``--threads``); 1 where a machine runs
    one worker process per core. Cached, so the partitions a worker scores share one model (and
    one encoder session); a folder whose manifest has changed since (a model retrained or
    recalibrated there) is loaded again, not served from the cache.
    """
    _check_kind(kind)
    _check_model_name(model)
    return _load_cached(kind, model, num_threads, _manifest_stamp(model))


def _manifest_stamp(model: str | None) -> tuple | None:
    """What tells a folder's model from the next one saved there: its manifest's identity and time."""
    from .classifiers import MANIFEST

    if model is None:
        return None
    try:
        stat = (Path(model).expanduser() / MANIFEST).stat()
    except OSError:  # a shipped name, or a folder the loader will name in its error
        return None
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


@functools.lru_cache(maxsize=8)
def _load_cached(kind: Kind, model: str | None, num_threads: int | None, stamp: tuple | None) -> Any:
    if kind == "response":
        from .cascade import load_response_model

        loaded = load_response_model(model)
    else:
        from .prompt import PromptClassifier

        loaded = PromptClassifier.load(model)
    return loaded if num_threads is None else loaded.configure_encoder(num_threads=num_threads)


def score_frame(frame: "pd.DataFrame", kind: Kind = "response", model: Any = None, *,
                text_field: str | None = None, threshold: float | None = None, num_threads: int | None = None,
                probability_field: str = "refusal_probability", label_field: str = "label",
                errors: Literal["raise", "mark"] = "raise", partition_info: dict | None = None) -> "pd.DataFrame":
    """A copy of ``frame`` with the refusal probability and the label of each row's text added.

    ``model``: a name or folder (see :func:`load_scorer`), or a model already loaded (anything
    with ``refusal_probability`` and ``threshold``: ``ResponseClassifier``, ``ResponseCascade``,
    ``PromptClassifier``). ``threshold`` (default: the model's own) cuts the probability into
    ``"refusal"`` / ``"compliance"`` (pandas' ``string`` dtype; ``<NA>`` where a row is not scored).
    Probabilities are written as computed (float64; NaN where a row is not scored), not rounded as
    in the command line's files. ``partition_info`` is Dask's: it names the partition in errors.
    """
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame, got {type(frame).__name__}"
                        + ("; for a Dask DataFrame use score_dask" if hasattr(frame, "map_partitions") else ""))
    field, errors = _check_options(list(frame.columns), kind, text_field, probability_field, label_field, errors)
    out = frame.copy()
    probability = np.full(len(frame), np.nan)
    label = np.full(len(frame), None, dtype=object)
    values = frame[field].tolist()
    good = [i for i, value in enumerate(values) if _unscorable(value) is None]
    if len(good) < len(values) and errors == "raise":
        first = next(i for i, value in enumerate(values) if _unscorable(value) is not None)
        where = "" if partition_info is None else f"partition {partition_info.get('number')}, "
        raise ValueError(f"{where}row {frame.index[first]!r}: {field!r} {_unscorable(values[first])}; "
                         f"{len(values) - len(good)} of {len(values)} rows cannot be scored "
                         "(errors='mark' keeps them with no probability and no label)")
    if good:
        scorer = model if hasattr(model, "refusal_probability") else load_scorer(kind, model, num_threads)
        cut = scorer.threshold if threshold is None else check_threshold(threshold)
        scores = np.concatenate([np.asarray(scorer.refusal_probability([values[i] for i in good[start:start + CHUNK_SIZE]]),
                                            dtype=np.float64)
                                 for start in range(0, len(good), CHUNK_SIZE)])
        if len(scores) != len(good):
            raise ValueError(f"the model returned {len(scores)} scores for {len(good)} texts")
        probability[good] = scores
        label[good] = np.where(scores >= cut, "refusal", "compliance")
    if len(good) < len(values):
        logger.warning("%d of %d rows left unscored: %r missing, not a string or holding a lone surrogate",
                       len(values) - len(good), len(values), field)
    out[probability_field] = probability
    out[label_field] = pd.Series(label, index=frame.index, dtype=pd.StringDtype())
    return out


def score_dask(frame: "dd.DataFrame", kind: Kind = "response", model: str | None = None, *,
               text_field: str | None = None, threshold: float | None = None, num_threads: int | None = None,
               probability_field: str = "refusal_probability", label_field: str = "label",
               errors: Literal["raise", "mark"] = "raise") -> "dd.DataFrame":
    """:func:`score_frame` on every partition of a Dask DataFrame, lazily (``.compute()``,
    ``.to_parquet(...)`` run it). Options are checked here, on the client, before any work is
    sent out; each worker loads the model on its first partition."""
    if not hasattr(frame, "map_partitions") or not hasattr(frame, "_meta"):
        raise TypeError(f"expected a Dask DataFrame, got {type(frame).__name__}"
                        + ("; for a pandas DataFrame use score_frame" if hasattr(frame, "iloc") else ""))
    _check_options(list(frame.columns), kind, text_field, probability_field, label_field, errors)
    _check_model_name(model)
    if threshold is not None:
        check_threshold(threshold)
    if num_threads is not None:
        from .encoder import check_count

        check_count(num_threads, "num_threads")
    options = dict(kind=kind, model=model, text_field=text_field, threshold=threshold, num_threads=num_threads,
                   probability_field=probability_field, label_field=label_field, errors=errors)
    import pandas as pd

    meta = frame._meta.assign(**{probability_field: np.array([], dtype=np.float64),
                                 label_field: pd.array([], dtype=pd.StringDtype())})
    return frame.map_partitions(score_frame, **options, meta=meta)


def _check_model_name(model: Any) -> None:
    if model is not None and not isinstance(model, str):
        raise TypeError(f"model must be a shipped name or a folder path as str (what every worker "
                        f"loads it by), got {type(model).__name__}")


def _check_kind(kind: Any) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")


def _check_options(columns: list, kind: Any, text_field: str | None, probability_field: str, label_field: str,
                   errors: Any) -> tuple[str, str]:
    """The text column to read; a ValueError before any scoring for what would fail or overwrite."""
    _check_kind(kind)
    if errors not in ("raise", "mark"):
        raise ValueError(f"errors must be 'raise' or 'mark', got {errors!r}")
    field = DEFAULT_TEXT_FIELD[kind] if text_field is None else text_field
    if field not in columns:
        raise ValueError(f"no column {field!r} to score (columns: {[str(c) for c in columns[:20]]}); "
                         "name the text column with text_field=")
    if probability_field == label_field:
        raise ValueError(f"probability_field and label_field are both {label_field!r}")
    clash = [name for name in (probability_field, label_field) if name in columns]
    if clash:
        raise ValueError(f"the table already has a column {clash[0]!r}; choose another probability_field / "
                         "label_field so its values are not overwritten")
    return field, errors


def _unscorable(value: Any) -> str | None:
    """Why a cell cannot be scored; None for a string the models take (empty included)."""
    if not isinstance(value, str):
        try:
            import pandas as pd

            missing = value is None or bool(pd.isna(value))
        except (TypeError, ValueError):  # an array-like cell: pd.isna gives an array
            missing = False
        return "is missing" if missing else f"is {type(value).__name__}, expected a string"
    at = lone_surrogate_at(value)
    if at is not None:
        return f"holds a lone UTF-16 surrogate at character {at} (half of a character)"
    return None
