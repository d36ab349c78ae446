"""Scoring tables: a pandas DataFrame in this process, a Dask DataFrame across a cluster's workers.

The command line scores files; a pipeline that already holds its log as a table (or as thousands of
Parquet files on a cluster) wants the two columns added to the table itself, every row kept in
place. :func:`score_frame` does that for a pandas DataFrame, and :func:`score_dask` runs it on
every partition of a Dask DataFrame (Dask's ``map_partitions``: a plain function per partition,
no service to run beside the scheduler; ``benchmarks/bench_frames.py`` times it).

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

import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np

from ._forks import renew_in_child
from .artifacts import ModelFileError, read_manifest
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


class ModelRef(NamedTuple):
    """A model as every process loads it: a shipped model by its canonical name (looked up in the
    installed package, never in a worker's current directory), or a folder by its absolute path."""

    source: Literal["shipped", "folder"]
    name: str


_CACHE_SIZE = 8  # models kept per process (kind, model, threads); the least recently used goes
_cache: "OrderedDict[tuple, tuple[tuple | None, Any]]" = OrderedDict()
_cache_lock = threading.Lock()  # guards _cache, _loading and _generation; never held while a model loads
# Per model being loaded: its lock and how many threads hold or wait for it (the entry goes with the
# last of them, so a thread that missed after another's load never loads beside a second one).
_loading: dict[tuple, list] = {}
_generation = 0  # clear_cache() counts up: a load begun before it does not fill the emptied cache
renew_in_child(globals(), "_cache_lock", threading.Lock)
renew_in_child(globals(), "_loading", dict)


def load_scorer(kind: Kind = "response", model: "str | ModelRef | None" = None, num_threads: int | None = None) -> Any:
    """The model a name or folder names, loaded once per process.

    ``kind="response"``: what ``label-responses --model`` takes (None: the shipped default;
    ``"ngrams"``, ``"cascade"`` or a folder). ``kind="prompt"``: what ``score-prompts`` takes (None:
    the shipped gpt-3.5-turbo target; another target's name, e.g. ``"gpt-4"``, or a folder).
    ``num_threads``: the encoder's threads per inference (``--threads``); 1 where a machine runs
    one worker process per core. Cached, so the partitions a worker scores share one model (and
    one encoder session), loaded once however many threads miss it at once; a folder whose
    manifest has changed since (a model retrained or recalibrated there) is loaded again and
    replaces the one cached.
    """
    ref = model_reference(kind, model)
    _check_threads(num_threads)
    key, stamp = (kind, ref, num_threads), _manifest_stamp(ref)
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None and hit[0] == stamp:
            _cache.move_to_end(key)
            return hit[1]
        entry = _loading.setdefault(key, [threading.Lock(), 0])
        entry[1] += 1
        generation = _generation
    try:
        with entry[0]:  # other models' hits and loads go on meanwhile
            with _cache_lock:
                hit = _cache.get(key)
                if hit is not None and hit[0] == stamp:  # loaded by the thread this one waited for
                    return hit[1]
            loaded = _load(kind, ref, num_threads)
            with _cache_lock:
                if generation == _generation:
                    _cache[key] = (stamp, loaded)
                    _cache.move_to_end(key)
                    while len(_cache) > _CACHE_SIZE:
                        _cache.popitem(last=False)
            return loaded
    finally:
        with _cache_lock:
            entry[1] -= 1
            if not entry[1] and _loading.get(key) is entry:
                del _loading[key]


def clear_cache() -> None:
    """Forget the models :func:`load_scorer` holds (their memory goes once nothing else does);
    a load in progress returns its model without keeping it."""
    global _generation
    with _cache_lock:
        _cache.clear()
        _generation += 1


def model_reference(kind: Kind, model: "str | ModelRef | None") -> ModelRef:
    """``model`` as every process loads it, checked here, on the client.

    A folder that exists here wins over a shipped name, as on the command line, must hold a
    manifest of a ``kind`` model, and travels as its absolute path (``~`` expanded: a worker may
    start elsewhere, and one folder named two ways was two models; links are kept, not resolved,
    since the workers may mount the link's path). A shipped name travels as its canonical name
    (``NGRAMS``, ``chatgpt`` and None are the same models as ``ngrams``, ``gpt-3.5-turbo`` and
    the default). A path that is not a folder here (one only the workers mount) travels as it is
    given, made absolute against this directory if relative, for the workers to load; a bare name
    that is neither is a ValueError here.
    """
    from .classifiers import MANIFEST

    _check_kind(kind)
    if isinstance(model, ModelRef):  # every partition's load passes here: no folder listed for a folder's
        if model.source == "folder" and isinstance(model.name, str) and os.path.isabs(model.name):
            return model
        if model.source == "shipped" and model.name in _shipped_names(kind):
            return model
        raise ValueError(f"{model!r} is not a {kind} model: a shipped one is named as "
                         f"{sorted(_shipped_names(kind))}, a folder by its absolute path")
    shipped = _shipped_names(kind)
    _check_model_name(model)
    if model is None:
        return ModelRef("shipped", "default" if kind == "response" else _default_target())
    if not model.strip():
        raise ValueError(f"empty model path or name; available names: {sorted(shipped)}")
    try:
        folder = Path(model).expanduser()
    except RuntimeError as exc:  # ~user/... of a user this machine does not know
        raise ValueError(f"{model!r}: {exc}") from None
    key = _shipped_key(kind, model)
    if folder.is_dir():
        if not (folder / MANIFEST).is_file():
            taken = (f"; the folder {model!r} is taken before the shipped model of that name: rename it or "
                     "work from another directory") if key in shipped else "; is this a refusal-predictor model folder?"
            raise ModelFileError(f"{folder / MANIFEST}: manifest missing{taken}")
        _check_folder_kind(folder, kind)
        return ModelRef("folder", os.path.abspath(folder))
    if key in shipped:
        return ModelRef("shipped", key)
    if folder.is_absolute() or any(sep and sep in model for sep in (os.sep, os.altsep)) or model.startswith(("~", ".")):
        return ModelRef("folder", os.path.abspath(folder))
    raise ValueError(f"{model!r} is neither a model folder nor a shipped {kind} model; available names: {sorted(shipped)}")


def _check_folder_kind(folder: Path, kind: Kind) -> None:
    """A folder's manifest read here: a model of the other kind failed only on the workers."""
    from .classifiers import FORMAT_VERSION, MANIFEST, MODEL_FORMAT

    manifest = read_manifest(folder, MANIFEST, MODEL_FORMAT, (FORMAT_VERSION,))
    if manifest.get("kind") != kind:
        raise ModelFileError(f"{folder / MANIFEST}: this is a {manifest.get('kind')!r} model, not a {kind!r} model; "
                             f"give kind={manifest.get('kind')!r}, or a {kind} model")


def _shipped_names(kind: Kind) -> list[str]:
    if kind == "response":
        from .cascade import response_model_names

        return response_model_names()
    from .prompt import PromptClassifier

    return PromptClassifier.available_targets()


def _shipped_key(kind: Kind, name: str) -> str:
    from .artifacts import shipped_name_key

    if kind == "response":
        return shipped_name_key(name)
    from .prompt import _target_key

    return _target_key(name)


def _default_target() -> str:
    from .prompt import DEFAULT_TARGET

    return DEFAULT_TARGET


def _manifest_stamp(ref: ModelRef) -> tuple | None:
    """What tells a folder's model from the next one saved there: its manifest's identity and time."""
    from .classifiers import MANIFEST

    if ref.source != "folder":
        return None
    try:
        stat = (Path(ref.name) / MANIFEST).stat()
    except OSError:  # a folder only the workers see, or one the loader will name in its error
        return None
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def _load(kind: Kind, ref: ModelRef, num_threads: int | None) -> Any:
    from .artifacts import shipped_path
    from .cascade import CASCADE_NAME, ResponseCascade, load_response_model
    from .classifiers import ResponseClassifier
    from .prompt import PromptClassifier

    if kind == "prompt":
        loaded = PromptClassifier.load(ref.name) if ref.source == "folder" else PromptClassifier.load(target=ref.name)
    elif ref.source == "folder":
        loaded = load_response_model(ref.name)
    elif ref.name == CASCADE_NAME:
        loaded = ResponseCascade.load()
    else:
        loaded = ResponseClassifier.load(shipped_path(*ResponseClassifier.VARIANTS[ref.name]))
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
    cut = None if threshold is None else check_threshold(threshold)
    _check_threads(num_threads)
    loaded = hasattr(model, "refusal_probability")
    if loaded:
        _check_loaded(model, kind, num_threads)
    else:
        model = model_reference(kind, model)
    out = frame.copy()
    probability = np.full(len(frame), np.nan)
    label = np.full(len(frame), None, dtype=object)
    values = frame[field].tolist()
    why_not = [_unscorable(value) for value in values]
    good = [i for i, reason in enumerate(why_not) if reason is None]
    if len(good) < len(values) and errors == "raise":
        first = next(i for i, reason in enumerate(why_not) if reason is not None)
        where = "" if partition_info is None else f"partition {partition_info.get('number')}, "
        of = "rows" if partition_info is None else "rows of this partition"
        raise ValueError(f"{where}row {_plain(frame.index[first])!r}: {field!r} {why_not[first]}; "
                         f"{len(values) - len(good)} of {len(values)} {of} cannot be scored "
                         "(errors='mark' keeps them with no probability and no label)")
    if good:
        scorer = model if loaded else load_scorer(kind, model, num_threads)
        cut = scorer.threshold if cut is None else cut
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


def score_dask(frame: "dd.DataFrame", kind: Kind = "response", model: "str | ModelRef | None" = None, *,
               text_field: str | None = None, threshold: float | None = None, num_threads: int | None = None,
               probability_field: str = "refusal_probability", label_field: str = "label",
               errors: Literal["raise", "mark"] = "raise") -> "dd.DataFrame":
    """:func:`score_frame` on every partition of a Dask DataFrame, lazily (``.compute()``,
    ``.to_parquet(...)`` run it).

    Options, and the model's name or folder, are checked here, on the client, before any work is
    sent out; each worker loads the model on its first partition. A folder's model enters the
    tasks' keys, so a result persisted on the cluster is not handed back for a model saved over
    it since. Dask reads text columns as strings by default (``dataframe.convert-string``), so a
    number or bytes cell arrives as its text and is scored; ``dask.config.set({"dataframe.convert-string":
    False})`` keeps such cells as they are, for ``errors`` to catch.
    """
    if not hasattr(frame, "map_partitions") or not hasattr(frame, "_meta"):
        raise TypeError(f"expected a Dask DataFrame, got {type(frame).__name__}"
                        + ("; for a pandas DataFrame use score_frame" if hasattr(frame, "iloc") else ""))
    _check_options(list(frame.columns), kind, text_field, probability_field, label_field, errors)
    model = model_reference(kind, model)
    if threshold is not None:
        check_threshold(threshold)
    _check_threads(num_threads)
    options = dict(kind=kind, model=model, text_field=text_field, threshold=threshold, num_threads=num_threads,
                   probability_field=probability_field, label_field=label_field, errors=errors)
    import pandas as pd

    meta = frame._meta.assign(**{probability_field: np.array([], dtype=np.float64),
                                 label_field: pd.array([], dtype=pd.StringDtype())})
    return frame.map_partitions(_score_partition, **options, model_stamp=_manifest_stamp(model), meta=meta)


def _score_partition(frame: "pd.DataFrame", *, model_stamp: tuple | None, partition_info: dict | None = None,
                     **options: Any) -> "pd.DataFrame":
    """:func:`score_frame` for one partition; ``model_stamp`` only keys the task to the model's save."""
    return score_frame(frame, partition_info=partition_info, **options)


def _check_loaded(model: Any, kind: Any, num_threads: int | None) -> None:
    """A loaded model is used as it is: a mismatched kind or threads it cannot apply are errors."""
    from .prompt import PromptClassifier

    _check_kind(kind)
    if num_threads is not None:
        raise ValueError("num_threads applies to a model loaded by name; call configure_encoder(num_threads=...) "
                         "on a model already loaded")
    is_prompt = isinstance(model, PromptClassifier)
    if is_prompt != (kind == "prompt") and (is_prompt or _is_response_model(model)):
        raise ValueError(f"a {type(model).__name__} scores {'prompts' if is_prompt else 'responses'}, "
                         f"but kind is {kind!r}")


def _is_response_model(model: Any) -> bool:
    from .cascade import ResponseCascade
    from .classifiers import ResponseClassifier

    return isinstance(model, (ResponseClassifier, ResponseCascade))


def _plain(label: Any) -> Any:
    """An index label as Python writes it: 30, not np.int64(30)."""
    return label.item() if isinstance(label, np.generic) else label


def _check_threads(num_threads: Any) -> None:
    if num_threads is not None:
        from .encoder import check_count

        check_count(num_threads, "num_threads")


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
    if columns.count(field) > 1:
        raise ValueError(f"{columns.count(field)} columns are named {field!r}; rename them so the text column is one")
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
