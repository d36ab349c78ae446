"""Train a prompt classifier for your own LLM from its logs: bootstrap, fit, held-out report, save.

This is the ``train-prompt`` command. Labels come from the ResponseClassifier (see
:mod:`refusal_predictor.bootstrap`); the held-out report therefore measures agreement with those
bootstrapped labels on prompts the model never saw, which is what the model will be used for.
"""
from __future__ import annotations

import logging
import math
import re
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

from .artifacts import PathLike, refuse_shipped_folder
from .bootstrap import BootstrapReport, bootstrap_records, label_confidence, merge_duplicates
from .cascade import load_response_model, response_model_record
from .classifiers import HEADS, check_save_folder
from .errors_file import StagedErrors, default_errors_path
from .metrics import binary_metrics
from .prompt import PromptClassifier
from .records import check_paths, count_lines, read_records
from .selection import embedding_cache, fit_with_cache, select

logger = logging.getLogger(__name__)

MIN_PER_CLASS = 10
# Per class in the training part: 5-fold selection, and calibration inside each fold, need this many.
MIN_TRAIN_PER_CLASS = 8


class LogCannotTrain(ValueError):
    """The log, as read and labelled, cannot train a model (no usable row, too few prompts of a
    class, a --test-size that leaves a part without one): the skipped rows are what the user needs
    to mend it, so the errors file is written. Any other failure leaves an earlier one alone."""


def held_out_split(labels: list[int], target: str, test_size: float = 0.2, random_state: int = 0,
                   minimum: int = MIN_PER_CLASS) -> tuple[np.ndarray, np.ndarray]:
    """The training and held-out prompts (indices, stratified), or a clear error naming the counts.

    Checked on the split itself, not on an estimate of it: the held-out part must hold a prompt
    of each class (a small ``test_size`` held out none of the rarer class, and the report gave
    F1 0 and AUROC NaN, or sklearn's "test_size = 1" when the user gave 0.05), and the training
    part what cross-validation needs (an estimate, 80 x 0.1 = 7.999..., refused a split that
    keeps 8).
    """
    y = np.asarray(labels, dtype=int)
    n_ref = int(y.sum())
    n_comp = len(y) - n_ref
    found = f"target {target!r}: found {n_ref} refused and {n_comp} complied prompts"
    if min(n_ref, n_comp) < minimum:
        raise LogCannotTrain(f"{found}; need at least {minimum} of each to train and validate a prompt classifier")
    # Holding out len/rarer prompts gives the rarer class at least one (sklearn's allocation floors n * share).
    enough = math.ceil(math.ceil(len(y) / min(n_ref, n_comp)) / len(y) * 1000) / 1000
    raise_it = f"raise test_size (--test-size); {enough:g} holds out one of each"  # enough, if not the least that is
    too_few_to_train = (f"{found}; with test_size {test_size} the training part keeps {{}} of the rarer class, "
                        f"and cross-validation needs {MIN_TRAIN_PER_CLASS}: lower test_size (--test-size) or bring "
                        "more prompts")
    n_test = math.ceil(test_size * len(y))
    try:
        train, test = train_test_split(np.arange(len(y)), test_size=test_size, random_state=random_state, stratify=y)
    except ValueError:  # sklearn's own words named a test_size of 1 where the user gave 0.05
        if n_test < 2:
            raise LogCannotTrain(f"{found}; test_size {test_size} holds out {n_test} of them, too few for one "
                                 f"of each class: {raise_it}") from None
        raise LogCannotTrain(too_few_to_train.format(0)) from None  # a training part of 0 or 1 prompts
    held = np.bincount(y[test], minlength=2)
    if held.min() == 0:
        missing = "refused" if held[1] == 0 else "complied"
        raise LogCannotTrain(f"{found}; test_size {test_size} holds out {len(test)} of them, no {missing} prompt "
                             f"among them, so the held-out report could measure nothing: {raise_it}")
    kept = int(np.bincount(y[train], minlength=2).min())
    if kept < MIN_TRAIN_PER_CLASS:
        raise LogCannotTrain(too_few_to_train.format(kept))
    return train, test


