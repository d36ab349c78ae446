"""Train a prompt classifier for your own LLM from its logs: bootstrap, fit, held-out report, save.

This is the ``train-prompt`` command. Labels come from the ResponseClassifier (see
:mod:`refusal_predictor.bootstrap`); the held-out report therefore measures agreement with those
bootstrapped labels on prompts the model never saw, which is what the model will be used for.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

from .artifacts import PathLike
from .bootstrap import BootstrapReport, bootstrap_records, label_confidence, merge_duplicates
from .classifiers import ResponseClassifier
from .metrics import binary_metrics
from .prompt import PromptClassifier, write_model_card
from .records import read_records

logger = logging.getLogger(__name__)

MIN_PER_CLASS = 10


def check_class_counts(labels: list[int], target: str, minimum: int = MIN_PER_CLASS) -> None:
    """A clear error when a target has too few prompts of a class to train and validate on."""
    n_ref = int(sum(labels))
    n_comp = len(labels) - n_ref
    if min(n_ref, n_comp) < minimum:
        raise ValueError(
            f"target {target!r}: found {n_ref} refused and {n_comp} complied prompts; need at least "
            f"{minimum} of each to train and validate a prompt classifier"
        )


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
    head: str = "logreg",
    input_format: str | None = None,
    encoding: str = "utf-8",
    random_state: int = 0,
) -> tuple[PromptClassifier, dict[str, Any], BootstrapReport]:
    """Bootstrap labels from a log, fit a PromptClassifier, report on held-out prompts, save it.

    ``weight_by_confidence`` weights each prompt by :func:`~refusal_predictor.bootstrap.label_confidence`
    (0.5 to 1) instead of dropping unsure labels (``min_confidence``): nothing is thrown away,
    but a label the response classifier barely decided pulls the prompt model half as hard.
    """
    rc = ResponseClassifier.load(response_model)
    records = read_records(log_path, input_format, encoding)
    if model_filter is not None:
        if not model_field:
            raise ValueError("model_filter needs model_field")
        records = ((line, r) for line, r in records if not isinstance(r, dict) or str(r.get(model_field)) == model_filter)
    rows, report = bootstrap_records(
        records, rc, prompt_field=prompt_field, response_field=response_field, model_field=model_field,
        source=Path(log_path).name, min_confidence=min_confidence,
    )
    rows = merge_duplicates(rows, ("prompt",))  # one row per prompt, whichever model answered
    prompts = [r["prompt"] for r in rows]
    labels = [int(r["label"] == "refusal") for r in rows]
    check_class_counts(labels, target)
    weights = np.array([label_confidence(r) if weight_by_confidence else 1.0 for r in rows])
    train_p, test_p, train_y, test_y, train_w, _ = train_test_split(
        prompts, labels, weights, test_size=test_size, random_state=random_state, stratify=labels
    )
    held_out_model = PromptClassifier(head=head, validation_curve=False).fit(train_p, train_y, sample_weight=train_w)
    held_out = binary_metrics(test_y, held_out_model.refusal_probability(test_p))
    model = PromptClassifier(head=head).fit(prompts, labels, sample_weight=weights)
    card = {
        "target": target,
        "summary": f"Predicts whether {target} refuses a prompt; labels bootstrapped from {Path(log_path).name}.",
        "training": {
            "rows": len(prompts),
            "refusal_rate": float(np.mean(labels)),
            "sample_weight": "label confidence max(p, 1-p)" if weight_by_confidence else "none",
            "sources": [{"source": Path(log_path).name, "rows": len(prompts), "refusal_rate": float(np.mean(labels))}],
            "bootstrap": {
                "read": report.read, "labelled": report.labelled, "dropped_low_confidence": report.dropped_low_confidence,
                "skipped_bad_rows": len(report.bad), "min_confidence": min_confidence,
                "response_model": str(response_model or "shipped default"),
            },
        },
        "evaluation": {"held_out_vs_bootstrapped_labels": held_out},
        "encoder": {"name": model.features_.encoder_name_, "sha256": model.features_.encoder_sha256_},
    }
    model.save(output_dir, metadata=card)
    write_model_card(output_dir, model.metadata)
    logger.info("trained prompt model for %s: %s", target, held_out)
    return model, held_out, report
