"""Recalibrate a response model on labelled responses it never learned from (temperature scaling).

    python -m training.recalibrate_response --data-dir DATA [--model DIR] [--write]

Why: the default response model reads an encoder fine-tuned on its own training responses, so
the calibration ``fit`` does by cross-validation saw a separation that new responses lack: on the
paper's held-out test responses it was over-confident (ECE 0.074; the n-gram variant, whose
features are new to each fold, 0.046). :meth:`ResponseClassifier.recalibrate` fits one
temperature on held-out labelled responses, which keeps the ranking and every label at 0.5.

The responses it fits on: GPTFuzz's labelled responses outside the response pool. The pool
(``train_response.training_pool``) takes 1,500 de-duplicated GPTFuzz rows; the others were
never trained on, by the encoder's fine-tune or by the head. De-duplicated, blank ones left out,
all of them (or a seeded sample of ``--n``). The report prints, for the head alone and with the temperature, the fit rows, the
paper's 256 test responses (held out of both models and of the fit) and the logged responses
that carry a weak label (an LLM judge or refusal strings; none is a training row). ``--write``
puts the temperature into the model folder with ``save_calibration`` (model.joblib stays byte for
byte, so the prompt models' cards still name it). ``training.train_response`` recalibrates the
same way every recipe over a fine-tuned encoder, so a rebuild makes what ships.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from refusal_predictor import ResponseClassifier
from refusal_predictor.calibration import log_loss, temper
from refusal_predictor.cli import at_least_one
from refusal_predictor.metrics import binary_metrics, format_table
from refusal_predictor.text import is_blank, text_key

from . import data
from .baselines import refusal_y

logger = logging.getLogger(__name__)
HELDOUT_ROWS: int | None = None  # all of them (2,827 on the shared data)
SOURCE = ("GPTFuzz labelled responses outside the response pool (never trained on by the encoder or the "
          "head), de-duplicated, non-blank")


def heldout_responses(data_dir: Path, pool: pd.DataFrame, n: int | None = HELDOUT_ROWS, seed: int = 0,
                      trained_texts: list[str] | None = None) -> pd.DataFrame:
    """GPTFuzz's labelled responses that no response model or encoder was trained on (see module
    doc): none equals, up to whitespace and case, a text the head trained on (the pool's responses
    and their openings, ``train_response.training_rows``, unless the caller has them already as
    ``trained_texts``); ``n``: a seeded sample of at most that many (``None``: all, in a seeded
    order)."""
    from .train_response import training_rows

    fuzz = data.load_gptfuzz(data_dir)
    seen = {text_key(t) for t in (training_rows(pool)[0] if trained_texts is None else trained_texts)}
    keys = fuzz["response"].map(text_key)
    fuzz = fuzz[~keys.isin(seen) & ~fuzz["response"].map(is_blank)].assign(key=keys)
    fuzz = fuzz.drop_duplicates(subset=["key"]).drop(columns="key")
    return fuzz.sample(n=len(fuzz) if n is None else min(n, len(fuzz)), random_state=seed).reset_index(drop=True)


def recalibrate_on(model: ResponseClassifier, rows: pd.DataFrame) -> ResponseClassifier:
    """``model.recalibrate`` on ``rows`` (from :func:`heldout_responses`); returns the model."""
    refusals = int((rows["label"] == "refusal").sum())
    return model.recalibrate(rows["response"].tolist(), refusal_y(rows),
                             source=f"{SOURCE}: {len(rows)} rows, {refusals} refusals")


def _row(name: str, y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    m = binary_metrics(y, p)
    return {"responses": name, "n": m["n"], "accuracy": m["accuracy"], "auroc": m["auroc"],
            "log_loss": log_loss(y, p), "brier": m["brier"], "ece": m["ece"]}


def report(model: ResponseClassifier, sets: dict[str, tuple[list[str], np.ndarray]]) -> list[dict[str, Any]]:
    """Each labelled set scored by the recalibrated ``model`` and by its head alone (temperature 1,
    whatever temperature the model was loaded with)."""
    rows = []
    for name, (texts, y) in sets.items():
        p = model.refusal_probability(texts)
        rows.append({"model": "head alone (T=1)", **_row(name, y, temper(p, 1.0, before=model.temperature))})
        rows.append({"model": f"recalibrated (T={model.temperature:.3f})", **_row(name, y, p)})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="the shared data folder")
    parser.add_argument("--model", default=None, help="response model folder (default: the shipped default model)")
    parser.add_argument("--n", type=at_least_one, default=HELDOUT_ROWS,
                        help="held-out responses to fit on, at most (default: all of them)")
    parser.add_argument("--write", action="store_true",
                        help="write the temperature into the model folder (save_calibration: model.joblib unchanged)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from .cascade_band import unlabelled_sample
    from .train_response import training_pool

    folder = Path(args.model) if args.model is not None else ResponseClassifier.default_path()
    after = ResponseClassifier.load(folder)
    loaded_with = after.temperature
    pool = training_pool(args.data_dir)
    fit_rows = heldout_responses(args.data_dir, pool, args.n)
    recalibrate_on(after, fit_rows)
    _, _, test = data.paper_split()
    logs = unlabelled_sample(args.data_dir, 4000)
    logs = logs[logs["weak_label"].notna()]
    sets = {
        f"fit: GPTFuzz outside the pool ({len(fit_rows)})": (fit_rows["response"].tolist(), refusal_y(fit_rows)),
        "paper test split (256)": (test["response"].tolist(), refusal_y(test)),
        f"logs with a weak label ({len(logs)})": (logs["response"].tolist(),
                                                  (logs["weak_label"] == "refusal").to_numpy().astype(int)),
    }
    print(format_table(report(after, sets), ["responses", "model", "n", "accuracy", "auroc", "log_loss", "brier", "ece"],
                       title=f"{folder}: temperature {after.temperature:.4f} (loaded with {loaded_with:.4f})"))
    if args.write:
        if after.metadata.get("validation_curve_caveat"):
            from .train_response import FINETUNED_CURVE_CAVEAT

            after.metadata_["validation_curve_caveat"] = FINETUNED_CURVE_CAVEAT  # it names the recalibration
        after.save_calibration(folder)
        print(f"wrote the temperature into {folder / 'manifest.json'} (model.joblib unchanged)")


if __name__ == "__main__":
    main()