def default_output(target: str) -> str:
    """The default model folder of a target, one folder even for hub-style names ("org/model")."""
    safe = re.sub(r"[^\w.-]+", "-", target).strip("-.")
    return f"prompt-model-{safe or 'target'}"


def errors_path_for(output_dir: PathLike, given: PathLike | None = None) -> Path:
    """Skipped log rows of a training run go beside the model folder, not into it (or to ``given``,
    checked as every command's ``--errors`` is: :func:`~refusal_predictor.errors_file.default_errors_path`)."""
    return default_errors_path(Path(output_dir).resolve(), given)  # "." and ".." have no name of their own


def train_prompt_model(
    log_path: PathLike,
    target: str,
    output_dir: PathLike,
    *,
    response_model: PathLike | None = None,
    prompt_field: str = "prompt",
    response_field: str = "response",
    model_field: str | None = "model",
    model_filter: str | None = None,
    min_confidence: float | None = None,
    weight_by_confidence: bool = False,
    test_size: float = 0.2,
    head: str = "auto",
    input_format: str | None = None,
    encoding: str = "utf-8",
    errors_path: PathLike | None = None,
    separator: str | None = None,
    random_state: int = 0,
    num_threads: int | None = None,
    progress: bool = False,
) -> tuple[PromptClassifier, dict[str, Any], BootstrapReport]:
    """Bootstrap labels from a log, fit a PromptClassifier, report on held-out prompts, save it.

    ``head="auto"`` picks logistic regression, LightGBM or their blend by 5-fold cross-validation on the
    training part only (the held-out prompts never take part); the card records the comparison.
    ``weight_by_confidence`` weights each prompt by :func:`~refusal_predictor.bootstrap.label_confidence`
    (for one answer 0.5 to 1 at threshold 0.5; a contested prompt's can be lower): a label the
    response classifier barely decided pulls the prompt model half as hard, and nothing is thrown
    away unless ``min_confidence`` also drops unsure answers (the two combine).
    Rows that could not be used are written, with their line numbers, to ``errors_path``
    (default: ``OUTPUT.errors.jsonl`` beside the model folder).
    ``num_threads`` caps both encoders' CPU threads (the response encoder labelling the log, the
    prompt encoder embedding its prompts): on a machine shared with other jobs, training would
    otherwise take one thread per CPU. The heads already train on one thread.
    """
    if head != "auto" and head not in HEADS:
        raise ValueError(f"head must be 'auto' or one of {HEADS}, got {head!r}")
    if not isinstance(target, str) or not target.strip():
        raise ValueError(f"the target name must be a non-blank name of your LLM, got {target!r}")
    if any(unicodedata.category(c) == "Cc" for c in target):
        # A newline in the name split the model card's Markdown heading and every log line naming it.
        raise ValueError(f"the target name holds a control character (a newline, a tab): {target!r}")
    errors_file = errors_path_for(output_dir, errors_path)
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be a fraction between 0 and 1 (exclusive), got {test_size}")
    check_paths(log_path, errors=errors_file, input_format=input_format, model_folder=output_dir, separator=separator)
    check_save_folder(output_dir, PromptClassifier.kind)
    refuse_shipped_folder(output_dir, "prompt model")
    rc = load_response_model(response_model)
    if num_threads is not None:
        rc.configure_encoder(num_threads=num_threads)  # also checks the value, before any row is read
    records = read_records(log_path, input_format, encoding, separator=separator)
    seen_models: Counter = Counter()
    # ``report.read`` counts the unreadable lines too (with model_filter, beside the matching rows):
    # they name no model and hold no row, so the card counts them apart.
    in_log = {"rows": 0, "unreadable": 0}

    def counting_unreadable(stream):
        for line, r in stream:
            if not isinstance(r, dict):
                in_log["unreadable"] += 1
            yield line, r

    if model_filter is not None:
        if not model_field:
            raise ValueError("model_filter needs model_field")

        def matching(stream):
            for line, r in stream:
                in_log["rows"] += 1
                if isinstance(r, dict):
                    value = r.get(model_field)
                    seen_models["(field missing or null)" if value is None else str(value)] += 1
                    if value is None or str(value) != model_filter:
                        continue
                yield line, r

        records = matching(records)
    records = counting_unreadable(records)
    rows, report = bootstrap_records(
        records, rc, prompt_field=prompt_field, response_field=response_field, model_field=model_field,
        source=Path(log_path).name, min_confidence=min_confidence, progress=progress,
        lines=count_lines(log_path, input_format, encoding) if progress else None,
    )
    # Written aside now, put in place with the model: a run that fails or is stopped while training
    # leaves an earlier model's errors file as it was (it was replaced, or removed, before).
    staged = StagedErrors(errors_file, report.unused(), log_path)
    report.errors_path = errors_file if report.unused() else None
    try:
        model, held_out, card = _fit_report(
            rows, report, rc, log_path=log_path, target=target, seen_models=seen_models, in_log=in_log,
            response_model=response_model, prompt_field=prompt_field, response_field=response_field,
            model_field=model_field, model_filter=model_filter, min_confidence=min_confidence,
            weight_by_confidence=weight_by_confidence, test_size=test_size, head=head,
            random_state=random_state, num_threads=num_threads)
    except LogCannotTrain:
        # Its skipped rows are what the user needs to mend the log (the message names the file);
        # with none, an earlier run's file is left alone.
        if report.unused():
            staged.place()
        else:
            staged.restore()
        raise
    except BaseException:
        staged.restore()
        raise
    # The command line's Ctrl-C or SIGTERM is acted on once the model and its errors file are both
    # in place (a save takes about a second): one just after the model folder's rename put the
    # earlier model's errors file back beside the new model.
    with staged.paired():
        model.save(output_dir, metadata=card)  # the card is written with the model (model_card.json, MODEL_CARD.md)
    report.errors_path = staged.result
    logger.info("trained prompt model for %s: %s", target, held_out)
    return model, held_out, report


def _listed(report: BootstrapReport) -> str:
    return f" (skipped rows listed in {report.errors_path})" if report.errors_path else ""


def _fit_report(rows: list[dict[str, Any]], report: BootstrapReport, rc: Any, *, log_path: PathLike, target: str,
                seen_models: Counter, in_log: dict[str, int], response_model: PathLike | None, prompt_field: str,
                response_field: str, model_field: str | None, model_filter: str | None,
                min_confidence: float | None, weight_by_confidence: bool, test_size: float, head: str,
                random_state: int, num_threads: int | None) -> tuple[PromptClassifier, dict[str, Any], dict[str, Any]]:
    """From bootstrapped rows to a fitted model, its held-out report and its card (not saved yet)."""
    if model_filter is not None and not seen_models.get(model_filter):
        shown = ", ".join(f"{name!r} ({n} rows)" for name, n in seen_models.most_common(10)) or "none"
        hint = f" (is the model field called something else than {model_field!r}? --model-field)" \
            if set(seen_models) == {"(field missing or null)"} else ""
        raise LogCannotTrain(f"{log_path}: no row has {model_field} == {model_filter!r}; values found: {shown}{hint}"
                             + _listed(report))
    if model_filter is not None:
        # Exact match, as documented; but other spellings of the same LLM ("GPT-4", "gpt-4-0613")
        # were left out without a word.
        similar = [(name, n) for name, n in seen_models.most_common()
                   if name != model_filter and model_filter.casefold() in name.casefold()]
        if similar:
            logger.warning("%s: --model-filter %r keeps exact matches only (%d rows); left out: %s",
                           log_path, model_filter, seen_models.get(model_filter, 0),
                           ", ".join(f"{name!r} ({n} rows)" for name, n in similar[:10]))
    if not report.labelled:
        why = "; ".join(f"{n}x {r}" for r, n in report.reasons().most_common(3)) or "the log holds no rows"
        raise LogCannotTrain(
            f"{log_path}: none of the {report.read} rows could be labelled ({why}); check "
            f"--prompt-field ({prompt_field!r}) and --response-field ({response_field!r})" + _listed(report)
        )
    answered_by = Counter(r["model"] or "(no model field)" for r in rows)
    if model_filter is None and len(answered_by) > 1:
        logger.warning("%s: the log holds the answers of %d LLMs (%s); their labels are pooled, one "
                       "majority label per prompt, for target %r; --model-filter NAME trains on one",
                       log_path, len(answered_by),
                       ", ".join(f"{m!r} {n} rows" for m, n in answered_by.most_common(5)), target)
    # One row per prompt (up to whitespace and case, so no copy of a held-out prompt trains),
    # whichever model answered.
    rows = merge_duplicates(rows, ("prompt",), report, threshold=rc.threshold)
    report.written = len(rows)
    prompts = [r["prompt"] for r in rows]
    labels = [int(r["label"] == "refusal") for r in rows]
    try:
        train_index, test_index = held_out_split(labels, target, test_size, random_state)
    except LogCannotTrain as exc:  # say where the log's other rows went: the counts alone read as "the log is short"
        raise LogCannotTrain(f"{exc}. {log_path}: {report.counts()}" + _listed(report)) from None
    weights = np.array([label_confidence(r) if weight_by_confidence else 1.0 for r in rows])
    train_p, test_p = [prompts[i] for i in train_index], [prompts[i] for i in test_index]
    train_y, test_y = [labels[i] for i in train_index], [labels[i] for i in test_index]
    train_w = weights[train_index]
    cache = embedding_cache(PromptClassifier(), prompts, num_threads)  # every fit below embeds the same prompts: once is enough
    selection_rows = None
    if head == "auto":
        candidates = {name: {"head": name} for name in HEADS}
        head, selection_rows = select(
            PromptClassifier, candidates, train_p, np.asarray(train_y), None, cache, sample_weight=train_w
        )
        logger.info("head chosen by cross-validation on the training prompts: %s", head)
    held_out_model = fit_with_cache(
        PromptClassifier(head=head, validation_curve=False), train_p, train_y, cache, sample_weight=train_w
    )
    held_out = binary_metrics(test_y, held_out_model.refusal_probability(test_p))
    held_out["protocol"] = (
        f"{len(test_p)} prompts held out (test_size {test_size}, stratified, random_state {random_state}), "
        f"scored by a model fitted on the other {len(train_p)}; the saved model is fitted on all "
        f"{len(prompts)}, these included"
    )
    model = fit_with_cache(PromptClassifier(head=head), prompts, labels, cache, sample_weight=weights)
    card = {
        "target": target,
        "summary": f"Predicts whether {target} refuses a prompt; labels bootstrapped from {Path(log_path).name}.",
        "training": {
            "rows": len(prompts),
            "refusal_rate": float(np.mean(labels)),
            "sample_weight": "label confidence (the probability of the label)" if weight_by_confidence else "none",
            "sources": [{"source": Path(log_path).name, "rows": len(prompts), "refusal_rate": float(np.mean(labels))}],
            "bootstrap": {
                "read": report.read - in_log["unreadable"], "labelled": report.labelled,
                "dropped_low_confidence": report.dropped_low_confidence,
                "skipped_bad_rows": len(report.bad) - in_log["unreadable"], "min_confidence": min_confidence,
                "unreadable_lines": in_log["unreadable"],
                "merged_duplicate_rows": report.merged_duplicates, "conflicting_prompts": report.conflicting_prompts,
                "model_filter": model_filter,
                "rows_in_log": in_log["rows"] if model_filter is not None else report.read,
                "answered_by": dict(answered_by.most_common(20)),
                "response_model": str(response_model or "shipped default"),
                **response_model_record(rc),
            },
        },
        "head": head,
        "evaluation": {"held_out_vs_bootstrapped_labels": held_out,
                       "cross_validation_vs_bootstrapped_labels": model.metadata.get("cross_validation", {})},
        "encoder": {"name": model.features_.encoder_name_, "sha256": model.features_.encoder_sha256_},
    }
    if selection_rows is not None:
        # Same shape as the shipped targets' cards: one row per candidate, "recipe" names the head.
        card["recipe"] = head
        card["model_selection"] = selection_rows
        card["model_selection_protocol"] = (
            "5-fold stratified cross-validation on the training prompts (held-out prompts excluded), "
            "uncalibrated heads, best accuracy (ties: F1)"
        )
    return model, held_out, card
